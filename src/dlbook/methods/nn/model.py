"""Layer objects over the forward/backward pairs, and a ``Sequential`` model with ``fit``.

A layer object holds its parameters (``params``, a dict of arrays) and any state (batch-norm's
running statistics); its ``forward(x, training, rng) -> (out, cache)`` and
``backward(dout, cache) -> (dx, grads)`` just call the functions in ``dlbook.methods.nn.layers``.
``Sequential`` chains layers, trains them by minibatch gradient descent with any optimiser of
``dlbook.methods.optim`` (SGD, momentum, Nesterov, RMSprop, Adagrad, Adam, AdamW) on a loss from
``dlbook.methods.nn.losses``, optionally with L1 / L2 penalties on the kernels, and predicts like a
scikit-learn classifier.
"""

from __future__ import annotations

import copy
import time

import numpy as np

from dlbook.methods import optim
from dlbook.methods.nn import init as initializers
from dlbook.methods.nn import layers as L
from dlbook.methods.nn import losses


class Layer:
    """Base class: no parameters, shape-preserving."""

    kind = "layer"

    def __init__(self, name: str | None = None):
        self.name = name
        self.params: dict[str, np.ndarray] = {}

    def build(self, input_shape: tuple, rng: np.random.Generator, dtype) -> tuple:
        """Create parameters for inputs of shape ``(N,) + input_shape``; return the output shape."""
        return input_shape

    def forward(self, x, training: bool = False, rng: np.random.Generator | None = None):
        raise NotImplementedError

    def backward(self, dout, cache):
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Dense(Layer):
    kind = "dense"

    def __init__(self, units: int, initializer: str = "glorot_uniform", name=None):
        super().__init__(name)
        if units < 1:
            raise ValueError(f"units={units!r} must be at least 1")
        self.units, self.initializer = units, initializers.get(initializer)

    def build(self, input_shape, rng, dtype):
        if len(input_shape) != 1:
            raise ValueError(
                f"layer {self.name!r} expects flat inputs (N, D), got (N, *{input_shape}); "
                "put a Flatten layer before it"
            )
        self.params = {
            "W": self.initializer((input_shape[0], self.units), rng, dtype),
            "b": np.zeros(self.units, dtype=dtype),
        }
        return (self.units,)

    def forward(self, x, training=False, rng=None):
        return L.dense_forward(x, self.params, name=self.name)

    def backward(self, dout, cache):
        return L.dense_backward(dout, cache)


class Conv2D(Layer):
    kind = "conv2d"

    def __init__(
        self,
        filters: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding="valid",
        initializer: str = "glorot_uniform",
        name=None,
    ):
        super().__init__(name)
        if filters < 1 or kernel_size < 1:
            raise ValueError(f"filters={filters!r} and kernel_size={kernel_size!r} must be >= 1")
        self.filters, self.kernel_size, self.stride, self.padding = (
            filters,
            kernel_size,
            stride,
            padding,
        )
        self.initializer = initializers.get(initializer)

    def build(self, input_shape, rng, dtype):
        if len(input_shape) != 3:
            raise ValueError(
                f"layer {self.name!r} expects (N, H, W, C) inputs, got (N, *{input_shape})"
            )
        h, w, c = input_shape
        k = self.kernel_size
        self.params = {
            "W": self.initializer((k, k, c, self.filters), rng, dtype),
            "b": np.zeros(self.filters, dtype=dtype),
        }
        h_out = L.conv_padding(h, k, self.stride, self.padding)[2]
        w_out = L.conv_padding(w, k, self.stride, self.padding)[2]
        return (h_out, w_out, self.filters)

    def forward(self, x, training=False, rng=None):
        return L.conv2d_forward(x, self.params, self.stride, self.padding, name=self.name)

    def backward(self, dout, cache, need_dx=True):
        return L.conv2d_backward(dout, cache, need_dx)


