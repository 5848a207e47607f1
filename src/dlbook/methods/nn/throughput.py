"""Training throughput of the NumPy CNN against the same CNN in Keras (chapter 1 and the bench)."""

from __future__ import annotations

import time

import numpy as np
from threadpoolctl import threadpool_limits

from dlbook.methods.nn.keras_twin import keras_equivalent
from dlbook.methods.nn.networks import BLAS_THREADS, make_cnn
from dlbook.methods.optim import Adam

TARGET = 1 / 3
"""Share of Keras's training throughput the NumPy CNN should reach."""


def benchmark_cnn_training(
    input_shape=(32, 32, 1),
    num_classes: int = 2,
    batch_size: int = 64,
    steps: int = 30,
    rounds: int = 3,
    seed: int = 0,
) -> dict:
    """Training throughput (images/s) of ``make_cnn`` in NumPy and of the same CNN in Keras.

    Each round times ``steps`` Adam steps on batches of random images in NumPy, then one epoch of
    the same ``steps`` batches in Keras (``fit``), after a warm-up. Rounds alternate the two so
    that both see the same load on a shared machine, and each library's best round is kept, as
    ``timeit`` does: other work only ever slows a run down. Returns ``numpy_cnn_images_per_s``,
    ``keras_cnn_images_per_s``, ``numpy_over_keras``, the per-round lists ``numpy_rounds`` /
    ``keras_rounds`` (not saved as results) and the setting (``input_shape``, ``batch_size``,
    ``steps``, ``rounds``).
    """
    if steps < 1 or rounds < 1:
        raise ValueError(f"steps={steps!r} and rounds={rounds!r} must be at least 1")
    import keras

    rng = np.random.default_rng(seed)
    n = batch_size * steps
    x = rng.standard_normal((n,) + tuple(input_shape)).astype(np.float32)
    y = rng.integers(0, num_classes, n)

    model = make_cnn(num_classes, seed=seed).build(tuple(input_shape))
    k_model = keras_equivalent(model)
    optimizer = Adam(1e-3)
    train_rng = np.random.default_rng(seed)
    k_model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )

    def numpy_epoch(num_steps):
        with threadpool_limits(BLAS_THREADS, user_api="blas"):
            start = time.perf_counter()
            for step in range(num_steps):
                batch = slice(step * batch_size, (step + 1) * batch_size)
                model.train_step(x[batch], y[batch], optimizer, train_rng)
            return num_steps * batch_size / (time.perf_counter() - start)

    def keras_epoch(num_steps):
        count = num_steps * batch_size
        start = time.perf_counter()
        k_model.fit(x[:count], y[:count], batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
        return count / (time.perf_counter() - start)

    warm_up = min(2, steps)  # the first calls pay for allocation and tracing
    numpy_epoch(warm_up)
    keras_epoch(warm_up)
    numpy_rounds, keras_rounds = [], []
    for _ in range(rounds):
        numpy_rounds.append(numpy_epoch(steps))
        keras_rounds.append(keras_epoch(steps))
    numpy_rate, keras_rate = max(numpy_rounds), max(keras_rounds)
    return {
        "numpy_cnn_images_per_s": numpy_rate,
        "keras_cnn_images_per_s": keras_rate,
        "numpy_over_keras": numpy_rate / keras_rate,
        "numpy_rounds": numpy_rounds,
        "keras_rounds": keras_rounds,
        "input_shape": tuple(input_shape),
        "batch_size": batch_size,
        "steps": steps,
        "rounds": rounds,
    }
