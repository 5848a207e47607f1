"""The chapter's training machinery: independent members, re-used compiled models, verdicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dlbook.experiments import optimization as ex


def toy_splits(n=96, dim=12, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=dim)
    x = rng.normal(size=(2 * n, dim)).astype(np.float32)
    y = (x @ w + 0.3 * rng.normal(size=2 * n) > 0).astype(np.float32)
    return {"train": (x[:n], y[:n]), "val": (x[n:], y[n:]), "test": (x[n:], y[n:])}


def test_members_train_as_if_alone():
    """Member k of a stacked model ends where the same network trained alone ends."""
    splits = toy_splits()
    full_batch = len(splits["train"][0])  # one batch per epoch: the order cannot differ
    together = ex.train_members(splits, "adam", 0.05, [3, 7], epochs=4, batch_size=full_batch,
                                initializers=["he", "xavier"])  # fmt: skip
    alone = ex.train_members(splits, "adam", 0.05, [7], epochs=4, batch_size=full_batch,
                             initializers=["xavier"])  # fmt: skip
    np.testing.assert_allclose(together["eval_loss"][:, 1], alone["eval_loss"][:, 0], atol=1e-5)
    assert not np.allclose(together["eval_loss"][:, 0], together["eval_loss"][:, 1])


def test_trainer_reuse_restores_the_initial_state():
    splits = toy_splits(seed=1)
    steps = ex.steps_for(len(splits["train"][0]), 32, 3)
    trainer = ex.MemberTrainer(12, [0, 1], "momentum", steps)
    first = trainer.run(splits["train"], splits["val"], np.full(steps, 0.05), 3, 32)
    other = trainer.run(splits["train"], splits["val"], np.full(steps, 0.5), 3, 32)
    again = trainer.run(splits["train"], splits["val"], np.full(steps, 0.05), 3, 32)
    np.testing.assert_allclose(first["eval_loss"], again["eval_loss"], atol=1e-6)
    assert not np.allclose(first["eval_loss"], other["eval_loss"])


def test_zero_learning_rate_table_leaves_the_model_untouched():
    splits = toy_splits(seed=2)
    steps = ex.steps_for(len(splits["train"][0]), 32, 2)
    trainer = ex.MemberTrainer(12, [0], "sgd", steps)
    result = trainer.run(splits["train"], splits["val"], np.zeros(steps), 2, 32)
    np.testing.assert_allclose(result["eval_loss"][0], result["eval_loss"][1])
    for before, after in zip(trainer.initial_weights, trainer.model.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)


def test_regularizers_build_the_layers_they_name():
    model = ex.build_members(12, [0, 1], hidden=8, regularizer="batchnorm+dropout")
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("BatchNormalization") == 2 and kinds.count("Dropout") == 2
    plain = ex.build_members(12, [0], hidden=8, regularizer="l2")
    assert len(plain.losses) == 2  # one L2 penalty per kernel


@pytest.mark.parametrize("name", ["batchnorm+l3", "none+l2", "", "dropout+"])
def test_invalid_regularizer_names_raise(name):
    with pytest.raises(ValueError, match="regularizer"):
        ex.parse_regularizer(name)


def test_separated_winner_needs_a_clear_interval():
    separated = pd.DataFrame({"method": ["batchnorm", "l2", "none"], "test_acc": [0.9, 0.8, 0.79],
                              "ci_low": [0.88, 0.77, 0.76], "ci_high": [0.92, 0.83, 0.82]})  # fmt: skip
    assert ex.separated_winner(separated) == "batchnorm"
    overlapping = separated.assign(ci_high=[0.92, 0.89, 0.82])
    assert ex.separated_winner(overlapping) == "none-clear"


def test_learning_rate_values_span_both_ends():
    values = ex.learning_rate_values(0.001, 0.6, 8)
    assert (
        len(values) == 8 and values[0] == pytest.approx(0.001) and values[-1] == pytest.approx(0.6)
    )
    assert np.allclose(np.diff(np.log(values)), np.log(values[1] / values[0]))
    with pytest.raises(ValueError, match="low"):
        ex.learning_rate_values(0.6, 0.001, 8)


def test_diverged_marks_non_finite_and_large_losses():
    assert ex.diverged([0.3, np.nan, np.inf, 5.0]).tolist() == [False, True, True, True]


def test_best_learning_rate_passes_over_diverged_rates():
    runs = pd.DataFrame(
        {
            "optimizer": ["adam"] * 4 + ["sgd"] * 2,
            "lr": [0.01, 0.01, 0.6, 0.6, 0.01, 0.6],
            "val_acc": [0.80, 0.82, 0.90, 0.90, 0.5, 0.6],
            "diverged": [False, False, True, True, True, True],
        }
    )
    best = ex.best_learning_rates(runs).set_index("optimizer")
    assert best.loc["adam", "best_lr"] == 0.01
    assert best.loc["adam", "val_acc"] == pytest.approx(0.81)
    assert best.loc["sgd", "best_lr"] == 0.6  # every rate diverged: the best of them
