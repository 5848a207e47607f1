import numpy as np
import pandas as pd
import pytest

from dlbook.book import claims, context
from dlbook.core import results
from dlbook.experiments.mask_detection import (
    classifiers,
    evaluation,
    inspection,
    label_audit,
    leakage,
)
from dlbook.experiments.mask_detection.classifiers import ModelRun
from dlbook.facemask import classify


def test_occlusion_saliency_finds_the_region_the_classifier_uses():
    def predict(images):  # P(with_mask) rises with the brightness of the lower half only
        return classify.sigmoid((images[:, 20:, :, :].mean(axis=(1, 2, 3)) - 100) / 10)

    images = np.full((3, 32, 32, 3), 200, np.uint8)
    maps = inspection.occlusion_saliency(
        predict, images, np.ones(3, int), patch_fraction=0.25, steps=5
    )
    assert maps.shape == (3, 5, 5)
    assert np.allclose(maps[:, :2], 0)  # covering the upper rows changes nothing
    assert (maps[:, -1] > 0).all()
    assert np.allclose(inspection.lower_half_share(maps), 1.0)


def test_calibration_lowers_ece_of_an_overconfident_model():
    rng = np.random.default_rng(0)
    n = 4000
    logits = rng.normal(0, 2, n)
    labels = (rng.uniform(size=n) < classify.sigmoid(logits)).astype(int)
    run = ModelRun("m", classify.sigmoid(4 * logits), "head")
    split = np.where(np.arange(n) % 2 == 0, "calib", "test")
    result = evaluation.calibrate(run, labels, split)
    assert abs(result["temperature"] - 4) < 0.5
    assert result["ece_after"] < result["ece_before"] / 3


def test_evaluation_table_verdicts_and_best_choice():
    rng = np.random.default_rng(1)
    n = 400
    labels = rng.integers(0, 2, n)
    split = np.array(["train", "val", "calib", "test"])[np.arange(n) % 4]
    perfect = ModelRun("efficientnet_lite0", labels * 0.98 + 0.01, "head")
    noisy = ModelRun(
        "custom_cnn", np.where(rng.uniform(size=n) < 0.8, labels, 1 - labels) * 0.8 + 0.1, "cnn"
    )
    subset = {"shortcut_free": np.arange(n) < 200}
    table, values = evaluation.evaluate_models(
        {r.name: r for r in (perfect, noisy)}, labels, split, subset, n_boot=100
    )
    assert values["efficientnet_lite0_accuracy"] == 1.0
    assert (
        values["custom_cnn_accuracy_ci_low"]
        < values["custom_cnn_accuracy"]
        < values["custom_cnn_accuracy_ci_high"]
    )
    assert "efficientnet_lite0_shortcut_free_accuracy" in values
    assert evaluation.choose_best(table) == "efficientnet_lite0"
    assert table.loc["custom_cnn", "test_images"] == 100


def test_claims_table_judges_through_dlbook_claims(tmp_path):
    run = context.start("smoke", "mask_detection", results_dir=tmp_path)
    run.save(
        {
            "custom_cnn_accuracy": 0.80,
            "custom_cnn_accuracy_ci_low": 0.78,
            "custom_cnn_accuracy_ci_high": 0.82,
            "custom_cnn_precision": 0.8,
            "custom_cnn_recall": 0.8,
            "inception_v3_available": False,
            "best_model": "efficientnet_lite0",
            "efficientnet_lite0_accuracy": 0.99,
        },
    )
    table = leakage.claims_table(run).set_index("model")
    found = results.load_all(tmp_path)
    for model, claim_id in leakage.MODEL_CLAIMS.items():
        assert (
            table.loc[classifiers.display_name(model), "verdict"]
            == claims.judge(claim_id, found).verdict
        )
    assert (
        table.loc["best transfer model", "verdict"] == claims.judge("transfer_995", found).verdict
    )
    assert table.loc["the custom CNN", "claimed accuracy"] == "96.0%"
    assert (
        classifiers.display_name("efficientnet_lite2_finetuned") == "EfficientNet-Lite2, fine-tuned"
    )
    assert not table.isna().any().any()


def _leak_values(grouped: float, random: float, gap_points: float | None = None) -> dict:
    gap = 100 * (random - grouped) if gap_points is None else gap_points
    return {
        "m_grouped_split_accuracy": grouped,
        "m_random_split_accuracy": random,
        "m_random_minus_grouped_points": gap,
    }


