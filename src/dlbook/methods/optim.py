"""Optimisers, learning-rate schedules and gradient clipping, written from their update equations.

Every optimiser is a small object over a list of parameter arrays and a list of gradient arrays of
the same shapes: ``optimizer.step(params, grads)`` updates the parameters in place, exactly as
``keras.optimizers.<Name>.apply_gradients`` does (the tests check this over many steps). Where
Keras's conventions differ from the textbook formula, the docstring says how:

- momentum is a *velocity of parameter steps* (``m = mu m - lr g``; ``p += m``), not a running
  average of gradients, so the learning rate sits inside the velocity;
- RMSprop and Adagrad put epsilon *inside* the square root (``g / sqrt(v + eps)``), Adam outside
  (``m / (sqrt(v) + eps)``), and Adam folds both bias corrections into the step size;
- AdamW shrinks the weights by ``lr * weight_decay`` *before* the Adam step, independently of
  the gradient (decoupled decay), which is not the same as adding an L2 penalty to the loss.

Schedules are pure functions of the step (vectorised over NumPy arrays of steps); clipping
functions take and return lists of arrays.
"""

from __future__ import annotations

import math

import numpy as np

# ---------------------------------------------------------------------------------------------
# Validation


def _check_learning_rate(learning_rate: float) -> float:
    if not np.isfinite(learning_rate) or learning_rate < 0:
        raise ValueError(f"learning_rate={learning_rate!r} is invalid; use a finite number >= 0")
    return float(learning_rate)


def _check_unit_interval(name: str, value: float) -> float:
    if not (0 <= value < 1):
        raise ValueError(f"{name}={value!r} is invalid; use a number in [0, 1)")
    return float(value)


def _check_positive(name: str, value: float, allow_zero: bool = False) -> float:
    ok = value >= 0 if allow_zero else value > 0
    if not (np.isfinite(value) and ok):
        accepted = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}={value!r} is invalid; use a finite number {accepted}")
    return float(value)


def _check_pairs(params: list, grads: list) -> None:
    if len(params) != len(grads):
        raise ValueError(
            f"params has {len(params)} arrays but grads has {len(grads)}; pass one gradient per "
            "parameter"
        )
    for index, (p, g) in enumerate(zip(params, grads, strict=True)):
        if np.shape(p) != np.shape(g):
            raise ValueError(
                f"grads[{index}] has shape {np.shape(g)} but params[{index}] has shape "
                f"{np.shape(p)}; they must match"
            )


# ---------------------------------------------------------------------------------------------
# Optimisers


