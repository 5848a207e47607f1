"""Tests of chapter 1's experiments: equality with TensorFlow, initialisation, the CNN-ANN gap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dlbook.book import context
from dlbook.experiments.fundamentals import checks, init_study, throughput
from dlbook.experiments.fundamentals import cnn_ann_gap as gap
from dlbook.methods.nn.keras_twin import keras_equivalent
from dlbook.methods.nn.networks import make_cnn
from dlbook.methods.nn.throughput import benchmark_cnn_training


def test_numpy_network_equals_keras_outputs_and_gradients():
    cross = checks.tf_crosscheck(seed=2)
    table = cross["table"]
    assert {"logits (inference)", "logits (train)", "d loss / d x"} <= set(table["array"])
    assert any(table["array"].str.contains("batchnorm_1.gamma"))
    # float64 on both sides: agreement to round-off, far inside the 1e-4 target.
    assert cross["max_abs_diff"] < 1e-10, table.sort_values("max_abs_diff").tail(3)


def test_keras_equivalent_of_the_chapter_cnn_gives_the_same_logits_in_float32():
    model = make_cnn(3, seed=1).build((12, 12, 2))
    x = np.random.default_rng(0).standard_normal((4, 12, 12, 2)).astype(np.float32)
    keras_logits = keras_equivalent(model)(x, training=False).numpy()
    np.testing.assert_allclose(model.decision_function(x), keras_logits, atol=1e-4)


def test_initialization_statistics_show_vanishing_and_stable_signals():
    stats = init_study.initialization_statistics(
        initializers=("normal", "he_normal"), activations=("relu",), depth=8, width=64, batch=128
    )
    summary = init_study.initialization_summary(stats).set_index("initializer")
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
    summary = gap.summarize_ann_vs_cnn(runs)
    # Every seed's gap is exactly 10 points, so the interval collapses onto it.
    assert summary["cnn_minus_ann_points"] == pytest.approx(10.0)
    assert summary["cnn_minus_ann_points_ci_low"] == pytest.approx(10.0)
    assert summary["cnn_minus_ann_points_ci_high"] == pytest.approx(10.0)
    assert summary["ann_test_accuracy"] == pytest.approx(0.75)


def test_ann_vs_cnn_on_digits_runs_both_models_per_seed():
    x_train, y_train, x_test, y_test = gap.digits_split(seed=0)
    assert x_train.shape[1:] == (8, 8, 1) and x_train.dtype == np.float32
    runs = gap.ann_vs_cnn(x_train, y_train, x_test, y_test, seeds=[0, 1], epochs=4)
    assert sorted(runs["model"]) == ["ANN", "ANN", "CNN", "CNN"]
    assert (runs["test_accuracy"] > 0.7).all(), runs  # guessing gets 10%


def test_downscale_averages_blocks_of_pixels():
    images = np.arange(2 * 4 * 4 * 1, dtype=np.uint8).reshape(2, 4, 4, 1)
    small = gap.downscale(images, 2)
    assert small.shape == (2, 2, 2, 1) and small.dtype == np.float32
    assert small[0, 0, 0, 0] == pytest.approx(np.mean([0, 1, 4, 5]))
    assert gap.downscale(images, 4)[1, 3, 3, 0] == images[1, 3, 3, 0]
    with pytest.raises(ValueError, match="divide"):
        gap.downscale(images, 3)


def test_train_subsample_is_stratified_and_changes_with_the_seed():
    labels = np.array([0] * 50 + [1] * 30)
    first, second = gap.train_subsample(labels, 0.8, 0), gap.train_subsample(labels, 0.8, 1)
    assert np.bincount(labels[first]).tolist() == [40, 24]
    assert not np.array_equal(first, second)
    assert len(gap.train_subsample(labels, 1.0, 0)) == 80


def _gap_runs():
    rows = []
    for size, cnn_lead in ((8, 0.0), (16, 0.05), (32, 0.10)):
        for seed in (0, 1, 2):
            ann = 0.80 + 0.01 * seed
            for model, acc in (("ANN", ann), ("CNN", ann + cnn_lead)):
                rows.append(
                    {
                        "size": size,
                        "seed": seed,
                        "model": model,
                        "test_accuracy": acc,
                        "val_accuracy": acc,
                        "epochs_used": 5 + seed,
                        "stopped_early": seed < 2,
                        "converged": True,
                        "train_images": 100,
                    }  # fmt: skip
                )
    return pd.DataFrame(rows)


def test_gap_by_size_gives_every_size_its_paired_interval_and_the_largest_as_headline():
    values = gap.summarize_cnn_ann_sizes(_gap_runs())
    assert values["cnn_ann_sizes"] == "8,16,32"
    assert values["cnn_minus_ann_points_16px"] == pytest.approx(5.0)
    assert values["cnn_minus_ann_points_16px_ci_low"] == pytest.approx(5.0)  # paired: no spread
    assert values["cnn_minus_ann_points"] == pytest.approx(10.0)  # the largest size
    assert values["cnn_ann_seeds"] == 3 and values["cnn_ann_converged_fraction"] == 1.0
    assert values["cnn_ann_stopped_early_fraction"] == pytest.approx(2 / 3)
    gaps = gap.gaps_by_size(_gap_runs())
    assert list(gaps["size"]) == [8, 16, 32]
    assert gaps["cnn_minus_ann_points"].tolist() == pytest.approx([0.0, 5.0, 10.0])
    table = gap.gap_table(_gap_runs(), gaps)
    assert list(table["input size (px)"]) == [8, 16, 32]
    assert table["CNN - ANN (points)"].tolist() == [0.0, 5.0, 10.0]
    assert table["ANN epochs"].tolist() == [6.0, 6.0, 6.0]  # seeds 0-2 use 5-7 epochs


def test_cnn_ann_story_quotes_every_size_and_the_training_rule():
    values = gap.summarize_cnn_ann_sizes(_gap_runs())
    values.update(
        cnn_ann_tuning_size=32, cnn_ann_learning_rates="0.001,0.003",
        cnn_ann_learning_rate_ANN=0.003, cnn_ann_learning_rate_CNN=0.001, cnn_ann_patience=1, cnn_ann_epoch_cap=20, cnn_ann_keras_numpy_max_diff=1e-6,
        cnn_ann_check_size=16, digits_epochs=4, cnn_minus_ann_points_digits=1.0,
        cnn_minus_ann_points_ci_low_digits=-1.0, cnn_minus_ann_points_ci_high_digits=3.0,
    )  # fmt: skip
    text = gap.story_cnn_vs_ann({"values": values})
    assert "+5.0 points** at 16 px" in text and "+10.0 points** at 32 px" in text
    assert "grows with the input size" in text
    assert "At the largest size, 32 px" in text and "0.003 for the ANN" in text
    assert "for 1 epoch (cap 20" in text and "(s)" not in text and "nan" not in text


def test_keras_twins_match_the_numpy_nets_on_images():
    x = np.random.default_rng(0).standard_normal((4, 16, 16, 3)).astype(np.float32)
    assert gap.keras_numpy_max_diff(x) < 1e-4


def test_cnn_ann_runs_tune_on_validation_then_score_every_size_and_seed(synthetic_data):
    from dlbook.facemask import data

    images = data.load_face_mask(synthetic_data, image_size=16, verify=False, progress=False)
    settings = {
        "cnn_ann_sizes": (8, 16), "cnn_ann_train_fraction": 0.8, "cnn_ann_epoch_cap": 2,
        "cnn_ann_patience": 1, "batch_size": 8, "cnn_ann_learning_rates": (1e-3, 1e-2),
        "cnn_ann_restarts": 1, "cnn_ann_failure_margin": -1.0,
    }  # fmt: skip
    tuning, runs = gap.cnn_ann_runs(images, settings, seeds=[1], tuning_seed=0)
    assert sorted(zip(tuning["model"], tuning["learning_rate"])) == [
        ("ANN", 1e-3), ("ANN", 1e-2), ("CNN", 1e-3), ("CNN", 1e-2),
    ]  # fmt: skip
    assert tuning["size"].eq(16).all() and tuning["test_accuracy"].isna().all()
    assert sorted(zip(runs["size"], runs["model"])) == [
        (8, "ANN"), (8, "CNN"), (16, "ANN"), (16, "CNN"),
    ]  # fmt: skip
    rates = gap.choose_learning_rates(tuning)
    assert runs.set_index("model")["learning_rate"].groupby(level=0).first().to_dict() == rates
    assert runs["epochs_used"].between(1, 2).all() and runs["test_accuracy"].between(0, 1).all()
    assert runs["attempts"].eq(1).all() and not runs["failed"].any()  # nothing below chance - 1


def test_a_run_left_at_chance_on_validation_restarts_from_fresh_weights(synthetic_data):
    from dlbook.facemask import data

    images = data.load_face_mask(synthetic_data, image_size=8, verify=False, progress=False)
    settings = {"cnn_ann_train_fraction": 1.0, "cnn_ann_epoch_cap": 1, "cnn_ann_patience": 1,
                "batch_size": 8, "cnn_ann_restarts": 2, "cnn_ann_failure_margin": 2.0}  # fmt: skip
    task = gap.GapTask(8, "ANN", 1e-3, 0, "tune")
    row = gap.gap_task(images, settings, task)  # no run can beat chance by 200 points
    assert row["attempts"] == 3 and row["failed"] and np.isnan(row["test_accuracy"])


def test_each_seed_draws_its_own_grouped_split(synthetic_data):
    from dlbook.facemask import data

    images = data.load_face_mask(synthetic_data, image_size=16, verify=False, progress=False)
    one, other = gap.split_by_seed(images, 1).split, gap.split_by_seed(images, 2).split
    assert (one != other).any()
    for split in (one, other):  # no duplicate group crosses splits
        assert pd.Series(split).groupby(images.groups).nunique().max() == 1


def test_learning_rates_are_chosen_per_family_on_validation_only():
    tuning = pd.DataFrame(
        {"model": ["ANN", "ANN", "CNN", "CNN"], "learning_rate": [1e-3, 3e-3, 1e-3, 3e-3],
         "val_accuracy": [0.80, 0.85, 0.90, 0.90], "test_accuracy": [np.nan] * 4}
    )  # fmt: skip
    assert gap.choose_learning_rates(tuning) == {"ANN": 3e-3, "CNN": 1e-3}  # tie: smaller
    tuning.loc[0, "test_accuracy"] = 0.7
    with pytest.raises(ValueError, match="validation"):
        gap.choose_learning_rates(tuning)


def test_the_judged_gap_is_at_the_largest_size_with_both_intervals():
    values = gap.largest_size_gap(_gap_runs())
    assert values["cnn_ann_gap_largest_px"] == 32
    assert values["cnn_ann_gap_largest_points"] == pytest.approx(10.0)
    runs = _gap_runs()
    runs.loc[(runs["model"] == "CNN") & (runs["seed"] == 0), "test_accuracy"] -= 0.03
    values = gap.largest_size_gap(runs)
    assert values["cnn_ann_gap_largest_ci_low"] < values["cnn_ann_gap_largest_ci90_low"]
    assert values["cnn_ann_gap_largest_ci90_high"] < values["cnn_ann_gap_largest_ci_high"]


def test_gradient_and_speed_stories_say_missed_when_a_target_is_missed():
    values = {
        "gradcheck_max_rel_error": 1e-3, "gradcheck_count": 21,
        "tf_crosscheck_max_abs_diff": 1e-9, "tf_crosscheck_output_max_abs_diff": 1e-9,
        "tf_crosscheck_gradient_max_abs_diff": 1e-10,
    }  # fmt: skip
    text = checks.story_gradients({"values": values})
    assert "(target below 1e-7: missed)" in text and "computes what Keras computes" not in text
    bench = {
        "numpy_cnn_images_per_s": 100.0, "keras_cnn_images_per_s": 1000.0,
        "numpy_over_keras": 0.1, "numpy_rounds": [90.0, 100.0], "keras_rounds": [900.0, 1000.0],
        "input_shape": (32, 32, 3), "batch_size": 64, "steps": 8, "rounds": 2,
    }  # fmt: skip
    text = throughput.story_speed(bench)
    assert "32 x 32 x 3" in text and "(target at least 1/3: missed)" in text


def test_initialization_section_saves_what_it_returns(tmp_path):
    run = context.start("smoke", "fundamentals", seed=0, results_dir=tmp_path)
    result = init_study.initialization(run)
    saved = run.load()
    assert saved == pytest.approx(result["values"])
    # the small fixed normal lets the ReLU signal die out; He keeps it
    assert saved["init_normal_relu_last_activation_std"] < saved["init_he_relu_last_activation_std"]


def test_throughput_keeps_each_librarys_best_round_even_for_a_single_step():
    bench = benchmark_cnn_training(input_shape=(8, 8, 1), batch_size=4, steps=1, rounds=2)
    assert len(bench["numpy_rounds"]) == len(bench["keras_rounds"]) == 2
    assert bench["numpy_cnn_images_per_s"] == max(bench["numpy_rounds"])
    assert bench["numpy_over_keras"] == pytest.approx(
        bench["numpy_cnn_images_per_s"] / bench["keras_cnn_images_per_s"]
    )
