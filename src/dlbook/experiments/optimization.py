"""Chapter 2's experiments: optimiser paths, learning-rate / batch-size / initialisation sweeps,
regularisers and schedules, on small networks over low-resolution face-mask images.

The NumPy optimisers of ``dlbook.optim`` are first shown equal to Keras's (``keras_match``); the
sweeps then run in Keras. To make a sweep cheap, one Keras model holds several *independent*
members (the same architecture, different seeds or initialisers) side by side on the same input,
and is trained on the sum of their losses: each member's gradient is exactly the gradient of its
own loss, and every optimiser here keeps per-parameter state, so one ``fit`` call trains all the
members as if they had been trained one by one on the same mini-batches. (Per-variable clipping
stays per member because members share no variables; a *global* norm would couple them, so it is
not used in the sweeps.)
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from dlbook import data, metrics, optim

STEPS_PER_EXECUTION = 8
"""Mini-batch steps per compiled call: the models are tiny, so per-call overhead dominates."""
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

        self.members = len(list(member_seeds))
        self.model = build_members(input_dim, member_seeds, hidden, initializers, regularizer)
        self.schedule = _table_schedule(max_steps)
        keras_optimizer = optim.make_keras_optimizer(optimizer, self.schedule, **(clipping or {}))
        self.model.compile(
            optimizer=keras_optimizer,
            loss=summed_member_loss,
            steps_per_execution=STEPS_PER_EXECUTION,
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


def regularizer_study(
    splits,
    methods,
    seeds,
    train_size=200,
    epochs=40,
    batch_size=32,
    hidden=128,
    optimizer="adam",
    learning_rate=3e-3,
    subset_seed=0,
) -> pd.DataFrame:
    """Each regulariser on a reduced training set (``train_size`` images, where a wide network
    over-fits), ``len(seeds)`` members each; scored on the test split after the last epoch.

    Returns
    -------
    DataFrame, one row per (method, seed): ``test_acc``, ``train_acc``, ``test_loss``.
    """
    x_small, y_small = subsample(*splits["train"], train_size, subset_seed)
    rows = []
    for method in methods:
        parse_regularizer(method)
        result = train_members(
            splits,
            optimizer,
            learning_rate,
            seeds,
            epochs,
            batch_size,
            regularizer=method,
            hidden=hidden,
            train=(x_small, y_small),
            eval_split="test",
        )
        train_loss = result["train_loss"][-1]
        for k, seed in enumerate(seeds):
            rows.append(
                {
                    "method": method,
                    "seed": seed,
                    "test_acc": result["eval_acc"][-1, k],
                    "test_loss": result["eval_loss"][-1, k],
                    "train_loss": train_loss[k],
                }
            )
    return pd.DataFrame(rows)


def regularizer_table(study: pd.DataFrame) -> pd.DataFrame:
    """Per method: mean test accuracy with its 95% Student-t interval, sorted best first."""
    rows = []
    for method, group in study.groupby("method", sort=False):
        mean, low, high = metrics.mean_confidence_interval(group["test_acc"].to_numpy())
        rows.append({"method": method, "test_acc": mean, "ci_low": low, "ci_high": high,
                     "train_loss": group["train_loss"].mean(), "seeds": len(group)})  # fmt: skip
    return pd.DataFrame(rows).sort_values("test_acc", ascending=False).reset_index(drop=True)


def separated_winner(table: pd.DataFrame) -> str:
    """The top method if its interval lies wholly above every other method's interval, else
    ``"none-clear"``. ``table`` is ``regularizer_table`` output."""
    top = table.iloc[0]
    others = table.iloc[1:]
    if len(others) and (top["ci_low"] > others["ci_high"]).all():
        return str(top["method"])
    return "none-clear"


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


def chapter_results(
    match: pd.DataFrame,
    runs: pd.DataFrame,
    learning_rates: np.ndarray,
    seeds,
    batch: pd.DataFrame,
    regularizers: pd.DataFrame,
    high_lr: pd.DataFrame,
) -> dict:
    """The flat result keys the chapter saves (see the chapter's results section)."""
    out = {
        "keras_match_max_abs_diff": float(match["max_abs_diff"].max()),
        "keras_match_steps": int(match["steps"].min()),
        "lr_values": len(learning_rates),
        "lr_min": float(np.min(learning_rates)),
        "lr_max": float(np.max(learning_rates)),
        "seeds": len(seeds),
        "sweep_runs": len(runs),
        "diverged_share": float(runs["diverged"].mean()),
    }
    for _, row in best_learning_rates(runs).iterrows():
        out[f"best_lr_{row['optimizer']}"] = float(row["best_lr"])
        out[f"best_val_acc_{row['optimizer']}"] = float(row["val_acc"])
    for _, row in best_learning_rates(runs, by=("optimizer", "initializer")).iterrows():
        out[f"best_lr_{row['optimizer']}_{row['initializer']}"] = float(row["best_lr"])
    for (rule, size), group in batch.groupby(["rule", "batch_size"]):
        out[f"batch_val_acc_{rule}_{size}"] = float(group["val_acc"].mean())
    for _, row in regularizers.iterrows():
        out[f"reg_test_acc_{row['method']}"] = float(row["test_acc"])
        out[f"reg_test_acc_ci_low_{row['method']}"] = float(row["ci_low"])
        out[f"reg_test_acc_ci_high_{row['method']}"] = float(row["ci_high"])
    out["reg_seeds"] = int(regularizers["seeds"].min())
    out["best_regularizer"] = separated_winner(regularizers)
    out["highest_mean_regularizer"] = str(regularizers.iloc[0]["method"])
    table = high_lr_table(high_lr)
    for _, row in table.iterrows():
        out[f"high_lr_val_acc_{row['optimizer']}_{row['lr']:.3g}_{row['variant']}"] = float(
            row["val_acc"]
        )
    return out
