"""Chapter 1 experiments: gradient checks, the TensorFlow cross-check, initialisation statistics,
ANN vs CNN over seeds, and the NumPy-vs-Keras training speed benchmark.

The networks themselves are ``dlbook.methods.nn`` (NumPy only); TensorFlow/Keras appears here only to
check the NumPy gradients and to time the same CNN, and is imported inside those functions.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from dlbook.methods import metrics
from dlbook.methods.nn import gradcheck, losses
from dlbook.methods.nn import layers as L
from dlbook.methods.nn.init import get as get_initializer
from dlbook.methods.nn.model import (
    Activation,
    Adam,
    BatchNorm,
    Conv2D,
    Dense,
    Flatten,
    MaxPool2D,
    Sequential,
)

# ---------------------------------------------------------------------------------------------
# The two models compared in the chapter


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


# ---------------------------------------------------------------------------------------------
# 1. A worked pass and the gradient checks


def worked_example(seed: int = 0) -> dict[str, np.ndarray]:
    """One forward and backward pass through a 3-4-2 network (Dense, tanh, Dense, softmax
    cross-entropy) on two examples, every intermediate array returned by name (float64)."""
    rng = np.random.default_rng(seed)
    x = np.round(rng.standard_normal((2, 3)), 2)
    y = np.array([0, 1])
    p1 = {"W": np.round(rng.standard_normal((3, 4)) * 0.5, 2), "b": np.zeros(4)}
    p2 = {"W": np.round(rng.standard_normal((4, 2)) * 0.5, 2), "b": np.zeros(2)}
    z1, c1 = L.dense_forward(x, p1)
    h1, c2 = L.tanh_forward(z1)
    logits, c3 = L.dense_forward(h1, p2)
    loss, dlogits = losses.softmax_cross_entropy(logits, y)
    dh1, g2 = L.dense_backward(dlogits, c3)
    dz1, _ = L.tanh_backward(dh1, c2)
    dx, g1 = L.dense_backward(dz1, c1)
    return {
        "x": x,
        "labels": y,
        "W1": p1["W"],
        "z1 = x W1 + b1": z1,
        "h1 = tanh(z1)": h1,
        "W2": p2["W"],
        "logits = h1 W2 + b2": logits,
        "softmax(logits)": L.softmax(logits),
        "loss": np.array(loss),
        "dloss/dlogits": dlogits,
        "dloss/dW2": g2["W"],
        "dloss/dh1": dh1,
        "dloss/dz1": dz1,
        "dloss/dW1": g1["W"],
        "dloss/dx": dx,
    }


def describe_arrays(arrays: dict[str, np.ndarray], decimals: int = 3) -> str:
    """Each named array printed under its name, rounded, as one block of text."""
    parts = []
    for name, value in arrays.items():
        text = np.array2string(np.asarray(value), precision=decimals, suppress_small=True)
        parts.append(f"{name} {tuple(np.shape(value))}:\n{text}")
    return "\n\n".join(parts)


def gradient_checks(seed: int = 0) -> pd.DataFrame:
    """Every layer's, loss's and penalty's gradient check, plus a whole small CNN end to end."""
    rows = gradcheck.gradient_check_table(seed)
    rng = np.random.default_rng(seed)
    # Batch-norm comes first: after a conv it would make the conv's bias gradient exactly zero,
    # where a relative error means nothing.
    model = Sequential(
        [
            BatchNorm(),
            Conv2D(3, 3, padding="same"),
            Activation("leaky_relu"),
            MaxPool2D(2),
            Flatten(),
            Dense(5),
            Activation("sigmoid"),
            Dense(3),
        ],
        l2=0.01,
        seed=seed,
        dtype=np.float64,
    ).build((4, 4, 2))
    x, y = rng.standard_normal((3, 4, 4, 2)), rng.integers(0, 3, 3)
    rows.append(
        {
            "check": "whole CNN + L2 (every parameter)",
            "arrays": "all parameters",
            "max_rel_error": gradcheck.check_model(model, x, y),
        }
    )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# 2. The same network in Keras


