"""Keras models holding several independent networks ("members"), trained in one ``fit``.

To make a sweep cheap, one Keras model holds several *independent* members (the same
architecture, different seeds or initialisers) side by side on the same input, and is trained on
the sum of their losses: each member's gradient is exactly the gradient of its own loss, and every
optimiser here keeps per-parameter state, so one ``fit`` call trains all the members as if they had
been trained one by one on the same mini-batches. (Per-variable clipping stays per member because
members share no variables; a *global* norm would couple them, so it is not used in the sweeps.)
"""

from __future__ import annotations

import time

import numpy as np

from dlbook.methods import optim

REGULARIZERS = ("none", "l1", "l2", "dropout", "batchnorm")
INITIALIZERS = ("he", "xavier")
DIVERGED_LOSS = 1.5 * np.log(2.0)
"""A member whose final validation loss is above 1.5x that of a constant 50/50 guess (or not
finite) is marked diverged."""


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


def diverged(final_loss: np.ndarray) -> np.ndarray:
    """True where a final loss is not finite or above ``DIVERGED_LOSS``."""
    final_loss = np.asarray(final_loss, dtype=np.float64)
    return ~np.isfinite(final_loss) | (final_loss > DIVERGED_LOSS)
