"""Losses and weight penalties, each returning ``(value, gradient)``.

Losses are means over the batch; the gradient is with respect to the first argument (logits or
predictions). Penalties take a list of weight arrays and return one gradient per array.
"""

from __future__ import annotations

import numpy as np


def _check_batch(name: str, a: np.ndarray, b: np.ndarray, same_size: bool = False) -> None:
    if a.shape[0] != b.shape[0] or (same_size and a.size != b.size):
        raise ValueError(
            f"{name}: predictions of shape {tuple(a.shape)} and targets of shape "
            f"{tuple(b.shape)} have different batch sizes or sizes"
        )


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """``logits - logsumexp(logits)`` along the last axis, stable for any logit size."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray):
    """Mean cross-entropy of softmax(logits) against integer labels.

    Parameters
    ----------
    logits : ndarray, shape (N, K), float
    labels : ndarray, shape (N,), int in [0, K)

    Returns
    -------
    loss : float; dlogits : ndarray (N, K), ``(softmax(logits) - onehot(labels)) / N``
    """
    labels = np.asarray(labels)
    if logits.ndim != 2:
        raise ValueError(f"softmax_cross_entropy: logits must be (N, K), got {tuple(logits.shape)}")
    _check_batch("softmax_cross_entropy", logits, labels)
    if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise ValueError(
            f"softmax_cross_entropy: labels must lie in [0, {logits.shape[1]}), "
            f"got values from {labels.min()} to {labels.max()}"
        )
    n = logits.shape[0]
    log_p = log_softmax(logits)
    loss = -log_p[np.arange(n), labels].mean()
    dlogits = np.exp(log_p)
    dlogits[np.arange(n), labels] -= 1
    return float(loss), dlogits / n


def binary_cross_entropy(logits: np.ndarray, targets: np.ndarray):
    """Mean binary cross-entropy of sigmoid(logits) against 0/1 targets, computed from logits.

    ``log(1 + exp(-|z|))`` keeps it finite for any logit.

    Parameters
    ----------
    logits : ndarray, shape (N,) or (N, 1), float
    targets : ndarray, same shape, values in [0, 1]

    Returns
    -------
    loss : float; dlogits : ndarray like ``logits``, ``(sigmoid(z) - t) / N``
    """
    targets = np.asarray(targets, dtype=logits.dtype)
    _check_batch("binary_cross_entropy", logits, targets, same_size=True)
    targets = targets.reshape(logits.shape)
    n = logits.shape[0]
    loss = np.maximum(logits, 0) - logits * targets + np.log1p(np.exp(-np.abs(logits)))
    e = np.exp(-np.abs(logits))
    prob = np.where(logits >= 0, 1 / (1 + e), e / (1 + e))
    return float(loss.sum() / n), (prob - targets) / n


def mse(predictions: np.ndarray, targets: np.ndarray):
    """Mean (over the batch) of the summed squared error per example.

    Returns
    -------
    loss : float; dpredictions : ndarray like ``predictions``, ``2 (y_hat - y) / N``
    """
    targets = np.asarray(targets, dtype=predictions.dtype)
    _check_batch("mse", predictions, targets, same_size=True)
    targets = targets.reshape(predictions.shape)
    diff = predictions - targets
    n = predictions.shape[0]
    return float((diff**2).sum() / n), 2 * diff / n


def l2_penalty(weights: list[np.ndarray], strength: float):
    """``strength * sum(w**2)`` over all arrays; gradient ``2 * strength * w``."""
    value = strength * sum(float((w**2).sum()) for w in weights)
    return value, [2 * strength * w for w in weights]


def l1_penalty(weights: list[np.ndarray], strength: float):
    """``strength * sum(|w|)`` over all arrays; (sub)gradient ``strength * sign(w)``."""
    value = strength * sum(float(np.abs(w).sum()) for w in weights)
    return value, [strength * np.sign(w) for w in weights]


LOSSES = {
    "softmax_cross_entropy": softmax_cross_entropy,
    "binary_cross_entropy": binary_cross_entropy,
    "mse": mse,
}
