import json

import numpy as np

from dlbook.book import claims, context, profiles
from dlbook.experiments import future_work as fw
from dlbook.methods import federated as fl
from dlbook.methods import metrics

VALUES = {
    "fl_clients": 10, "fl_rounds": 10, "flwr_version": "1.42.0", "fl_alphas": "0.1,1",
    "fl_strategies": "fedavg,fedprox", "central_accuracy": 0.99, "central_accuracy_ci_low": 0.98,
    "central_accuracy_ci_high": 0.995, "fedavg_accuracy_iid": 0.985, "fedavg_iid_gap_points": 0.5,
    "fedavg_accuracy_noniid_0.1": 0.95, "fedprox_accuracy_noniid_0.1": 0.96,
    "fedavg_accuracy_noniid_1": 0.98, "fedprox_accuracy_noniid_1": 0.98,
    "fl_label_skew_dirichlet-0.1": 0.45, "fl_label_skew_dirichlet-1": 0.2,
    "fl_best_strategy_noniid_0.1": "fedprox", "fl_best_strategy_noniid_1": "fedavg",
    "local_only_accuracy_mean": 0.6, "fl_bytes_per_round": 206000.0,
    "fl_dp_noise_multipliers": "0.3,1", "fedavg_dp_accuracy_z0.3": 0.9,
    "fedavg_dp_accuracy_z1": 0.7, "fl_dp_epsilon_z0.3": 120.0, "fl_dp_epsilon_z1": 20.0,
    "fl_dp_clipping_norm": 2.0, "fl_dp_delta": 1e-3,
}  # fmt: skip


def test_story_federated_quotes_the_results_and_the_claims_method_check():
    text = fw.story_federated(VALUES)
    assert "98.5%" in text and "99.0%" in text and "a gap of +0.5 points." in text
    assert "fedprox 96.0%" in text and "the best on validation is fedprox" in text
    assert "60.0%" in text and "206 kB" in text
    assert "Method check, not evidence: FedAvg over IID clients comes within 1 point" in text
    assert "judged below, on clients that differ by image source" in text


def test_story_federated_never_judges_apart_from_the_claims_page():
    # FedAvg 2.5 points above central: the claims page's check (central - FedAvg <= 0.01) passes;
    # a check on the absolute gap would not, and the page would contradict the claims page.
    better = {**VALUES, "fedavg_accuracy_iid": 0.99, "central_accuracy": 0.965}
    better["fedavg_iid_gap_points"] = 100 * (better["central_accuracy"] - 0.99)
    assert claims.judge("federated_learning", {"future_work": better}).verdict == claims.UNTESTED
    assert "IID clients comes within 1 point" in fw.story_federated(better)
    worse = {**VALUES, "fedavg_accuracy_iid": 0.97, "fedavg_iid_gap_points": 2.0}
    assert "IID clients does not come within 1 point" in fw.story_federated(worse)


def test_story_privacy_names_each_noise_level_and_its_epsilon():
    text = fw.story_privacy(VALUES)
    assert "noise multiplier 0.3: 90.0% test accuracy, epsilon = 120" in text
    assert "noise multiplier 1: 70.0%" in text and "delta = 0.001" in text


def test_story_mask_fit_quotes_counts_and_interval():
    values = {
        "mask_fit_test_faces": 100, "mask_fit_train_faces": 300, "mask_fit_synthetic_accuracy": 0.9,
        "mask_fit_synthetic_accuracy_ci_low": 0.85, "mask_fit_synthetic_accuracy_ci_high": 0.94,
        "mask_fit_recall_correct": 0.95, "mask_fit_recall_nose_exposed": 0.85,
        "mask_fit_recall_chin": 0.9, "mask_fit_real_with_mask_images": 400,
        "mask_fit_flagged_real_with_mask": 40, "mask_fit_flagged_nose_exposed": 30,
        "mask_fit_flagged_chin": 10,
    }  # fmt: skip
    text = fw.story_mask_fit(values)
    assert "90.0% accurate (95% CI 85.0%-94.0%" in text and "flags 40 as badly worn" in text


def test_plan_and_partitions_follow_the_settings():
    settings = profiles.get("smoke", "future_work")
    names = [run.name for run in fw.plan(settings)]
    assert names[0] == "fedavg iid" and "fedprox dirichlet-0.1" in names
    assert sum(run.noise_multiplier is not None for run in fw.plan(settings)) == len(
        settings["noise_multipliers"]
    )
    labels = np.repeat([0, 1], [200, 140])
    owners = fw.partitions(labels, settings, seed=0)
    assert set(owners) == {"iid", "dirichlet-0.1", "dirichlet-1"}
    for owner in owners.values():
        assert np.bincount(owner).min() >= settings["min_client_size"] and len(owner) == 340


def test_accuracy_interval_brackets_the_mean_and_draws_what_bootstrap_ci_draws():
    correct = np.r_[np.ones(90), np.zeros(10)]
    low, high = fw.accuracy_interval(correct, 500, 0)
    assert low < 0.9 < high and high - low < 0.15
    # the same resamples as metrics.bootstrap_ci; only its low percentile differs, in the last bits
    ref_low, ref_high = metrics.bootstrap_ci(np.mean, correct, n_boot=500, seed=0)
    assert high == ref_high and abs(low - ref_low) < 1e-12


def _history(name, partitioning, strategy="fedavg", z=None, test=0.9, val=0.8):
    experiment = fl.Experiment(name, partitioning, strategy, noise_multiplier=z)
    return fl.History(experiment, [0, 1, 2], [0.5, 0.7, test], [0.5, 0.6, val], [100, 300])


def test_federated_keys_from_the_runs_are_saved_by_the_run_context(tmp_path):
    settings = profiles.get("smoke", "future_work")
    histories = [
        _history("fedavg iid", "iid", test=0.75),
        _history("fedavg dirichlet-0.1", "dirichlet-0.1", val=0.6),
        _history("fedprox dirichlet-0.1", "dirichlet-0.1", "fedprox", val=0.7),
        _history("fedavg dirichlet-1", "dirichlet-1", val=0.9),
        _history("fedprox dirichlet-1", "dirichlet-1", "fedprox", val=0.8),
        _history("fedavg iid dp z=0.3", "iid", z=0.3, test=0.6),
    ]
    x_test = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.2], [0.1, 1.0]], np.float32)
    y_test = np.array([0, 1, 1, 1])
    central = [np.eye(2, dtype=np.float32), np.zeros(2, np.float32)]  # predicts 0, 1, 0, 1
    means = {"iid": 0.8, "dirichlet-0.1": 0.55, "dirichlet-1": 0.7}
    values = fw.federated_keys(settings, histories, central, x_test, y_test, means, seed=0)
    assert values["central_accuracy"] == 0.75 and values["fedavg_accuracy_iid"] == 0.75
    assert values["fedavg_iid_gap_points"] == 0.0 and values["fl_bytes_per_round"] == 200.0
    assert values["fl_best_strategy_noniid_0.1"] == "fedprox"  # chosen on validation
    assert values["fl_best_strategy_noniid_1"] == "fedavg"
    assert values["fedprox_accuracy_noniid_1"] == 0.9 and values["fedavg_dp_accuracy_z0.3"] == 0.6
    assert values["local_only_accuracy_mean"] == 0.55  # the most skewed partitioning
    assert values["fl_dp_epsilon_z0.3"] == fl.gaussian_epsilon(0.3, 2, 1e-3)
    run = context.start("smoke", "future_work", results_dir=tmp_path)
    saved = json.loads(run.save(values).read_text())
    assert saved == json.loads(json.dumps(values)) and run.load() == saved
