"""Chapter 1 experiments: gradient checks, the TensorFlow cross-check, initialisation statistics,
ANN vs CNN over seeds, and the NumPy-vs-Keras training speed benchmark.

The networks themselves are ``dlbook.nn`` (NumPy only); TensorFlow/Keras appears here only to
check the NumPy gradients and to time the same CNN, and is imported inside those functions.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from dlbook import metrics
from dlbook.nn import gradcheck, losses
from dlbook.nn import layers as L
from dlbook.nn.init import get as get_initializer
from dlbook.nn.model import (
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
    """The face-mask train and test splits (``dlbook.data``) as standardised float32 images
    ``(x_train, y_train, x_test, y_test)``; ``verify=False`` skips the manifest check (for
    synthetic data)."""
    from dlbook.data import load_face_mask

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
    ``timeit`` does: other work only ever slows a run down. The figures are printed and returned
    (``numpy_cnn_images_per_s``, ``keras_cnn_images_per_s``, ``numpy_over_keras``, plus the
    per-round lists as ``numpy_rounds`` / ``keras_rounds``, not saved as results).
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
    print(
        f"training throughput, CNN on {tuple(input_shape)} images, batch {batch_size}, "
        f"{os.cpu_count()} CPU cores (NumPy with {BLAS_THREADS} BLAS thread, Keras with its own "
        f"thread pool), best of {rounds} rounds of {steps} steps: NumPy {numpy_rate:,.0f} images/s, "
        f"Keras {keras_rate:,.0f} images/s (NumPy/Keras = {numpy_rate / keras_rate:.2f})\n"
        f"  every round, NumPy: {', '.join(f'{r:,.0f}' for r in numpy_rounds)}; "
        f"Keras: {', '.join(f'{r:,.0f}' for r in keras_rounds)}"
    )
    return {
        "numpy_cnn_images_per_s": numpy_rate,
        "keras_cnn_images_per_s": keras_rate,
        "numpy_over_keras": numpy_rate / keras_rate,
        "numpy_rounds": numpy_rounds,
        "keras_rounds": keras_rounds,
    }


def run_ann_vs_cnn(
    seeds,
    face_mask_epochs: int,
    digits_epochs: int,
    image_size: int = 32,
    color_mode: str = "grayscale",
    limit: int | None = None,
    batch_size: int = 64,
    data_dir=None,
) -> tuple[pd.DataFrame, dict]:
    """ANN vs CNN on the face-mask images and on scikit-learn's digits, one run per seed.

    The face-mask split is the book's fixed split (``dlbook.data``); the seed changes
    initialisation and minibatch order. The digits split also changes with the seed.

    Returns
    -------
    runs : DataFrame, one row per (dataset, model, seed)
    summary : the chapter's result keys: face-mask ``ann_test_accuracy``,
        ``cnn_test_accuracy``, ``cnn_minus_ann_points`` with ``_ci_low`` / ``_ci_high``, the same
        with a ``_digits`` suffix, and ``seeds``.
    """
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds is empty; give at least one seed")
    face = face_mask_split(data_dir, image_size, color_mode, limit)
    face_runs = ann_vs_cnn(*face, seeds=seeds, epochs=face_mask_epochs, batch_size=batch_size)
    digit_runs = pd.concat(
        [
            ann_vs_cnn(
                *digits_split(seed), seeds=[seed], epochs=digits_epochs, batch_size=batch_size
            )
            for seed in seeds
        ],
        ignore_index=True,
    )
    summary = summarize_ann_vs_cnn(face_runs)
    summary.update(
        {f"{key}_digits": value for key, value in summarize_ann_vs_cnn(digit_runs).items()}
    )
    summary["seeds"] = len(seeds)
    summary["face_mask_train_images"] = len(face[1])
    summary["face_mask_test_images"] = len(face[3])
    runs = pd.concat(
        [face_runs.assign(dataset="face-mask"), digit_runs.assign(dataset="digits")],
        ignore_index=True,
    )
    return runs, summary
