"""Small CNNs side by side in one Keras model, one per seed, for the regulariser study.

Each seed's CNN reads its own slice of the input (its own training subsample) and the penalties
and dropout rate are Keras variables, so one compiled model serves every regulariser and strength
(``CnnMemberTrainer``): a run restores the initial state, sets the variables, and trains with early
stopping on validation.
"""

from __future__ import annotations

import numpy as np

from dlbook.experiments.optimization.members import summed_member_loss
from dlbook.methods import optim


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
