"""The book's one-stage mask detector: a small anchor-free head on frozen EfficientNet-Lite maps.

Each photo is scaled so its long side is ``input_size`` pixels and padded (bottom and right, so a
box maps back by one division) into a square. The frozen ImageNet backbone runs once per photo
and its stride-8 and stride-16 feature maps (the inputs of the first blocks that halve the
resolution again) are cached by content (``feature_maps``). The head (``build_head``) merges
the two maps at stride 8 and predicts the class heatmap, box size and centre offset that
``targets`` encodes and decodes; ``head_loss`` is CenterNet's penalty-reduced focal loss on the
heatmap plus L1 on size and offset at face centres. Only the head trains (``train_epoch``), so
an epoch over a few hundred photos takes seconds on a CPU.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from dlbook.core import cache
from dlbook.facemask.detect.own import targets
from dlbook.methods import backbones
from dlbook.methods.backbones import efficientnet_lite

STRIDES = (8, 16)
"""The backbone maps the head reads; the head predicts at the first."""
MAPS_BATCH = 8  # photos per backbone call: 640 px inputs are large
MULTIPLE = 16  # input sides are padded to a multiple of the coarsest stride
FOCAL_ALPHA, FOCAL_BETA = 2.0, 4.0  # CenterNet's exponents
PRIOR = 0.1  # initial heatmap probability, so early focal loss is not swamped by background


def letterbox(image: Image.Image, input_size: int) -> tuple[np.ndarray, float]:
    """The photo scaled so its long side is ``input_size``, padded with zeros (bottom, right) to
    a multiple of ``MULTIPLE`` pixels on each side.

    Only up to the multiple, not to a square: the backbone then spends no work on padding
    (about a third of a square for these photos); ``pad_maps`` squares the maps instead.

    Returns
    -------
    (pixels (H, W, 3) uint8 with max(H, W) = input_size rounded up to ``MULTIPLE``, scale):
    input pixels = photo pixels * scale.
    """
    image = image.convert("RGB")
    scale = input_size / max(image.size)
    width = max(1, min(input_size, round(image.size[0] * scale)))
    height = max(1, min(input_size, round(image.size[1] * scale)))
    pixels = np.zeros((_round_up(height), _round_up(width), 3), np.uint8)
    pixels[:height, :width] = np.asarray(image.resize((width, height), Image.BILINEAR))
    return pixels, scale


def _round_up(size: int) -> int:
    return -(-size // MULTIPLE) * MULTIPLE


def block_boundaries(name: str, strides=STRIDES) -> dict[int, str]:
    """For each stride, the prefix of the block whose input is the last map at that stride.

    EfficientNet-Lite halves the resolution in its stem and in each block of stride 2; the map
    entering the block that takes stride ``s`` to ``2 s`` is the deepest one at stride ``s``.
    """
    boundaries, current = {}, 2
    for block in efficientnet_lite.block_args(name):
        if block.stride == 2:
            if current in strides:
                boundaries[current] = f"block{block.index}_"
            current *= 2
    missing = [s for s in strides if s not in boundaries]
    if missing:
        raise ValueError(f"strides {missing} have no stride-2 block after them in {name!r}")
    return boundaries


@functools.cache  # built once per process: loading the weights takes seconds
def multi_scale_model(name: str, strides=STRIDES):
    """A Keras model from RGB [0, 255] images (N, H, W, 3) to the backbone's maps at ``strides``.

    Outputs: a list, one float32 array (N, H / s, W / s, c_s) per stride ``s``.
    """
    import keras

    if backbones.spec(name).family != "efficientnet_lite":
        raise ValueError(f"name={name!r}: the detector cuts EfficientNet-Lite backbones only")
    backbone = backbones.load(name)
    outputs = []
    for prefix in block_boundaries(name, strides).values():
        first = next(layer for layer in backbone.layers if layer.name.startswith(prefix))
        outputs.append(first.input)
    return keras.Model(backbone.input, outputs, name=f"{name}_maps")


def _compute_maps(model, images: list[np.ndarray]) -> list[list[np.ndarray]]:
    """The model's maps of each image; images of one shape go through together."""
    maps = [None] * len(images)
    by_shape = {}
    for k, image in enumerate(images):
        by_shape.setdefault(image.shape, []).append(k)
    for index in by_shape.values():
        for start in range(0, len(index), MAPS_BATCH):
            chosen = index[start : start + MAPS_BATCH]
            batch = np.stack([images[k] for k in chosen]).astype(np.float32)
            outputs = model.predict_on_batch(batch)
            for j, k in enumerate(chosen):
                maps[k] = [np.asarray(out[j], np.float16) for out in outputs]
    return maps


