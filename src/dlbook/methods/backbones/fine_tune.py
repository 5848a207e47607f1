"""Fine-tuning a backbone's last blocks and a linear head, on feature maps computed once.

A backbone is cut before its last ``blocks`` blocks (``split``). Blocks are read from layer names
(``BLOCK_NAMES``): ``block<k>_...`` (EfficientNet-Lite, VGG16), ``features_<k>_...`` (torchvision's
MobileNetV2, whose blocks are the inverted residuals and the final 1x1 convolution) and
``mixed_<k>...`` (the 2015 InceptionV3, whose blocks are its Inception modules). The frozen ``bottom`` runs once over every image
(``boundary_maps``, cached on disk); ``train_top`` then trains only the top blocks and a sigmoid
head on those maps, so an epoch costs a fraction of a full pass. Batch-norm statistics stay
frozen (the top runs in inference mode) and there is no augmentation.

``train_top`` calls ``model.fit`` on the arrays itself rather than ``dlbook.methods.training.fit``:
that helper feeds a ``tf.data`` pipeline shuffled by its own seed, a different mini-batch order
from Keras's array shuffling, so the trained weights (and the chapter's numbers) would change.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import numpy as np

from dlbook.core import cache
from dlbook.methods import backbones

MAPS_BATCH = 64  # images per call of the bottom part
PREDICT_BATCH = 256  # maps per call of the fine-tuned model
FIT_BATCH = 32


BLOCK_NAMES = (
    re.compile(r"^block(\d+)_"),
    re.compile(r"^features_(\d+)_"),
    re.compile(r"^mixed(?:_(\d+))?(?:\.|$)"),
)
"""Layer-name patterns of a block's layers, the block number in the group (``mixed``: block 0).
A backbone's blocks follow the first pattern any of its layers matches."""


def layer_blocks(backbone) -> dict[str, int]:
    """``{layer name: block number}`` for the backbone's layers that belong to a block."""
    for pattern in BLOCK_NAMES:
        found = {}
        for layer in backbone.layers:
            match = pattern.match(layer.name)
            if match:
                found[layer.name] = int(match.group(1) or 0)
        if found:
            return found
    return {}


def block_numbers(backbone) -> list[int]:
    """The sorted block numbers of the backbone's layers (see ``BLOCK_NAMES``)."""
    return sorted(set(layer_blocks(backbone).values()))


def split(backbone, blocks: int):
    """Cut a backbone before its last ``blocks`` blocks.

    Returns
    -------
    (bottom, top, boundary): ``bottom`` maps images to the feature maps entering the first of
    those blocks, ``top`` maps those to the pooled features; they share the backbone's layers,
    so training ``top`` updates ``backbone``. ``boundary`` names the first top layer.

    Raises
    ------
    ValueError
        If ``blocks`` is not between 1 and the number of blocks minus one, or the block's first
        layer does not take one tensor that everything after it depends on.
    """
    import keras

    owner = layer_blocks(backbone)
    numbers = sorted(set(owner.values()))
    if not 1 <= blocks < len(numbers):
        raise ValueError(f"blocks={blocks!r} must be between 1 and {len(numbers) - 1}")
    # Layers come in topological order, so the first layer of the block takes its input.
    first = next(layer for layer in backbone.layers if owner.get(layer.name) == numbers[-blocks])
    if isinstance(first.input, (list, tuple)):
        raise ValueError(f"{backbone.name}: {first.name} takes several inputs; cannot cut there")
    bottom = keras.Model(backbone.input, first.input, name="bottom")
    top = keras.Model(first.input, backbone.output, name="top")
    return bottom, top, first.name


def feature_maps(bottom, images: np.ndarray) -> np.ndarray:
    """``bottom``'s outputs for ``images`` (N, H, W, 3), as float16, shape (N, h, w, c)."""
    return np.concatenate(
        [
            np.asarray(
                bottom.predict_on_batch(images[i : i + MAPS_BATCH].astype(np.float32)), np.float16
            )
            for i in range(0, len(images), MAPS_BATCH)
        ]
    )


def boundary_maps(name: str, images: np.ndarray, blocks: int) -> np.ndarray:
    """The feature maps of ``images`` where fine-tuning of backbone ``name`` starts (cached).

    Parameters
    ----------
    name : a key of ``backbones.BACKBONES`` with ImageNet weights here.
    images : ndarray, shape (N, H, W, 3), uint8.
    blocks : how many last blocks are fine-tuned.

    Returns
    -------
    ndarray, shape (N, h, w, c), float16; the entry is keyed by the weights and the images.
    """
    bottom, _, boundary = split(backbones.load(name), blocks)
    key = cache.digest("boundary_maps", name, backbones.weights_sha256(name), boundary, images)
    return cache.cached_array(
        "boundary_maps", key, lambda: feature_maps(bottom, images), name=f"{name}-{boundary}"
    )


def train_top(
    load_backbone: Callable[[], object],
    maps: np.ndarray,
    labels: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    head: tuple[np.ndarray, float],
    *,
    blocks: int,
    epochs: int,
    patience: int,
    learning_rate: float,
    seed: int = 0,
) -> dict:
    """Fine-tune the last ``blocks`` blocks of a fresh backbone and a linear head on ``maps``.

    Parameters
    ----------
    load_backbone : zero-argument function returning the backbone (called after seeding).
    maps : ndarray, shape (N, h, w, c), float16: ``boundary_maps`` of the N images.
    labels : ndarray, shape (N,), int.
    train, val : ndarray, shape (N,), bool: trains on ``train``, stops early on ``val`` loss.
    head : (weights (D,), bias): the linear head to start from.
    epochs, patience, learning_rate : the cap on epochs, early stopping's patience, Adam's rate.

    Returns
    -------
    dict with ``probs`` (N,) float64, ``head`` (trained weights, bias), ``backbone`` (the
    whole backbone, its top blocks trained), ``epochs``, ``stopped_early``, ``seconds``.
    """
    import keras

    from dlbook.methods import training

    keras.utils.set_random_seed(seed)
    backbone = load_backbone()
    _, top, _ = split(backbone, blocks)
    for layer in top.layers:
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
    inputs = keras.Input(maps.shape[1:])
    dense = keras.layers.Dense(1, name="logit")
    logit = dense(top(inputs, training=False))
    dense.set_weights([np.asarray(head[0]).reshape(-1, 1), np.array([head[1]], np.float32)])
    model = keras.Model(inputs, keras.layers.Activation("sigmoid")(logit))
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=training.STEPS_PER_EXECUTION,
    )
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=patience, restore_best_weights=True
    )
    start = time.perf_counter()
    history = model.fit(
        maps[train].astype(np.float32),
        labels[train].astype(np.float32),
        validation_data=(maps[val].astype(np.float32), labels[val].astype(np.float32)),
        epochs=epochs,
        batch_size=FIT_BATCH,
        callbacks=[stop],
        verbose=0,
    )
    probs = np.concatenate(
        [
            np.asarray(model.predict_on_batch(maps[i : i + PREDICT_BATCH].astype(np.float32)))
            for i in range(0, len(maps), PREDICT_BATCH)
        ]
    )
    weights, bias = dense.get_weights()
    return {
        "probs": probs.reshape(-1).astype(np.float64),
        "head": (weights[:, 0], float(bias[0])),
        "backbone": backbone,
        "epochs": len(history.history["loss"]),
        "stopped_early": bool(stop.stopped_epoch > 0),
        "seconds": time.perf_counter() - start,
    }