def keras_equivalent(model: Sequential, dtype: str = "float32"):
    """A Keras model with the same layers as a built ``Sequential`` and its weights copied in."""
    import keras

    if model.input_shape_ is None:
        raise ValueError("model is not built; call model.build(input_shape) first")
    k_layers = [keras.Input(shape=model.input_shape_, dtype=dtype)]
    for layer in model.layers:
        if isinstance(layer, Dense):
            k_layers.append(keras.layers.Dense(layer.units, dtype=dtype))
        elif isinstance(layer, Conv2D):
            k_layers.append(
                keras.layers.Conv2D(
                    layer.filters,
                    layer.kernel_size,
                    strides=layer.stride,
                    padding=layer.padding,
                    dtype=dtype,
                )
            )
        elif isinstance(layer, MaxPool2D):
            k_layers.append(keras.layers.MaxPooling2D(layer.pool_size, layer.stride, dtype=dtype))
        elif isinstance(layer, Flatten):
            k_layers.append(keras.layers.Flatten(dtype=dtype))
        elif isinstance(layer, BatchNorm):
            k_layers.append(
                keras.layers.BatchNormalization(
                    momentum=layer.momentum, epsilon=layer.eps, dtype=dtype
                )
            )
        elif isinstance(layer, Activation):
            if layer.function == "leaky_relu":  # Keras's default slope is 0.2, ours 0.01
                k_layers.append(keras.layers.LeakyReLU(negative_slope=0.01, dtype=dtype))
            else:
                k_layers.append(keras.layers.Activation(layer.function, dtype=dtype))
        else:
            raise ValueError(
                f"layer {layer.name!r} ({type(layer).__name__}) has no Keras equivalent here"
            )
    k_model = keras.Sequential(k_layers)
    for layer, k_layer in zip(model.layers, k_model.layers):
        if isinstance(layer, (Dense, Conv2D)):
            k_layer.set_weights([layer.params["W"], layer.params["b"]])
        elif isinstance(layer, BatchNorm):
            k_layer.set_weights(
                [
                    layer.params["gamma"],
                    layer.params["beta"],
                    layer.running["mean"],
                    layer.running["var"],
                ]
            )
    return k_model


def tf_crosscheck(seed: int = 0) -> dict:
    """Same weights and inputs through a NumPy CNN and its Keras twin (float64).

    Compares the logits at inference, the logits and batch-norm statistics at train time, and
    the gradients of the softmax cross-entropy with respect to the input and every parameter
    (``tf.GradientTape``).

    Returns
    -------
    dict with ``output_max_abs_diff``, ``gradient_max_abs_diff``, ``max_abs_diff`` and
    ``table`` (a DataFrame: array, shape, max abs difference).
    """
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    model = Sequential(
        [
            Conv2D(4, 3, padding="same"),
            BatchNorm(),
            Activation("relu"),
            MaxPool2D(2),
            Conv2D(6, 3, stride=2, padding="valid"),
            Activation("tanh"),
            Flatten(),
            Dense(8),
            Activation("sigmoid"),
            Dense(3),
        ],
        seed=seed,
        dtype=np.float64,
    ).build((10, 10, 2))
    bn = model.layers[1]
    bn.running = {"mean": rng.standard_normal(4) * 0.1, "var": 1 + rng.random(4)}
    k_model = keras_equivalent(model, "float64")
    x = rng.standard_normal((5, 10, 10, 2))
    y = rng.integers(0, 3, 5)
    rows = []

    np_infer = model.forward(x, training=False)[0]
    k_infer = k_model(x, training=False).numpy()
    rows.append(("logits (inference)", np_infer.shape, np.abs(np_infer - k_infer).max()))

    np_train, caches = model.forward(x, training=True)
    loss, dlogits = losses.softmax_cross_entropy(np_train, y)
    dx, grads = model.backward(dlogits, caches)
    x_tf = tf.constant(x)
    k_loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")
    with tf.GradientTape() as tape:
        tape.watch(x_tf)
        k_train = k_model(x_tf, training=True)
        k_loss = k_loss_fn(y, k_train)
    variables = [v for layer in k_model.layers for v in layer.trainable_weights]
    k_grads = tape.gradient(k_loss, [x_tf] + variables)
    rows.append(("logits (train)", np_train.shape, np.abs(np_train - k_train.numpy()).max()))
    rows.append(("loss", (), abs(loss - float(k_loss))))
    k_bn = k_model.layers[1]
    for stat, k_stat in (("mean", k_bn.moving_mean), ("var", k_bn.moving_variance)):
        diff = np.abs(bn.running[stat] - k_stat.numpy()).max()
        rows.append((f"batch-norm running {stat} after a step", (4,), diff))
    rows.append(("d loss / d x", x.shape, np.abs(dx - k_grads[0].numpy()).max()))
    k_iter = iter(k_grads[1:])
    for layer, g in zip(model.layers, grads):
        for key in layer.params:
            k_g = next(k_iter).numpy()
            rows.append(
                (f"d loss / d {layer.name}.{key}", g[key].shape, np.abs(g[key] - k_g).max())
            )
    table = pd.DataFrame(rows, columns=["array", "shape", "max_abs_diff"])
    is_output = table["array"].str.startswith(("logits", "loss", "batch-norm"))
    return {
        "output_max_abs_diff": float(table.loc[is_output, "max_abs_diff"].max()),
        "gradient_max_abs_diff": float(table.loc[~is_output, "max_abs_diff"].max()),
        "max_abs_diff": float(table["max_abs_diff"].max()),
        "table": table,
    }