def feature_maps(name: str, images: list[np.ndarray], strides=STRIDES) -> list[list[np.ndarray]]:
    """The backbone's maps of letterboxed photos, cached per photo by weights and pixels.

    Parameters
    ----------
    name : an EfficientNet-Lite key of ``backbones.BACKBONES``.
    images : list of N ndarrays (H, W, 3) uint8: ``letterbox`` outputs.

    Returns
    -------
    list, per stride ``s``, of N ndarrays (H / s, W / s, c_s) float16.
    """
    weights = backbones.weights_sha256(name)
    keys = [
        [cache.digest("own_detector_maps", name, weights, stride, image) for image in images]
        for stride in strides
    ]
    todo = [
        k
        for k in range(len(images))
        if not all(cache.entry("own_detector_maps", key[k], ".npy").exists() for key in keys)
    ]
    computed = {}
    if todo:
        maps = _compute_maps(multi_scale_model(name, tuple(strides)), [images[k] for k in todo])
        computed = dict(zip(todo, maps, strict=True))
    return [
        [
            cache.cached_array("own_detector_maps", key[k], lambda k=k, s=s: computed[k][s])
            for k in range(len(images))
        ]
        for s, key in enumerate(keys)
    ]


def pad_maps(maps: list[np.ndarray], cells: int) -> np.ndarray:
    """Per-photo maps (h_k, w_k, c) stacked into (N, cells, cells, c), zeros at bottom and right.

    Training and prediction pad alike, so the head learns that zero maps hold no face.
    """
    out = np.zeros((len(maps), cells, cells, maps[0].shape[-1]), np.float16)
    for k, m in enumerate(maps):
        out[k, : m.shape[0], : m.shape[1]] = m
    return out


def build_head(
    channels: dict[int, int], n_classes: int, width: int = 64, depth: int = 2, dropout: float = 0.0
):
    """The detection head: stride-16 map up-sampled and added to the stride-8 map, then
    ``depth`` separable 3 x 3 convolutions and three 1 x 1 outputs. ``dropout`` drops whole
    channels of the merged map while training: with the backbone frozen no image augmentation
    reaches the head, and it otherwise memorises the train photos within a few epochs.

    Parameters
    ----------
    channels : {stride: channels} of the backbone maps, e.g. {8: 40, 16: 112} for Lite0.
    width : channels inside the head.

    Returns
    -------
    keras.Model: inputs [(N, h, w, c_8), (N, h / 2, w / 2, c_16)] float32; outputs
    [heatmap logits (N, h, w, n_classes), size (N, h, w, 2), offset (N, h, w, 2)].
    """
    import keras
    from keras import layers

    fine_in = keras.Input((None, None, channels[8]), name="maps_s8")
    coarse_in = keras.Input((None, None, channels[16]), name="maps_s16")
    fine = layers.Conv2D(width, 1, activation="relu", name="lateral_s8")(fine_in)
    coarse = layers.Conv2D(width, 1, activation="relu", name="lateral_s16")(coarse_in)
    x = layers.Add(name="merge")([fine, layers.UpSampling2D(2, name="up_s16")(coarse)])
    if dropout:
        x = layers.SpatialDropout2D(dropout, name="dropout")(x)
    for k in range(depth):
        x = layers.SeparableConv2D(width, 3, padding="same", activation="relu", name=f"conv{k}")(x)
    prior = float(-np.log((1 - PRIOR) / PRIOR))
    heat = layers.Conv2D(
        n_classes, 1, bias_initializer=keras.initializers.Constant(prior), name="heatmap"
    )(x)
    size = layers.Conv2D(2, 1, name="size")(x)
    offset = layers.Conv2D(2, 1, activation="sigmoid", name="offset")(x)
    return keras.Model([fine_in, coarse_in], [heat, size, offset], name="own_detector_head")


def head_loss(outputs, target: dict, size_weight: float = 1.0, class_weights=None):
    """CenterNet's loss of one batch: focal loss on the heatmap, L1 on size and offset.

    ``outputs`` as ``build_head`` returns them; ``target`` as ``targets.encode_many`` (tensors).
    Both terms are divided by the number of face centres in the batch. ``class_weights``
    (n_classes,) scales each class's positive (face-centre) term, so a rare class's few centres
    are not outvoted (None: all 1).

    Returns
    -------
    (total, focal, box): scalar tensors.
    """
    import tensorflow as tf

    logits, size, offset = outputs
    prob = tf.clip_by_value(tf.sigmoid(logits), 1e-4, 1 - 1e-4)
    heat = target["heatmap"]
    positive = tf.cast(tf.equal(heat, 1.0), tf.float32)
    pos_loss = -tf.math.log(prob) * (1 - prob) ** FOCAL_ALPHA * positive
    if class_weights is not None:
        pos_loss = pos_loss * tf.constant(np.asarray(class_weights, np.float32))
    neg_loss = (
        -tf.math.log(1 - prob) * prob**FOCAL_ALPHA * (1 - heat) ** FOCAL_BETA * (1 - positive)
    )
    centres = tf.maximum(tf.reduce_sum(target["mask"]), 1.0)
    focal = (tf.reduce_sum(pos_loss) + tf.reduce_sum(neg_loss)) / centres
    box = (
        size_weight * tf.reduce_sum(tf.abs(size - target["size"]) * target["mask"])
        + tf.reduce_sum(tf.abs(offset - target["offset"]) * target["mask"])
    ) / centres
    return focal + box, focal, box