class Optimizer:
    """Base class: holds the learning rate and the step count, and updates parameters in place.

    Subclasses implement ``_update(index, param, grad, lr, t)`` for one array, where ``t`` is the
    1-based step number, and may keep per-parameter state in ``self.state``.
    """

    def __init__(self, learning_rate: float):
        self.learning_rate = _check_learning_rate(learning_rate)
        self.iterations = 0
        self.state: list[dict] | None = None

    def step(self, params: list[np.ndarray], grads: list[np.ndarray], learning_rate=None) -> None:
        """Apply one update to every array in ``params`` (in place).

        Parameters
        ----------
        params : list of ndarray, floating dtype, any shapes; updated in place.
        grads : list of ndarray, the gradients of the loss, same shapes as ``params``.
        learning_rate : optional override for this step (what a schedule supplies).
        """
        _check_pairs(params, grads)
        lr = self.learning_rate if learning_rate is None else _check_learning_rate(learning_rate)
        if self.state is None:
            self.state = [self._init_state(np.asarray(p)) for p in params]
        self.iterations += 1
        self._before_update(params, lr)
        for index, (param, grad) in enumerate(zip(params, grads, strict=True)):
            self._update(index, param, np.asarray(grad, dtype=param.dtype), lr, self.iterations)

    def _init_state(self, param: np.ndarray) -> dict:
        return {}

    def _before_update(self, params: list[np.ndarray], lr: float) -> None:
        pass

    def _update(self, index, param, grad, lr, t) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum, as in ``keras.optimizers.SGD``.

    Without momentum: ``p <- p - lr g``. With momentum ``mu`` Keras keeps a velocity of steps
    ``m <- mu m - lr g`` and applies ``p <- p + m``; Nesterov looks ahead along the new velocity:
    ``p <- p + mu m - lr g``. (The textbook ``v <- mu v + g; p <- p - lr v`` is the same when the
    learning rate is constant, and differs when it changes, because Keras's velocity carries the
    old learning rates.)
    """

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False):
        super().__init__(learning_rate)
        self.momentum = _check_unit_interval("momentum", momentum)
        self.nesterov = bool(nesterov)

    def _init_state(self, param):
        return {"m": np.zeros_like(param)} if self.momentum > 0 else {}

    def _update(self, index, param, grad, lr, t):
        if self.momentum == 0:
            param -= lr * grad
            return
        m = self.state[index]["m"]
        m *= self.momentum
        m -= lr * grad
        if self.nesterov:
            param += self.momentum * m - lr * grad
        else:
            param += m


class RMSprop(Optimizer):
    """RMSprop as in ``keras.optimizers.RMSprop``: ``v <- rho v + (1 - rho) g^2``,
    ``p <- p - lr g / sqrt(v + eps)`` (epsilon inside the square root)."""

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.9, epsilon: float = 1e-7):
        super().__init__(learning_rate)
        self.rho = _check_unit_interval("rho", rho)
        self.epsilon = _check_positive("epsilon", epsilon)

    def _init_state(self, param):
        return {"v": np.zeros_like(param)}

    def _update(self, index, param, grad, lr, t):
        v = self.state[index]["v"]
        v[...] = self.rho * v + (1 - self.rho) * np.square(grad)
        param -= lr * grad / np.sqrt(v + self.epsilon)


class Adagrad(Optimizer):
    """Adagrad as in ``keras.optimizers.Adagrad``: ``a <- a + g^2`` (``a`` starts at
    ``initial_accumulator_value``), ``p <- p - lr g / sqrt(a + eps)``."""

    def __init__(
        self,
        learning_rate: float = 0.001,
        initial_accumulator_value: float = 0.1,
        epsilon: float = 1e-7,
    ):
        super().__init__(learning_rate)
        self.initial_accumulator_value = _check_positive(
            "initial_accumulator_value", initial_accumulator_value, allow_zero=True
        )
        self.epsilon = _check_positive("epsilon", epsilon)

    def _init_state(self, param):
        return {"a": np.full_like(param, self.initial_accumulator_value)}

    def _update(self, index, param, grad, lr, t):
        a = self.state[index]["a"]
        a += np.square(grad)
        param -= lr * grad / np.sqrt(a + self.epsilon)


class Adam(Optimizer):
    """Adam as in ``keras.optimizers.Adam``.

    ``m <- m + (1 - b1)(g - m)``, ``v <- v + (1 - b2)(g^2 - v)``, and with
    ``alpha = lr sqrt(1 - b2^t) / (1 - b1^t)``: ``p <- p - alpha m / (sqrt(v) + eps)``. This is the
    paper's "efficient" form: the bias corrections move into the step size, so epsilon is added to
    the *uncorrected* ``sqrt(v)`` and acts like ``eps / sqrt(1 - b2^t)`` in the textbook form.
    """

    def __init__(
        self,
        learning_rate: float = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
    ):
        super().__init__(learning_rate)
        self.beta_1 = _check_unit_interval("beta_1", beta_1)
        self.beta_2 = _check_unit_interval("beta_2", beta_2)
        self.epsilon = _check_positive("epsilon", epsilon)

    def _init_state(self, param):
        return {"m": np.zeros_like(param), "v": np.zeros_like(param)}

    def _update(self, index, param, grad, lr, t):
        m, v = self.state[index]["m"], self.state[index]["v"]
        alpha = lr * math.sqrt(1 - self.beta_2**t) / (1 - self.beta_1**t)
        m += (grad - m) * (1 - self.beta_1)
        v += (np.square(grad) - v) * (1 - self.beta_2)
        param -= m * alpha / (np.sqrt(v) + self.epsilon)


class AdamW(Adam):
    """Adam with decoupled weight decay, as in ``keras.optimizers.AdamW``.

    Before the Adam step every parameter shrinks by ``p <- p - lr * weight_decay * p``. The decay
    never enters ``m`` or ``v``, so it is not rescaled by Adam's per-coordinate step size, unlike
    an L2 penalty added to the loss (whose gradient ``weight_decay * p`` would be).
    """

    def __init__(
        self,
        learning_rate: float = 0.001,
        weight_decay: float = 0.004,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
    ):
        super().__init__(learning_rate, beta_1, beta_2, epsilon)
        self.weight_decay = _check_positive("weight_decay", weight_decay, allow_zero=True)

    def _before_update(self, params, lr):
        for param in params:
            param -= param * self.weight_decay * lr


def _f32(value: float) -> float:
    """``value`` rounded to float32: Keras turns some Python-float hyper-parameters (momentum,
    Adam's betas, the learning rate) into float32 tensors inside its formulas, so the book's
    settings are float32 numbers (0.9 is 0.899999976) and both sides use the same value."""
    return float(np.float32(value))


HYPERPARAMETERS = {
    "sgd": ("SGD", {}),
    "momentum": ("SGD", {"momentum": _f32(0.9)}),
    "nesterov": ("SGD", {"momentum": _f32(0.9), "nesterov": True}),
    "rmsprop": ("RMSprop", {"rho": _f32(0.9), "epsilon": _f32(1e-7)}),
    "adagrad": ("Adagrad", {"initial_accumulator_value": _f32(0.1), "epsilon": _f32(1e-7)}),
    "adam": ("Adam", {"beta_1": _f32(0.9), "beta_2": _f32(0.999), "epsilon": _f32(1e-7)}),
    "adamw": (
        "AdamW",
        {
            "weight_decay": _f32(0.004),
            "beta_1": _f32(0.9),
            "beta_2": _f32(0.999),
            "epsilon": _f32(1e-7),
        },
    ),
}
"""Name -> (class name, keyword arguments): the book's optimisers, the same for NumPy and Keras."""

OPTIMIZER_CLASSES = {
    "SGD": SGD,
    "RMSprop": RMSprop,
    "Adagrad": Adagrad,
    "Adam": Adam,
    "AdamW": AdamW,
}
OPTIMIZERS = tuple(HYPERPARAMETERS)


def _check_name(name: str) -> None:
    if name not in HYPERPARAMETERS:
        raise ValueError(f"name={name!r} is not an optimiser here; use one of {OPTIMIZERS}")


def make_optimizer(name: str, learning_rate: float) -> Optimizer:
    """Build a NumPy optimiser by name (one of ``OPTIMIZERS``) with the book's hyper-parameters."""
    _check_name(name)
    class_name, options = HYPERPARAMETERS[name]
    return OPTIMIZER_CLASSES[class_name](_f32(learning_rate), **options)


def make_keras_optimizer(name: str, learning_rate, **clipping):
    """The Keras counterpart of ``make_optimizer(name, learning_rate)``; ``clipping`` is passed
    through (``clipnorm``, ``clipvalue`` or ``global_clipnorm``). ``learning_rate`` may be a
    Keras schedule."""
    import keras

    _check_name(name)
    class_name, options = HYPERPARAMETERS[name]
    return getattr(keras.optimizers, class_name)(learning_rate, **options, **clipping)


def descend(
    optimizer: Optimizer, gradient, start, steps: int, clip_global_norm: float | None = None
) -> np.ndarray:
    """Follow ``optimizer`` from ``start`` for ``steps`` steps on a function with gradient ``gradient``.

    Parameters
    ----------
    gradient : callable, ndarray shape (D,) -> ndarray shape (D,).
    start : array-like, shape (D,).

    Returns
    -------
    path : ndarray, shape (steps + 1, D), float64; stops early (rows are NaN) if it diverges.
    """
    if steps < 1:
        raise ValueError(f"steps={steps!r} is invalid; use a positive integer")
    point = np.array(start, dtype=np.float64)
    path = np.full((steps + 1, point.size), np.nan)
    path[0] = point
    for index in range(1, steps + 1):
        grad = [np.asarray(gradient(point), dtype=np.float64)]
        if clip_global_norm is not None:
            grad = clip_by_global_norm(grad, clip_global_norm)
        optimizer.step([point], grad)
        if not np.all(np.isfinite(point)) or np.abs(point).max() > 1e6:
            break
        path[index] = point
    return path


# ---------------------------------------------------------------------------------------------
# Gradient clipping (Keras's definitions)


def clip_by_value(grads: list[np.ndarray], clip_value: float) -> list[np.ndarray]:
    """Each element clipped to ``[-clip_value, clip_value]`` (Keras ``clipvalue``)."""
    clip_value = _check_positive("clip_value", clip_value)
    return [np.clip(g, -clip_value, clip_value) for g in grads]


def clip_by_norm(grads: list[np.ndarray], clip_norm: float) -> list[np.ndarray]:
    """Each array rescaled so that its own L2 norm is at most ``clip_norm`` (Keras ``clipnorm``):
    ``g * clip_norm / max(||g||, clip_norm)``."""
    clip_norm = _check_positive("clip_norm", clip_norm)
    return [g * clip_norm / max(float(np.sqrt(np.sum(np.square(g)))), clip_norm) for g in grads]


def global_norm(grads: list[np.ndarray]) -> float:
    """L2 norm of all arrays together, as if concatenated."""
    return float(np.sqrt(sum(float(np.sum(np.square(g))) for g in grads)))


def clip_by_global_norm(grads: list[np.ndarray], clip_norm: float) -> list[np.ndarray]:
    """All arrays rescaled by one factor so that their global norm is at most ``clip_norm``
    (Keras ``global_clipnorm``); the direction of the whole gradient is kept."""
    clip_norm = _check_positive("clip_norm", clip_norm)
    norm = global_norm(grads)
    scale = clip_norm / max(norm, clip_norm)
    return [g * scale for g in grads]


# ---------------------------------------------------------------------------------------------
# Learning-rate schedules: lr(step), vectorised over integer steps (0-based)


def constant(step, initial_lr: float) -> np.ndarray:
    """``initial_lr`` at every step."""
    return np.full(np.shape(step), _check_learning_rate(initial_lr), dtype=np.float64)


def step_decay(step, initial_lr: float, drop_every: int, factor: float = 0.5) -> np.ndarray:
    """Multiply by ``factor`` every ``drop_every`` steps: ``lr0 * factor ** floor(step / drop_every)``."""
    _check_learning_rate(initial_lr)
    if drop_every < 1:
        raise ValueError(f"drop_every={drop_every!r} is invalid; use a positive integer")
    factor = _check_positive("factor", factor)
    return initial_lr * factor ** np.floor_divide(np.asarray(step), drop_every)


def exponential_decay(step, initial_lr: float, decay_steps: int, decay_rate: float) -> np.ndarray:
    """``lr0 * decay_rate ** (step / decay_steps)`` (Keras ``ExponentialDecay``, not staircase)."""
    _check_learning_rate(initial_lr)
    decay_steps = _check_positive("decay_steps", decay_steps)
    decay_rate = _check_positive("decay_rate", decay_rate)
    return initial_lr * decay_rate ** (np.asarray(step, dtype=np.float64) / decay_steps)


def cosine_decay(step, initial_lr: float, decay_steps: int, alpha: float = 0.0) -> np.ndarray:
    """Half a cosine from ``lr0`` down to ``alpha * lr0`` over ``decay_steps``, then flat
    (Keras ``CosineDecay`` without warm-up)."""
    _check_learning_rate(initial_lr)
    decay_steps = _check_positive("decay_steps", decay_steps)
    progress = np.minimum(np.asarray(step, dtype=np.float64), decay_steps) / decay_steps
    cosine = 0.5 * (1 + np.cos(np.pi * progress))
    return initial_lr * ((1 - alpha) * cosine + alpha)


def warmup_cosine(
    step, peak_lr: float, warmup_steps: int, total_steps: int, alpha: float = 0.0
) -> np.ndarray:
    """Linear warm-up from 0 to ``peak_lr`` over ``warmup_steps``, then ``cosine_decay`` over the
    remaining ``total_steps - warmup_steps``."""
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"warmup_steps={warmup_steps!r} is invalid; use 0 <= warmup_steps < total_steps "
            f"({total_steps})"
        )
    step = np.asarray(step, dtype=np.float64)
    warm = peak_lr * step / max(warmup_steps, 1)
    decay = cosine_decay(step - warmup_steps, peak_lr, total_steps - warmup_steps, alpha)
    return np.where(step < warmup_steps, warm, decay)


