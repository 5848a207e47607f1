"""Training a Keras model until validation says stop, and reading what the run tells about it.

``fit_to_convergence`` trains with early stopping on the validation loss (best weights restored)
under an epoch cap, and reports the adequacy facts the claims need: epochs used, whether early
stopping fired, whether the run converged. ``accuracy_at_time`` reads from the same run what
validation accuracy the model had reached after a given number of training seconds, so that
families can be compared at equal wall-clock time without training them twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

FLAT_TOLERANCE = 0.01
"""A run whose last ``patience`` epochs improved the best validation loss by less than this
fraction counts as converged (its validation loss is flat), even without early stopping."""


@dataclass
class ConvergedFit:
    """What ``fit_to_convergence`` returns.

    Attributes
    ----------
    model : the trained model, with the weights of its best validation epoch.
    history : per-epoch ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``.
    epoch_s : training seconds of each epoch, graph tracing left out of the first (see
        ``training_seconds``).
    epochs_used : epochs actually run.
    epoch_cap : the most epochs allowed.
    stopped_early : early stopping on the validation loss fired before the cap.
    converged : stopped early, or the validation loss was flat over the last epochs.
    """

    model: object
    history: dict[str, list[float]]
    epoch_s: list[float]
    epochs_used: int
    epoch_cap: int
    stopped_early: bool
    converged: bool
    extra: dict = field(default_factory=dict)


def training_seconds(epoch_s: Sequence[float]) -> list[float]:
    """Per-epoch training seconds with the one-off graph tracing taken out of the first epoch.

    The first epoch of a Keras run also traces and compiles the training and validation steps,
    which costs seconds for a deep model and says nothing about the architecture's speed; it is
    counted as long as the median of the later epochs (or as measured, if shorter).
    """
    seconds = [float(s) for s in epoch_s]
    if len(seconds) > 1:
        seconds[0] = min(seconds[0], float(np.median(seconds[1:])))
    return seconds


def is_converged(val_loss: Sequence[float], stopped_early: bool, patience: int) -> bool:
    """Early stopping fired, or the last ``patience`` epochs improved the best validation loss
    by less than ``FLAT_TOLERANCE`` (relative)."""
    if stopped_early:
        return True
    losses = [float(v) for v in val_loss]
    if len(losses) <= patience:
        return False
    before, last = min(losses[:-patience]), min(losses[-patience:])
    return last >= before * (1 - FLAT_TOLERANCE)


def fit_to_convergence(
    model_fn: Callable,
    train: tuple,
    val: tuple,
    *,
    epoch_cap: int,
    patience: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
) -> ConvergedFit:
    """Train ``model_fn()`` with Adam at a constant learning rate until the validation loss has
    not improved for ``patience`` epochs, or ``epoch_cap`` epochs; keep the best epoch's weights.

    Parameters
    ----------
    model_fn : zero-argument function returning an uncompiled ``keras.Model`` ending in a softmax.
    train, val : ``(images, labels)``; images shape (N, H, W, C), labels shape (N,), int.
    epoch_cap, patience : positive integers.
    batch_size, learning_rate : of the training run.
    seed : initial weights (through ``model_fn``'s Keras draws), mini-batch order, dropout.
    """
    import keras

    from dlbook.methods import training

    for name, value in (("epoch_cap", epoch_cap), ("patience", patience)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive integer")
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=int(patience), restore_best_weights=True
    )
    result = training.fit(
        model_fn,
        *train,
        validation_data=tuple(val),
        epochs=int(epoch_cap),
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=int(seed),
        callbacks=[stopper],
    )
    history = result.history
    epochs_used = len(history["loss"])
    best = int(np.argmin(history["val_loss"]))  # Keras restores this epoch's weights at the end
    stopped_early = epochs_used < epoch_cap
    return ConvergedFit(
        model=result.model,
        history=history,
        epoch_s=training_seconds(result.timings["epoch_s"]),
        epochs_used=epochs_used,
        epoch_cap=int(epoch_cap),
        stopped_early=stopped_early,
        converged=is_converged(history["val_loss"], stopped_early, patience),
        extra={"best_epoch": best + 1},
    )


def accuracy_at_time(
    val_accuracy: Sequence[float], epoch_s: Sequence[float], seconds: float
) -> float | None:
    """Best validation accuracy among the epochs finished within ``seconds`` of training.

    With a constant learning rate the first epochs of a long run are exactly what a run stopped
    at ``seconds`` would have done, so this is the accuracy the model reaches when given that
    much time (keeping its best epoch, as early stopping does). None if no epoch finished.
    """
    if len(val_accuracy) != len(epoch_s):
        raise ValueError(
            f"val_accuracy has {len(val_accuracy)} epochs but epoch_s has {len(epoch_s)}"
        )
    finished = np.cumsum(epoch_s) <= seconds + 1e-9
    if not finished.any():
        return None
    return float(np.max(np.asarray(val_accuracy)[finished]))
