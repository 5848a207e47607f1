"""The top of a backbone, fine-tuned in NumPy: its last convolution, pooling and a softmax head.

EfficientNet-Lite ends with ``head_conv`` (a 1x1 convolution, batch norm folded into its bias),
``head_relu6``, global average pooling; the book's heads read the pooled vector. Cut the backbone
at ``head_conv``'s input (``cut_before_head``) and cache those maps once per image; the top that
is left,

    maps (N, h, w, c) -> 1x1 conv (c -> F) + bias -> ReLU6 -> mean over h, w -> dense (F -> C),

has no input gradient to compute, so an epoch over the maps costs a few matrix products. With
the backbone's own ``head_conv`` weights (``backbone_top``) the pooled vector equals the
backbone's output. It runs in NumPy so Flower's simulated clients need no TensorFlow.

Parameters are the list ``[conv (c, F), conv_bias (F,), dense (F, C), dense_bias (C,)]``,
float32, the form Flower's ``ArrayRecord`` carries.
"""

from __future__ import annotations

import numpy as np

from dlbook.methods import optim

HEAD_LAYER = "head_conv"
"""The EfficientNet-Lite layer the top starts at (its input is what is cached)."""
RELU_CAP = 6.0
BATCH_ROWS = 64
"""Images per forward pass when only predicting (bounds the (B * h * w, F) activations)."""


def cut_before_head(backbone, layer: str = HEAD_LAYER):
    """A Keras model from the backbone's images to ``layer``'s input maps (N, h, w, c)."""
    import keras

    return keras.Model(backbone.input, backbone.get_layer(layer).input, name="below_head")


def backbone_top(backbone, layer: str = HEAD_LAYER) -> tuple[np.ndarray, np.ndarray]:
    """``layer``'s kernel as (c, F) and bias (F,), float32 (a 1x1 convolution with a bias)."""
    kernel, bias = backbone.get_layer(layer).get_weights()
    if kernel.shape[:2] != (1, 1):
        raise ValueError(f"{layer} has kernel {kernel.shape}; expected a 1x1 convolution")
    return kernel[0, 0].astype(np.float32), bias.astype(np.float32)


def init_top(
    conv: tuple[np.ndarray, np.ndarray], n_classes: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """The backbone's convolution (copied) and a dense head drawn from ``rng``.

    The dense weights are Glorot-uniform, so every seed starts from its own head.
    """
    kernel, bias = (np.array(a, dtype=np.float32) for a in conv)
    fan_in = kernel.shape[1]
    limit = np.sqrt(6.0 / (fan_in + n_classes))
    dense = rng.uniform(-limit, limit, (fan_in, n_classes)).astype(np.float32)
    return [kernel, bias, dense, np.zeros(n_classes, np.float32)]


def _conv_relu(params, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pre-activations (B * P, F) and pooled features (B, F) of maps (B, h, w, c)."""
    kernel, bias = params[0], params[1]
    rows = maps.reshape(-1, maps.shape[-1]).astype(np.float32, copy=False)
    pre = rows @ kernel + bias
    pooled = np.clip(pre, 0.0, RELU_CAP).reshape(len(maps), -1, kernel.shape[1]).mean(1)
    return pre, pooled


def pooled_features(params, maps: np.ndarray) -> np.ndarray:
    """The pooled vector (N, F) of maps (N, h, w, c): the backbone's output with its own conv."""
    if len(maps) == 0:
        return np.zeros((0, params[0].shape[1]), np.float32)
    return np.concatenate(
        [_conv_relu(params, maps[i : i + BATCH_ROWS])[1] for i in range(0, len(maps), BATCH_ROWS)]
    )


def top_logits(params, maps: np.ndarray) -> np.ndarray:
    """Logits (N, C) of maps (N, h, w, c)."""
    return pooled_features(params, maps) @ params[2] + params[3]


def top_accuracy(params, maps: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of ``maps`` whose arg-max logit is the label (NaN when there are none)."""
    if len(labels) == 0:
        return float("nan")
    return float((top_logits(params, maps).argmax(1) == labels).mean())


def top_gradients(params, maps: np.ndarray, labels: np.ndarray, l2: float) -> list[np.ndarray]:
    """Gradients of the mean softmax cross-entropy (+ ``l2 / 2 * ||dense||^2``) on one batch.

    maps : ndarray, shape (B, h, w, c); labels : ndarray, shape (B,), int.
    """
    kernel, _, dense, _ = params
    pre, pooled = _conv_relu(params, maps)
    logits = pooled @ dense + params[3]
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    probs[np.arange(len(labels)), labels] -= 1.0
    probs /= len(labels)
    positions = pre.shape[0] // len(labels)
    d_pooled = probs @ dense.T / positions  # each position's share of the mean
    # ReLU6 passes the gradient where 0 < pre < 6; reuse ``pre``'s memory for it
    d_pre = np.logical_and(pre > 0, pre < RELU_CAP, out=np.empty(pre.shape, bool))
    d_pre = np.multiply(d_pre.reshape(len(labels), positions, -1), d_pooled[:, None, :],
                        out=pre.reshape(len(labels), positions, -1)).reshape(pre.shape)  # fmt: skip
    rows = maps.reshape(-1, maps.shape[-1]).astype(np.float32, copy=False)
    return [rows.T @ d_pre, d_pre.sum(0), pooled.T @ probs + l2 * dense, probs.sum(0)]


def train_top(
    params: list[np.ndarray],
    maps: np.ndarray,
    labels: np.ndarray,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    rng: np.random.Generator,
    proximal_mu: float = 0.0,
    momentum: float = 0.9,
    l2: float = 1e-4,
) -> list[np.ndarray]:
    """Minibatch SGD with momentum on the top, from ``params`` (not modified).

    With ``proximal_mu`` > 0 every parameter's gradient gains FedProx's ``mu (w - w_start)``.
    ``rng`` orders the minibatches.

    Parameters
    ----------
    maps : ndarray, shape (N, h, w, c), float16 or float32
    labels : ndarray, shape (N,), int
    """
    start = [np.array(p, dtype=np.float32) for p in params]
    current = [p.copy() for p in start]
    maps = np.asarray(maps, dtype=np.float32)  # once, not per batch: float16 products are slow
    n = len(labels)
    if n == 0:
        return current
    optimizer = optim.SGD(learning_rate, momentum=momentum)
    for _ in range(epochs):
        order = rng.permutation(n)
        for begin in range(0, n, batch_size):
            rows = np.sort(order[begin : begin + batch_size])
            grads = top_gradients(current, maps[rows], labels[rows], l2)
            if proximal_mu:
                grads = [
                    g + proximal_mu * (c - s) for g, c, s in zip(grads, current, start, strict=True)
                ]
            optimizer.step(current, [g.astype(np.float32) for g in grads])
    return current