# ---------------------------------------------------------------------------------------------
# 3. Initialisation through a deep network


def initialization_statistics(
    initializers=("normal", "glorot_normal", "he_normal"),
    activations=("tanh", "relu"),
    depth: int = 15,
    width: int = 256,
    batch: int = 512,
    seed: int = 0,
) -> pd.DataFrame:
    """Standard deviation of activations (forward) and of the loss gradient with respect to them
    (backward), layer by layer, through a ``depth``-layer MLP of ``width`` units, for each
    initialiser and activation.

    Inputs are standard normal; the backward pass starts from the softmax cross-entropy of 10
    random classes on a final linear layer. float64 throughout.

    Returns
    -------
    DataFrame with columns initializer, activation, layer (1..depth), activation_std (std of
    the layer's output h), gradient_std (std of dL/dh).
    """
    if depth < 2 or width < 2:
        raise ValueError(f"depth={depth!r} and width={width!r} must be at least 2")
    rows = []
    for init_name in initializers:
        init = get_initializer(init_name)
        for act in activations:
            rng = np.random.default_rng(seed)
            forward, backward = L.ACTIVATIONS[act]
            x = rng.standard_normal((batch, width))
            labels = rng.integers(0, 10, batch)
            caches, stds = [], []
            for _ in range(depth):
                params = {"W": init((width, width), rng, np.float64), "b": np.zeros(width)}
                z, c_dense = L.dense_forward(x, params)
                x, c_act = forward(z)
                caches.append((c_dense, c_act))
                stds.append(float(x.std()))
            head = {
                "W": get_initializer("glorot_normal")((width, 10), rng, np.float64),
                "b": np.zeros(10),
            }
            logits, c_head = L.dense_forward(x, head)
            _, dout = losses.softmax_cross_entropy(logits, labels)
            dout, _ = L.dense_backward(dout, c_head)
            grad_stds = [0.0] * depth
            for i in range(depth - 1, -1, -1):
                grad_stds[i] = float(dout.std())
                c_dense, c_act = caches[i]
                dout, _ = backward(dout, c_act)
                dout, _ = L.dense_backward(dout, c_dense)
            for i in range(depth):
                rows.append(
                    {
                        "initializer": init_name,
                        "activation": act,
                        "layer": i + 1,
                        "activation_std": stds[i],
                        "gradient_std": grad_stds[i],
                    }
                )
    return pd.DataFrame(rows)