def test_leakage_explanation_sentences():
    assert "explains 50%" in leakage._explained("m", 0.96, _leak_values(0.90, 0.93))
    assert "whole" in leakage._explained("m", 0.96, _leak_values(0.90, 0.97))
    assert "already reaches" in leakage._explained("m", 0.96, _leak_values(0.97, 0.98))
    assert "explains 0%" in leakage._explained("m", 0.96, _leak_values(0.90, 0.89))  # never < 0
    # the share comes from the paired gap, not from the two means over different seeds
    assert "explains 25%" in leakage._explained("m", 0.96, _leak_values(0.90, 0.93, 1.5))


def test_paired_gap_uses_only_the_repeats_that_ran_both_splits():
    rows = pd.DataFrame(
        {
            "repeat": [0, 0, 1, 1, 2, 3],
            "split": ["grouped", "random", "grouped", "random", "grouped", "grouped"],
            "accuracy": [0.90, 0.93, 0.92, 0.93, 0.50, 0.60],  # repeats 2 and 3: grouped only
        }
    )
    assert leakage.paired_gap(rows) == pytest.approx(0.02)
    with pytest.raises(ValueError, match="both"):
        leakage.paired_gap(rows[rows.split == "grouped"])


def test_mixed_label_groups():
    labels = np.array([0, 1, 0, 0, 1, 1])
    groups = np.array([0, 0, 1, 1, 2, 3])
    assert label_audit.mixed_label_groups(labels, groups).tolist() == [1, 1, 0, 0, 0, 0]


def test_story_label_audit_reports_the_audit_without_overclaiming():
    values = {
        "label_issues_suspected": 9,
        "label_issues_labelled_with_mask": 2,
        "label_issues_labelled_without_mask": 7,
        "label_issues_in_test": 6,
        "test_errors": 7,
        "m_test_errors_suspected": 6,
        "test_error_groups": 2,
        "test_errors_largest_group": 6,
        "test_errors_in_mixed_label_groups": 1,
        "m_accuracy_as_labelled": 0.9886,
        "m_accuracy_audited": 0.9984,
        "m_cv_accuracy_as_labelled": 0.99,
        "m_cv_accuracy_audited": 0.997,
    }
    text = label_audit.story_label_audit({"values": values, "best": "m", "source": "m"})
    assert "**9**" in text and "**6**" in text and "98.86%" in text and "99.84%" in text
    assert "upper bound" in text
    none = label_audit.story_label_audit(
        {"values": {**values, "test_errors": 0}, "best": "m", "source": "m"}
    )
    assert "makes no error" in none


def test_figure_labels_name_ported_networks_as_the_tables_do():
    from dlbook.plots.mask_detection import short_name

    assert short_name("efficientnet_lite0_finetuned") == "Lite0 fine-tuned"
    assert short_name("mobilenet_v2_torchvision_finetuned") == "MobileNetV2 fine-tuned"
    assert short_name("inception_v3_fid") == "InceptionV3 (2015)"
    assert short_name("custom_cnn") == "custom CNN"


def test_figures_fit_the_page_and_the_reliability_diagram_skips_near_empty_bins():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dlbook.plots import mask_detection as plots

    rng = np.random.default_rng(0)
    n = 300
    labels = rng.integers(0, 2, n)
    probs = np.clip(labels * 0.9 + rng.normal(0, 0.05, n), 0, 1)
    split = np.array(["train", "val", "calib", "test"])[np.arange(n) % 4]
    run = ModelRun("m", probs, "head")
    runs = {f"m{k}": run for k in range(5)}
    calibration = evaluation.calibrate(run, labels, split)
    fig = plots.reliability(calibration, "m", min_count=10)
    curve = calibration["curve_before"]
    drawn = fig.axes[0].lines[0].get_xdata()
    assert len(drawn) == (curve["count"] >= 10).sum() < (curve["count"] > 0).sum()
    curves = evaluation.test_curves(runs, labels, split)
    figures = [fig, plots.confusion_matrices(curves), plots.roc(curves)]
    for figure in figures:
        assert figure.get_size_inches()[0] <= plots.PAGE_WIDTH
        texts = [t for ax in figure.axes for t in ax.texts + [ax.title, ax.xaxis.label]]
        assert all(t.get_fontsize() >= plots.SMALL for t in texts if t.get_text())
    grid = figures[1]
    assert len({round(ax.get_position().x0, 3) for ax in grid.axes}) <= plots.COLUMNS
    plt.close("all")


