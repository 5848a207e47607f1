"""Layers as ``forward`` / ``backward`` pairs with an explicit cache, NumPy only.

Every layer is two functions that sit together:

- ``<layer>_forward(x, ...) -> (out, cache)`` computes the output and keeps, in ``cache``, what
  the backward pass needs;
- ``<layer>_backward(dout, cache) -> (dx, grads)`` turns the gradient of the loss with respect to
  ``out`` into the gradient with respect to ``x`` and a dict of parameter gradients (empty for
  layers without parameters), keyed like the layer's ``params``.

Images are channels-last, ``(N, H, W, C)``, as in Keras, and convolution kernels are
``(KH, KW, C_in, C_out)``, so weights copy between the two unchanged. Functions keep the dtype
they are given: float64 for gradient checks, float32 for training.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# ---------------------------------------------------------------------------------------------
# Shape checks shared by the layers


def _check_ndim(x: np.ndarray, ndim: int, name: str, meaning: str) -> None:
    if x.ndim != ndim:
        raise ValueError(
            f"layer {name!r} expects a {ndim}-d input {meaning}, got shape {tuple(x.shape)}"
        )


# ---------------------------------------------------------------------------------------------
# Dense


def dense_forward(x: np.ndarray, params: dict, name: str = "dense"):
    """Affine map ``x @ W + b``.

    Parameters
    ----------
    x : ndarray, shape (N, D), float
    params : {"W": ndarray (D, M), "b": ndarray (M,)}

    Returns
    -------
    out : ndarray, shape (N, M); cache : (x, W)
    """
    W, b = params["W"], params["b"]
    _check_ndim(x, 2, name, "(N, D)")
    if x.shape[1] != W.shape[0]:
        raise ValueError(
            f"layer {name!r} expects inputs with {W.shape[0]} features (W has shape "
            f"{tuple(W.shape)}), got input of shape {tuple(x.shape)}"
        )
    return x @ W + b, (x, W)


def dense_backward(dout: np.ndarray, cache):
    """Gradients of the affine map: ``dx = dout W^T``, ``dW = x^T dout``, ``db = sum(dout)``."""
    x, W = cache
    return dout @ W.T, {"W": x.T @ dout, "b": dout.sum(axis=0)}


# ---------------------------------------------------------------------------------------------
# Convolution (im2col)


def conv_padding(size: int, kernel: int, stride: int, padding) -> tuple[int, int, int]:
    """Return ``(pad_before, pad_after, out_size)`` along one spatial axis.

    ``padding`` is "valid" (none), "same" (Keras's rule: output ``ceil(size / stride)``, the odd
    pixel of padding after), or a non-negative int padded on both sides.
    """
    if padding == "valid":
        before = after = 0
    elif padding == "same":
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        before, after = total // 2, total - total // 2
    elif isinstance(padding, (int, np.integer)) and padding >= 0:
        before = after = int(padding)
    else:
        raise ValueError(f"padding={padding!r} is not accepted; use 'valid', 'same' or an int >= 0")
    out = (size + before + after - kernel) // stride + 1
    if out < 1:
        raise ValueError(
            f"a kernel of {kernel} with stride {stride} and padding {padding!r} does not fit "
            f"an input of size {size}"
        )
    return before, after, out


def im2col(x: np.ndarray, kernel: tuple[int, int], stride: int):
    """Every kernel-sized window of ``x`` as one row.

    Parameters
    ----------
    x : ndarray, shape (N, H, W, C), already padded
    kernel : (KH, KW)
    stride : step between windows on both axes

    Returns
    -------
    cols : ndarray, shape (N * H_out * W_out, KH * KW * C), a copy; columns ordered (KH, KW, C)
        so that channels stay contiguous and the kernel ``(KH, KW, C, C_out)`` reshapes to the
        weight matrix without a transpose
    out_hw : (H_out, W_out)
    """
    windows = sliding_window_view(x, kernel, axis=(1, 2))[:, ::stride, ::stride]
    n, h_out, w_out = windows.shape[:3]
    cols = windows.transpose(0, 1, 2, 4, 5, 3).reshape(n * h_out * w_out, -1)
    return cols, (h_out, w_out)


def col2im(dcols: np.ndarray, padded_shape, kernel: tuple[int, int], stride: int) -> np.ndarray:
    """Adjoint of ``im2col``: add every window's gradient back onto the padded input.

    ``dcols`` has shape (N, H_out, W_out, KH, KW, C); the loop runs over the KH * KW kernel
    offsets only, each step a vectorised strided add.
    """
    dx = np.zeros(padded_shape, dtype=dcols.dtype)
    _, h_out, w_out = dcols.shape[:3]
    kh, kw = kernel
    for i in range(kh):
        for j in range(kw):
            dx[:, i : i + stride * h_out : stride, j : j + stride * w_out : stride, :] += dcols[
                :, :, :, i, j, :
            ]
    return dx


def conv2d_forward(
    x: np.ndarray, params: dict, stride: int = 1, padding="valid", name: str = "conv2d"
):
    """2-D convolution (cross-correlation, as in every framework) by im2col and one matmul.

    Parameters
    ----------
    x : ndarray, shape (N, H, W, C_in), float
    params : {"W": ndarray (KH, KW, C_in, C_out), "b": ndarray (C_out,)}
    stride : int >= 1
    padding : "valid", "same" or int (see ``conv_padding``)

    Returns
    -------
    out : ndarray, shape (N, H_out, W_out, C_out); cache for ``conv2d_backward``
    """
    W, b = params["W"], params["b"]
    _check_ndim(x, 4, name, "(N, H, W, C)")
    kh, kw, c_in, c_out = W.shape
    if x.shape[3] != c_in:
        raise ValueError(
            f"layer {name!r} expects {c_in} input channels (W has shape {tuple(W.shape)}), "
            f"got input of shape {tuple(x.shape)}"
        )
    if not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"stride={stride!r} must be an int >= 1")
    top, bottom, _ = conv_padding(x.shape[1], kh, stride, padding)
    left, right, _ = conv_padding(x.shape[2], kw, stride, padding)
    xp = (
        np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
        if top + bottom + left + right
        else x
    )
    cols, (h_out, w_out) = im2col(xp, (kh, kw), stride)
    w_mat = W.reshape(-1, c_out)
    out = cols @ w_mat
    out += b
    out = out.reshape(x.shape[0], h_out, w_out, c_out)
    cache = (cols, w_mat, W.shape, xp.shape, (top, bottom, left, right), stride)
    return out, cache


def conv2d_backward(dout: np.ndarray, cache, need_dx: bool = True):
    """Gradients of ``conv2d_forward``: ``dW`` and ``db`` by matmul, ``dx`` by ``col2im``.

    With ``need_dx=False`` (the network's first layer, whose input is data) ``dx`` is None and
    its cost is saved.
    """
    cols, w_mat, w_shape, padded_shape, (top, bottom, left, right), stride = cache
    kh, kw, c_in, c_out = w_shape
    n, h_out, w_out, _ = dout.shape
    dout_flat = dout.reshape(-1, c_out)
    dW = (cols.T @ dout_flat).reshape(w_shape)
    db = dout_flat.sum(axis=0)
    if not need_dx:
        return None, {"W": dW, "b": db}
    dcols = (dout_flat @ w_mat.T).reshape(n, h_out, w_out, kh, kw, c_in)
    dxp = col2im(dcols, padded_shape, (kh, kw), stride)
    dx = dxp[:, top : padded_shape[1] - bottom, left : padded_shape[2] - right, :]
    return dx, {"W": dW, "b": db}


# ---------------------------------------------------------------------------------------------
# Max-pooling, flatten


def _pool_views(x: np.ndarray, pool_size: int, stride: int, h_out: int, w_out: int):
    """The ``pool_size**2`` strided views of ``x``, one per offset in the window (no copies)."""
    return [
        x[:, i : i + stride * h_out : stride, j : j + stride * w_out : stride, :]
        for i in range(pool_size)
        for j in range(pool_size)
    ]


def maxpool_forward(x: np.ndarray, pool_size: int = 2, stride: int | None = None, name="maxpool"):
    """Max over ``pool_size`` x ``pool_size`` windows (no padding; Keras's "valid").

    The max is taken over ``pool_size**2`` strided views of ``x`` rather than over a copied
    window array, which keeps it memory-light and fast.

    Parameters
    ----------
    x : ndarray, shape (N, H, W, C)
    pool_size : window side
    stride : step between windows; defaults to ``pool_size``

    Returns
    -------
    out : ndarray, shape (N, H_out, W_out, C); cache: (x shape, offset of each window's first
    maximum as int8, pool size, stride)
    """
    _check_ndim(x, 4, name, "(N, H, W, C)")
    stride = pool_size if stride is None else stride
    if x.shape[1] < pool_size or x.shape[2] < pool_size:
        raise ValueError(
            f"layer {name!r} pools {pool_size}x{pool_size} windows, which do not fit an input "
            f"of shape {tuple(x.shape)}"
        )
    h_out = (x.shape[1] - pool_size) // stride + 1
    w_out = (x.shape[2] - pool_size) // stride + 1
    views = _pool_views(x, pool_size, stride, h_out, w_out)
    out = views[0].copy()
    for view in views[1:]:
        np.maximum(out, view, out=out)
    # The first offset holding the maximum gets the gradient, as with argmax.
    arg = np.full(out.shape, len(views) - 1, dtype=np.int8)
    for k in range(len(views) - 2, -1, -1):
        arg = np.where(views[k] == out, np.int8(k), arg)
    return out, (x.shape, arg, pool_size, stride)


def maxpool_backward(dout: np.ndarray, cache):
    """Route each window's gradient to the position of its maximum (the first one on ties)."""
    x_shape, arg, pool_size, stride = cache
    dx = np.zeros(x_shape, dtype=dout.dtype)
    _, h_out, w_out, _ = dout.shape
    for k, view in enumerate(_pool_views(dx, pool_size, stride, h_out, w_out)):
        if stride >= pool_size:  # windows do not overlap: write straight into dx
            np.multiply(dout, arg == k, out=view)
        else:
            view += np.where(arg == k, dout, 0)
    return dx, {}


def flatten_forward(x: np.ndarray):
    """``(N, ...) -> (N, prod(...))`` in row-major (H, W, C) order, like Keras's Flatten."""
    return x.reshape(x.shape[0], -1), x.shape


def flatten_backward(dout: np.ndarray, cache):
    return dout.reshape(cache), {}


# ---------------------------------------------------------------------------------------------
# Dropout and batch normalisation


def dropout_forward(x: np.ndarray, rate: float, training: bool, rng: np.random.Generator):
    """Inverted dropout: at train time zero each unit with probability ``rate`` and scale the
    survivors by ``1 / (1 - rate)`` so the expected activation is unchanged; at inference the
    identity.

    Returns
    -------
    out : ndarray, same shape as ``x``; cache : the scaled mask (None at inference)
    """
    if not 0 <= rate < 1:
        raise ValueError(f"rate={rate!r} must lie in [0, 1)")
    if not training or rate == 0:
        return x, None
    mask = (rng.random(x.shape) >= rate).astype(x.dtype) / x.dtype.type(1 - rate)
    return x * mask, mask


def dropout_backward(dout: np.ndarray, cache):
    return (dout if cache is None else dout * cache), {}


def batchnorm_forward(
    x: np.ndarray,
    params: dict,
    running: dict,
    training: bool,
    momentum: float = 0.99,
    eps: float = 1e-3,
    name: str = "batchnorm",
):
    """Batch normalisation over every axis but the last (features or channels).

    At train time the batch's mean and (biased) variance normalise ``x`` and the running
    statistics move towards them: ``running = momentum * running + (1 - momentum) * batch``.
    At inference the running statistics are used instead. Defaults match Keras.

    Parameters
    ----------
    x : ndarray, shape (N, D) or (N, H, W, C)
    params : {"gamma": ndarray (D,), "beta": ndarray (D,)}
    running : {"mean": ndarray (D,), "var": ndarray (D,)}

    Returns
    -------
    out : ndarray, same shape as ``x``; cache; new_running : updated running statistics
    """
    gamma, beta = params["gamma"], params["beta"]
    if x.shape[-1] != gamma.shape[0]:
        raise ValueError(
            f"layer {name!r} normalises {gamma.shape[0]} features, got input of shape "
            f"{tuple(x.shape)}"
        )
    axes = tuple(range(x.ndim - 1))
    if training:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        new_running = {
            "mean": momentum * running["mean"] + (1 - momentum) * mean,
            "var": momentum * running["var"] + (1 - momentum) * var,
        }
    else:
        mean, var = running["mean"], running["var"]
        new_running = running
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - mean) * inv_std
    out = gamma * x_hat + beta
    return out, (x_hat, gamma, inv_std, training), new_running


def batchnorm_backward(dout: np.ndarray, cache):
    """Gradients of batch normalisation; at train time they flow through the batch statistics."""
    x_hat, gamma, inv_std, training = cache
    axes = tuple(range(dout.ndim - 1))
    grads = {"gamma": (dout * x_hat).sum(axis=axes), "beta": dout.sum(axis=axes)}
    dx_hat = dout * gamma
    if not training:
        return dx_hat * inv_std, grads
    m = dout.size // dout.shape[-1]
    dx = (inv_std / m) * (
        m * dx_hat - dx_hat.sum(axis=axes) - x_hat * (dx_hat * x_hat).sum(axis=axes)
    )
    return dx, grads


# ---------------------------------------------------------------------------------------------
# Activations


def relu_forward(x: np.ndarray):
    return np.maximum(x, 0), x


def relu_backward(dout: np.ndarray, cache):
    return dout * (cache > 0), {}


def leaky_relu_forward(x: np.ndarray, alpha: float = 0.01):
    """``x`` where positive, ``alpha * x`` elsewhere."""
    return np.where(x > 0, x, alpha * x), (x, alpha)


def leaky_relu_backward(dout: np.ndarray, cache):
    x, alpha = cache
    return np.where(x > 0, dout, alpha * dout), {}


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, stable for large ``|x|`` (no overflow in ``exp``)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_forward(x: np.ndarray):
    out = sigmoid(x)
    return out, out


def sigmoid_backward(dout: np.ndarray, cache):
    return dout * cache * (1 - cache), {}


def tanh_forward(x: np.ndarray):
    out = np.tanh(x)
    return out, out


def tanh_backward(dout: np.ndarray, cache):
    return dout * (1 - cache**2), {}


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, shifted by the row maximum so ``exp`` never overflows."""
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def softmax_forward(x: np.ndarray):
    out = softmax(x)
    return out, out


def softmax_backward(dout: np.ndarray, cache):
    """Jacobian-vector product of softmax: ``p * (dout - sum(dout * p))`` per row."""
    p = cache
    return p * (dout - (dout * p).sum(axis=-1, keepdims=True)), {}


ACTIVATIONS = {
    "relu": (relu_forward, relu_backward),
    "leaky_relu": (leaky_relu_forward, leaky_relu_backward),
    "sigmoid": (sigmoid_forward, sigmoid_backward),
    "tanh": (tanh_forward, tanh_backward),
    "softmax": (softmax_forward, softmax_backward),
}
"""Activation name -> (forward, backward)."""