def one_cycle(
    step,
    max_lr: float,
    total_steps: int,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> np.ndarray:
    """The one-cycle policy (Smith): cosine ramp from ``max_lr / div_factor`` up to ``max_lr`` over
    the first ``pct_start`` of training, then cosine down to ``max_lr / (div_factor *
    final_div_factor)`` at the last step."""
    _check_learning_rate(max_lr)
    _check_unit_interval("pct_start", pct_start)
    if total_steps < 2:
        raise ValueError(f"total_steps={total_steps!r} is invalid; use an integer >= 2")
    start_lr = max_lr / div_factor
    end_lr = start_lr / final_div_factor
    step = np.asarray(step, dtype=np.float64)
    up_steps = max(pct_start * (total_steps - 1), 1.0)
    down_steps = max(total_steps - 1 - up_steps, 1.0)

    def anneal(begin, end, fraction):
        return end + (begin - end) * 0.5 * (1 + np.cos(np.pi * np.clip(fraction, 0, 1)))

    rising = anneal(start_lr, max_lr, step / up_steps)
    falling = anneal(max_lr, end_lr, (step - up_steps) / down_steps)
    return np.where(step <= up_steps, rising, falling)


class ReduceOnPlateau:
    """Divide the learning rate by ``1 / factor`` when the monitored loss has not improved by more
    than ``min_delta`` for ``patience`` consecutive calls (like Keras's ``ReduceLROnPlateau``)."""

    def __init__(
        self,
        initial_lr: float,
        factor: float = 0.5,
        patience: int = 3,
        min_delta: float = 1e-4,
        min_lr: float = 0.0,
    ):
        self.lr = _check_learning_rate(initial_lr)
        self.factor = _check_unit_interval("factor", factor)
        if patience < 1:
            raise ValueError(f"patience={patience!r} is invalid; use a positive integer")
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.min_lr = float(min_lr)
        self.best = np.inf
        self.wait = 0

    def update(self, loss: float) -> float:
        """Record one epoch's loss and return the learning rate for the next epoch."""
        if loss < self.best - self.min_delta:
            self.best, self.wait = loss, 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.lr, self.wait = max(self.lr * self.factor, self.min_lr), 0
        return self.lr


def schedule_values(name: str, total_steps: int, lr: float) -> np.ndarray:
    """The book's standard form of each schedule, evaluated at steps ``0 .. total_steps - 1``.

    Returns
    -------
    ndarray, shape (total_steps,), float64.
    """
    steps = np.arange(total_steps)
    table = {
        "constant": lambda: constant(steps, lr),
        "step": lambda: step_decay(steps, lr, max(total_steps // 3, 1), 0.3),
        "exponential": lambda: exponential_decay(steps, lr, total_steps, 0.05),
        "cosine": lambda: cosine_decay(steps, lr, total_steps),
        "warmup_cosine": lambda: warmup_cosine(steps, lr, max(total_steps // 10, 1), total_steps),
        "one_cycle": lambda: one_cycle(steps, lr, total_steps),
    }
    if name not in table:
        raise ValueError(f"name={name!r} is not a schedule here; use one of {tuple(table)}")
    if total_steps < 2:
        raise ValueError(f"total_steps={total_steps!r} is invalid; use an integer >= 2")
    return table[name]()


SCHEDULES = ("constant", "step", "exponential", "cosine", "warmup_cosine", "one_cycle")


# ---------------------------------------------------------------------------------------------
# 2-D test functions for optimiser paths


def rosenbrock(point: np.ndarray) -> float:
    """``(1 - x)^2 + 100 (y - x^2)^2``; minimum 0 at (1, 1) at the end of a curved valley."""
    x, y = point[..., 0], point[..., 1]
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def rosenbrock_grad(point: np.ndarray) -> np.ndarray:
    x, y = point
    return np.array([-2 * (1 - x) - 400 * x * (y - x**2), 200 * (y - x**2)])


def narrow_valley(point: np.ndarray) -> float:
    """``0.5 (x^2 + 50 y^2)``: a quadratic with condition number 50."""
    return 0.5 * (point[..., 0] ** 2 + 50 * point[..., 1] ** 2)


def narrow_valley_grad(point: np.ndarray) -> np.ndarray:
    return np.array([point[0], 50 * point[1]])


def saddle(point: np.ndarray) -> float:
    """``x^2 - y^2 + y^4 / 4``: a saddle at the origin between two minima at (0, +-sqrt(2))."""
    x, y = point[..., 0], point[..., 1]
    return x**2 - y**2 + y**4 / 4


def saddle_grad(point: np.ndarray) -> np.ndarray:
    x, y = point
    return np.array([2 * x, -2 * y + y**3])


TEST_FUNCTIONS = {
    "rosenbrock": (rosenbrock, rosenbrock_grad, (-1.5, 2.0), (1.0, 1.0)),
    "narrow_valley": (narrow_valley, narrow_valley_grad, (-4.0, 1.0), (0.0, 0.0)),
    "saddle": (saddle, saddle_grad, (-1.5, 1e-3), (0.0, np.sqrt(2.0))),
}
"""Name -> (function, gradient, start point, a minimum)."""
