"""The chapter-3 experiment: training loop over families and seeds, summary and flat results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("tensorflow")

from dlbook import data, results  # noqa: E402
from dlbook.experiments import architectures as experiment  # noqa: E402


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


def test_summary_averages_seeds_with_a_t_interval_and_flattens_to_results(tmp_path):
    runs = pd.DataFrame(
        {
            "family": ["ann", "ann", "ann", "cnn", "cnn", "cnn"],
            "seed": [0, 1, 2, 0, 1, 2],
            "test_acc": [0.70, 0.72, 0.74, 0.90, 0.91, 0.92],
            "val_acc": [0.7] * 6,
            "train_s": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "images_per_s": [1.0] * 6,
        }
    )
    summary = experiment.summarize(runs, _costs())
    assert summary.loc["ann", "test_acc"] == pytest.approx(0.72)
    assert summary.loc["cnn", "train_s"] == pytest.approx(5.0)
    # t(0.975, df=2) = 4.303; standard error of (0.70, 0.72, 0.74) = 0.02 / sqrt(3)
    half = 4.302653 * 0.02 / np.sqrt(3)
    assert summary.loc["ann", "test_acc_high"] == pytest.approx(0.72 + half, rel=1e-4)
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
    values = experiment.result_values(summary, references)
    assert values["best_family"] == "cnn"
    assert values["cnn_test_acc"] == pytest.approx(0.91)
    assert values["ann_params"] == 1000
    assert values["cnn_mflops"] == 8.0
    assert values["ann_latency_ms"] == 0.5  # batch 1, ms per image
    assert values["mflops_latency_spearman"] == pytest.approx(1.0)
    assert values["ref_mobilenet_v2_measured"] is True
    assert values["ref_efficientnet_lite0_measured"] is False
    assert "ref_efficientnet_lite0_params" not in values
    saved = results.load(results.save(tmp_path, "architectures", values).parent, "architectures")
    assert saved["ref_mobilenet_v2_mflops"] == 600.0


def test_train_families_trains_each_family_per_seed(synthetic_data):
    images = data.load_face_mask(synthetic_data, image_size=16, verify=False, progress=False)
    # the synthetic set is tiny: use every image in every role so each split is non-empty
    splits = {name: images for name in ("train", "val", "test")}
    runs = experiment.train_families(
        splits, ["ann", "cnn"], [0, 1], epochs=1, batch_size=16, learning_rate=1e-3, progress=False
    )
    assert list(zip(runs["family"], runs["seed"], strict=True)) == [
        ("ann", 0),
        ("ann", 1),
        ("cnn", 0),
        ("cnn", 1),
    ]
    assert runs["test_acc"].between(0, 1).all()
    assert (runs["train_s"] > 0).all()
    with pytest.raises(ValueError, match="vit"):
        experiment.train_families(splits, ["vit"], [0], 1, 16, 1e-3)


def test_reference_costs_counts_and_reports_skips():
    table = experiment.reference_costs(["mobilenet_v2"], batch_sizes=(1,), max_seconds=0.1)
    assert table.loc["mobilenet_v2", "params"] == 3_538_984
    assert table.loc["mobilenet_v2", "mflops"] == pytest.approx(601.5, rel=0.01)
    assert table.loc["mobilenet_v2", "note"] == ""
    with pytest.raises(ValueError, match="resnet18"):
        experiment.reference_costs(["resnet18"])
