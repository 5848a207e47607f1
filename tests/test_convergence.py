"""Training to early stopping, and reading a run at equal training time."""

from __future__ import annotations

import numpy as np
import pytest

from dlbook.methods import convergence


def test_training_seconds_takes_graph_tracing_out_of_the_first_epoch():
    assert convergence.training_seconds([9.0, 1.0, 3.0, 2.0]) == [2.0, 1.0, 3.0, 2.0]
    assert convergence.training_seconds([0.5, 1.0, 3.0]) == [0.5, 1.0, 3.0]  # already short
    assert convergence.training_seconds([4.0]) == [4.0]


def test_converged_when_stopped_early_or_flat_but_not_while_still_improving():
    assert convergence.is_converged([1.0, 0.9], stopped_early=True, patience=3)
    flat = [1.0, 0.6, 0.5, 0.5, 0.499, 0.498]
    assert convergence.is_converged(flat, stopped_early=False, patience=3)
    improving = [1.0, 0.8, 0.6, 0.5, 0.4, 0.3]
    assert not convergence.is_converged(improving, stopped_early=False, patience=3)
    assert not convergence.is_converged([1.0, 0.9], stopped_early=False, patience=3)


def test_accuracy_at_time_keeps_the_best_epoch_finished_in_time():
    accuracy, seconds = [0.6, 0.8, 0.7, 0.9], [2.0, 2.0, 2.0, 2.0]
    assert convergence.accuracy_at_time(accuracy, seconds, 1.0) is None
    assert convergence.accuracy_at_time(accuracy, seconds, 4.0) == 0.8
    assert convergence.accuracy_at_time(accuracy, seconds, 7.9) == 0.8  # the dip is not kept
    assert convergence.accuracy_at_time(accuracy, seconds, 100.0) == 0.9
    with pytest.raises(ValueError, match="epochs"):
        convergence.accuracy_at_time([0.5], [1.0, 2.0], 3.0)


def test_fit_to_convergence_stops_on_validation_and_keeps_the_best_epoch():
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4, 4, 1)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0).astype(np.int64)
    # Random labels on validation: its loss soon stops improving, so early stopping must fire.
    x_val = rng.standard_normal((32, 4, 4, 1)).astype(np.float32)
    y_val = rng.integers(0, 2, 32)

    def model_fn():
        return keras.Sequential(
            [keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(2, "softmax")]
        )

    fit = convergence.fit_to_convergence(
        model_fn, (x, y), (x_val, y_val), epoch_cap=40, patience=2, batch_size=16,
        learning_rate=0.05, seed=0,
    )  # fmt: skip
    assert fit.stopped_early and fit.converged and fit.epochs_used < 40
    assert len(fit.epoch_s) == fit.epochs_used == len(fit.history["val_loss"])
    best = int(np.argmin(fit.history["val_loss"]))
    assert fit.epochs_used == best + 1 + 2  # stopped `patience` epochs after the best
    restored = fit.model.evaluate(x_val, y_val, verbose=0)[0]
    assert restored == pytest.approx(fit.history["val_loss"][best], rel=1e-4)
    with pytest.raises(ValueError, match="patience"):
        convergence.fit_to_convergence(
            model_fn, (x, y), (x_val, y_val), epoch_cap=3, patience=0, batch_size=16,
            learning_rate=0.05, seed=0,
        )  # fmt: skip
