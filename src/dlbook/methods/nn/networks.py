"""The two networks chapter 1 compares, built from ``dlbook.methods.nn`` layers.

``make_ann`` and ``make_cnn`` share one signature, ``(num_classes, ..., seed, **fit_options) ->
Sequential``; ``fit_options`` go to ``Sequential`` (optimiser, learning rate, epochs, ...).
"""

from __future__ import annotations

from dlbook.methods.nn.model import Activation, Conv2D, Dense, Flatten, MaxPool2D, Sequential

BLAS_THREADS = 1
"""NumPy trains with one BLAS thread: its matrices are small, and on a 2-core machine shared with
other work OpenBLAS's extra threads cost more in waiting than they save."""


def make_ann(num_classes: int, hidden=(128, 64), seed: int = 0, **fit_options) -> Sequential:
    """Fully connected network: Flatten, then Dense + ReLU per hidden width, then Dense logits."""
    layers = [Flatten()]
    for width in hidden:
        layers += [Dense(width, initializer="he_normal"), Activation("relu")]
    layers.append(Dense(num_classes, initializer="glorot_uniform"))
    return Sequential(layers, seed=seed, **fit_options)


def make_cnn(
    num_classes: int, filters=(16, 32), dense: int = 64, seed: int = 0, **fit_options
) -> Sequential:
    """Small CNN: per entry of ``filters`` a 3x3 "same" conv + ReLU + 2x2 max-pool, then
    Flatten, Dense + ReLU and Dense logits."""
    layers = []
    for count in filters:
        layers += [
            Conv2D(count, 3, padding="same", initializer="he_normal"),
            Activation("relu"),
            MaxPool2D(2),
        ]
    layers += [
        Flatten(),
        Dense(dense, initializer="he_normal"),
        Activation("relu"),
        Dense(num_classes, initializer="glorot_uniform"),
    ]
    return Sequential(layers, seed=seed, **fit_options)
