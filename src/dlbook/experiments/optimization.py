"""Chapter 2's experiments: optimiser paths, learning-rate / batch-size / initialisation sweeps,
schedules and clipping, the NumPy networks trained from scratch, and the regulariser study.

The chapter is a sequence of sections, each a call ``<section>(settings, data_dir, seed,
results_dir)`` that computes, saves its results to ``results_dir`` (when given) and returns them:
``optimizers``, ``schedules``, ``from_scratch``, ``learning_rates``, ``batch_sizes``,
``high_learning_rates``, ``regularizers``; ``run`` runs them all. The sentences on the page come
from the ``story_*`` functions, which read what a section returned; a sentence about one of the
dissertation's claims comes from ``dlbook.book.claims``.

The NumPy optimisers of ``dlbook.methods.optim`` are first shown equal to Keras's (``keras_match``); the
sweeps then run in Keras. To make a sweep cheap, one Keras model holds several *independent*
members (the same architecture, different seeds or initialisers) side by side on the same input,
and is trained on the sum of their losses: each member's gradient is exactly the gradient of its
own loss, and every optimiser here keeps per-parameter state, so one ``fit`` call trains all the
members as if they had been trained one by one on the same mini-batches. (Per-variable clipping
stays per member because members share no variables; a *global* norm would couple them, so it is
not used in the sweeps.) The regulariser study uses the same idea with a small CNN per seed, each
seed on its own training subsample.
"""

from __future__ import annotations

import functools
import time

import numpy as np
import pandas as pd

from dlbook.book import claims, present
from dlbook.core import results
from dlbook.facemask import data
from dlbook.methods import metrics, nn, optim

CHAPTER = "optimization"
OVERFIT_GAP = 0.05
"""Train-minus-validation accuracy of the unregularised network from which the regulariser
study counts as an over-fitting regime (where regularisers can be ranked)."""
REGULARIZERS = ("none", "l1", "l2", "dropout", "batchnorm")
INITIALIZERS = ("he", "xavier")
DIVERGED_LOSS = 1.5 * np.log(2.0)
"""A member whose final validation loss is above 1.5x that of a constant 50/50 guess (or not
finite) is marked diverged."""


# ---------------------------------------------------------------------------------------------
# Data


