"""Training Keras models: one ``fit`` helper for every chapter, on any ``tf.distribute`` strategy.

The model is built inside the strategy's scope from a zero-argument function, so the same call
trains on one CPU (the default strategy), several GPUs (``MirroredStrategy``) or several workers
(``MultiWorkerMirroredStrategy``) with no change. Seeds are explicit: the same seed gives the same
initial weights, the same shuffling and the same augmentation draws.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np

from dlbook.core import cache
from dlbook.methods import optim

LR_SCHEDULES = ("constant", "cosine")
PREFETCH_BATCHES = 2
STEPS_PER_EXECUTION = 8
"""Mini-batch steps per compiled call. The same arithmetic in the same order (weights are
bit-identical to one step per call, tested) with less per-call overhead: an epoch of chapter 4's
CNN is about 12 % faster on two cores."""


@dataclass
class FitResult:
    """What ``fit`` returns.

    Attributes
    ----------
    model : the trained model.
    history : per-epoch metrics, e.g. ``{"loss": [...], "accuracy": [...], "val_loss": [...]}``.
    timings : ``build_s`` (building and compiling), ``train_s`` (all epochs), ``epoch_s`` (list,
        one per epoch; the first includes tracing), ``images_per_s`` (training images seen per
        second over all epochs).
    strategy : class name of the strategy used.
    replicas : number of replicas in sync (global batch = ``batch_size * replicas``).
    """

    model: keras.Model
    history: dict[str, list[float]]
    timings: dict = field(default_factory=dict)
    strategy: str = ""
    replicas: int = 1


class _EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epoch_s: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_s.append(time.perf_counter() - self._start)


def _check_arrays(x, y, name: str):
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim < 2:
        raise ValueError(f"{name} images have shape {x.shape}; expected (N, ...) with N >= 1")
    if y.shape != (len(x),):
        raise ValueError(
            f"{name} labels have shape {y.shape}; expected ({len(x)},) to match the images"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} labels have dtype {y.dtype}; expected integer class indices")
    return x, y


def make_dataset(x, y, batch_size: int, shuffle: bool, seed: int, binary: bool = False):
    """A ``tf.data`` pipeline of (float32 images, int labels) batches, sharded by data.

    Parameters
    ----------
    x : ndarray, shape (N, H, W, C), uint8 or float
    y : ndarray, shape (N,), int
    batch_size : global batch size.
    shuffle : reshuffle every epoch, in an order fixed by ``seed``.
    binary : give labels as float32 of shape (batch, 1), the target of a one-unit sigmoid model.
    """
    import tensorflow as tf

    if binary:
        y = np.asarray(y, dtype=np.float32).reshape(-1, 1)

    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size).map(lambda a, b: (tf.cast(a, tf.float32), b))
    options = tf.data.Options()
    # In-memory arrays cannot be sharded by file: split batches across workers instead.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    # No autotuning: with the build's one-thread pools it stalled about one run in two for 5 s
    # (a 3-epoch run of chapter 4's CNN: 22.8 s instead of 17.6, the CPU idle meanwhile). A
    # fixed prefetch of two batches gives the same batches in the same order.
    options.autotune.enabled = False
    return dataset.with_options(options).prefetch(PREFETCH_BATCHES)


def fit(
    model_fn: Callable[[], keras.Model],
    x_train,
    y_train,
    *,
    validation_data: tuple | None = None,
    epochs: int = 5,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    optimizer: str = "adam",
    lr_schedule: str = "constant",
    seed: int = 0,
    strategy=None,
    callbacks: list | None = None,
    verbose: int = 0,
    use_cache: bool = True,
) -> FitResult:
    """Build a model with ``model_fn`` inside ``strategy``'s scope and train it.

    Parameters
    ----------
    model_fn : zero-argument function returning an uncompiled ``keras.Model`` that ends in a
        softmax (or one sigmoid unit), e.g. ``functools.partial(models.build, "cnn", shape, 2)``.
    x_train : ndarray, shape (N, H, W, C), uint8 or float32 pixels.
    y_train : ndarray, shape (N,), int class indices.
    validation_data : optional ``(x_val, y_val)`` of the same kinds, evaluated after each epoch.
    epochs : passes over the training set.
    batch_size : images per replica per step; the global batch is ``batch_size * replicas``.
    learning_rate : of the optimiser.
    optimizer : a name from ``dlbook.methods.optim.OPTIMIZERS``; the Keras optimiser comes from
        ``optim.make_keras_optimizer``, with the hyper-parameters of the NumPy one.
    lr_schedule : "constant", or "cosine" (decay from ``learning_rate`` to 0 over all steps; a
        short run then ends with small steps, and batch-norm statistics catch up with the weights).
    seed : seeds Python, NumPy and TensorFlow (initial weights, dropout, augmentation) and the
        shuffling order.
    strategy : a ``tf.distribute.Strategy``; None uses the default (one-device) strategy.
    callbacks : extra Keras callbacks.
    verbose : Keras's verbosity.
    use_cache : reuse an identical earlier run (same architecture, initial weights, data,
        options and callback settings) from ``dlbook.core.cache``: its trained weights, history and
        measured timings (``timings["cached"]`` is then True).

    Returns
    -------
    FitResult
    """
    import tensorflow as tf

    if not callable(model_fn):
        raise ValueError(
            f"model_fn={model_fn!r} must be a zero-argument function returning a model"
        )
    x_train, y_train = _check_arrays(x_train, y_train, "training")
    if validation_data is not None:
        if len(validation_data) != 2:
            raise ValueError("validation_data must be a pair (x_val, y_val)")
        validation_data = _check_arrays(*validation_data, "validation")
    if not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs={epochs!r} must be a positive integer")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
    if not isinstance(learning_rate, (int, float)) or learning_rate <= 0:
        raise ValueError(f"learning_rate={learning_rate!r} must be a positive number")
    if optimizer not in optim.OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r} is unknown; use one of {optim.OPTIMIZERS}")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule={lr_schedule!r} is unknown; use one of {LR_SCHEDULES}")
    if strategy is None:
        strategy = tf.distribute.get_strategy()
    elif not isinstance(strategy, tf.distribute.Strategy):
        raise ValueError(f"strategy={strategy!r} must be a tf.distribute.Strategy or None")

    keras.utils.set_random_seed(seed)
    replicas = strategy.num_replicas_in_sync
    global_batch = batch_size * replicas
    rate = learning_rate
    if lr_schedule == "cosine":
        steps = epochs * int(np.ceil(len(x_train) / global_batch))
        rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps)
    start = time.perf_counter()
    with strategy.scope():
        model = model_fn()
        if not isinstance(model, keras.Model):
            raise ValueError(f"model_fn returned {type(model).__name__}; expected a keras.Model")
        binary = model.outputs[0].shape[-1] == 1
        model.compile(
            optimizer=optim.make_keras_optimizer(optimizer, rate),
            loss="binary_crossentropy" if binary else "sparse_categorical_crossentropy",
            metrics=["accuracy"],
            steps_per_execution=STEPS_PER_EXECUTION,
        )
    build_s = time.perf_counter() - start
    options = dict(
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, optimizer=optimizer,
        lr_schedule=lr_schedule, seed=seed, strategy=type(strategy).__name__, replicas=replicas,
    )  # fmt: skip
    key = None
    if use_cache:
        key = cache.fit_key(model, x_train, y_train, validation_data, options, callbacks)
    stored = cache.load_fit(key, model, callbacks) if key else None
    if stored is not None:
        return FitResult(model, *stored, type(strategy).__name__, replicas)

    train = make_dataset(x_train, y_train, global_batch, shuffle=True, seed=seed, binary=binary)
    val = None
    if validation_data is not None:
        val = make_dataset(*validation_data, global_batch, shuffle=False, seed=seed, binary=binary)
    timer = _EpochTimer()
    start = time.perf_counter()
    keras_history = model.fit(
        train,
        validation_data=val,
        epochs=int(epochs),
        callbacks=[timer, *(callbacks or [])],
        shuffle=False,  # the dataset is already shuffled, by seed
        verbose=verbose,
    )
    train_s = time.perf_counter() - start
    history = {key: [float(v) for v in values] for key, values in keras_history.history.items()}
    timings = {
        "build_s": build_s,
        "train_s": train_s,
        "epoch_s": timer.epoch_s,
        "images_per_s": len(x_train) * epochs / train_s,
    }
    if key:
        cache.save_fit(key, model, history, timings, callbacks)
    return FitResult(model, history, timings, type(strategy).__name__, replicas)


def predict_proba(model: keras.Model, x, batch_size: int = 256) -> np.ndarray:
    """Class probabilities, shape (N, num_classes), float32 (a sigmoid model gives (N, 2) too)."""
    x = np.asarray(x)
    probs = np.asarray(model.predict(x.astype(np.float32), batch_size=batch_size, verbose=0))
    if probs.shape[-1] == 1:
        probs = np.concatenate([1 - probs, probs], axis=-1)
    return probs.astype(np.float32)


def accuracy(model: keras.Model, x, y, batch_size: int = 256) -> float:
    """Fraction of images whose most probable class is the label.

    The model is called directly on batches of float32 pixels (``training=False``): ``predict``
    would trace a new function for every model, and a chapter scores many.

    Parameters
    ----------
    x : ndarray, shape (N, H, W, C), uint8 or float pixels.
    y : ndarray, shape (N,), int class indices.
    """
    x, y = _check_arrays(x, y, "evaluation")
    probs = np.concatenate(
        [
            np.asarray(model(x[i : i + batch_size].astype(np.float32), training=False))
            for i in range(0, len(x), batch_size)
        ]
    )
    if probs.shape[-1] == 1:
        probs = np.concatenate([1 - probs, probs], axis=-1)
    return float(np.mean(np.argmax(probs, axis=1) == y))
