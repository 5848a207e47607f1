"""The chapter-3 experiment: training loop over families and seeds, summary and flat results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("tensorflow")

from dlbook.core import results  # noqa: E402
from dlbook.experiments import architectures as experiment  # noqa: E402
from dlbook.experiments import architectures_costs as costs  # noqa: E402
from dlbook.experiments import architectures_training as training  # noqa: E402
from dlbook.facemask import data


def _costs():
    return pd.DataFrame(
        {
            "params": [1000, 500],
            "mflops": [2.0, 8.0],
            "latency_b1_ms": [0.5, 1.5],
            "latency_b32_ms": [0.1, 0.3],
        },
        index=pd.Index(["ann", "cnn"], name="family"),
    )


def _runs():
    return pd.DataFrame(
        {
            "family": ["ann", "ann", "ann", "cnn", "cnn", "cnn"],
            "seed": [0, 1, 2, 0, 1, 2],
            # the ANN is best on test, the CNN on validation: the winner must be the CNN
            "test_acc": [0.93, 0.95, 0.97, 0.90, 0.91, 0.92],
            "val_acc": [0.80, 0.80, 0.80, 0.90, 0.90, 0.90],
            "epochs_used": [4, 5, 6, 10, 12, 12],
            "stopped_early": [True, True, True, True, False, False],
            "converged": [True, True, True, True, True, False],
            "acc_equal_time": [0.85, 0.85, 0.85, 0.80, 0.82, 0.84],
            "train_s": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "images_per_s": [1.0] * 6,
        }
    )


def test_summary_averages_seeds_picks_the_family_on_validation_and_flattens(tmp_path):
    summary = training.summarize(_runs(), _costs())
    assert summary.loc["ann", "test_acc"] == pytest.approx(0.95)
    assert summary.loc["cnn", "train_s"] == pytest.approx(5.0)
    assert summary.loc["cnn", "epochs_used"] == pytest.approx(34 / 3)
    # t(0.975, df=2) = 4.303; standard error of (0.93, 0.95, 0.97) = 0.02 / sqrt(3)
    half = 4.302653 * 0.02 / np.sqrt(3)
    assert summary.loc["ann", "test_acc_high"] == pytest.approx(0.95 + half, rel=1e-4)
    assert summary.loc["ann", "seeds"] == 3

    references = pd.DataFrame(
        {
            "input_size": [224, np.nan],
            "params": [3_500_000, np.nan],
            "mflops": [600.0, np.nan],
            "latency_b1_ms": [20.0, np.nan],
            "note": ["", "skipped: not installed"],
        },
        index=pd.Index(["mobilenet_v2", "efficientnet_lite0"], name="model"),
    )
    values = training.result_values(summary, references)
    assert values["best_family"] == "cnn" and values["selected_on"] == "validation"
    assert values["arch_families"] == "ann,cnn"
    assert values["arch_test_acc_cnn"] == pytest.approx(0.91)
    assert values["arch_val_acc_ann"] == pytest.approx(0.80)
    assert values["arch_epochs_used_ann"] == pytest.approx(5.0)
    assert values["arch_acc_equal_time_cnn"] == pytest.approx(0.82)
    assert values["arch_test_acc_ann_ci_high"] == pytest.approx(0.95 + half, rel=1e-4)
    assert values["ann_params"] == 1000
    assert values["cnn_mflops"] == 8.0
    assert values["ann_latency_ms"] == 0.5  # batch 1, ms per image
    assert values["mflops_latency_spearman"] == pytest.approx(1.0)
    assert values["ref_mobilenet_v2_measured"] is True
    assert values["ref_efficientnet_lite0_measured"] is False
    assert "ref_efficientnet_lite0_params" not in values
    saved = results.load(results.save(tmp_path, "architectures", values).parent, "architectures")
    assert saved["ref_mobilenet_v2_mflops"] == 600.0


def test_equal_time_reads_each_run_at_the_same_training_seconds():
    curves = {
        ("ann", 0): ([0.7, 0.8, 0.9], [1.0, 1.0, 1.0]),
        ("cnn", 0): ([0.85, 0.95], [3.0, 3.0]),
    }
    # 2 s asked, but the CNN's first epoch took 3 s: every family gets 3 s
    seconds = training.equal_time_seconds(curves, 2.0)
    assert seconds == 3.0
    table = training.accuracy_at_equal_time(curves, seconds).set_index("family")
    assert table.loc["ann", "acc_equal_time"] == 0.9
    assert table.loc["cnn", "acc_equal_time"] == 0.85
    assert table.loc["cnn", "epochs_equal_time"] == 1


def test_accuracy_timelines_give_seconds_at_each_epoch_end_and_the_best_so_far():
    curves = {("cnn", 0): ([0.9, 0.85, 0.95], [3.0, 3.0, 2.0])}
    seconds, accuracy, best = training.accuracy_timelines(curves)[("cnn", 0)]
    np.testing.assert_array_equal(seconds, [3.0, 6.0, 8.0])
    np.testing.assert_array_equal(accuracy, [0.9, 0.85, 0.95])
    np.testing.assert_array_equal(best, [0.9, 0.9, 0.95])


def test_stories_word_the_results_without_placeholders():
    summary = training.summarize(_runs(), _costs())
    values = training.result_values(summary)
    values.update(arch_train_images=100, arch_image_size=32, arch_patience=1, arch_epoch_cap=12,
                  arch_seeds=3, arch_stopped_early_fraction=0.5, arch_equal_time_seconds=10.0)  # fmt: skip
    splits = pd.DataFrame({"total": [100, 20, 30]}, index=["train", "val", "test"])
    result = {"values": values, "summary": summary, "splits": splits}
    text = experiment.story_budget(result) + experiment.story_families(result)
    assert "**cnn**" in text and "1 epoch," in text and "(s)" not in text and "nan" not in text
    assert "ann reaches the highest" in text and "leader is not the family chosen" in text
    table = experiment.family_table(result)
    assert list(table["family"]) == ["ann", "cnn"]
    assert set(experiment.FAMILY_PERCENT_COLUMNS) <= set(table.columns)


def test_train_families_trains_each_family_per_seed_to_early_stopping(synthetic_data):
    images = data.load_face_mask(synthetic_data, image_size=16, verify=False, progress=False)
    # the synthetic set is tiny: use every image in every role so each split is non-empty
    splits = {name: images for name in ("train", "val", "test")}
    runs, curves = training.train_families(
        splits, ["ann", "cnn"], [0, 1], epoch_cap=2, patience=1, batch_size=16,
        learning_rate=1e-3,
    )  # fmt: skip
    assert list(zip(runs["family"], runs["seed"], strict=True)) == [
        ("ann", 0),
        ("ann", 1),
        ("cnn", 0),
        ("cnn", 1),
    ]
    assert runs["test_acc"].between(0, 1).all() and runs["epochs_used"].between(1, 2).all()
    assert (runs["train_s"] > 0).all()
    accuracy, seconds = curves[("cnn", 1)]
    assert len(accuracy) == len(seconds) == runs["epochs_used"].iloc[3]
    with pytest.raises(ValueError, match="vit"):
        training.train_families(
            splits, ["vit"], [0], epoch_cap=1, patience=1, batch_size=16, learning_rate=1e-3
        )


def test_reference_costs_counts_and_reports_skips():
    table = costs.reference_costs(["mobilenet_v2"], batch_sizes=(1,), max_seconds=0.1)
    assert table.loc["mobilenet_v2", "params"] == 3_538_984
    assert table.loc["mobilenet_v2", "mflops"] == pytest.approx(601.5, rel=0.01)
    assert table.loc["mobilenet_v2", "note"] == ""
    with pytest.raises(ValueError, match="resnet18"):
        costs.reference_costs(["resnet18"])