def initialization_summary(stats: pd.DataFrame) -> pd.DataFrame:
    """Per initialiser and activation: activation std at the first and last layers, and the ratio
    of the gradient std at the first layer to that at the last (1 is ideal; near 0 means the
    gradient vanishes on its way back, far above 1 that it explodes)."""
    rows = []
    for (init_name, act), part in stats.groupby(["initializer", "activation"], sort=False):
        part = part.sort_values("layer")
        first, last = part.iloc[0], part.iloc[-1]
        rows.append(
            {
                "initializer": init_name,
                "activation": act,
                "activation_std_first_layer": first["activation_std"],
                "activation_std_last_layer": last["activation_std"],
                "gradient_std_ratio_first_to_last": first["gradient_std"] / last["gradient_std"],
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# 4. ANN vs CNN over seeds


def standardize(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Scale images to zero mean, unit variance using the training set's (scalar) statistics."""
    train = train.astype(np.float32)
    mean, std = train.mean(), train.std() + 1e-8
    return [(a.astype(np.float32) - mean) / std for a in (train, *others)]


def digits_split(seed: int = 0, test_fraction: float = 0.25):
    """scikit-learn's 8x8 digits as (N, 8, 8, 1) float32 images, stratified train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.images[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=test_fraction, stratify=digits.target, random_state=seed
    )
    x_train, x_test = standardize(x_train, x_test)
    return x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64)


def face_mask_split(
    data_dir=None, image_size: int = 32, color_mode: str = "grayscale", limit=None, verify=True
):
    """The face-mask train and test splits (``dlbook.facemask.data``) as standardised float32 images
    ``(x_train, y_train, x_test, y_test)``; ``verify=False`` skips the manifest check (for
    synthetic data)."""
    from dlbook.facemask.data import load_face_mask

    data = load_face_mask(
        data_dir,
        image_size=image_size,
        color_mode=color_mode,
        limit=limit,
        verify=verify,
        progress=False,
    )
    train, test = data.where("train"), data.where("test")
    x_train, x_test = standardize(train.images, test.images)
    return x_train, train.labels, x_test, test.labels


BLAS_THREADS = 1
"""NumPy trains with one BLAS thread: its matrices are small, and on a 2-core machine shared with
other work OpenBLAS's extra threads cost more in waiting than they save."""


def ann_vs_cnn(
    x_train, y_train, x_test, y_test, seeds, epochs: int, batch_size: int = 64, learning_rate=1e-3
) -> pd.DataFrame:
    """Train ``make_ann`` and ``make_cnn`` once per seed; return one row per (model, seed) with
    test accuracy and training seconds."""
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    with threadpool_limits(BLAS_THREADS, user_api="blas"):
        return pd.DataFrame(
            _ann_vs_cnn_runs(
                x_train,
                y_train,
                x_test,
                y_test,
                seeds,
                epochs,
                batch_size,
                learning_rate,
                num_classes,
            )
        )


def _ann_vs_cnn_runs(
    x_train, y_train, x_test, y_test, seeds, epochs, batch_size, learning_rate, num_classes
):
    rows = []
    for seed in seeds:
        for name, maker in (("ANN", make_ann), ("CNN", make_cnn)):
            model = maker(
                num_classes,
                seed=seed,
                epochs=epochs,
                batch_size=batch_size,
                learning_rate=learning_rate,
            )
            start = time.perf_counter()
            model.fit(x_train, y_train)
            seconds = time.perf_counter() - start
            rows.append(
                {
                    "model": name,
                    "seed": seed,
                    "test_accuracy": model.score(x_test, y_test),
                    "train_seconds": seconds,
                    "parameters": sum(p.size for _, _, p in model.parameters()),
                }
            )
    return rows


def accuracy_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation, min and max test accuracy per dataset and model, with the
    number of seeds, the parameter count and the mean training time."""
    grouped = runs.groupby(["dataset", "model"], sort=False)
    table = grouped["test_accuracy"].agg(["mean", "std", "min", "max", "count"])
    table = table.rename(columns={"count": "seeds"})
    table["parameters"] = grouped["parameters"].first()
    table["train_seconds"] = grouped["train_seconds"].mean()
    return table


def summarize_ann_vs_cnn(runs: pd.DataFrame) -> dict:
    """Mean accuracies and the CNN-minus-ANN gap in points with a 95% t-interval over seeds
    (the gap is paired by seed)."""
    pivot = runs.pivot(index="seed", columns="model", values="test_accuracy")
    gap = 100 * (pivot["CNN"] - pivot["ANN"])
    mean, low, high = metrics.mean_confidence_interval(gap.to_numpy())
    return {
        "ann_test_accuracy": float(pivot["ANN"].mean()),
        "cnn_test_accuracy": float(pivot["CNN"].mean()),
        "cnn_minus_ann_points": mean,
        "cnn_minus_ann_points_ci_low": low,
        "cnn_minus_ann_points_ci_high": high,
    }


# ---------------------------------------------------------------------------------------------
# 5. Speed


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

    numpy_epoch(2)
    keras_epoch(2)
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


# ---------------------------------------------------------------------------------------------
# 4b. The CNN-ANN gap against input size, both nets trained to early stopping (Keras twins)


def downscale(images: np.ndarray, size: int) -> np.ndarray:
    """Square images shrunk to ``size`` px by averaging blocks of pixels (area resampling).

    Parameters
    ----------
    images : ndarray, shape (N, S, S, C); S must be a multiple of ``size``.

    Returns
    -------
    ndarray, shape (N, size, size, C), float32.
    """
    side = images.shape[1]
    if images.ndim != 4 or images.shape[2] != side:
        raise ValueError(f"images have shape {images.shape}; expected (N, S, S, C)")
    if not isinstance(size, (int, np.integer)) or size < 1 or side % size:
        raise ValueError(f"size={size!r} must divide the image side {side}")
    factor = side // size
    blocks = images.astype(np.float32).reshape(len(images), size, factor, size, factor, -1)
    return blocks.mean(axis=(2, 4))


def keras_twin(model: Sequential):
    """The Keras twin of a built NumPy classifier (same layers and weights) with a softmax on its
    logits, ready for ``training.fit``."""
    import keras

    return keras.Sequential([keras_equivalent(model), keras.layers.Softmax()])


def keras_numpy_max_diff(x: np.ndarray, num_classes: int = 2, seed: int = 0) -> float:
    """Largest absolute difference in logits between the NumPy ANN and CNN and their Keras twins,
    same weights, on the images ``x`` (shape (N, H, W, C), float32)."""
    worst = 0.0
    for maker in (make_ann, make_cnn):
        model = maker(num_classes, seed=seed).build(x.shape[1:])
        k_model = keras_equivalent(model)
        with threadpool_limits(BLAS_THREADS, user_api="blas"):
            ours = model.decision_function(x)
        theirs = np.asarray(k_model(x, training=False))
        worst = max(worst, float(np.abs(ours - theirs).max()))
    return worst


def train_subsample(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a random ``fraction`` of the training images, drawn by ``seed`` within
    each class (all of them when ``fraction`` is 1)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction!r} must lie in (0, 1]")
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(labels == c), round(fraction * np.sum(labels == c)), False)
        for c in np.unique(labels)
    ]
    return np.sort(np.concatenate(chosen))


def cnn_ann_runs(images, settings: dict, seeds) -> pd.DataFrame:
    """Train the chapter's ANN and CNN (as Keras twins of the NumPy nets) at each input size
    and seed, to early stopping on the validation split, and score each once on the test split.

    Parameters
    ----------
    images : ``data.ImageSet`` at the largest of ``settings["cnn_ann_sizes"]``.
    settings : ``cnn_ann_sizes``, ``cnn_ann_train_fraction``, ``cnn_ann_epoch_cap``,
        ``cnn_ann_patience``, ``batch_size``, ``learning_rate``.
    seeds : a seed sets the initial weights, the mini-batch order and the training subsample.

    Returns
    -------
    DataFrame, one row per (size, seed, model): ``val_accuracy``, ``test_accuracy``,
    ``epochs_used``, ``stopped_early``, ``converged``, ``train_images``.
    """
    from dlbook.methods import convergence

    train, val, test = (images.where(name) for name in ("train", "val", "test"))
    num_classes = int(images.labels.max()) + 1
    rows = []
    for size in settings["cnn_ann_sizes"]:
        pixels = {name: downscale(part.images, size) for name, part in
                  (("train", train), ("val", val), ("test", test))}  # fmt: skip
        for seed in seeds:
            keep = train_subsample(train.labels, settings["cnn_ann_train_fraction"], seed)
            x_train, x_val, x_test = standardize(
                pixels["train"][keep], pixels["val"], pixels["test"]
            )
            for name, maker in (("ANN", make_ann), ("CNN", make_cnn)):
                net = maker(num_classes, seed=seed).build(x_train.shape[1:])
                fit = convergence.fit_to_convergence(
                    lambda net=net: keras_twin(net),
                    (x_train, train.labels[keep]),
                    (x_val, val.labels),
                    epoch_cap=settings["cnn_ann_epoch_cap"],
                    patience=settings["cnn_ann_patience"],
                    batch_size=settings["batch_size"],
                    learning_rate=settings["learning_rate"],
                    seed=seed,
                )
                predict = fit.model
                rows.append(
                    {
                        "size": int(size),
                        "seed": int(seed),
                        "model": name,
                        "val_accuracy": _accuracy(predict, x_val, val.labels),
                        "test_accuracy": _accuracy(predict, x_test, test.labels),
                        "epochs_used": fit.epochs_used,
                        "stopped_early": fit.stopped_early,
                        "converged": fit.converged,
                        "train_images": len(keep),
                    }
                )
    return pd.DataFrame(rows)


def _accuracy(model, x, y, batch_size: int = 512) -> float:
    """Accuracy of a Keras model called directly on batches (``predict`` would trace a new
    function for every model of the sweep)."""
    probs = np.concatenate(
        [
            np.asarray(model(x[i : i + batch_size], training=False))
            for i in range(0, len(x), batch_size)
        ]
    )
    return float(np.mean(np.argmax(probs, axis=1) == y))


def summarize_cnn_ann_sizes(runs: pd.DataFrame) -> dict:
    """Per input size the paired CNN-minus-ANN test gap in points with a 95% t interval over seeds
    (``cnn_minus_ann_points_<s>px``); ``cnn_minus_ann_points`` is the gap at the largest size."""
    values = {}
    sizes = sorted(runs["size"].unique())
    for size in sizes:
        part = runs[runs["size"] == size]
        gap = summarize_ann_vs_cnn(part)
        for key in ("cnn_minus_ann_points", "cnn_minus_ann_points_ci_low",
                    "cnn_minus_ann_points_ci_high"):  # fmt: skip
            suffix = key.removeprefix("cnn_minus_ann_points")
            values[f"cnn_minus_ann_points_{size}px{suffix}"] = gap[key]
        values[f"ann_test_accuracy_{size}px"] = gap["ann_test_accuracy"]
        values[f"cnn_test_accuracy_{size}px"] = gap["cnn_test_accuracy"]
    largest = summarize_ann_vs_cnn(runs[runs["size"] == sizes[-1]])
    values.update(largest)
    values["cnn_ann_sizes"] = ",".join(str(size) for size in sizes)
    values["cnn_ann_seeds"] = int(runs["seed"].nunique())
    values["cnn_ann_train_images"] = int(runs["train_images"].max())
    values["cnn_ann_converged_fraction"] = float(runs["converged"].mean())
    values["cnn_ann_stopped_early_fraction"] = float(runs["stopped_early"].mean())
    values["cnn_ann_epochs_used_mean"] = float(runs["epochs_used"].mean())
    values["cnn_ann_epochs_used_max"] = int(runs["epochs_used"].max())
    return values


def gap_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per input size: mean test accuracy of each net, the paired gap with its interval,
    and the epochs early stopping used (mean)."""
    summary = summarize_cnn_ann_sizes(runs)
    rows = []
    for size in sorted(runs["size"].unique()):
        part = runs[runs["size"] == size]
        key = f"cnn_minus_ann_points_{size}px"
        rows.append(
            {
                "input size (px)": int(size),
                "ANN test accuracy": summary[f"ann_test_accuracy_{size}px"],
                "CNN test accuracy": summary[f"cnn_test_accuracy_{size}px"],
                "CNN - ANN (points)": round(summary[key], 1),
                "95% CI low": round(summary[f"{key}_ci_low"], 1),
                "95% CI high": round(summary[f"{key}_ci_high"], 1),
                "ANN epochs": round(part.loc[part["model"] == "ANN", "epochs_used"].mean(), 1),
                "CNN epochs": round(part.loc[part["model"] == "CNN", "epochs_used"].mean(), 1),
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# The chapter as calls: each section computes, saves and returns; ``story_*`` words the results.


def _save(results_dir, values: dict) -> None:
    if results_dir is not None:
        from dlbook.core import results

        results.save(results_dir, "fundamentals", values)


def worked_pass(settings: dict, data_dir=None, seed: int = 0, results_dir=None) -> dict:
    """Section 1: the arrays of one forward and backward pass (``arrays``) and their text."""
    arrays = worked_example(seed)
    return {"arrays": arrays, "text": describe_arrays(arrays)}


def gradients(settings: dict, data_dir=None, seed: int = 0, results_dir=None) -> dict:
    """Sections 1-2: the gradient checks and the TensorFlow cross-check; saves their maxima."""
    checks = gradient_checks(seed)
    cross = tf_crosscheck(seed)
    values = {
        "gradcheck_max_rel_error": float(checks["max_rel_error"].max()),
        "gradcheck_count": len(checks),
        "tf_crosscheck_max_abs_diff": cross["max_abs_diff"],
        "tf_crosscheck_output_max_abs_diff": cross["output_max_abs_diff"],
        "tf_crosscheck_gradient_max_abs_diff": cross["gradient_max_abs_diff"],
    }
    _save(results_dir, values)
    return {"checks": checks, "crosscheck": cross["table"], "values": values}


def initialization(settings: dict, data_dir=None, seed: int = 0, results_dir=None) -> dict:
    """Section 3: activation and gradient spread through a deep MLP per initialiser; saves the
    last-layer spreads and gradient ratios of the pairs the story quotes."""
    stats = initialization_statistics(
        depth=settings["init_depth"],
        width=settings["init_width"],
        batch=settings["init_batch"],
        seed=seed,
    )
    summary = initialization_summary(stats)

    def row(init_name, act):
        return summary[(summary["initializer"] == init_name) & (summary["activation"] == act)].iloc[
            0
        ]

    small, he_relu = row("normal", "relu"), row("he_normal", "relu")
    small_tanh, glorot_tanh = row("normal", "tanh"), row("glorot_normal", "tanh")
    values = {
        "init_layers": settings["init_depth"],
        "init_normal_relu_last_activation_std": small["activation_std_last_layer"],
        "init_he_relu_last_activation_std": he_relu["activation_std_last_layer"],
        "init_normal_tanh_last_activation_std": small_tanh["activation_std_last_layer"],
        "init_glorot_tanh_last_activation_std": glorot_tanh["activation_std_last_layer"],
        "init_he_relu_gradient_ratio": he_relu["gradient_std_ratio_first_to_last"],
        "init_normal_relu_gradient_ratio": small["gradient_std_ratio_first_to_last"],
    }
    _save(results_dir, values)
    return {"stats": stats, "summary": summary, "values": values}


def init_table(result: dict) -> pd.DataFrame:
    """The initialisation summary with short column names, for the page."""
    return result["summary"].rename(
        columns={
            "activation_std_first_layer": "std, first layer",
            "activation_std_last_layer": "std, last layer",
            "gradient_std_ratio_first_to_last": "gradient std, first / last",
        }
    )


def check_table(result: dict) -> pd.DataFrame:
    """The gradient checks with short column names, for the page."""
    return result["checks"].rename(columns={"max_rel_error": "relative error"})


def crosscheck_table(result: dict) -> pd.DataFrame:
    """The TensorFlow cross-check, shapes written as ``5 x 3``, for the page."""
    table = result["crosscheck"].copy()
    table["shape"] = [" x ".join(map(str, shape)) or "scalar" for shape in table["shape"]]
    return table.rename(columns={"max_abs_diff": "max abs difference"})


def cnn_vs_ann(settings: dict, data_dir=None, seed: int = 0, results_dir=None) -> dict:
    """Section 4: the CNN-ANN gap at each input size (Keras twins trained to early stopping),
    the twins' equality with the NumPy nets, and the NumPy nets on scikit-learn's digits.

    Run seeds are ``seed + i`` for ``i < settings["seeds"]``; ``seed`` also fixes the split.
    Returns ``runs`` (face-mask), ``digits`` (NumPy runs), ``table`` and ``values`` (saved).
    """
    from dlbook.facemask import data

    seeds = [seed + i for i in range(settings["seeds"])]
    if not seeds:
        raise ValueError(f"settings['seeds']={settings['seeds']!r} must be at least 1")
    images = data.load_face_mask(
        data_dir,
        image_size=max(settings["cnn_ann_sizes"]),
        color_mode=settings["color_mode"],
        limit=settings["limit"],
        seed=seed,
        progress=False,
    )
    runs = cnn_ann_runs(images, settings, seeds)
    values = summarize_cnn_ann_sizes(runs)
    check_size = settings["cnn_ann_check_size"]
    sample = downscale(images.where("val").images[:64], check_size)
    values["cnn_ann_keras_numpy_max_diff"] = keras_numpy_max_diff(standardize(sample)[0], seed=seed)
    values["cnn_ann_check_size"] = int(check_size)
    values["cnn_ann_epoch_cap"] = int(settings["cnn_ann_epoch_cap"])
    values["cnn_ann_patience"] = int(settings["cnn_ann_patience"])
    values["seeds"] = len(seeds)
    values["face_mask_train_images"] = values["cnn_ann_train_images"]
    values["face_mask_test_images"] = int(np.sum(images.split == "test"))
    digits = pd.concat(
        [
            ann_vs_cnn(
                *digits_split(s),
                seeds=[s],
                epochs=settings["digits_epochs"],
                batch_size=settings["batch_size"],
            )  # fmt: skip
            for s in seeds
        ],
        ignore_index=True,
    )
    values.update({f"{k}_digits": v for k, v in summarize_ann_vs_cnn(digits).items()})
    values["digits_epochs"] = int(settings["digits_epochs"])
    _save(results_dir, values)
    return {"runs": runs, "digits": digits, "table": gap_table(runs), "values": values}


def speed(settings: dict, data_dir=None, seed: int = 0, results_dir=None) -> dict:
    """Section 5: training throughput of the NumPy CNN against its Keras twin; saves the rates."""
    channels = 1 if settings["color_mode"] == "grayscale" else 3
    size = settings["image_size"]
    bench = benchmark_cnn_training(
        input_shape=(size, size, channels),
        batch_size=settings["batch_size"],
        steps=settings["benchmark_steps"],
        rounds=settings["benchmark_rounds"],
        seed=seed,
    )
    keys = ("numpy_cnn_images_per_s", "keras_cnn_images_per_s", "numpy_over_keras")
    _save(results_dir, {key: bench[key] for key in keys})
    return bench


def run(settings: dict, data_dir=None, seed: int = 0, results_dir=None) -> dict:
    """Every section of chapter 1, in order; returns each section's result by name."""
    return {
        name: section(settings, data_dir, seed, results_dir)
        for name, section in (
            ("worked_pass", worked_pass),
            ("gradients", gradients),
            ("initialization", initialization),
            ("cnn_vs_ann", cnn_vs_ann),
            ("speed", speed),
        )
    }


# -- sentences from the results ------------------------------------------------------------


def story_gradients(result: dict) -> str:
    """The gradient checks and the TensorFlow cross-check, against their targets."""
    from dlbook.book import present

    v = result["values"]
    grad_ok = v["gradcheck_max_rel_error"] < 1e-7
    tf_ok = v["tf_crosscheck_max_abs_diff"] < 1e-4
    return (
        f"The largest gradient-check error over {v['gradcheck_count']} checks is "
        f"**{present.number(v['gradcheck_max_rel_error'], 2)}** (target below 1e-7: "
        f"{'met' if grad_ok else 'missed'}). Against TensorFlow, outputs differ by at most "
        f"**{present.number(v['tf_crosscheck_output_max_abs_diff'], 2)}** and gradients by at most "
        f"**{present.number(v['tf_crosscheck_gradient_max_abs_diff'], 2)}** (target below 1e-4: "
        f"{'met' if tf_ok else 'missed'})"
        + (": the NumPy network computes what Keras computes." if grad_ok and tf_ok else ".")
    )


def story_initialization(result: dict) -> str:
    """What the small normal, He and Glorot do to the signal after the deep stack."""
    from dlbook.book import present

    v = result["values"]
    n = present.number
    return (
        f"After {v['init_layers']} ReLU layers the activations of the small fixed normal have a "
        f"spread of **{n(v['init_normal_relu_last_activation_std'], 2)}**; He keeps it at "
        f"**{n(v['init_he_relu_last_activation_std'])}**, and the gradient reaching its first layer "
        f"has **{n(v['init_he_relu_gradient_ratio'])}** times the spread it had at the last layer, "
        f"against **{n(v['init_normal_relu_gradient_ratio'], 2)}** for the small normal (1 would be "
        f"perfectly balanced). With tanh the small normal ends at "
        f"**{n(v['init_normal_tanh_last_activation_std'], 2)}** and Glorot at "
        f"**{n(v['init_glorot_tanh_last_activation_std'])}** (tanh squashes, so some decay "
        "remains). The chapter's ANN and CNN use He for the ReLU layers and Glorot for the output "
        "layer."
    )


def story_cnn_vs_ann(result: dict) -> str:
    """The gap at each size with its interval, how the runs were trained, and the digits."""
    from dlbook.book import present

    v = result["values"]
    sizes = [int(s) for s in v["cnn_ann_sizes"].split(",")]
    gaps = []
    for size in sizes:
        key = f"cnn_minus_ann_points_{size}px"
        low, high = v[f"{key}_ci_low"], v[f"{key}_ci_high"]
        gaps.append(
            f"**{present.points(v[key])}** at {size} px ({present.points_interval(low, high)})"
        )
    trend = _trend([v[f"cnn_minus_ann_points_{size}px"] for size in sizes])
    converged = v["cnn_ann_converged_fraction"]
    return (
        f"CNN minus ANN on the face-mask test split, mean over {v['cnn_ann_seeds']} seeds: "
        + "; ".join(gaps)
        + f". {trend} Each net trained on {v['cnn_ann_train_images']} images per seed until the "
        f"validation loss stopped improving for {_epochs(v['cnn_ann_patience'])} (cap "
        f"{v['cnn_ann_epoch_cap']}; {present.number(v['cnn_ann_epochs_used_mean'], 2)} epochs on "
        f"average); {present.percent(converged, 0)} of the runs converged by that rule. "
        f"The Keras twins match the NumPy nets to "
        f"{present.number(v['cnn_ann_keras_numpy_max_diff'], 2)} in the logits at "
        f"{v['cnn_ann_check_size']} px. On scikit-learn's digits, with the NumPy nets themselves "
        f"({v['digits_epochs']} epochs), the gap is **{present.points(v['cnn_minus_ann_points_digits'])}** "
        f"({present.points_interval(v['cnn_minus_ann_points_ci_low_digits'], v['cnn_minus_ann_points_ci_high_digits'])})."
    )


def _epochs(count: int) -> str:
    return f"{count} epoch" if count == 1 else f"{count} epochs"


def _trend(gaps) -> str:
    """Say whether the gap grows, shrinks or neither as the input grows."""
    steps = np.diff(gaps)
    if len(steps) and (steps > 0).all():
        return "The gap grows with the input size."
    if len(steps) and (steps < 0).all():
        return "The gap shrinks as the input grows."
    return "The gap does not move steadily with the input size."


def story_speed(bench: dict) -> str:
    """The throughput of each library and their ratio against the one-third target."""
    from dlbook.book import present

    ratio = bench["numpy_over_keras"]
    shape = " x ".join(str(d) for d in bench["input_shape"])
    return (
        f"On {shape} inputs in batches of {bench['batch_size']}, best of {bench['rounds']} rounds of "
        f"{bench['steps']} steps, the NumPy CNN trains at "
        f"**{present.number(bench['numpy_cnn_images_per_s'])} images/s** and the Keras CNN at "
        f"**{present.number(bench['keras_cnn_images_per_s'])} images/s**: NumPy reaches "
        f"**{present.number(ratio, 2)}** of Keras's throughput (target at least 1/3: "
        f"{'met' if ratio >= 1 / 3 else 'missed'}). The rounds ranged from "
        f"{present.number(min(bench['numpy_rounds']))} to {present.number(max(bench['numpy_rounds']))} "
        f"images/s for NumPy and {present.number(min(bench['keras_rounds']))} to "
        f"{present.number(max(bench['keras_rounds']))} for Keras, a measure of how much other work "
        "on the machine moves the figures."
    )
