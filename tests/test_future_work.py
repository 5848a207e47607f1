import json

import numpy as np
import pytest

from dlbook.book import profiles
from dlbook.experiments import future_work as fw

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


def test_story_federated_quotes_the_results_and_the_target():
    text = fw.story_federated(VALUES)
    assert (
        "98.5%" in text and "99.0%" in text and "+0.5 points, within the one-point target" in text
    )
    assert "fedprox 96.0%" in text and "the best on validation is fedprox" in text
    assert "60.0%" in text and "206 kB" in text
    worse = fw.story_federated({**VALUES, "fedavg_iid_gap_points": 2.5})
    assert "outside the one-point target" in worse


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


def test_accuracy_interval_brackets_the_mean():
    correct = np.r_[np.ones(90), np.zeros(10)]
    low, high = fw.accuracy_interval(correct, 500, 0)
    assert low < 0.9 < high and high - low < 0.15


def test_results_dir_is_required(tmp_path):
    with pytest.raises(ValueError, match="results_dir is None"):
        fw._folder(None)
    assert fw._folder(tmp_path / "r").is_dir()
    json.dumps(VALUES)  # the values a section saves are plain JSON
