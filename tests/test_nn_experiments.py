"""Tests of chapter 1's experiments: equality with TensorFlow, initialisation, the CNN-ANN gap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dlbook.experiments import fundamentals as fx


def test_numpy_network_equals_keras_outputs_and_gradients():
    cross = fx.tf_crosscheck(seed=2)
    table = cross["table"]
    assert {"logits (inference)", "logits (train)", "d loss / d x"} <= set(table["array"])
    assert any(table["array"].str.contains("batchnorm_1.gamma"))
    # float64 on both sides: agreement to round-off, far inside the 1e-4 target.
    assert cross["max_abs_diff"] < 1e-10, table.sort_values("max_abs_diff").tail(3)


def test_keras_equivalent_of_the_chapter_cnn_gives_the_same_logits_in_float32():
    model = fx.make_cnn(3, seed=1).build((12, 12, 2))
    x = np.random.default_rng(0).standard_normal((4, 12, 12, 2)).astype(np.float32)
    keras_logits = fx.keras_equivalent(model)(x, training=False).numpy()
    np.testing.assert_allclose(model.decision_function(x), keras_logits, atol=1e-4)


def test_initialization_statistics_show_vanishing_and_stable_signals():
    stats = fx.initialization_statistics(
        initializers=("normal", "he_normal"), activations=("relu",), depth=8, width=64, batch=128
    )
    summary = fx.initialization_summary(stats).set_index("initializer")
    assert summary.loc["normal", "activation_std_last_layer"] < 1e-6
    assert 0.3 < summary.loc["he_normal", "activation_std_last_layer"] < 3
    # Backward: the gradient vanishes on its way down with the small normal, not with He.
    assert summary.loc["normal", "gradient_std_ratio_first_to_last"] < 1e-3
    assert 0.3 < summary.loc["he_normal", "gradient_std_ratio_first_to_last"] < 3
    assert len(stats) == 2 * 8


def test_cnn_minus_ann_gap_is_paired_by_seed_in_points():
    runs = pd.DataFrame(
        {
            "model": ["ANN", "CNN"] * 3,
            "seed": [0, 0, 1, 1, 2, 2],
            "test_accuracy": [0.80, 0.90, 0.70, 0.80, 0.75, 0.85],
        }
    )
    summary = fx.summarize_ann_vs_cnn(runs)
    # Every seed's gap is exactly 10 points, so the interval collapses onto it.
    assert summary["cnn_minus_ann_points"] == pytest.approx(10.0)
    assert summary["cnn_minus_ann_points_ci_low"] == pytest.approx(10.0)
    assert summary["cnn_minus_ann_points_ci_high"] == pytest.approx(10.0)
    assert summary["ann_test_accuracy"] == pytest.approx(0.75)


def test_ann_vs_cnn_on_digits_runs_both_models_per_seed():
    x_train, y_train, x_test, y_test = fx.digits_split(seed=0)
    assert x_train.shape[1:] == (8, 8, 1) and x_train.dtype == np.float32
    runs = fx.ann_vs_cnn(x_train, y_train, x_test, y_test, seeds=[0, 1], epochs=4)
    assert sorted(runs["model"]) == ["ANN", "ANN", "CNN", "CNN"]
    assert (runs["test_accuracy"] > 0.7).all(), runs  # guessing gets 10%


def test_face_mask_split_uses_the_books_train_and_test_sets(synthetic_data):
    x_train, y_train, x_test, y_test = fx.face_mask_split(
        synthetic_data, image_size=16, color_mode="rgb", verify=False
    )
    assert x_train.shape[1:] == (16, 16, 3) and x_train.dtype == np.float32
    assert len(x_train) + len(x_test) < 40  # val and calib images are left out
    assert set(np.unique(y_train)) == {0, 1}
