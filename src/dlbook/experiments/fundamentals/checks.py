"""Chapter 1, sections 1-2: a worked forward and backward pass, every gradient check, and the
NumPy network against its TensorFlow twin."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dlbook.book import present
from dlbook.book.context import Run
from dlbook.methods import nn
from dlbook.methods.nn import gradcheck, losses
from dlbook.methods.nn import layers as L
from dlbook.methods.nn.keras_twin import keras_equivalent

CROSSCHECK_TARGET = 1e-4
"""Largest absolute difference from TensorFlow the cross-check may show."""


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
    model = nn.Sequential(
        [
            nn.BatchNorm(),
            nn.Conv2D(3, 3, padding="same"),
            nn.Activation("leaky_relu"),
            nn.MaxPool2D(2),
            nn.Flatten(),
            nn.Dense(5),
            nn.Activation("sigmoid"),
            nn.Dense(3),
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
    model = nn.Sequential(
        [
            nn.Conv2D(4, 3, padding="same"),
            nn.BatchNorm(),
            nn.Activation("relu"),
            nn.MaxPool2D(2),
            nn.Conv2D(6, 3, stride=2, padding="valid"),
            nn.Activation("tanh"),
            nn.Flatten(),
            nn.Dense(8),
            nn.Activation("sigmoid"),
            nn.Dense(3),
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


# -- the sections ----------------------------------------------------------------------------


def worked_pass(run: Run) -> dict:
    """Section 1: the arrays of one forward and backward pass (``arrays``) and their text."""
    arrays = worked_example(run.seed)
    return {"arrays": arrays, "text": describe_arrays(arrays)}


def gradients(run: Run) -> dict:
    """Sections 1-2: the gradient checks and the TensorFlow cross-check; saves their maxima."""
    checks = gradient_checks(run.seed)
    cross = tf_crosscheck(run.seed)
    values = {
        "gradcheck_max_rel_error": float(checks["max_rel_error"].max()),
        "gradcheck_count": len(checks),
        "tf_crosscheck_max_abs_diff": cross["max_abs_diff"],
        "tf_crosscheck_output_max_abs_diff": cross["output_max_abs_diff"],
        "tf_crosscheck_gradient_max_abs_diff": cross["gradient_max_abs_diff"],
    }
    run.save(values)
    return {"checks": checks, "crosscheck": cross["table"], "values": values}


def check_table(result: dict) -> pd.DataFrame:
    """The gradient checks with short column names, for the page."""
    return result["checks"].rename(columns={"max_rel_error": "relative error"})


def crosscheck_table(result: dict) -> pd.DataFrame:
    """The TensorFlow cross-check, shapes written as ``5 x 3``, for the page."""
    table = result["crosscheck"].copy()
    table["shape"] = [" x ".join(map(str, shape)) or "scalar" for shape in table["shape"]]
    return table.rename(columns={"max_abs_diff": "max abs difference"})


def story_gradients(result: dict) -> str:
    """The gradient checks and the TensorFlow cross-check, against their targets."""
    v = result["values"]
    grad_ok = v["gradcheck_max_rel_error"] < gradcheck.TARGET
    tf_ok = v["tf_crosscheck_max_abs_diff"] < CROSSCHECK_TARGET
    return (
        f"The largest gradient-check error over {v['gradcheck_count']} checks is "
        f"**{present.number(v['gradcheck_max_rel_error'], 2)}** (target below 1e-7: "
        f"{'met' if grad_ok else 'missed'}). Against TensorFlow, outputs differ by at most "
        f"**{present.number(v['tf_crosscheck_output_max_abs_diff'], 2)}** and gradients by at most "
        f"**{present.number(v['tf_crosscheck_gradient_max_abs_diff'], 2)}** (target below 1e-4: "
        f"{'met' if tf_ok else 'missed'})"
        + (": the NumPy network computes what Keras computes." if grad_ok and tf_ok else ".")
    )