class MaxPool2D(Layer):
    kind = "maxpool"

    def __init__(self, pool_size: int = 2, stride: int | None = None, name=None):
        super().__init__(name)
        self.pool_size, self.stride = pool_size, stride or pool_size

    def build(self, input_shape, rng, dtype):
        h, w, c = input_shape
        p, s = self.pool_size, self.stride
        return ((h - p) // s + 1, (w - p) // s + 1, c)

    def forward(self, x, training=False, rng=None):
        return L.maxpool_forward(x, self.pool_size, self.stride, name=self.name)

    def backward(self, dout, cache):
        return L.maxpool_backward(dout, cache)


class Flatten(Layer):
    kind = "flatten"

    def build(self, input_shape, rng, dtype):
        return (int(np.prod(input_shape)),)

    def forward(self, x, training=False, rng=None):
        return L.flatten_forward(x)

    def backward(self, dout, cache):
        return L.flatten_backward(dout, cache)


class Dropout(Layer):
    kind = "dropout"

    def __init__(self, rate: float, name=None):
        super().__init__(name)
        if not 0 <= rate < 1:
            raise ValueError(f"rate={rate!r} must lie in [0, 1)")
        self.rate = rate

    def forward(self, x, training=False, rng=None):
        if training and rng is None:
            raise ValueError(f"layer {self.name!r} needs an rng at train time")
        return L.dropout_forward(x, self.rate, training, rng)

    def backward(self, dout, cache):
        return L.dropout_backward(dout, cache)


class BatchNorm(Layer):
    kind = "batchnorm"

    def __init__(self, momentum: float = 0.99, eps: float = 1e-3, name=None):
        super().__init__(name)
        self.momentum, self.eps = momentum, eps
        self.running: dict[str, np.ndarray] = {}

    def build(self, input_shape, rng, dtype):
        d = input_shape[-1]
        self.params = {"gamma": np.ones(d, dtype=dtype), "beta": np.zeros(d, dtype=dtype)}
        self.running = {"mean": np.zeros(d, dtype=dtype), "var": np.ones(d, dtype=dtype)}
        return input_shape

    def forward(self, x, training=False, rng=None):
        out, cache, running = L.batchnorm_forward(
            x, self.params, self.running, training, self.momentum, self.eps, name=self.name
        )
        self.running = running
        return out, cache

    def backward(self, dout, cache):
        return L.batchnorm_backward(dout, cache)


class Activation(Layer):
    kind = "activation"

    def __init__(self, function: str, name=None):
        super().__init__(name)
        if function not in L.ACTIVATIONS:
            raise ValueError(f"function={function!r} is unknown; use one of {tuple(L.ACTIVATIONS)}")
        self.function = function
        self._forward, self._backward = L.ACTIVATIONS[function]

    def forward(self, x, training=False, rng=None):
        return self._forward(x)

    def backward(self, dout, cache):
        return self._backward(dout, cache)


# ---------------------------------------------------------------------------------------------
# Sequential


class Sequential:
    """A stack of layers trained by minibatch gradient descent, used like a scikit-learn classifier.

    Parameters
    ----------
    layers : list of Layer; the last one outputs logits (K units for
        ``softmax_cross_entropy``, 1 unit for ``binary_cross_entropy``).
    loss : "softmax_cross_entropy" or "binary_cross_entropy".
    optimizer : a name from ``dlbook.methods.optim.OPTIMIZERS`` ("sgd", "momentum", "nesterov",
        "rmsprop", "adagrad", "adam", "adamw"), built by ``optim.make_optimizer`` with the book's
        hyper-parameters, or an ``optim.Optimizer`` instance (then ``learning_rate`` is its own;
        its state is reset by each ``fit``).
    learning_rate, batch_size, epochs : training settings.
    l2 : L2 penalty ``l2 * sum(W**2)`` on dense and conv kernels (not biases or batch-norm).
    l1 : L1 penalty ``l1 * sum(|W|)`` on the same kernels.
    seed : fixes initialisation, minibatch order and dropout masks.
    dtype : float32 for training, float64 for checks.
    """

    def __init__(
        self,
        layers: list[Layer],
        loss: str = "softmax_cross_entropy",
        optimizer: str = "adam",
        learning_rate: float = 1e-3,
        batch_size: int = 64,
        epochs: int = 10,
        l2: float = 0.0,
        seed: int = 0,
        dtype=np.float32,
        l1: float = 0.0,
    ):
        if loss not in ("softmax_cross_entropy", "binary_cross_entropy"):
            raise ValueError(
                f"loss={loss!r} is not a classification loss; use 'softmax_cross_entropy' or "
                "'binary_cross_entropy'"
            )
        if not isinstance(optimizer, optim.Optimizer) and optimizer not in optim.OPTIMIZERS:
            raise ValueError(
                f"optimizer={optimizer!r} is unknown; use one of {optim.OPTIMIZERS} or an "
                "optim.Optimizer"
            )
        for name, value in (("l1", l1), ("l2", l2)):
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name}={value!r} is invalid; use a finite number >= 0")
        if batch_size < 1 or epochs < 0:
            raise ValueError(f"batch_size={batch_size!r} must be >= 1 and epochs={epochs!r} >= 0")
        self.layers = list(layers)
        counts: dict[str, int] = {}
        for layer in self.layers:
            counts[layer.kind] = counts.get(layer.kind, 0) + 1
            if layer.name is None:
                layer.name = f"{layer.kind}_{counts[layer.kind]}"
        self.loss, self.optimizer, self.learning_rate = loss, optimizer, learning_rate
        self.batch_size, self.epochs, self.seed, self.dtype = batch_size, epochs, seed, dtype
        self.l1, self.l2 = l1, l2
        self.input_shape_: tuple | None = None
        self.history_: list[dict] = []

    # -- building and passes -------------------------------------------------------------------

    def build(self, input_shape: tuple) -> Sequential:
        """Create every layer's parameters for inputs of shape ``(N,) + input_shape``."""
        rng = np.random.default_rng(self.seed)
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = layer.build(shape, rng, self.dtype)
        self.input_shape_ = tuple(input_shape)
        self.output_shape_ = shape
        return self

    def forward(self, x: np.ndarray, training: bool = False, rng=None):
        """Run every layer; return the logits and the list of caches."""
        caches = []
        for layer in self.layers:
            x, cache = layer.forward(x, training, rng)
            caches.append(cache)
        return x, caches

    def backward(self, dout: np.ndarray, caches: list, need_dx: bool = True):
        """Back-propagate ``dout`` (gradient w.r.t. the logits); return ``dx`` and one grads dict
        per layer. ``need_dx=False`` lets a first convolution skip the input gradient (training
        never needs it); ``dx`` may then be None."""
        grads = [None] * len(self.layers)
        for i in range(len(self.layers) - 1, -1, -1):
            if i == 0 and not need_dx and isinstance(self.layers[0], Conv2D):
                dout, grads[i] = self.layers[0].backward(dout, caches[0], need_dx=False)
            else:
                dout, grads[i] = self.layers[i].backward(dout, caches[i])
        return dout, grads

    def loss_and_grads(self, x, y, training: bool = True, rng=None):
        """Loss (with the L1 / L2 terms) on one batch and the gradients of every parameter."""
        logits, caches = self.forward(x, training, rng)
        loss, dlogits = losses.LOSSES[self.loss](logits, y)
        _, grads = self.backward(dlogits, caches, need_dx=False)
        penalties = ((losses.l1_penalty, self.l1), (losses.l2_penalty, self.l2))
        for layer, g in zip(self.layers, grads):
            if "W" not in layer.params:
                continue
            for penalty, strength in penalties:
                if strength:
                    value, (dw,) = penalty([layer.params["W"]], strength)
                    loss += value
                    g["W"] = g["W"] + dw
        return loss, grads

    def parameters(self) -> list[tuple[str, str, np.ndarray]]:
        """``(layer name, parameter name, array)`` for every parameter."""
        return [(layer.name, key, p) for layer in self.layers for key, p in layer.params.items()]

    # -- training and prediction ---------------------------------------------------------------

    def _prepare(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=self.dtype)
        if self.input_shape_ is not None and x.shape[1:] != self.input_shape_:
            raise ValueError(
                f"the model was built for inputs of shape (N, *{self.input_shape_}), "
                f"got {tuple(x.shape)}"
            )
        return x

    def make_optimizer(self) -> optim.Optimizer:
        """A fresh optimiser for ``fit``: ``optim.make_optimizer(name, learning_rate)``, or a
        reset copy of the instance given."""
        if isinstance(self.optimizer, optim.Optimizer):
            fresh = copy.deepcopy(self.optimizer)
            fresh.iterations, fresh.state = 0, None
            return fresh
        return optim.make_optimizer(self.optimizer, self.learning_rate)

    def train_step(self, x, y, optimizer: optim.Optimizer, rng) -> float:
        """One gradient step on a minibatch with ``optimizer.step(params, grads)``, every
        parameter array in layer order; returns the batch's loss."""
        loss, grads = self.loss_and_grads(x, y, training=True, rng=rng)
        params = [p for layer in self.layers for p in layer.params.values()]
        flat = [g[key] for layer, g in zip(self.layers, grads) for key in layer.params]
        optimizer.step(params, flat)
        return loss

    def fit(self, x, y, x_val=None, y_val=None, verbose: bool = False) -> Sequential:
        """Train for ``epochs`` passes over shuffled minibatches of ``(x, y)``.

        Parameters
        ----------
        x : ndarray, shape (N, ...) matching the first layer, float
        y : ndarray, shape (N,), int class labels
        x_val, y_val : optional data whose accuracy is recorded after each epoch

        ``history_`` gets one dict per epoch: loss, train accuracy, val accuracy, seconds.
        """
        x = np.asarray(x, dtype=self.dtype)
        y = np.asarray(y)
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)}; they must match")
        if self.input_shape_ is None:
            self.build(x.shape[1:])
        x = self._prepare(x)
        rng = np.random.default_rng(self.seed + 1)
        optimizer = self.make_optimizer()
        self.history_ = []
        for epoch in range(self.epochs):
            start = time.perf_counter()
            order = rng.permutation(len(x))
            total = 0.0
            for begin in range(0, len(x), self.batch_size):
                batch = order[begin : begin + self.batch_size]
                total += self.train_step(x[batch], y[batch], optimizer, rng) * len(batch)
            record = {
                "epoch": epoch + 1,
                "loss": total / len(x),
                "seconds": time.perf_counter() - start,
            }
            if x_val is not None:
                record["val_accuracy"] = self.score(x_val, y_val)
            self.history_.append(record)
            if verbose:
                print(record)
        return self

    def decision_function(self, x, batch_size: int = 512) -> np.ndarray:
        """Logits at inference, computed in batches."""
        x = self._prepare(x)
        return np.concatenate(
            [self.forward(x[i : i + batch_size])[0] for i in range(0, len(x), batch_size)]
        )

    def predict_proba(self, x) -> np.ndarray:
        """Class probabilities, shape (N, K), float."""
        logits = self.decision_function(x)
        if self.loss == "binary_cross_entropy":
            p = L.sigmoid(logits.reshape(-1))
            return np.stack([1 - p, p], axis=1)
        return L.softmax(logits)

    def predict(self, x) -> np.ndarray:
        """Most probable class, shape (N,), int64."""
        return self.predict_proba(x).argmax(axis=1).astype(np.int64)

    def score(self, x, y) -> float:
        """Accuracy of ``predict(x)`` against ``y``."""
        return float((self.predict(x) == np.asarray(y)).mean())
