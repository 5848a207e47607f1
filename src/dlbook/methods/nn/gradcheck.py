"""Gradient checking: every analytic gradient against centred finite differences, in float64.

For a layer ``out = f(x, params)`` the check draws a random upstream gradient ``g`` and compares
``backward(g)`` with the numerical gradient of the scalar ``sum(f(...) * g)``, element by element:
``(s(a + eps) - s(a - eps)) / (2 eps)``. The error of one array is the relative error
``||analytic - numeric|| / (||analytic|| + ||numeric||)`` (2-norms), which stays meaningful when
single entries are near zero; a layer's error is the largest over its input and parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dlbook.methods.nn import layers as L
from dlbook.methods.nn import losses

TARGET = 1e-7
"""Largest relative error a correct gradient may show in float64 (a correct one gives about
1e-10, a wrong one 1e-2 or more)."""


def numeric_gradient(scalar: Callable[[], float], array: np.ndarray, eps: float = 1e-5):
    """Centred finite-difference gradient of ``scalar()`` with respect to ``array``.

    ``array`` is perturbed in place, one entry at a time, and restored.
    """
    grad = np.zeros_like(array, dtype=np.float64)
    flat, gflat = array.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        plus = scalar()
        flat[i] = original - eps
        minus = scalar()
        flat[i] = original
        gflat[i] = (plus - minus) / (2 * eps)
    return grad


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """``||a - n|| / (||a|| + ||n||)``; 0 when both are exactly zero."""
    denom = np.linalg.norm(analytic) + np.linalg.norm(numeric)
    return 0.0 if denom == 0 else float(np.linalg.norm(analytic - numeric) / denom)


def check_layer(forward: Callable, backward: Callable, x: np.ndarray, params: dict, rng):
    """Relative error of ``backward`` for ``forward(x, params) -> (out, cache)``.

    Returns
    -------
    dict: array name ("x" or a parameter name) -> relative error
    """
    out, cache = forward(x, params)
    upstream = rng.standard_normal(out.shape)
    dx, grads = backward(upstream, cache)

    def scalar():
        return float((forward(x, params)[0] * upstream).sum())

    errors = {"x": relative_error(dx, numeric_gradient(scalar, x))}
    for key, value in params.items():
        errors[key] = relative_error(grads[key], numeric_gradient(scalar, value))
    return errors


def check_loss(loss: Callable, prediction: np.ndarray, target: np.ndarray) -> dict:
    """Relative error of the gradient a loss returns, with respect to its first argument."""
    _, grad = loss(prediction, target)
    numeric = numeric_gradient(lambda: loss(prediction, target)[0], prediction)
    return {"prediction": relative_error(grad, numeric)}


def check_penalty(penalty: Callable, weights: list[np.ndarray], strength: float) -> dict:
    _, grads = penalty(weights, strength)
    return {
        f"w{i}": relative_error(g, numeric_gradient(lambda: penalty(weights, strength)[0], w))
        for i, (w, g) in enumerate(zip(weights, grads))
    }


def _away_from_zero(a: np.ndarray, margin: float = 1e-3) -> np.ndarray:
    """Push entries off the kink at 0 so finite differences never straddle it."""
    return np.where(np.abs(a) < margin, np.sign(a + 1e-12) * margin, a)


def gradient_check_table(seed: int = 0) -> list[dict]:
    """Check every layer, activation, loss and penalty in ``dlbook.methods.nn`` on small float64 inputs.

    Returns
    -------
    list of {"check": name, "arrays": the arrays checked, "max_rel_error": float}
    """
    rng = np.random.default_rng(seed)

    def randn(*shape):
        return rng.standard_normal(shape)

    image = randn(2, 6, 6, 3)
    conv_params = {"W": randn(3, 3, 3, 4) * 0.3, "b": randn(4)}
    bn_params = {"gamma": 1 + 0.1 * randn(5), "beta": randn(5)}
    bn_running = {"mean": randn(5), "var": 0.5 + rng.random(5)}
    dropout_seed = int(rng.integers(1 << 31))

    def dropout(x, _params):
        return L.dropout_forward(x, 0.4, True, np.random.default_rng(dropout_seed))

    def batchnorm(training):
        def forward(x, params):
            out, cache, _ = L.batchnorm_forward(x, params, bn_running, training)
            return out, cache

        return forward

    def activation(name):
        return lambda x, _params: L.ACTIVATIONS[name][0](x)

    layer_checks = {
        "dense": (
            L.dense_forward,
            L.dense_backward,
            randn(4, 5),
            {"W": randn(5, 3), "b": randn(3)},
        ),
        "conv2d (stride 1, same)": (
            lambda x, p: L.conv2d_forward(x, p, 1, "same"),
            L.conv2d_backward,
            image.copy(),
            {k: v.copy() for k, v in conv_params.items()},
        ),
        "conv2d (stride 2, pad 1)": (
            lambda x, p: L.conv2d_forward(x, p, 2, 1),
            L.conv2d_backward,
            image.copy(),
            {k: v.copy() for k, v in conv_params.items()},
        ),
        "maxpool 2x2": (
            lambda x, _p: L.maxpool_forward(x, 2),
            L.maxpool_backward,
            randn(2, 6, 6, 3),
            {},
        ),
        "maxpool 3x3 stride 2": (
            lambda x, _p: L.maxpool_forward(x, 3, 2),
            L.maxpool_backward,
            randn(2, 7, 7, 2),
            {},
        ),
        "flatten": (lambda x, _p: L.flatten_forward(x), L.flatten_backward, randn(2, 3, 3, 2), {}),
        "dropout (train)": (dropout, L.dropout_backward, randn(4, 6), {}),
        "batchnorm (train, dense)": (batchnorm(True), L.batchnorm_backward, randn(6, 5), bn_params),
        "batchnorm (train, conv)": (
            batchnorm(True),
            L.batchnorm_backward,
            randn(2, 3, 3, 5),
            {k: v.copy() for k, v in bn_params.items()},
        ),
        "batchnorm (inference)": (
            batchnorm(False),
            L.batchnorm_backward,
            randn(6, 5),
            {k: v.copy() for k, v in bn_params.items()},
        ),
        "relu": (activation("relu"), L.relu_backward, _away_from_zero(randn(4, 6)), {}),
        "leaky_relu": (
            activation("leaky_relu"),
            L.leaky_relu_backward,
            _away_from_zero(randn(4, 6)),
            {},
        ),
        "sigmoid": (activation("sigmoid"), L.sigmoid_backward, randn(4, 6), {}),
        "tanh": (activation("tanh"), L.tanh_backward, randn(4, 6), {}),
        "softmax": (activation("softmax"), L.softmax_backward, randn(4, 6), {}),
    }
    rows = []
    for name, (forward, backward, x, params) in layer_checks.items():
        errors = check_layer(forward, backward, x, params, rng)
        rows.append(
            {"check": name, "arrays": ", ".join(errors), "max_rel_error": max(errors.values())}
        )

    loss_checks = {
        "softmax cross-entropy": (losses.softmax_cross_entropy, randn(5, 4), rng.integers(0, 4, 5)),
        "binary cross-entropy": (
            losses.binary_cross_entropy,
            randn(5, 1),
            rng.integers(0, 2, (5, 1)).astype(float),
        ),
        "mse": (losses.mse, randn(5, 3), randn(5, 3)),
    }
    for name, (loss, prediction, target) in loss_checks.items():
        errors = check_loss(loss, prediction, target)
        rows.append({"check": name, "arrays": "prediction", "max_rel_error": max(errors.values())})
    for name, penalty, weights in (
        ("L2 penalty", losses.l2_penalty, [randn(3, 4), randn(2, 2, 1, 3)]),
        ("L1 penalty", losses.l1_penalty, [_away_from_zero(randn(3, 4))]),
    ):
        errors = check_penalty(penalty, weights, 0.1)
        rows.append(
            {"check": name, "arrays": ", ".join(errors), "max_rel_error": max(errors.values())}
        )
    return rows


def check_model(model, x: np.ndarray, y: np.ndarray, dropout_seed: int | None = None) -> float:
    """Largest relative error over every parameter of a built ``Sequential`` (float64), penalties
    included.

    The loss must be a deterministic function of the parameters: with dropout layers, pass
    ``dropout_seed`` and every evaluation draws the same masks from a fresh generator.
    """

    def rng():
        return None if dropout_seed is None else np.random.default_rng(dropout_seed)

    _, grads = model.loss_and_grads(x, y, training=True, rng=rng())
    worst = 0.0
    for layer, g in zip(model.layers, grads):
        for key, param in layer.params.items():
            numeric = numeric_gradient(
                lambda: model.loss_and_grads(x, y, training=True, rng=rng())[0], param
            )
            worst = max(worst, relative_error(g[key], numeric))
    return worst
