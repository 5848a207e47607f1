"""Chapter 2, first sections: the NumPy optimisers against Keras's, their paths on 2-D test
functions, and the learning-rate schedules."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dlbook.book import present
from dlbook.book.context import Run
from dlbook.methods import optim


def keras_match(
    names=optim.OPTIMIZERS, steps: int = 60, learning_rate: float = 0.05, seed: int = 0
) -> pd.DataFrame:
    """Run each NumPy optimiser and its Keras counterpart from the same parameters on the same
    gradient sequence (float64 on both sides) and report the largest parameter difference.

    Returns
    -------
    DataFrame, one row per optimiser: ``max_abs_diff``, ``max_abs_change`` (how far the
    parameters moved, for scale).
    """
    import keras

    rng = np.random.default_rng(seed)
    shapes = [(8, 4), (4,), (4, 1)]
    start = [rng.normal(size=s) for s in shapes]
    grad_seq = [[rng.normal(size=s) for s in shapes] for _ in range(steps)]
    rows = []
    for name in names:
        ours = [p.copy() for p in start]
        numpy_opt = optim.make_optimizer(name, learning_rate)
        variables = [keras.Variable(p.copy(), dtype="float64") for p in start]
        keras_opt = optim.make_keras_optimizer(name, float(np.float32(learning_rate)))
        for grads in grad_seq:
            numpy_opt.step(ours, grads)
            keras_opt.apply_gradients(
                zip([keras.ops.convert_to_tensor(g) for g in grads], variables)
            )
        theirs = [np.asarray(v.numpy()) for v in variables]
        rows.append(
            {
                "optimizer": name,
                "steps": steps,
                "max_abs_diff": max(np.abs(a - b).max() for a, b in zip(ours, theirs, strict=True)),
                "max_abs_change": max(
                    np.abs(a - b).max() for a, b in zip(ours, start, strict=True)
                ),
            }
        )
    return pd.DataFrame(rows)


PATH_LEARNING_RATES = {
    "rosenbrock": {"sgd": 1e-3, "momentum": 1e-3, "nesterov": 1e-3, "rmsprop": 1e-2,
                   "adagrad": 1.0, "adam": 0.1, "adamw": 0.1},
    "narrow_valley": {"sgd": 0.035, "momentum": 0.01, "nesterov": 0.01, "rmsprop": 0.05,
                      "adagrad": 1.0, "adam": 0.1, "adamw": 0.1},
    "saddle": {"sgd": 0.05, "momentum": 0.01, "nesterov": 0.01, "rmsprop": 0.01,
               "adagrad": 0.2, "adam": 0.05, "adamw": 0.05},
}  # fmt: skip
"""Per function, a learning rate each optimiser handles (the surfaces' curvatures differ by orders
of magnitude, so one rate for all would show only who diverges)."""


def optimizer_paths(steps: int = 300, names=optim.OPTIMIZERS) -> dict[str, dict[str, np.ndarray]]:
    """``{function: {optimizer: path}}`` with ``path`` of shape (steps + 1, 2), from each
    function's fixed start (``optim.TEST_FUNCTIONS``)."""
    paths = {}
    for function, (_, gradient, start, _) in optim.TEST_FUNCTIONS.items():
        paths[function] = {
            name: optim.descend(
                optim.make_optimizer(name, PATH_LEARNING_RATES[function][name]),
                gradient,
                start,
                steps,
            )
            for name in names
        }
    return paths


def path_summary(paths: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    """Final distance to the nearest minimum and final function value of every path."""
    rows = []
    for function, by_name in paths.items():
        func, _, _, minimum = optim.TEST_FUNCTIONS[function]
        minima = np.array([minimum, (minimum[0], -minimum[1])])
        for name, path in by_name.items():
            last = path[np.isfinite(path).all(axis=1)][-1]
            diverged = not np.isfinite(path[-1]).all()
            rows.append(
                {
                    "function": function,
                    "optimizer": name,
                    "final_value": float(func(last)),
                    "distance_to_minimum": float(np.linalg.norm(minima - last, axis=1).min()),
                    "diverged": diverged,
                }
            )
    return pd.DataFrame(rows)


def schedule_table(total_steps: int = 200, lr: float = 0.1) -> pd.DataFrame:
    """Every schedule's learning rate at each step (columns), plus reduce-on-plateau driven by a
    synthetic loss that falls and then stalls (one value per step, treated as epochs)."""
    table = pd.DataFrame(
        {name: optim.schedule_values(name, total_steps, lr) for name in optim.SCHEDULES}
    )
    steps = np.arange(total_steps)
    loss = np.maximum(np.exp(-steps / 20), 0.3) + 0.01 * np.sin(steps)
    plateau = optim.ReduceOnPlateau(lr, factor=0.5, patience=10)
    table["reduce_on_plateau"] = [lr] + [plateau.update(v) for v in loss[:-1]]
    table.index.name = "step"
    return table


# -- the sections ----------------------------------------------------------------------------


def optimizers(run: Run) -> dict:
    """The NumPy optimisers against Keras's, and their paths on the 2-D test functions."""
    settings = run.settings
    match = keras_match(steps=settings["keras_match_steps"], seed=run.seed)
    paths = optimizer_paths(settings["path_steps"])
    values = {"keras_match_max_abs_diff": float(match["max_abs_diff"].max()),
              "keras_match_steps": int(match["steps"].min())}  # fmt: skip
    run.save(values)
    return {"match": match, "paths": paths, "path_table": path_summary(paths),
            "path_steps": settings["path_steps"], "results": values}  # fmt: skip


def schedules(run: Run) -> dict:
    """Every learning-rate schedule over 200 steps at peak 0.1 (nothing to save)."""
    return {"table": schedule_table(total_steps=200, lr=0.1)}


def story_optimizers(section: dict) -> str:
    """How far the NumPy optimisers end from Keras's after the same gradient steps."""
    match = section["match"]
    steps, largest = int(match["steps"].min()), float(match["max_abs_diff"].max())
    moved = present.number(match["max_abs_change"].max())
    if largest == 0:
        return (
            f"After {steps} steps the NumPy and the Keras parameters are **identical** for all "
            f"{len(match)} optimisers (the parameters themselves moved by up to {moved})."
        )
    return (
        f"Largest difference between the NumPy and the Keras parameters after {steps} steps, "
        f"over all {len(match)} optimisers: **{largest:.1e}** (the parameters themselves moved "
        f"by up to {moved})."
    )
