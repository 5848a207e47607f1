"""The chapter's training machinery: independent members, re-used compiled models, verdicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dlbook.experiments.optimization import (
    cnn_members,
    descent,
    members,
    numpy_nets,
    regularisation,
    sweeps,
)


def toy_splits(n=96, dim=12, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=dim)
    x = rng.normal(size=(2 * n, dim)).astype(np.float32)
    y = (x @ w + 0.3 * rng.normal(size=2 * n) > 0).astype(np.float32)
    return {"train": (x[:n], y[:n]), "val": (x[n:], y[n:]), "test": (x[n:], y[n:])}


def train_full_batch(splits, member_seeds, initializers, epochs=4, learning_rate=0.05):
    """Adam on one batch per epoch (the mini-batch order cannot differ between models)."""
    x_train = splits["train"][0]
    steps = members.steps_for(len(x_train), len(x_train), epochs)
    trainer = members.MemberTrainer(x_train.shape[1], member_seeds, "adam", steps,
                                    initializers=initializers)  # fmt: skip
    rates = np.full(steps, learning_rate)
    return trainer.run(splits["train"], splits["val"], rates, epochs, len(x_train))


def test_members_train_as_if_alone():
    """Member k of a stacked model ends where the same network trained alone ends."""
    splits = toy_splits()
    together = train_full_batch(splits, [3, 7], ["he", "xavier"])
    alone = train_full_batch(splits, [7], ["xavier"])
    np.testing.assert_allclose(together["eval_loss"][:, 1], alone["eval_loss"][:, 0], atol=1e-5)
    assert not np.allclose(together["eval_loss"][:, 0], together["eval_loss"][:, 1])


def test_trainer_reuse_restores_the_initial_state():
    splits = toy_splits(seed=1)
    steps = members.steps_for(len(splits["train"][0]), 32, 3)
    trainer = members.MemberTrainer(12, [0, 1], "momentum", steps)
    first = trainer.run(splits["train"], splits["val"], np.full(steps, 0.05), 3, 32)
    other = trainer.run(splits["train"], splits["val"], np.full(steps, 0.5), 3, 32)
    again = trainer.run(splits["train"], splits["val"], np.full(steps, 0.05), 3, 32)
    np.testing.assert_allclose(first["eval_loss"], again["eval_loss"], atol=1e-6)
    assert not np.allclose(first["eval_loss"], other["eval_loss"])


def test_zero_learning_rate_table_leaves_the_model_untouched():
    splits = toy_splits(seed=2)
    steps = members.steps_for(len(splits["train"][0]), 32, 2)
    trainer = members.MemberTrainer(12, [0], "sgd", steps)
    result = trainer.run(splits["train"], splits["val"], np.zeros(steps), 2, 32)
    np.testing.assert_allclose(result["eval_loss"][0], result["eval_loss"][1])
    for before, after in zip(trainer.initial_weights, trainer.model.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)


def test_regularizers_build_the_layers_they_name():
    model = members.build_members(12, [0, 1], hidden=8, regularizer="batchnorm+dropout")
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("BatchNormalization") == 2 and kinds.count("Dropout") == 2
    plain = members.build_members(12, [0], hidden=8, regularizer="l2")
    assert len(plain.losses) == 2  # one L2 penalty per kernel


@pytest.mark.parametrize("name", ["batchnorm+l3", "none+l2", "", "dropout+"])
def test_invalid_regularizer_names_raise(name):
    with pytest.raises(ValueError, match="regularizer"):
        members.parse_regularizer(name)


def test_learning_rate_values_span_both_ends():
    values = sweeps.learning_rate_values(0.001, 0.6, 8)
    assert (
        len(values) == 8 and values[0] == pytest.approx(0.001) and values[-1] == pytest.approx(0.6)
    )
    assert np.allclose(np.diff(np.log(values)), np.log(values[1] / values[0]))
    with pytest.raises(ValueError, match="low"):
        sweeps.learning_rate_values(0.6, 0.001, 8)


def test_diverged_marks_non_finite_and_large_losses():
    assert members.diverged([0.3, np.nan, np.inf, 5.0]).tolist() == [False, True, True, True]


def test_best_learning_rate_passes_over_diverged_rates():
    runs = pd.DataFrame(
        {
            "optimizer": ["adam"] * 4 + ["sgd"] * 2,
            "lr": [0.01, 0.01, 0.6, 0.6, 0.01, 0.6],
            "val_acc": [0.80, 0.82, 0.90, 0.90, 0.5, 0.6],
            "diverged": [False, False, True, True, True, True],
        }
    )
    best = sweeps.best_learning_rates(runs).set_index("optimizer")
    assert best.loc["adam", "best_lr"] == 0.01
    assert best.loc["adam", "val_acc"] == pytest.approx(0.81)
    assert best.loc["sgd", "best_lr"] == 0.6  # every rate diverged: the best of them


# ---------------------------------------------------------------------------------------------
# The regulariser study: selection on validation, members, stories


def chosen_rows(val_by_method, test_by_method=None, seeds=(0, 1, 2)):
    rows = []
    for method, values in val_by_method.items():
        for seed, value in zip(seeds, values, strict=True):
            rows.append({"method": method, "strength": 0.0, "seed": seed, "val_acc": value,
                         "val_loss": 1 - value, "train_acc": 1.0, "best_epoch": 3,
                         "stopped_early": True})  # fmt: skip
    frame = pd.DataFrame(rows)
    if test_by_method:
        frame["test_acc"] = [v for m in val_by_method for v in test_by_method[m]]
    return frame


def test_regularizer_pick_is_made_on_validation_and_paired_by_seed():
    val = {"batchnorm": [0.80, 0.85, 0.90], "l2": [0.79, 0.84, 0.89], "none": [0.7, 0.7, 0.7]}
    test = {"batchnorm": [0.5, 0.5, 0.5], "l2": [0.99, 0.99, 0.99], "none": [0.99, 0.99, 0.99]}
    pick = regularisation.pick_regularizer(chosen_rows(val, test))
    assert pick["best_regularizer"] == "batchnorm"  # the test scores do not move the pick
    assert pick["runner_up"] == "l2"
    # +1 point on every seed: the paired interval excludes zero although the seeds' spread is wide
    assert pick["best_regularizer_separated"] and pick["margin"] == pytest.approx(0.01)
    noisy = {"batchnorm": [0.80, 0.85, 0.90], "l2": [0.82, 0.80, 0.90], "none": [0.7] * 3}
    assert not regularisation.pick_regularizer(chosen_rows(noisy))["best_regularizer_separated"]


def test_strengths_are_chosen_on_validation_and_refuse_test_scores():
    runs = pd.DataFrame({"method": ["l2"] * 4 + ["none"] * 2, "strength": [1e-3, 1e-3, 1e-2, 1e-2, 0, 0],
                         "seed": [0, 1] * 3, "val_acc": [0.8, 0.82, 0.85, 0.86, 0.7, 0.7],
                         "val_loss": [0.5] * 6})  # fmt: skip
    assert regularisation.choose_strengths(runs) == {"l2": 1e-2, "none": 0.0}
    with pytest.raises(ValueError, match="validation"):
        regularisation.choose_strengths(runs.assign(test_acc=0.9))


def test_regularizer_configs_expand_each_grid():
    grid = {"l1": (1e-4, 1e-3), "dropout": (0.5,), "l2": (1e-2,)}
    configs = regularisation.regularizer_configs(("none", "l1", "dropout", "batchnorm"), grid)
    assert configs == [("none", 0.0), ("l1", 1e-4), ("l1", 1e-3), ("dropout", 0.5),
                       ("batchnorm", 0.0)]  # fmt: skip
    with pytest.raises(ValueError, match="unknown"):
        regularisation.regularizer_configs(("none", "weight_noise"), grid)
    with pytest.raises(ValueError, match="l2"):
        regularisation.regularizer_configs(("l2",), {"l2": ()})


def tiny_cnn_settings(**changes):
    settings = {"reg_filters": (2,), "reg_dense": 4, "reg_bn_momentum": 0.9,
                "reg_learning_rate": 0.01, "reg_patience": 2, "reg_epochs": 3,
                "reg_batch_size": 8}  # fmt: skip
    return {**settings, **changes}


def tiny_images(n=16, seeds=2, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, (n, seeds)).astype(np.float32)
    x = rng.random((n, seeds, 8, 8, 3)).astype(np.float32) * 0.2
    x[..., 0] += y[:, :, None, None]  # the red channel carries the label
    return x, y


def test_cnn_members_read_only_their_own_seed_slot():
    model, member_layers, knobs = cnn_members.build_cnn_members(
        (8, 8, 3), [0, 1], filters=(2,), dense_units=4
    )
    x, _ = tiny_images()
    changed = x.copy()
    changed[:, 1] = 0.0
    before, after = np.asarray(model(x)), np.asarray(model(changed))
    np.testing.assert_allclose(before[:, 0], after[:, 0])
    assert not np.allclose(before[:, 1], after[:, 1])
    assert len(member_layers) == 2 and set(knobs) == {"l1", "l2", "rate"}


def test_cnn_trainer_runs_are_reproducible_and_regularisers_change_them():
    x, y = tiny_images()
    val = (x[:, :1].repeat(2, axis=1), y[:, 0].astype(np.float64))
    trainer = cnn_members.CnnMemberTrainer((8, 8, 3), [0, 1], False, tiny_cnn_settings())
    first = trainer.run("none", 0.0, (x, y), val, shuffle_seed=0)
    penalised = trainer.run("l2", 0.5, (x, y), val, shuffle_seed=0)
    again = trainer.run("none", 0.0, (x, y), val, shuffle_seed=0)
    np.testing.assert_allclose(first["val_loss"], again["val_loss"], rtol=1e-6)
    assert not np.allclose(first["val_loss"], penalised["val_loss"])
    assert 1 <= first["best_epoch"].min() and first["epochs_run"] <= 3


def regularizer_section(gap=0.12, winner="batchnorm", separated=False):
    table = pd.DataFrame({"method": [winner, "none"], "strength": [0.0, 0.0],
                          "val_acc": [0.9, 0.85], "test_acc": [0.88, 0.86],
                          "ci_low": [0.86, 0.84], "ci_high": [0.9, 0.88]})  # fmt: skip
    values = {"best_regularizer": winner, "reg_runner_up": "none", "reg_unregularized_gap": gap,
              "reg_unregularized_gap_ci_low": gap - 0.02, "reg_unregularized_gap_ci_high": gap + 0.02,
              "reg_seeds": 5, "reg_train_images": 256, "reg_image_size": 32, "reg_epoch_cap": 40,
              "reg_converged_fraction": 1.0, "reg_winner_margin": 0.05,
              "reg_winner_margin_ci_low": 0.01 if separated else -0.02,
              "reg_winner_margin_ci_high": 0.09, "best_regularizer_separated": separated}  # fmt: skip
    return {"table": table, "results": values}


def test_story_regularizers_reports_regime_winner_and_separation():
    text = regularisation.story_regularizers(regularizer_section())
    assert "**batchnorm**" in text and "over-fits" in text and "88.0%" in text
    assert "includes zero" in text and "+12.0 points" in text
    small_gap = regularisation.story_regularizers(regularizer_section(gap=0.01, separated=True))
    assert "cannot rank" in small_gap and "excludes zero" in small_gap


def test_story_high_learning_rates_never_names_a_diverged_setting():
    """Issue: 'adam@0.6 one_cycle' was named best while its row showed every run diverged."""
    table = pd.DataFrame({"optimizer": ["adam"] * 3, "lr": [0.6] * 3,
                          "variant": ["constant", "one_cycle", "clipnorm"],
                          "val_acc": [0.5, 0.9, 0.6], "diverged": [1.0, 1.0, 0.0],
                          "gain_vs_constant": [0.0, 0.4, 0.1]})  # fmt: skip
    text = sweeps.story_high_learning_rates({"table": table})
    assert "one_cycle" not in text and "**clipnorm**" in text
    all_diverged = table.assign(diverged=1.0)
    assert "None of the 2" in sweeps.story_high_learning_rates({"table": all_diverged})


def test_numpy_training_runs_every_optimiser_and_regulariser_from_scratch():
    splits = toy_splits()
    settings = {"numpy_optimizers": ("rmsprop", "adamw"), "hidden": 8, "numpy_epochs": 2,
                "batch_size": 32, "reg_train_size": 48, "reg_hidden": 8, "numpy_reg_epochs": 2}  # fmt: skip
    out = numpy_nets.numpy_training(splits, settings)
    assert list(out["optimizers"]["optimizer"].unique()) == ["rmsprop", "adamw"]
    assert len(out["optimizers"]) == 4 and out["optimizers"]["val_acc"].between(0, 1).all()
    assert list(out["regularizers"]["method"]) == list(numpy_nets.NUMPY_REGULARIZERS)


def test_batch_size_axis_has_plain_tick_labels_only():
    import matplotlib

    matplotlib.use("Agg")
    from dlbook.plots import optimization as plots

    table = pd.DataFrame({"batch_size": [32, 64, 256] * 2, "rule": ["fixed"] * 3 + ["linear"] * 3,
                          "val_acc": [0.8, 0.82, 0.81, 0.8, 0.83, 0.84]})  # fmt: skip
    ax = plots.batch_sizes({"table": table}).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["32", "64", "256"]
    assert ax.get_xticklabels(minor=True) == [] or all(
        t.get_text() == "" for t in ax.get_xticklabels(minor=True)
    )


def test_regularizer_pick_measures_how_far_batchnorm_is_behind_the_winner():
    behind = {"l2": [0.80, 0.85, 0.90], "batchnorm": [0.78, 0.83, 0.88], "none": [0.7] * 3}
    pick = regularisation.pick_regularizer(chosen_rows(behind))
    assert pick["winner_minus_batchnorm"] == pytest.approx(0.02)
    assert pick["winner_minus_batchnorm_ci_low"] > 0  # 2 points behind on every seed
    mixed = {"l2": [0.80, 0.85, 0.90], "batchnorm": [0.83, 0.80, 0.88], "none": [0.7] * 3}
    assert regularisation.pick_regularizer(chosen_rows(mixed))["winner_minus_batchnorm_ci_low"] < 0
    assert "winner_minus_batchnorm" not in regularisation.pick_regularizer(
        chosen_rows({"batchnorm": [0.9] * 3, "l2": [0.8] * 3})
    )


def test_optimizer_story_says_identical_when_numpy_and_keras_agree_exactly():
    match = pd.DataFrame(
        {"steps": [60, 60], "max_abs_diff": [0.0, 0.0], "max_abs_change": [8.16, 1.0]}
    )
    assert "**identical** for all 2 optimisers" in descent.story_optimizers({"match": match})
    match["max_abs_diff"] = [0.0, 2.5e-7]
    assert "**2.5e-07**" in descent.story_optimizers({"match": match})


def test_panel_figures_put_three_a_row_and_switch_off_the_cells_left_over():
    import matplotlib

    matplotlib.use("Agg")
    from dlbook.plots import optimization as plots

    runs = pd.DataFrame([{"optimizer": name, "initializer": init, "lr": lr, "val_acc": 0.8}
                         for name in ("sgd", "momentum", "adam", "adamw")
                         for init in ("he", "xavier") for lr in (0.01, 0.1)])  # fmt: skip
    fig = plots.init_sweep({"runs": runs})
    assert len(fig.axes) == 6 and fig.get_figwidth() == plots.PAGE_WIDTH
    assert [ax.axison for ax in fig.axes] == [True] * 4 + [False] * 2
    assert [ax.get_title() for ax in fig.axes[:4]] == ["sgd", "momentum", "adam", "adamw"]


def test_size_study_runs_the_whole_study_at_its_size_and_words_each_size():
    rng = np.random.default_rng(0)

    def split(n):
        y = rng.integers(0, 2, n)
        x = rng.random((n, 8, 8, 3)).astype(np.float32) * 0.2
        x[..., 0] += y[:, None, None]
        return x, y

    images = {"train": split(40), "val": split(16), "test": split(16)}
    settings = tiny_cnn_settings(reg_seeds=2, reg_methods=("none", "l2", "batchnorm"),
                                 reg_grid={"l2": (1e-3,)})  # fmt: skip
    studies = [regularisation.size_study(images, settings, 0, n) for n in (12, 24)]
    assert [s["train_images"] for s in studies] == [12, 24]
    assert set(studies[0]["versus_none"]) == {"l2", "batchnorm"}
    keys = regularisation.size_keys(studies[1])
    assert keys["reg_n24_train_images"] == 24 and "reg_n24_batchnorm_minus_none_ci_low" in keys
    low, gain, high = (
        keys[f"reg_n24_batchnorm_minus_none{s}"] for s in ("_ci_low", "", "_ci_high")
    )
    assert low <= gain <= high
    table = regularisation.by_size_table(studies)
    assert sorted(table["train_size"].unique()) == [12, 24] and len(table) == 6
    assert (table.loc[table["method"] == "none", "minus_none"] == 0).all()
    values = {"reg_train_sizes": "12,24", "reg_overfit_sizes": "12", "reg_seeds": 2,
              "reg_train_images": 24}  # fmt: skip
    for study in studies:
        values.update(regularisation.size_keys(study))
    text = regularisation.story_regularizers_by_size({"results": values})
    assert "at 12 images" in text and "at 24 images" in text and "visible" in text
    assert "nan" not in text