def test_test_curves_count_only_the_test_split():
    labels = np.array([0, 0, 1, 1, 0, 1])
    split = np.array(["test", "test", "test", "test", "train", "train"])
    right = ModelRun("right", np.array([0.1, 0.2, 0.8, 0.9, 0.9, 0.1]), "head")
    wrong = ModelRun("wrong", 1 - right.probs, "head")
    curves = evaluation.test_curves({"right": right, "wrong": wrong}, labels, split)
    assert curves["right"]["auc"] == 1.0 and curves["wrong"]["auc"] == 0.0
    assert curves["right"]["confusion"].tolist() == [[2, 0], [0, 2]]
    assert curves["wrong"]["confusion"].tolist() == [[0, 2], [2, 0]]
    assert curves["right"]["fpr"][-1] == 1.0 and curves["right"]["tpr"][-1] == 1.0


def _cv_story_input(names_and_accuracies: dict[str, float], best: str) -> dict:
    """A ``cross_validate`` result over two folds in which each model scores its accuracy."""
    values = {"cv_folds": 2, "cv_images": 40}
    per_fold, summary = {}, {}
    for name, accuracy in names_and_accuracies.items():
        per_fold[name] = pd.DataFrame({"accuracy": [accuracy - 0.01, accuracy + 0.01]})
        summary[name] = {"accuracy": {"value": accuracy}}
        values |= {f"{name}_cv_accuracy": accuracy, f"{name}_cv_accuracy_ci_low": accuracy - 0.02,
                   f"{name}_cv_accuracy_ci_high": accuracy + 0.02, f"{name}_cv_roc_auc": 0.999,
                   f"{name}_cv_precision": 0.99, f"{name}_cv_recall": 0.98}  # fmt: skip
    return {"values": values, "best": best, "per_fold": per_fold, "summary": summary,
            "fine_tune_seconds": 180.0}  # fmt: skip


def test_cv_story_names_the_best_model_or_says_why_it_is_not_cross_validated():
    from dlbook.experiments.mask_detection import evaluation

    scored = _cv_story_input({"mobilenet_v2_torchvision": 0.992, "vgg16_torchvision": 0.98},
                             best="mobilenet_v2_torchvision")  # fmt: skip
    text = evaluation.story_cv(scored)
    assert "not cross-validated" not in text and "99.20%" in text
    left_out = _cv_story_input({"mobilenet_v2_torchvision_finetuned": 0.989, "vgg16_torchvision": 0.98},
                               best="efficientnet_lite0_finetuned")  # fmt: skip
    text = evaluation.story_cv(left_out)
    assert "is not cross-validated at this budget" in text and "2 more fine-tunings" in text
    assert "nested cross-validation" in text
    # the best of the models that were cross-validated, fine-tuned or not, is the one quoted
    assert (
        "98.90%" in text and evaluation.display_name("mobilenet_v2_torchvision_finetuned") in text
    )


def test_per_fold_fine_tuning_takes_the_lite_model_and_the_best_port_on_validation():
    import pandas as pd

    from dlbook.experiments.mask_detection import evaluation

    runs = {
        name: ModelRun(name, np.zeros(2), kind, backbone=name.removesuffix("_finetuned"))
        for name, kind in [
            ("efficientnet_lite0_finetuned", "finetuned"),
            ("mobilenet_v2_torchvision_finetuned", "finetuned"),
            ("inception_v3_fid_finetuned", "finetuned"),
            ("vgg16_torchvision", "head"),
        ]
    }
    table = pd.DataFrame(
        {"val_accuracy": [0.99, 0.97, 0.98, 1.0], "val_log_loss": [0.1, 0.1, 0.1, 0.1]},
        index=list(runs),
    )
    settings = {
        "cv_fine_tune": True,
        "cv_fine_tune_backbone": True,
        "fine_tune_backbone": "efficientnet_lite0",
        "fine_tune_ports": ("mobilenet_v2_torchvision", "inception_v3_fid"),
        "cv_fine_tune_ports": "winner",
    }
    names = lambda chosen: [run.name for run in chosen]  # noqa: E731
    assert names(evaluation.cv_fine_tuned(runs, table, settings)) == [
        "efficientnet_lite0_finetuned",
        "inception_v3_fid_finetuned",
    ]
    settings["cv_fine_tune_ports"] = "all"
    assert len(evaluation.cv_fine_tuned(runs, table, settings)) == 3
    settings["cv_fine_tune_ports"] = "none"
    assert names(evaluation.cv_fine_tuned(runs, table, settings)) == [
        "efficientnet_lite0_finetuned"
    ]
    settings["cv_fine_tune_backbone"] = False
    assert evaluation.cv_fine_tuned(runs, table, settings) == []
    settings.update(cv_fine_tune_backbone=True, cv_fine_tune=False)
    assert evaluation.cv_fine_tuned(runs, table, settings) == []
    settings.update(cv_fine_tune_backbone=False, cv_fine_tune_ports="winner", cv_fine_tune=True)
    assert names(evaluation.cv_fine_tuned(runs, table, settings)) == ["inception_v3_fid_finetuned"]
    settings.update(cv_fine_tune=True, cv_fine_tune_ports="best")
    with pytest.raises(ValueError, match="cv_fine_tune_ports='best'"):
        evaluation.cv_fine_tuned(runs, table, settings)