def load_arrays(
    data_dir=None, image_size: int = 16, limit: int | None = None, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Face-mask images as flat standardised grayscale vectors, per split.

    Returns
    -------
    dict split -> (x, y): x float32 (N, image_size**2), standardised with the training split's
    per-pixel mean and standard deviation; y float32 (N,), 1 for ``with_mask``.
    """
    dataset = data.load_face_mask(
        data_dir,
        image_size=image_size,
        color_mode="grayscale",
        limit=limit,
        seed=seed,
        progress=False,
    )
    flat = dataset.images.reshape(len(dataset.images), -1).astype(np.float32) / 255.0
    train = dataset.split == "train"
    mean, std = flat[train].mean(axis=0), flat[train].std(axis=0) + 1e-3
    return {
        name: (
            ((flat[mask] - mean) / std).astype(np.float32),
            dataset.labels[mask].astype(np.float32),
        )
        for name in data.SPLIT_NAMES
        if (mask := dataset.split == name).any()
    }


def subsample(x: np.ndarray, y: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A class-stratified random subset of ``size`` rows (for the over-fitting setting)."""
    index = data.stratified_subset(y.astype(np.int64), size, seed)
    return x[index], y[index]


# ---------------------------------------------------------------------------------------------
# NumPy vs Keras


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


# ---------------------------------------------------------------------------------------------
# Optimiser paths on 2-D functions

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


# ---------------------------------------------------------------------------------------------
# Keras models with independent members


def _initializer(name: str, seed: int):
    import keras

    if name == "he":
        return keras.initializers.HeNormal(seed=seed)
    if name == "xavier":
        return keras.initializers.GlorotUniform(seed=seed)
    raise ValueError(f"initializer={name!r} is unknown; use one of {INITIALIZERS}")


def parse_regularizer(name: str) -> set[str]:
    """``"l2+dropout"`` -> ``{"l2", "dropout"}``; ``"none"`` -> empty set."""
    parts = set(name.split("+"))
    unknown = parts - set(REGULARIZERS)
    if unknown or ("none" in parts and len(parts) > 1):
        raise ValueError(
            f"regularizer={name!r} is invalid; use 'none' or names from {REGULARIZERS[1:]} "
            "joined with '+'"
        )
    return parts - {"none"}


def build_members(
    input_dim: int,
    member_seeds,
    hidden: int = 32,
    initializers=None,
    regularizer: str = "none",
    dropout: float = 0.3,
    penalty: float = 1e-3,
):
    """One Keras model holding ``len(member_seeds)`` independent one-hidden-layer networks.

    Member ``k``: ``Dense(hidden)`` -> [BatchNorm] -> ReLU -> [Dropout] -> ``Dense(1)``, its
    weights drawn with ``initializers[k]`` ("he" or "xavier") and ``member_seeds[k]``; L1/L2
    penalties (``penalty``) apply to both kernels.

    Returns
    -------
    keras.Model mapping x float32 (N, input_dim) to logits float32 (N, members).
    """
    import keras

    parts = parse_regularizer(regularizer)
    member_seeds = list(member_seeds)
    initializers = list(initializers or ["he"] * len(member_seeds))
    if len(initializers) != len(member_seeds):
        raise ValueError(
            f"initializers has {len(initializers)} entries for {len(member_seeds)} members; "
            "give one per member"
        )
    kernel_penalty = None
    if "l1" in parts:
        kernel_penalty = keras.regularizers.L1(penalty)
    if "l2" in parts:
        kernel_penalty = keras.regularizers.L2(penalty)
    if {"l1", "l2"} <= parts:
        kernel_penalty = keras.regularizers.L1L2(penalty, penalty)
    inputs = keras.Input((input_dim,))
    outputs = []
    for seed, init in zip(member_seeds, initializers, strict=True):
        h = keras.layers.Dense(
            hidden,
            kernel_initializer=_initializer(init, int(seed)),
            kernel_regularizer=kernel_penalty,
            use_bias="batchnorm" not in parts,
        )(inputs)
        if "batchnorm" in parts:
            h = keras.layers.BatchNormalization()(h)
        h = keras.layers.ReLU()(h)
        if "dropout" in parts:
            h = keras.layers.Dropout(dropout, seed=int(seed))(h)
        outputs.append(
            keras.layers.Dense(
                1,
                kernel_initializer=_initializer(init, int(seed) + 10_000),
                kernel_regularizer=kernel_penalty,
            )(h)
        )
    logits = keras.layers.Concatenate()(outputs) if len(outputs) > 1 else outputs[0]
    return keras.Model(inputs, logits)


def summed_member_loss(y_true, logits):
    """Per example, the sum over members of the binary cross-entropy (its batch mean is the sum of
    the members' mean losses). ``y_true`` float32 (N, members), ``logits`` float32 (N, members)."""
    import keras

    return keras.ops.sum(keras.ops.binary_crossentropy(y_true, logits, from_logits=True), axis=-1)


def member_scores(model, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-member mean cross-entropy and accuracy, each float64 (members,)."""
    logits = np.asarray(model(x, training=False), dtype=np.float64)
    logits = np.clip(logits, -50, 50)
    target = y[:, None].astype(np.float64)
    with np.errstate(invalid="ignore"):
        loss = np.mean(np.logaddexp(0, logits) - target * logits, axis=0)
    loss[~np.isfinite(logits).all(axis=0)] = np.nan
    accuracy = np.mean((logits > 0) == (target > 0.5), axis=0)
    return loss, accuracy


def _table_schedule(length: int):
    """A Keras learning-rate schedule reading ``table[step]`` (the last entry after the end) from
    a variable, so any ``optim`` schedule drives a Keras optimiser exactly and a new schedule (or
    learning rate) is a variable assignment, not a new compiled graph."""
    import keras

    class TableSchedule(keras.optimizers.schedules.LearningRateSchedule):
        def __init__(self, length):
            self.table = keras.Variable(np.zeros(length, np.float32), trainable=False)

        def __call__(self, step):
            index = keras.ops.minimum(keras.ops.cast(step, "int32"), self.table.shape[0] - 1)
            return keras.ops.take(self.table, index)

        def get_config(self):
            return {"length": int(self.table.shape[0])}

    return TableSchedule(length)


class MemberTrainer:
    """One compiled multi-member model (``build_members``) and optimiser, re-used for many runs.

    Tracing a Keras training step costs seconds while a run of these tiny models costs a fraction
    of that, so each run restores the initial weights and the optimiser's initial state and
    writes its learning-rate schedule into a variable; nothing is re-compiled.
    """

    def __init__(
        self,
        input_dim: int,
        member_seeds,
        optimizer: str,
        max_steps: int,
        initializers=None,
        regularizer: str = "none",
        hidden: int = 32,
        clipping: dict | None = None,
    ):
        from dlbook.methods import training

        self.members = len(list(member_seeds))
        self.model = build_members(input_dim, member_seeds, hidden, initializers, regularizer)
        self.schedule = _table_schedule(max_steps)
        keras_optimizer = optim.make_keras_optimizer(optimizer, self.schedule, **(clipping or {}))
        self.model.compile(
            optimizer=keras_optimizer,
            loss=summed_member_loss,
            steps_per_execution=training.STEPS_PER_EXECUTION,
        )
        keras_optimizer.build(self.model.trainable_variables)
        self.initial_weights = self.model.get_weights()
        self.initial_optimizer_state = [v.numpy() for v in keras_optimizer.variables]

    def run(
        self,
        train: tuple[np.ndarray, np.ndarray],
        evaluate: tuple[np.ndarray, np.ndarray],
        learning_rates: np.ndarray,
        epochs: int,
        batch_size: int,
        shuffle_seed: int = 0,
    ) -> dict:
        """Train from the initial state with ``learning_rates[step]`` at each step.

        Returns
        -------
        dict with ``train_loss``, ``eval_loss``, ``eval_acc``: float64 (epochs, members), and
        ``seconds``.
        """
        import keras

        began = time.perf_counter()
        table = self.schedule.table
        values = np.full(table.shape[0], learning_rates[-1], np.float32)
        count = min(len(learning_rates), len(values))
        values[:count] = learning_rates[:count]
        table.assign(values)
        self.model.set_weights(self.initial_weights)
        for variable, value in zip(
            self.model.optimizer.variables, self.initial_optimizer_state, strict=True
        ):
            variable.assign(value)
        keras.utils.set_random_seed(shuffle_seed)
        x_train, y_train = train
        targets = np.repeat(y_train[:, None], self.members, axis=1)
        curves = {"train_loss": [], "eval_loss": [], "eval_acc": []}

        def record(epoch, logs):
            train_loss, _ = member_scores(self.model, x_train, y_train)
            eval_loss, eval_acc = member_scores(self.model, *evaluate)
            curves["train_loss"].append(train_loss)
            curves["eval_loss"].append(eval_loss)
            curves["eval_acc"].append(eval_acc)

        self.model.fit(
            x_train, targets, batch_size=batch_size, epochs=epochs, verbose=0,
            callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=record)],
        )  # fmt: skip
        out = {key: np.array(value) for key, value in curves.items()}
        out["seconds"] = time.perf_counter() - began
        return out


def steps_for(train_size: int, batch_size: int, epochs: int) -> int:
    """Mini-batch steps in ``epochs`` epochs (the last batch may be partial)."""
    return int(np.ceil(train_size / batch_size)) * epochs


def train_members(
    splits: dict,
    optimizer: str,
    learning_rate: float,
    member_seeds,
    epochs: int,
    batch_size: int,
    initializers=None,
    regularizer: str = "none",
    hidden: int = 32,
    schedule: str = "constant",
    clipping: dict | None = None,
    train: tuple[np.ndarray, np.ndarray] | None = None,
    eval_split: str = "val",
) -> dict:
    """Build, compile and train one multi-member model once (``MemberTrainer.run``).

    ``schedule`` is a name from ``optim.SCHEDULES`` with ``learning_rate`` as its peak;
    ``clipping`` e.g. ``{"clipnorm": 1.0}``.
    """
    if learning_rate <= 0:
        raise ValueError(f"learning_rate={learning_rate!r} is invalid; use a positive number")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs={epochs!r}, batch_size={batch_size!r}: both must be >= 1")
    train = train if train is not None else splits["train"]
    steps = steps_for(len(train[0]), batch_size, epochs)
    trainer = MemberTrainer(
        train[0].shape[1],
        member_seeds,
        optimizer,
        steps,
        initializers,
        regularizer,
        hidden,
        clipping,
    )
    rates = optim.schedule_values(schedule, max(steps, 2), learning_rate)
    return trainer.run(train, splits[eval_split], rates, epochs, batch_size)


def diverged(final_loss: np.ndarray) -> np.ndarray:
    """True where a final loss is not finite or above ``DIVERGED_LOSS``."""
    final_loss = np.asarray(final_loss, dtype=np.float64)
    return ~np.isfinite(final_loss) | (final_loss > DIVERGED_LOSS)


# ---------------------------------------------------------------------------------------------
# Sweeps


def learning_rate_values(low: float, high: float, count: int) -> np.ndarray:
    """``count`` log-spaced learning rates from ``low`` to ``high``, both included."""
    if not 0 < low < high or count < 2:
        raise ValueError(
            f"low={low!r}, high={high!r}, count={count!r}: need 0 < low < high and count >= 2"
        )
    return np.geomspace(low, high, count)


def learning_rate_sweep(
    splits,
    optimizers,
    learning_rates,
    seeds,
    initializers=INITIALIZERS,
    epochs=5,
    batch_size=64,
    hidden=32,
) -> tuple[pd.DataFrame, dict]:
    """Every optimiser x learning rate, each fit holding ``initializers x seeds`` members.

    Returns
    -------
    runs : DataFrame, one row per (optimizer, lr, initializer, seed): ``val_acc``, ``val_loss``
        (final epoch), ``best_val_acc`` (best epoch), ``diverged``.
    curves : ``{(optimizer, lr): train_members output}`` with member order
        ``[(init, seed) for init in initializers for seed in seeds]``.
    """
    members = [(init, seed) for init in initializers for seed in seeds]
    x_train = splits["train"][0]
    steps = steps_for(len(x_train), batch_size, epochs)
    rows, curves = [], {}
    for name in optimizers:
        trainer = MemberTrainer(
            x_train.shape[1],
            [s for _, s in members],
            name,
            steps,
            initializers=[i for i, _ in members],
            hidden=hidden,
        )
        for lr in learning_rates:
            result = trainer.run(
                splits["train"], splits["val"], np.full(steps, lr), epochs, batch_size
            )
            curves[(name, float(lr))] = result
            final_loss = result["eval_loss"][-1]
            for k, (init, seed) in enumerate(members):
                rows.append(
                    {
                        "optimizer": name,
                        "lr": float(lr),
                        "initializer": init,
                        "seed": seed,
                        "val_acc": result["eval_acc"][-1, k],
                        "val_loss": final_loss[k],
                        "best_val_acc": np.nanmax(result["eval_acc"][:, k]),
                        "diverged": bool(diverged(final_loss[k])),
                    }
                )
    return pd.DataFrame(rows), curves


def best_learning_rates(runs: pd.DataFrame, by=("optimizer",)) -> pd.DataFrame:
    """Per group, the learning rate with the highest mean final validation accuracy over seeds,
    with that mean and its 95% interval. Rates at which half or more of the runs diverged are
    passed over unless every rate did."""
    by = list(by)
    means = (
        runs.groupby([*by, "lr"])
        .agg(mean=("val_acc", "mean"), diverged=("diverged", "mean"))
        .reset_index()
    )
    stable = means["diverged"] < 0.5
    any_stable = stable.groupby([means[c] for c in by]).transform("any")
    means["score"] = np.where(stable | ~any_stable, means["mean"], -np.inf)
    best = means.loc[means.groupby(by)["score"].idxmax()]
    rows = []
    for _, row in best.iterrows():
        mask = np.ones(len(runs), dtype=bool)
        for column in by:
            mask &= (runs[column] == row[column]).to_numpy()
        values = runs.loc[mask & (runs["lr"] == row["lr"]).to_numpy(), "val_acc"].to_numpy()
        mean, low, high = metrics.mean_confidence_interval(values)
        rows.append({**{c: row[c] for c in by}, "best_lr": row["lr"], "val_acc": mean,
                     "ci_low": low, "ci_high": high, "runs": len(values)})  # fmt: skip
    return pd.DataFrame(rows)


def batch_size_sweep(
    splits, batch_sizes, base_lr, seeds, optimizer="sgd", base_batch=64, epochs=5, hidden=32
) -> pd.DataFrame:
    """For each batch size, a fixed learning rate vs the linear-scaling rule
    ``lr = base_lr * batch_size / base_batch``, with the same number of epochs (so fewer steps
    for larger batches)."""
    x_train = splits["train"][0]
    rows = []
    for batch_size in batch_sizes:
        steps = steps_for(len(x_train), int(batch_size), epochs)
        trainer = MemberTrainer(x_train.shape[1], seeds, optimizer, steps, hidden=hidden)
        for rule, lr in (("fixed", base_lr), ("linear", base_lr * batch_size / base_batch)):
            result = trainer.run(
                splits["train"], splits["val"], np.full(steps, lr), epochs, int(batch_size)
            )
            for k, seed in enumerate(seeds):
                rows.append(
                    {
                        "batch_size": int(batch_size),
                        "rule": rule,
                        "lr": float(lr),
                        "steps": steps,
                        "seed": seed,
                        "val_acc": result["eval_acc"][-1, k],
                        "val_loss": result["eval_loss"][-1, k],
                        "diverged": bool(diverged(result["eval_loss"][-1, k])),
                    }
                )
    return pd.DataFrame(rows)


def high_lr_study(
    splits, optimizers, learning_rates, variants, seeds, epochs=5, batch_size=64, hidden=32
) -> pd.DataFrame:
    """At the sweep's highest learning rates, each variant: a schedule name from
    ``optim.SCHEDULES`` (the rate is its peak) or ``"clipnorm"`` / ``"clipvalue"`` (constant rate,
    per-tensor norm clipped to 1 / elements clipped to 0.5)."""
    x_train = splits["train"][0]
    steps = steps_for(len(x_train), batch_size, epochs)
    clip_settings = {"clipnorm": {"clipnorm": 1.0}, "clipvalue": {"clipvalue": 0.5}}
    rows = []
    for name in optimizers:
        trainers = {}
        for variant in variants:
            clipping = clip_settings.get(variant)
            key = variant if clipping else "schedules"
            if key not in trainers:
                trainers[key] = MemberTrainer(
                    x_train.shape[1], seeds, name, steps, hidden=hidden, clipping=clipping
                )
            for lr in learning_rates:
                rates = optim.schedule_values("constant" if clipping else variant, steps, lr)
                result = trainers[key].run(
                    splits["train"], splits["val"], rates, epochs, batch_size
                )
                for k, seed in enumerate(seeds):
                    rows.append(
                        {
                            "optimizer": name,
                            "lr": float(lr),
                            "variant": variant,
                            "seed": seed,
                            "val_acc": result["eval_acc"][-1, k],
                            "val_loss": result["eval_loss"][-1, k],
                            "diverged": bool(diverged(result["eval_loss"][-1, k])),
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


def high_lr_table(study: pd.DataFrame) -> pd.DataFrame:
    """Mean validation accuracy and diverged share per (optimizer, lr, variant), with the gain
    over the constant rate at the same optimiser and learning rate."""
    table = (
        study.groupby(["optimizer", "lr", "variant"], sort=False)
        .agg(val_acc=("val_acc", "mean"), diverged=("diverged", "mean"))
        .reset_index()
    )
    constant = table[table["variant"] == "constant"].set_index(["optimizer", "lr"])["val_acc"]
    table["gain_vs_constant"] = table["val_acc"] - [
        constant.get((o, lr), np.nan) for o, lr in zip(table["optimizer"], table["lr"], strict=True)
    ]
    return table


# ---------------------------------------------------------------------------------------------
# Regularisers on a small CNN, in an over-fitting regime

REG_METHODS = ("none", "l1", "l2", "dropout", "batchnorm")
STRENGTH_METHODS = ("l1", "l2", "dropout")
"""Methods with a strength (penalty or rate) picked on validation; BatchNorm and none have none."""


def load_images(data_dir=None, image_size: int = 32, seed: int = 0) -> dict:
    """Face-mask images as RGB floats in [0, 1], per split: ``{split: (x, y)}`` with x float32
    (N, image_size, image_size, 3) and y int64 (N,)."""
    dataset = data.load_face_mask(data_dir, image_size=image_size, seed=seed, progress=False)
    images = dataset.images.astype(np.float32) / 255.0
    return {
        name: (images[mask], dataset.labels[mask])
        for name in data.SPLIT_NAMES
        if (mask := dataset.split == name).any()
    }


def regularizer_configs(methods, grid: dict) -> list[tuple[str, float]]:
    """``(method, strength)`` for every method and every strength of its grid (0 for methods
    without one)."""
    unknown = set(methods) - set(REG_METHODS)
    if unknown:
        raise ValueError(f"methods has unknown names {sorted(unknown)}; use {REG_METHODS}")
    configs = []
    for method in methods:
        values = grid.get(method, ()) if method in STRENGTH_METHODS else (0.0,)
        if not values:
            raise ValueError(f"grid has no strengths for {method!r}; give at least one")
        configs += [(method, float(v)) for v in values]
    return configs


def _strength_parts(method: str, strength: float) -> dict:
    """The variable settings of one configuration: L1, L2 and dropout rate."""
    return {
        "l1": strength if method == "l1" else 0.0,
        "l2": strength if method == "l2" else 0.0,
        "rate": strength if method == "dropout" else 0.0,
    }


def build_cnn_members(image_shape, seeds, batchnorm: bool = False, filters=(8, 16),
                      dense_units: int = 32, bn_momentum: float = 0.9):  # fmt: skip
    """One Keras model holding a small CNN per seed, all independent, whose L1 / L2 strengths and
    dropout rate are variables (set per run without re-compiling).

    Input: images stacked per seed, float32 (N, len(seeds), H, W, C); the member of seed slot
    ``s`` reads slice ``[:, s]`` (its own training subsample). A member is [conv 3x3 - (BN) -
    ReLU - max-pool 2] per entry of ``filters``, flatten, dropout, dense ``dense_units`` - (BN) -
    ReLU - dropout, one logit; the penalties apply to every kernel, and BatchNorm replaces the
    biases before it. A member's kernels start from its seed alone, so the members of one seed
    start alike whatever the regulariser (paired comparisons).

    Returns
    -------
    (model, member_layers, knobs): model maps the input to logits float32 (N, len(seeds));
    member_layers[s] lists the layers holding member s's weights; knobs is
    ``{"l1", "l2", "rate"}`` of scalar Keras variables.
    """
    import keras

    knobs = {name: keras.Variable(0.0, trainable=False, name=name) for name in ("l1", "l2", "rate")}

    class Penalty(keras.regularizers.Regularizer):
        def __call__(self, w):
            return knobs["l1"] * keras.ops.sum(keras.ops.abs(w)) + knobs["l2"] * keras.ops.sum(
                keras.ops.square(w)
            )

    class RateDropout(keras.layers.Layer):
        """Inverted dropout whose rate is ``knobs["rate"]`` (0: the identity)."""

        def __init__(self, seed):
            super().__init__()
            self.generator = keras.random.SeedGenerator(seed)

        def call(self, x, training=False):
            if not training:
                return x
            keep = 1.0 - knobs["rate"]
            mask = keras.random.uniform(keras.ops.shape(x), seed=self.generator) < keep
            return keras.ops.where(mask, x / keep, 0.0)

    inputs = keras.Input((len(seeds), *image_shape))
    outputs, member_layers = [], []
    for slot, seed in enumerate(seeds):
        layers = []

        def add(layer, x, layers=layers):
            layers.append(layer)
            return layer(x)

        def kernel_init(index, seed=seed):
            return keras.initializers.HeNormal(seed=1000 * int(seed) + index)

        h = inputs[:, slot]
        for index, width in enumerate(filters):
            h = add(keras.layers.Conv2D(width, 3, padding="same", use_bias=not batchnorm,
                                        kernel_initializer=kernel_init(index),
                                        kernel_regularizer=Penalty()), h)  # fmt: skip
            if batchnorm:
                h = add(keras.layers.BatchNormalization(momentum=bn_momentum), h)
            h = keras.layers.MaxPooling2D()(keras.layers.ReLU()(h))
        h = add(RateDropout(int(seed)), keras.layers.Flatten()(h))
        h = add(keras.layers.Dense(dense_units, use_bias=not batchnorm,
                                   kernel_initializer=kernel_init(len(filters)),
                                   kernel_regularizer=Penalty()), h)  # fmt: skip
        if batchnorm:
            h = add(keras.layers.BatchNormalization(momentum=bn_momentum), h)
        h = add(RateDropout(int(seed) + 1), keras.layers.ReLU()(h))
        init = keras.initializers.GlorotUniform(seed=1000 * int(seed) + 99)
        outputs.append(add(keras.layers.Dense(1, kernel_initializer=init,
                                              kernel_regularizer=Penalty()), h))  # fmt: skip
        member_layers.append(layers)
    logits = keras.layers.Concatenate()(outputs) if len(outputs) > 1 else outputs[0]
    return keras.Model(inputs, logits), member_layers, knobs


def _logits(model, x: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Inference logits, float64 (N, members), computed eagerly in chunks (no tracing)."""
    return np.concatenate(
        [np.asarray(model(x[i : i + chunk], training=False), np.float64)
         for i in range(0, len(x), chunk)]
    )  # fmt: skip


def _member_bce(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Mean binary cross-entropy per member column, float64 (members,)."""
    logits = np.clip(logits, -50, 50)
    return np.mean(np.logaddexp(0, logits) - targets * logits, axis=0)


class CnnMemberTrainer:
    """``build_cnn_members`` compiled once; each run restores the initial weights, optimiser state
    and dropout generators, sets the regulariser's variables, and trains with early stopping."""

    def __init__(self, image_shape, seeds, batchnorm: bool, settings: dict):
        import keras

        from dlbook.methods import training

        self.model, self.member_layers, self.knobs = build_cnn_members(
            image_shape, seeds, batchnorm, settings["reg_filters"], settings["reg_dense"],
            settings["reg_bn_momentum"],
        )  # fmt: skip
        self.model.compile(
            optimizer=optim.make_keras_optimizer("adam", settings["reg_learning_rate"]),
            loss=summed_member_loss,
            steps_per_execution=training.STEPS_PER_EXECUTION,
        )
        self.model.optimizer.build(self.model.trainable_variables)
        self.settings = settings
        self.initial = [v.numpy() for v in self.model.variables]
        self.initial_optimizer = [v.numpy() for v in self.model.optimizer.variables]
        self._keras = keras

    def run(self, method: str, strength: float, train, val, shuffle_seed: int) -> dict:
        """Train one configuration; return the members' best-epoch weights and scores.

        ``train``: (x float32 (N, seeds, H, W, C), y float32 (N, seeds)); ``val``: (x tiled the
        same way, y float64 (M,)). Stops when no member's validation loss improved for
        ``reg_patience`` epochs, or at ``reg_epochs``; every member gets its best epoch back.
        """
        model, settings = self.model, self.settings
        for variable, value in zip(model.variables, self.initial, strict=True):
            variable.assign(value)
        for variable, value in zip(model.optimizer.variables, self.initial_optimizer, strict=True):
            variable.assign(value)
        for name, value in _strength_parts(method, strength).items():
            self.knobs[name].assign(value)
        self._keras.utils.set_random_seed(shuffle_seed)
        members = len(self.member_layers)
        best_loss, best_epoch = np.full(members, np.inf), np.zeros(members, dtype=int)
        snapshots: list = [None] * members
        patience, epoch = settings["reg_patience"], 0
        for epoch in range(1, settings["reg_epochs"] + 1):
            model.fit(*train, batch_size=settings["reg_batch_size"], epochs=1, verbose=0)
            loss = _member_bce(_logits(model, val[0]), val[1][:, None])
            for k in np.flatnonzero(loss < best_loss - 1e-4):
                snapshots[k] = [layer.get_weights() for layer in self.member_layers[k]]
                best_loss[k], best_epoch[k] = loss[k], epoch
            if np.all(epoch - best_epoch >= patience):
                break
        self.restore(snapshots)
        train_logits, val_logits = _logits(model, train[0]), _logits(model, val[0])
        return {
            "snapshots": snapshots,
            "train_acc": np.mean((train_logits > 0) == (train[1] > 0.5), axis=0),
            "val_acc": np.mean((val_logits > 0) == (val[1][:, None] > 0.5), axis=0),
            "val_loss": _member_bce(val_logits, val[1][:, None]),
            "best_epoch": best_epoch,
            "stopped_early": epoch - best_epoch >= patience,
            "epochs_run": epoch,
        }

    def restore(self, snapshots) -> None:
        for layers, weights in zip(self.member_layers, snapshots, strict=True):
            for layer, values in zip(layers, weights, strict=True):
                layer.set_weights(values)


def regularizer_study(images: dict, settings: dict, seed: int = 0) -> dict:
    """Every regulariser x strength on ``reg_seeds`` small CNNs (``CnnMemberTrainer``), early
    stopped on validation, then the chosen settings scored once on test.

    Each seed draws its own stratified training subsample of ``reg_train_size`` images from the
    train split, its own order of it (mini-batches) and its own initial kernels; all
    configurations share them (paired by seed). Strengths are chosen on validation
    (``choose_strengths``); the test images then pass once through each method's chosen members.

    Returns
    -------
    dict with ``runs`` (DataFrame, one row per (method, strength, seed): train_acc, val_acc,
    val_loss, best_epoch, stopped_early), ``chosen`` (the rows at each method's chosen strength,
    with test_acc), ``seeds``, ``train_images``.
    """
    seeds = [seed + i for i in range(settings["reg_seeds"])]
    configs = regularizer_configs(settings["reg_methods"], settings["reg_grid"])
    x_train, y_train = images["train"]
    picks = []
    for s in seeds:
        index = data.stratified_subset(y_train, settings["reg_train_size"], s)
        picks.append(np.random.default_rng(s).permutation(index))
    size = min(len(p) for p in picks)
    train = (np.stack([x_train[p[:size]] for p in picks], axis=1),
             np.stack([y_train[p[:size]] for p in picks], axis=1).astype(np.float32))  # fmt: skip

    def tiled(split):
        xs, ys = images[split]
        return np.repeat(xs[:, None], len(seeds), axis=1), ys.astype(np.float64)

    val = tiled("val")
    trainers, kept, rows = {}, {}, []
    for method, strength in configs:
        batchnorm = method == "batchnorm"
        if batchnorm not in trainers:
            trainers[batchnorm] = CnnMemberTrainer(x_train.shape[1:], seeds, batchnorm, settings)
        result = trainers[batchnorm].run(method, strength, train, val, shuffle_seed=seed)
        kept[(method, strength)] = result["snapshots"]
        for k, s in enumerate(seeds):
            rows.append({"method": method, "strength": strength, "seed": s,
                         "train_acc": result["train_acc"][k], "val_acc": result["val_acc"][k],
                         "val_loss": result["val_loss"][k], "best_epoch": result["best_epoch"][k],
                         "stopped_early": bool(result["stopped_early"][k])})  # fmt: skip
    runs = pd.DataFrame(rows)
    strengths = choose_strengths(runs)
    x_test, y_test = tiled("test")
    chosen = []
    for method, strength in strengths.items():
        trainer = trainers[method == "batchnorm"]
        trainer.restore(kept[(method, strength)])
        correct = (_logits(trainer.model, x_test) > 0) == (y_test[:, None] > 0.5)
        part = runs[(runs["method"] == method) & (runs["strength"] == strength)].copy()
        part["test_acc"] = correct.mean(axis=0)
        chosen.append(part)
    chosen = pd.concat(chosen, ignore_index=True)
    return {"runs": runs, "chosen": chosen, "seeds": seeds, "train_images": size}


def choose_strengths(runs: pd.DataFrame) -> dict[str, float]:
    """Per method, the strength with the highest mean validation accuracy over seeds (ties: the
    lower mean validation loss). Reads validation columns only."""
    if "test_acc" in runs.columns:
        raise ValueError("runs holds test scores; strengths are chosen on validation only")
    means = runs.groupby(["method", "strength"], sort=False)[["val_acc", "val_loss"]].mean()
    means = means.reset_index().sort_values(["val_acc", "val_loss"], ascending=[False, True])
    return {str(m): float(s) for m, s in means.drop_duplicates("method")[["method", "strength"]]
            .itertuples(index=False)}  # fmt: skip


def _accuracy_interval(values, bound: float = 1.0) -> tuple[float, float, float]:
    """Mean with its 95% Student-t interval over seeds, the interval clipped to
    ``[-bound, bound]`` for differences or ``[0, bound]`` for accuracies (``bound`` > 0 and
    values all >= 0)."""
    values = np.asarray(values, dtype=np.float64)
    mean, low, high = metrics.mean_confidence_interval(values)
    floor = 0.0 if (values >= 0).all() and bound == 1.0 else -bound
    return mean, float(max(low, floor)), float(min(high, bound))


def regularizer_table(chosen: pd.DataFrame) -> pd.DataFrame:
    """Per method at its chosen strength: mean validation and test accuracy over seeds with 95%
    intervals, train minus validation accuracy, epochs; sorted by validation accuracy."""
    rows = []
    for method, group in chosen.groupby("method", sort=False):
        val, val_low, val_high = _accuracy_interval(group["val_acc"])
        test, low, high = _accuracy_interval(group["test_acc"])
        rows.append({"method": method, "strength": float(group["strength"].iloc[0]),
                     "val_acc": val, "val_ci_low": val_low, "val_ci_high": val_high,
                     "test_acc": test, "ci_low": low, "ci_high": high,
                     "train_minus_val": float((group["train_acc"] - group["val_acc"]).mean()),
                     "best_epoch": float(group["best_epoch"].mean()), "seeds": len(group)})  # fmt: skip
    table = pd.DataFrame(rows).sort_values(["val_acc"], ascending=False, kind="stable")
    return table.reset_index(drop=True)


def pick_regularizer(chosen: pd.DataFrame) -> dict:
    """The winner on validation and whether it is separated from the runner-up: the 95% interval
    of the per-seed validation-accuracy difference (winner minus runner-up, paired by seed: same
    subsample, order and initial kernels) lies above zero."""
    if "test_acc" in chosen.columns:
        chosen = chosen.drop(columns="test_acc")
    means = chosen.groupby("method")["val_acc"].mean().sort_values(ascending=False, kind="stable")
    winner = str(means.index[0])
    out = {"best_regularizer": winner, "best_regularizer_separated": False,
           "runner_up": None, "margin": 0.0, "margin_ci_low": 0.0, "margin_ci_high": 0.0}  # fmt: skip
    if len(means) > 1:
        runner_up = str(means.index[1])
        by_seed = chosen.pivot_table(index="seed", columns="method", values="val_acc")
        diff = (by_seed[winner] - by_seed[runner_up]).dropna().to_numpy()
        margin, low, high = metrics.mean_confidence_interval(diff)
        low, high = max(low, -1.0), min(high, 1.0)
        out.update(runner_up=runner_up, margin=margin, margin_ci_low=low, margin_ci_high=high,
                   best_regularizer_separated=bool(len(diff) > 1 and low > 0))  # fmt: skip
    if "batchnorm" in means.index and winner != "batchnorm":
        # The claim under test is about BatchNorm: how far behind the winner is it, paired by seed?
        behind = (by_seed[winner] - by_seed["batchnorm"]).dropna().to_numpy()
        gap, low, high = metrics.mean_confidence_interval(behind)
        out.update(winner_minus_batchnorm=gap, winner_minus_batchnorm_ci_low=max(low, -1.0),
                   winner_minus_batchnorm_ci_high=min(high, 1.0))  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------------
# The NumPy networks of chapter 1, trained from scratch with every optimiser and regulariser

NUMPY_LEARNING_RATES = {"sgd": 0.05, "momentum": 0.01, "nesterov": 0.01, "rmsprop": 1e-3,
                        "adagrad": 0.05, "adam": 1e-3, "adamw": 1e-3}  # fmt: skip
"""A standard learning rate per optimiser for the from-scratch demonstration (not tuned)."""
NUMPY_REGULARIZERS = {"none": {}, "l1": {"l1": 1e-3}, "l2": {"l2": 1e-3},
                      "dropout": {"dropout": 0.5}, "batchnorm": {"batchnorm": True}}  # fmt: skip
"""Fixed strengths for the from-scratch demonstration (the tuned study is ``regularizer_study``)."""


def numpy_mlp(hidden: int, seed: int, dropout: float = 0.0, batchnorm: bool = False, **fit):
    """``dlbook.methods.nn.Sequential``: Dense(hidden) - (BatchNorm) - ReLU - (Dropout) - Dense(2)."""
    layers = [nn.Dense(hidden, initializer="he_normal")]
    layers += [nn.BatchNorm(momentum=0.9)] if batchnorm else []
    layers += [nn.Activation("relu")]
    layers += [nn.Dropout(dropout)] if dropout else []
    return nn.Sequential([*layers, nn.Dense(2)], seed=seed, **fit)


def numpy_training(splits, settings: dict, seed: int = 0) -> dict:
    """The chapter-1 NumPy network trained from scratch: once per optimiser on the whole train
    split (``numpy_epochs`` epochs), and once per regulariser on a ``reg_train_size`` subsample
    with Adam (``numpy_reg_epochs`` epochs). Scores are on the validation split.

    Returns
    -------
    dict with ``optimizers`` (DataFrame: optimizer, lr, epoch, loss, val_acc) and
    ``regularizers`` (DataFrame: method, train_acc, val_acc).
    """
    (x, y), (x_val, y_val) = splits["train"], splits["val"]
    y, y_val = y.astype(np.int64), y_val.astype(np.int64)
    rows = []
    for name in settings["numpy_optimizers"]:
        lr = NUMPY_LEARNING_RATES[name]
        model = numpy_mlp(settings["hidden"], seed, optimizer=name, learning_rate=lr,
                          epochs=settings["numpy_epochs"], batch_size=settings["batch_size"])  # fmt: skip
        for record in model.fit(x, y, x_val, y_val).history_:
            rows.append({"optimizer": name, "lr": lr, "epoch": record["epoch"],
                         "loss": record["loss"], "val_acc": record["val_accuracy"]})  # fmt: skip
    x_small, y_small = subsample(x, y, settings["reg_train_size"], seed)
    regs = []
    for method, options in NUMPY_REGULARIZERS.items():
        penalties = {k: v for k, v in options.items() if k in ("l1", "l2")}
        model = numpy_mlp(settings["reg_hidden"], seed, options.get("dropout", 0.0),
                          options.get("batchnorm", False), optimizer="adam", learning_rate=1e-3,
                          epochs=settings["numpy_reg_epochs"], batch_size=32, **penalties)  # fmt: skip
        model.fit(x_small, y_small)
        regs.append({"method": method, "train_acc": model.score(x_small, y_small),
                     "val_acc": model.score(x_val, y_val)})  # fmt: skip
    return {"optimizers": pd.DataFrame(rows), "regularizers": pd.DataFrame(regs)}


# ---------------------------------------------------------------------------------------------
# The chapter's sections: each computes, saves (when given a results folder) and returns


@functools.lru_cache(maxsize=4)
def _splits(data_dir, image_size: int, limit, seed: int) -> dict:
    return load_arrays(data_dir, image_size=image_size, limit=limit, seed=seed)


def splits_for(settings: dict, data_dir=None, seed: int = 0) -> dict:
    """The flat grayscale splits of the sweeps (``load_arrays``), loaded once per process."""
    data_dir = None if data_dir is None else str(data_dir)
    return _splits(data_dir, settings["image_size"], settings["limit"], seed)


def _save(results_dir, values: dict) -> dict:
    """Save ``values`` as this chapter's results when ``results_dir`` is given; return them."""
    if results_dir is not None:
        results.save(results_dir, CHAPTER, values)
    return values


def optimizers(settings: dict, data_dir=None, seed: int = 0, results_dir=None) -> dict:
    """The NumPy optimisers against Keras's, and their paths on the 2-D test functions."""
    match = keras_match(steps=settings["keras_match_steps"], seed=seed)
    paths = optimizer_paths(settings["path_steps"])
    values = {"keras_match_max_abs_diff": float(match["max_abs_diff"].max()),
              "keras_match_steps": int(match["steps"].min())}  # fmt: skip
    return {"match": match, "paths": paths, "path_table": path_summary(paths),
            "path_steps": settings["path_steps"], "results": _save(results_dir, values)}  # fmt: skip


def schedules(settings: dict, data_dir=None, seed: int = 0, results_dir=None) -> dict:
    """Every learning-rate schedule over 200 steps at peak 0.1 (nothing to save)."""
    return {"table": schedule_table(total_steps=200, lr=0.1)}


def from_scratch(settings: dict, data_dir=None, seed: int = 0, results_dir=None) -> dict:
    """``numpy_training`` on the chapter's images; saves ``numpy_val_acc_<optimizer>`` and
    ``numpy_reg_val_acc_<method>``, ``numpy_reg_train_acc_<method>``."""
    splits = splits_for(settings, data_dir, seed)
    out = numpy_training(splits, settings, seed)
    last = out["optimizers"].groupby("optimizer", sort=False).last()
    values = {f"numpy_val_acc_{name}": float(row["val_acc"]) for name, row in last.iterrows()}
    for row in out["regularizers"].itertuples(index=False):
        values[f"numpy_reg_val_acc_{row.method}"] = float(row.val_acc)
        values[f"numpy_reg_train_acc_{row.method}"] = float(row.train_acc)
    values["numpy_epochs"] = settings["numpy_epochs"]
    return {**out, "settings": settings, "results": _save(results_dir, values)}


def data_summary(settings: dict, data_dir=None, seed: int = 0) -> str:
    """One sentence on the images the sweeps use."""
    splits = splits_for(settings, data_dir, seed)
    counts = ", ".join(f"{len(y)} {name}" for name, (_, y) in splits.items())
    side = settings["image_size"]
    return (f"{side}×{side} grayscale images: {counts}; {splits['train'][0].shape[1]} inputs "
            "per image.")  # fmt: skip


def sweep_learning_rates(settings: dict) -> np.ndarray:
    return learning_rate_values(settings["lr_min"], settings["lr_max"], settings["lr_count"])


def learning_rates(settings: dict, data_dir=None, seed: int = 0, results_dir=None) -> dict:
    """The learning-rate sweep (every optimiser x rate x initialiser x seed), best rates chosen on
    validation."""
    splits = splits_for(settings, data_dir, seed)
    rates = sweep_learning_rates(settings)
    seeds = [seed + i for i in range(settings["seeds"])]
    runs, curves = learning_rate_sweep(
        splits, settings["sweep_optimizers"], rates, seeds, settings["initializers"],
        epochs=settings["epochs"], batch_size=settings["batch_size"], hidden=settings["hidden"],
    )  # fmt: skip
    best = best_learning_rates(runs)
    by_init = best_learning_rates(runs, by=("optimizer", "initializer"))
    values = {"lr_values": len(rates), "lr_min": float(rates.min()), "lr_max": float(rates.max()),
              "seeds": len(seeds), "sweep_runs": len(runs),
              "diverged_share": float(runs["diverged"].mean()), "selected_on": "validation"}  # fmt: skip
    for row in best.itertuples(index=False):
        values[f"best_lr_{row.optimizer}"] = float(row.best_lr)
        values[f"best_val_acc_{row.optimizer}"] = float(row.val_acc)
    for row in by_init.itertuples(index=False):
        values[f"best_lr_{row.optimizer}_{row.initializer}"] = float(row.best_lr)
    return {"runs": runs, "curves": curves, "best": best, "by_init": by_init, "rates": rates,
            "seeds": seeds, "results_dir": results_dir,
            "results": _save(results_dir, values)}  # fmt: skip


def batch_sizes(settings: dict, data_dir=None, seed: int = 0, results_dir=None) -> dict:
    """Plain SGD per batch size, fixed rate vs the linear-scaling rule."""
    splits = splits_for(settings, data_dir, seed)
    seeds = [seed + i for i in range(settings["seeds"])]
    table = batch_size_sweep(splits, settings["batch_sizes"], settings["batch_base_lr"], seeds,
                             epochs=settings["epochs"], hidden=settings["hidden"])  # fmt: skip
    values = {
        f"batch_val_acc_{rule}_{size}": float(group["val_acc"].mean())
        for (rule, size), group in table.groupby(["rule", "batch_size"])
    }
    return {"table": table, "results": _save(results_dir, values)}


def regularizers(settings: dict, data_dir=None, seed: int = 0, results_dir=None) -> dict:
    """The regulariser study on a small CNN (``regularizer_study``); strengths and the winner
    chosen on validation, the chosen settings scored once on test."""
    images = load_images(data_dir, settings["reg_image_size"], seed)
    study = regularizer_study(images, settings, seed)
    table = regularizer_table(study["chosen"])
    pick = pick_regularizer(study["chosen"])
    none = study["chosen"][study["chosen"]["method"] == "none"]
    gap, gap_low, gap_high = metrics.mean_confidence_interval(
        (none["train_acc"] - none["val_acc"]).to_numpy()
    )
    gap_low, gap_high = max(gap_low, -1.0), min(gap_high, 1.0)
    values = {
        "reg_methods": ",".join(settings["reg_methods"]),
        "reg_unregularized_gap": gap, "reg_unregularized_gap_ci_low": gap_low,
        "reg_unregularized_gap_ci_high": gap_high,
        "best_regularizer": pick["best_regularizer"],
        "best_regularizer_separated": pick["best_regularizer_separated"],
        "reg_runner_up": pick["runner_up"] or "",
        "reg_winner_margin": pick["margin"], "reg_winner_margin_ci_low": pick["margin_ci_low"],
        "reg_winner_margin_ci_high": pick["margin_ci_high"],
        **{f"reg_{key}": value for key, value in pick.items() if "minus_batchnorm" in key},
        "reg_seeds": len(study["seeds"]), "reg_image_size": settings["reg_image_size"],
        "reg_train_images": study["train_images"], "reg_epoch_cap": settings["reg_epochs"],
        "reg_patience": settings["reg_patience"], "reg_bn_momentum": settings["reg_bn_momentum"],
        "reg_converged_fraction": float(study["chosen"]["stopped_early"].mean()),
        "reg_epochs_used_mean": float(study["chosen"]["best_epoch"].mean()),
        "selected_on": "validation",
    }  # fmt: skip
    for row in table.itertuples(index=False):
        values[f"reg_test_acc_{row.method}"] = row.test_acc
        values[f"reg_test_acc_{row.method}_ci_low"] = row.ci_low
        values[f"reg_test_acc_{row.method}_ci_high"] = row.ci_high
        values[f"reg_val_acc_{row.method}"] = row.val_acc
        if row.method in STRENGTH_METHODS:
            values[f"reg_strength_{row.method}"] = row.strength
    return {**study, "table": table, "pick": pick, "settings": settings,
            "results_dir": results_dir, "results": _save(results_dir, values)}  # fmt: skip


def high_learning_rates(settings: dict, data_dir=None, seed: int = 0, results_dir=None) -> dict:
    """Schedules and clipping at the sweep's highest learning rates (validation scores)."""
    splits = splits_for(settings, data_dir, seed)
    seeds = [seed + i for i in range(settings["seeds"])]
    rates = sweep_learning_rates(settings)[-settings["high_lr_count"] :]
    study = high_lr_study(splits, settings["high_lr_optimizers"], rates,
                          settings["high_lr_variants"], seeds, epochs=settings["epochs"],
                          hidden=settings["hidden"])  # fmt: skip
    table = high_lr_table(study)
    values = {
        f"high_lr_val_acc_{row.optimizer}_{row.lr:.3g}_{row.variant}": float(row.val_acc)
        for row in table.itertuples(index=False)
    }
    return {"study": study, "table": table, "results": _save(results_dir, values)}


def run(settings: dict, data_dir=None, seed: int = 0, results_dir=None) -> dict:
    """Every section of the chapter, in order; each saves its results to ``results_dir``."""
    sections = (optimizers, schedules, from_scratch, learning_rates, batch_sizes, regularizers,
                high_learning_rates)  # fmt: skip
    return {f.__name__: f(settings, data_dir, seed, results_dir) for f in sections}


# ---------------------------------------------------------------------------------------------
# Sentences for the page, built from the results

INITIALIZER_NAMES = {"he": "He", "xavier": "Xavier"}


def _points_interval(low: float, high: float) -> str:
    """A 95% interval of a difference of fractions, in points: '95% CI -1.2 to +3.4 points'."""
    return present.points_interval(100 * low, 100 * high, " points")


def story_optimizers(section: dict) -> str:
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


def story_from_scratch(section: dict) -> str:
    curves, regs = section["optimizers"], section["regularizers"]
    last = curves.groupby("optimizer", sort=False).last()
    best, worst = last["val_acc"].idxmax(), last["val_acc"].idxmin()
    epochs = int(curves["epoch"].max())
    regs = regs.set_index("method")
    gaps = regs["train_acc"] - regs["val_acc"]
    return (
        f"After {epochs} epochs from scratch in NumPy, validation accuracy ranges from "
        f"{present.percent(last.loc[worst, 'val_acc'])} ({worst}) to "
        f"{present.percent(last.loc[best, 'val_acc'])} ({best}), each optimiser at one standard "
        "rate, untuned. On the small training subset, the unregularised network's training "
        f"accuracy exceeds its validation accuracy by {present.points(100 * gaps['none'])}; "
        f"the smallest gap is {present.points(100 * gaps.min())} ({gaps.idxmin()}), the largest "
        f"{present.points(100 * gaps.max())} ({gaps.idxmax()})."
    )


def story_learning_rates(section: dict) -> str:
    best, runs, rates = section["best"], section["runs"], section["rates"]
    top = best.sort_values("val_acc", ascending=False).iloc[0]
    shares = runs.groupby("optimizer", sort=False)["diverged"].mean()
    text = (
        f"{runs['optimizer'].nunique()} optimisers at {len(rates)} learning rates from "
        f"{present.number(rates.min())} to {present.number(rates.max())}, {len(runs)} trained "
        f"networks. On validation, the best setting is **{top['optimizer']} at "
        f"{present.number(top['best_lr'])}** ({present.percent(top['val_acc'])} validation "
        f"accuracy, {present.interval(top['ci_low'], top['ci_high'])}). Share of diverged runs "
        "per optimiser: " + ", ".join(f"{n} {present.percent(s, 0)}" for n, s in shares.items())
        + "."
    )  # fmt: skip
    if section.get("results_dir") is not None:
        results_by_chapter = results.load_all(section["results_dir"])
        text += " " + claims.sentence("learning_rate_range", results_by_chapter)
    return text


def story_initializers(section: dict) -> str:
    by_init, runs = section["by_init"], section["runs"]
    table = by_init.pivot(index="optimizer", columns="initializer", values=["best_lr", "val_acc"])
    inits = list(table["best_lr"].columns)
    same = int((table["best_lr"].nunique(axis=1) == 1).sum())
    text = (
        f"{' and '.join(INITIALIZER_NAMES.get(i, i) for i in inits)} pick the same best learning rate for **{same} of "
        f"{len(table)}** optimisers."
    )
    if len(inits) == 2:
        gap = (table["val_acc"][inits[0]] - table["val_acc"][inits[1]]).abs()
        half = (by_init["ci_high"] - by_init["ci_low"]).max() / 2
        relation = "within" if gap.max() <= half else "beyond"
        text += (
            f" At each initialiser's best rate the accuracies differ by at most "
            f"{present.points(100 * gap.max()).lstrip('+')} ({gap.idxmax()}), {relation} the "
            f"widest half-width of a cell's 95% interval ({present.points(100 * half).lstrip('+')}"
            f"; {runs['seed'].nunique()} seeds per cell)."
        )
    return text


def story_batch_sizes(section: dict) -> str:
    means = section["table"].groupby(["rule", "batch_size"])["val_acc"].mean()
    parts = []
    for rule in ("fixed", "linear"):
        if rule in means.index.get_level_values(0):
            by_size = means.loc[rule]
            parts.append(
                f"with the {rule} rule, validation accuracy is highest at batch size "
                f"{by_size.idxmax()} ({present.percent(by_size.max())}) and lowest at "
                f"{by_size.idxmin()} ({present.percent(by_size.min())})"
            )
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + "."


def story_regularizers(section: dict) -> str:
    values, table = section["results"], section["table"].set_index("method")
    winner, runner_up = values["best_regularizer"], values["reg_runner_up"]
    gap = values["reg_unregularized_gap"]
    regime = ("the unregularised network over-fits" if gap >= OVERFIT_GAP
              else "the unregularised network hardly over-fits, so this setting cannot rank "
              "regularisers")  # fmt: skip
    text = (
        f"{values['reg_seeds']} seeds, each with its own {values['reg_train_images']} training "
        f"images at {values['reg_image_size']} px, mini-batch order and initial kernels; at most "
        f"{values['reg_epoch_cap']} epochs with early stopping on validation (it fired before the "
        f"cap in {present.percent(values['reg_converged_fraction'], 0)} of the chosen runs). "
        f"Without regularisation, training accuracy exceeds validation accuracy by "
        f"{present.points(100 * gap)} "
        f"({_points_interval(values['reg_unregularized_gap_ci_low'], values['reg_unregularized_gap_ci_high'])}): "
        f"{regime}. "
    )  # fmt: skip
    chosen = [f"{m} {present.number(table.loc[m, 'strength'])}" for m in STRENGTH_METHODS
              if m in table.index]  # fmt: skip
    if chosen:
        text += "Strengths chosen on validation: " + ", ".join(chosen) + ". "
    row = table.loc[winner]
    text += (
        f"The best on validation is **{winner}** ({present.percent(row['val_acc'])}); on the test "
        f"set, scored once, it reaches {present.percent(row['test_acc'])} "
        f"({present.interval(row['ci_low'], row['ci_high'])})."
    )
    if runner_up:
        margin = present.points(100 * values["reg_winner_margin"])
        interval = _points_interval(
            values["reg_winner_margin_ci_low"], values["reg_winner_margin_ci_high"]
        )
        separated = "excludes" if values["best_regularizer_separated"] else "includes"
        text += (
            f" Its validation lead over {runner_up}, paired by seed, is {margin} ({interval}), "
            f"an interval that {separated} zero."
        )
    if section.get("results_dir") is not None:
        text += " " + claims.sentence("batchnorm_best", results.load_all(section["results_dir"]))
    return text


def story_high_learning_rates(section: dict) -> str:
    table = section["table"]
    fixes = table[(table["variant"] != "constant") & (table["diverged"] < 0.5)]
    tried = int((table["variant"] != "constant").sum())
    better = int((fixes["gain_vs_constant"] > 0).sum())
    if fixes.empty:
        return (f"None of the {tried} schedule or clipping settings kept half of its runs from "
                "diverging at these rates.")  # fmt: skip
    best = fixes.sort_values("gain_vs_constant", ascending=False).iloc[0]
    return (
        f"Among the settings where fewer than half of the runs diverged, the largest gain on "
        f"validation over a constant rate is **{best['variant']}** for {best['optimizer']} at "
        f"{present.number(best['lr'])} ({present.points(100 * best['gain_vs_constant'])}); "
        f"{better} of {tried} schedule or clipping settings beat the constant rate without "
        "diverging."
    )