def make_train_step(head, optimizer, size_weight: float = 1.0, class_weights=None):
    """A compiled function ``step(fine, coarse, target) -> (total, focal, box)`` that updates
    ``head``'s weights once."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True, autograph=False)  # no Python control flow inside
    def step(fine, coarse, target):
        with tf.GradientTape() as tape:
            losses = head_loss(
                head([fine, coarse], training=True), target, size_weight, class_weights
            )
        grads = tape.gradient(losses[0], head.trainable_variables)
        optimizer.apply_gradients(zip(grads, head.trainable_variables, strict=True))
        return losses

    return step


def train_epoch(step, maps: list[np.ndarray], target: dict, order: np.ndarray, batch: int) -> dict:
    """One pass over the photos in ``order``, ``batch`` at a time.

    Parameters
    ----------
    maps : [stride-8 maps (N, h, w, c_8), stride-16 maps (N, h/2, w/2, c_16)], float16.
    target : ``targets.encode_many`` arrays, (N, h, w, ...).
    order : ndarray (N,) int, the seeded permutation for this epoch.

    Returns
    -------
    dict: mean ``loss``, ``focal`` and ``box`` over the batches.
    """
    sums = np.zeros(3)
    batches = 0
    for start in range(0, len(order), batch):
        index = np.sort(order[start : start + batch])
        losses = step(
            maps[0][index].astype(np.float32),
            maps[1][index].astype(np.float32),
            {key: value[index] for key, value in target.items()},
        )
        sums += [float(v) for v in losses]
        batches += 1
    return dict(zip(("loss", "focal", "box"), (sums / max(batches, 1)).tolist(), strict=True))


def class_weights(labels: np.ndarray, n_classes: int, power: float) -> np.ndarray:
    """Weights (n_classes,) float64: (faces of the commonest class / faces of class c) ** power,
    1 for the commonest; a class without faces gets the largest weight seen."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.max() / np.maximum(counts, 1), np.nan) ** power
    return np.where(np.isnan(weights), np.nanmax(weights), weights)


def averaged(average: list[np.ndarray] | None, weights: list[np.ndarray], decay: float) -> list:
    """Exponential moving average of weight lists: ``decay * average + (1 - decay) * weights``
    (``weights`` itself when there is no average yet)."""
    if average is None:
        return [w.copy() for w in weights]
    return [decay * a + (1 - decay) * w for a, w in zip(average, weights, strict=True)]


def predict_maps(head, maps: list[np.ndarray], batch: int = 16) -> list[np.ndarray]:
    """The head's heatmap probabilities (N, h, w, c), sizes and offsets (N, h, w, 2), float32."""
    parts = []
    for start in range(0, len(maps[0]), batch):
        logits, size, offset = head.predict_on_batch(
            [m[start : start + batch].astype(np.float32) for m in maps]
        )
        parts.append((1 / (1 + np.exp(-np.asarray(logits))), np.asarray(size), np.asarray(offset)))
    return [np.concatenate([p[k] for p in parts]) for k in range(3)]


def found_boxes(
    predicted: list[np.ndarray],
    scales,
    image_sizes,
    stride: int,
    min_score: float,
    max_boxes: int,
    max_iou: float = 1.0,
) -> list:
    """The evaluator's ``found`` list: boxes in the original photos' pixels, clipped to them,
    best first, overlaps above ``max_iou`` suppressed (``targets.suppress_overlaps``).

    Parameters
    ----------
    predicted : ``predict_maps`` output for N photos.
    scales : (N,) letterbox scales; image_sizes : (N,) (width, height) of the photos.
    """
    found = []
    for k, (scale, (width, height)) in enumerate(zip(scales, image_sizes, strict=True)):
        boxes, labels, scores = targets.decode(
            predicted[0][k], predicted[1][k], predicted[2][k], stride, min_score, max_boxes
        )
        boxes = np.clip(boxes / scale, 0, [width, height, width, height])
        keep = np.flatnonzero((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))
        keep = keep[targets.suppress_overlaps(boxes[keep], scores[keep], max_iou)]
        found.append((boxes[keep], labels[keep], scores[keep]))
    return found