def test_each_network_runs_at_its_own_size_and_cut():
    from dlbook.book import profiles
    from dlbook.experiments.mask_detection import classifiers, dataset

    full = profiles.get("full", "mask_detection")
    assert dataset.network_size(full, "vgg16_torchvision") == 64
    assert dataset.network_size(full, "efficientnet_lite0") == full["image_size"]
    assert classifiers.fine_tune_blocks(full, "inception_v3_fid") == 1
    assert classifiers.fine_tune_blocks(full, "efficientnet_lite0") == full["fine_tune_blocks"]
    assert set(full["fine_tune_ports"]) <= set(full["fine_tune_cuts"]) <= set(full["backbones"])
    assert "resnet50" in full["backbones"]
    smoke = profiles.get("smoke", "mask_detection")
    assert smoke["backbones"] == ("efficientnet_lite0",) and not smoke["fine_tune_ports"]
    assert classifiers.missing_weights("resnet50") == "no ImageNet weights reachable offline"
    assert "weights fetch" in classifiers.missing_weights("vgg16_torchvision")


def test_the_cost_story_says_whether_the_ten_minute_target_is_met():
    import pandas as pd

    from dlbook.book import profiles
    from dlbook.experiments.mask_detection import networks

    settings = profiles.get("full", "mask_detection")
    table = pd.DataFrame(
        {
            "input_size": [128, 64],
            "gflop_per_image": [0.2, 2.5],
            "fine_tune_blocks": [2, 1],
            "fine_tune_epoch_seconds_estimate": [9.0, 40.0],
            "fine_tune_cv_seconds": [200.0, np.nan],
        },
        index=["mobilenet_v2_torchvision", "vgg16_torchvision"],
    )
    values = {
        "ported_networks": "mobilenet_v2_torchvision,vgg16_torchvision",
        "ported_networks_cold_seconds_estimate": 300.0,
        "network_costs_timing_load_average": 1.0,
        "network_costs_timing_cpu_threads": 2,
    }
    text = networks.story_costs({"table": table, "values": values}, settings)
    assert "about **5 minutes**" in text and "two cores, met." in text
    assert "VGG16 stays frozen: one epoch of its last block would take about 40 s" in text
    values.update(ported_networks_cold_seconds_estimate=900.0, network_costs_timing_load_average=8)
    text = networks.story_costs({"table": table, "values": values}, settings)
    assert "missed here: other work shared these cores" in text
    assert networks.epoch_seconds_estimate(0.75, 100.0, 2000) == pytest.approx(15.0)


def test_probe_hash_bits_agree_with_the_split_hamming_distance():
    from dlbook.facemask import data

    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (6, 32, 32, 1), dtype=np.uint8)
    bits = leakage.hash_bits(gray)
    assert bits.shape == (6, 64) and bits.dtype == bool
    hashes = data.difference_hash(gray)
    by_bits = (bits[:, None, :] != bits[None, :, :]).sum(axis=2)
    assert np.array_equal(by_bits, data.hamming_distances(hashes, hashes))


def test_probe_story_quotes_the_sweep_and_near_far_accuracy():
    values = {
        "leakage_probe_model": "efficientnet_lite0", "leakage_probe_backbone": "efficientnet_lite0",
        "leakage_probe_test_images": 93, "leakage_probe_split_threshold": 4,
        "leakage_probe_median_distance": 0.27, "leakage_probe_near_items": 9,
        "leakage_probe_far_items": 84, "leakage_probe_near_accuracy": 1.0,
        "leakage_probe_far_accuracy": 0.95, "leakage_probe_near_minus_far": 0.05,
        "leakage_probe_near_distance_max": 0.17, "leakage_probe_share_within_4": 0.0,
        "leakage_probe_share_within_8": 0.25, "leakage_probe_share_within_16": 0.8,
    }  # fmt: skip
    text = leakage.story_probe({"values": values})
    assert "0.0% have a training image within Hamming distance 4" in text
    assert "25.0% within 8 and 80.0% within 16" in text
    assert "score 100.0%" in text and "the other 84 95.0% (+5.0 points)" in text
    assert "11 points" in text  # one error among 9 near images
