"""Keras builders for the architecture families.

One builder per family, all with the signature of ``keras.applications``::

    build_<name>(input_shape, num_classes, **options) -> keras.Model

found through one registry, ``BUILDERS``, or ``build(name, ...)``. The families are compact
variants that train from scratch on 2 CPU cores:

- ``ann``: a multilayer perceptron on the flattened pixels;
- ``cnn``: a plain stack of convolution blocks (the "custom CNN"), with optional augmentation layers;
- ``resnet``: residual blocks with identity shortcuts, and 1x1 projection shortcuts where the shape
  changes;
- ``inception``: inception modules, parallel 1x1 / 3x3 / 5x5 / pooling branches concatenated;
- ``mobilenet``: a depthwise-separable block, then inverted residuals (1x1 expansion, 3x3 depthwise,
  linear 1x1 projection, ReLU6).

Every model takes raw pixel values in [0, 255] (float or uint8 cast to float) and rescales them
itself, so callers never preprocess. The output is a softmax over ``num_classes`` (a sigmoid unit
when ``num_classes == 1``).

``build_reference`` makes the full-size ``keras.applications`` models (without weights) for
comparison; what a model costs (FLOPs, latency) is measured in ``dlbook.methods.costs``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np
from keras import layers

BN_MOMENTUM = 0.9
"""Batch-norm moving-average momentum. Keras's 0.99 leaves the inference statistics far behind the
weights after the few hundred steps of a short CPU budget, and the models then predict one class."""

# ---------------------------------------------------------------------------------------------
# Validation and the parts every family shares


def _check_input_shape(input_shape) -> tuple[int, int, int]:
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
    if (
        shape is None
        or len(shape) != 3
        or not all(isinstance(s, (int, np.integer)) and s > 0 for s in shape)
    ):
        raise ValueError(
            f"input_shape={input_shape!r} is not accepted; give (height, width, channels) "
            "as three positive integers, e.g. (64, 64, 3)"
        )
    return tuple(int(s) for s in shape)


def _check_num_classes(num_classes) -> int:
    if not isinstance(num_classes, (int, np.integer)) or isinstance(num_classes, bool):
        raise ValueError(f"num_classes={num_classes!r} must be a positive integer")
    if num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r} must be at least 1 (1 = one sigmoid unit)")
    return int(num_classes)


def _check_positive_ints(name: str, values, allow_empty: bool = False) -> tuple[int, ...]:
    values = tuple(values) if isinstance(values, (tuple, list)) else None
    if (
        values is None
        or (not values and not allow_empty)
        or not all(isinstance(v, (int, np.integer)) and v > 0 for v in values)
    ):
        raise ValueError(f"{name}={values!r} must be a sequence of positive integers")
    return tuple(int(v) for v in values)


def _check_rate(name: str, value) -> float:
    if not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name}={value!r} must be a number in [0, 1)")
    return float(value)


def augmentation_layers(
    flip: bool = True,
    rotation: float = 0.05,
    zoom: float = 0.1,
    contrast: float = 0.1,
    seed: int | None = None,
) -> list[keras.layers.Layer]:
    """Random augmentation layers, active in training only (identity at inference).

    Parameters
    ----------
    flip : random horizontal flips (a face-mask image stays one when mirrored).
    rotation : largest rotation as a fraction of a full turn (0 turns it off).
    zoom : largest zoom in or out as a fraction of the side (0 turns it off).
    contrast : largest contrast change as a fraction (0 turns it off).
    seed : seed of the layers' random draws (None: from Keras's global seed).
    """
    for name, value in (("rotation", rotation), ("zoom", zoom), ("contrast", contrast)):
        if not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ValueError(f"{name}={value!r} must be a number in [0, 1)")
    chosen: list[keras.layers.Layer] = []
    if flip:
        chosen.append(layers.RandomFlip("horizontal", seed=seed, name="aug_flip"))
    if rotation:
        chosen.append(
            layers.RandomRotation(rotation, fill_mode="reflect", seed=seed, name="aug_rot")
        )
    if zoom:
        chosen.append(layers.RandomZoom(zoom, fill_mode="reflect", seed=seed, name="aug_zoom"))
    if contrast:
        # RandomContrast needs value_range: the images are still in [0, 255] at this point.
        chosen.append(
            layers.RandomContrast(contrast, value_range=(0, 255), seed=seed, name="aug_contrast")
        )
    return chosen


def _inputs_and_rescale(input_shape, augmentation=None):
    """Input layer, optional augmentation (on raw pixels), then rescaling to [0, 1]."""
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = inputs
    for layer in augmentation or ():
        x = layer(x)
    x = layers.Rescaling(1.0 / 255, name="rescale")(x)
    return inputs, x


def _classifier_head(x, num_classes: int, dropout: float):
    if dropout:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    activation = "sigmoid" if num_classes == 1 else "softmax"
    return layers.Dense(num_classes, activation=activation, name="predictions")(x)


def _conv_bn_relu(x, filters: int, kernel_size: int, strides: int = 1, name: str = "conv"):
    x = layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


# ---------------------------------------------------------------------------------------------
# The five families


def build_ann(
    input_shape,
    num_classes: int,
    hidden_units: Sequence[int] = (256, 128),
    dropout: float = 0.2,
) -> keras.Model:
    """A multilayer perceptron on the flattened, rescaled pixels.

    Parameters
    ----------
    input_shape : (H, W, C) of the images.
    num_classes : number of output classes.
    hidden_units : width of each hidden ReLU layer.
    dropout : dropout rate after each hidden layer and before the output.
    """
    input_shape = _check_input_shape(input_shape)
    num_classes = _check_num_classes(num_classes)
    hidden_units = _check_positive_ints("hidden_units", hidden_units)
    dropout = _check_rate("dropout", dropout)
    inputs, x = _inputs_and_rescale(input_shape)
    x = layers.Flatten(name="flatten")(x)
    for index, units in enumerate(hidden_units):
        x = layers.Dense(units, activation="relu", name=f"dense{index}")(x)
        if dropout and index < len(hidden_units) - 1:
            x = layers.Dropout(dropout, name=f"dropout{index}")(x)
    outputs = _classifier_head(x, num_classes, dropout)
    return keras.Model(inputs, outputs, name="ann")


def build_cnn(
    input_shape,
    num_classes: int,
    filters: Sequence[int] = (32, 64, 128),
    convs_per_block: int = 1,
    dense_units: int = 128,
    dropout: float = 0.3,
    augmentation: bool | Sequence[keras.layers.Layer] = False,
    seed: int | None = None,
) -> keras.Model:
    """A plain convolution stack: [conv 3x3 - BN - ReLU] x ``convs_per_block``, then 2x2 max-pool.

    Parameters
    ----------
    input_shape : (H, W, C) of the images.
    num_classes : number of output classes.
    filters : filters of each block; each block halves the spatial size.
    convs_per_block : 3x3 convolutions per block.
    dense_units : width of the dense layer after global average pooling (0: none).
    dropout : dropout rate before the output layer.
    augmentation : False (none), True (``augmentation_layers(seed=seed)``), or a sequence of
        Keras layers applied to the raw pixels, in training only.
    seed : seed of the default augmentation layers.
    """
    input_shape = _check_input_shape(input_shape)
    num_classes = _check_num_classes(num_classes)
    filters = _check_positive_ints("filters", filters)
    if not isinstance(convs_per_block, (int, np.integer)) or convs_per_block < 1:
        raise ValueError(f"convs_per_block={convs_per_block!r} must be a positive integer")
    if not isinstance(dense_units, (int, np.integer)) or dense_units < 0:
        raise ValueError(f"dense_units={dense_units!r} must be a non-negative integer")
    dropout = _check_rate("dropout", dropout)
    if augmentation is True:
        augmentation = augmentation_layers(seed=seed)
    elif augmentation is False or augmentation is None:
        augmentation = []
    elif not all(isinstance(layer, keras.layers.Layer) for layer in augmentation):
        raise ValueError(
            f"augmentation={augmentation!r} must be True, False or a sequence of Keras layers"
        )
    inputs, x = _inputs_and_rescale(input_shape, augmentation)
    for block, width in enumerate(filters):
        for index in range(convs_per_block):
            x = _conv_bn_relu(x, width, 3, name=f"block{block}_{index}")
        x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if dense_units:
        x = layers.Dense(dense_units, activation="relu", name="dense")(x)
    outputs = _classifier_head(x, num_classes, dropout)
    return keras.Model(inputs, outputs, name="cnn")


def residual_block(x, filters: int, strides: int = 1, name: str = "res"):
    """Basic residual block: two 3x3 convolutions plus a shortcut.

    The shortcut is the identity when the shape is unchanged, else a strided 1x1 projection.
    """
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(
            filters, 1, strides=strides, use_bias=False, name=f"{name}_proj_conv"
        )(x)
        shortcut = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_proj_bn")(shortcut)
    y = _conv_bn_relu(x, filters, 3, strides=strides, name=f"{name}_a")
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_b_conv")(y)
    y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_b_bn")(y)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.ReLU(name=f"{name}_out")(y)


def build_resnet(
    input_shape,
    num_classes: int,
    stem_filters: int = 16,
    stage_filters: Sequence[int] = (16, 32, 64),
    blocks_per_stage: int = 2,
    dropout: float = 0.2,
) -> keras.Model:
    """A small ResNet: 3x3 stem, then stages of basic residual blocks (stride 2 between stages).

    Parameters
    ----------
    input_shape : (H, W, C) of the images.
    num_classes : number of output classes.
    stem_filters : filters of the stem convolution.
    stage_filters : filters of each stage; every stage after the first halves the spatial size.
    blocks_per_stage : residual blocks per stage.
    dropout : dropout rate before the output layer.
    """
    input_shape = _check_input_shape(input_shape)
    num_classes = _check_num_classes(num_classes)
    (stem_filters,) = _check_positive_ints("stem_filters", (stem_filters,))
    stage_filters = _check_positive_ints("stage_filters", stage_filters)
    if not isinstance(blocks_per_stage, (int, np.integer)) or blocks_per_stage < 1:
        raise ValueError(f"blocks_per_stage={blocks_per_stage!r} must be a positive integer")
    dropout = _check_rate("dropout", dropout)
    inputs, x = _inputs_and_rescale(input_shape)
    x = _conv_bn_relu(x, stem_filters, 3, strides=2, name="stem")
    for stage, width in enumerate(stage_filters):
        for block in range(blocks_per_stage):
            strides = 2 if stage > 0 and block == 0 else 1
            x = residual_block(x, width, strides=strides, name=f"stage{stage}_block{block}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = _classifier_head(x, num_classes, dropout)
    return keras.Model(inputs, outputs, name="resnet")


def inception_module(x, widths: Sequence[int], name: str = "inception"):
    """Inception module (GoogLeNet's, with batch norm): four parallel branches, concatenated.

    ``widths = (b1, b3_reduce, b3, b5_reduce, b5, pool_proj)``: a 1x1 branch; 1x1 then 3x3; 1x1
    then 5x5; 3x3 max-pool then 1x1. The output has ``b1 + b3 + b5 + pool_proj`` channels.
    """
    b1, b3_reduce, b3, b5_reduce, b5, pool_proj = widths
    branch1 = _conv_bn_relu(x, b1, 1, name=f"{name}_1x1")
    branch3 = _conv_bn_relu(x, b3_reduce, 1, name=f"{name}_3x3_reduce")
    branch3 = _conv_bn_relu(branch3, b3, 3, name=f"{name}_3x3")
    branch5 = _conv_bn_relu(x, b5_reduce, 1, name=f"{name}_5x5_reduce")
    branch5 = _conv_bn_relu(branch5, b5, 5, name=f"{name}_5x5")
    branch_pool = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    branch_pool = _conv_bn_relu(branch_pool, pool_proj, 1, name=f"{name}_pool_proj")
    return layers.Concatenate(name=f"{name}_concat")([branch1, branch3, branch5, branch_pool])


def build_inception(
    input_shape,
    num_classes: int,
    stem_filters: int = 32,
    module_widths: Sequence[Sequence[int]] = (
        (16, 16, 24, 4, 8, 8),
        (24, 24, 32, 8, 12, 12),
        (32, 32, 48, 8, 16, 16),
    ),
    dropout: float = 0.2,
) -> keras.Model:
    """A small GoogLeNet-style network: strided stem, then inception modules with 2x2 pooling between.

    Parameters
    ----------
    input_shape : (H, W, C) of the images.
    num_classes : number of output classes.
    stem_filters : filters of the strided 3x3 stem convolution.
    module_widths : one 6-tuple per module, see ``inception_module``; a max-pool halves the
        spatial size before every module after the first.
    dropout : dropout rate before the output layer.
    """
    input_shape = _check_input_shape(input_shape)
    num_classes = _check_num_classes(num_classes)
    (stem_filters,) = _check_positive_ints("stem_filters", (stem_filters,))
    if not isinstance(module_widths, (tuple, list)) or not module_widths:
        raise ValueError(
            f"module_widths={module_widths!r} must be a non-empty sequence of 6-tuples"
        )
    checked = []
    for widths in module_widths:
        widths = _check_positive_ints("module_widths entry", widths)
        if len(widths) != 6:
            raise ValueError(
                f"module_widths entry {widths!r} must have 6 widths "
                "(b1, b3_reduce, b3, b5_reduce, b5, pool_proj)"
            )
        checked.append(widths)
    dropout = _check_rate("dropout", dropout)
    inputs, x = _inputs_and_rescale(input_shape)
    x = _conv_bn_relu(x, stem_filters, 3, strides=2, name="stem")
    for index, widths in enumerate(checked):
        if index > 0:
            x = layers.MaxPooling2D(2, name=f"pool{index}")(x)
        x = inception_module(x, widths, name=f"inception{index}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = _classifier_head(x, num_classes, dropout)
    return keras.Model(inputs, outputs, name="inception")


def inverted_residual(x, expansion: int, filters: int, strides: int = 1, name: str = "ir"):
    """MobileNetV2 block: 1x1 expand + ReLU6, 3x3 depthwise + ReLU6, linear 1x1 projection.

    With ``expansion == 1`` the expansion is skipped (a depthwise-separable convolution). The
    input is added back when the shapes match (stride 1, same channels).
    """
    in_channels = x.shape[-1]
    y = x
    if expansion != 1:
        y = layers.Conv2D(in_channels * expansion, 1, use_bias=False, name=f"{name}_expand")(y)
        y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_expand_bn")(y)
        y = layers.ReLU(6.0, name=f"{name}_expand_relu")(y)
    y = layers.DepthwiseConv2D(
        3, strides=strides, padding="same", use_bias=False, name=f"{name}_depthwise"
    )(y)
    y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_depthwise_bn")(y)
    y = layers.ReLU(6.0, name=f"{name}_depthwise_relu")(y)
    y = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_project")(y)
    y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_project_bn")(y)
    if strides == 1 and in_channels == filters:
        y = layers.Add(name=f"{name}_add")([x, y])
    return y


def build_mobilenet(
    input_shape,
    num_classes: int,
    stem_filters: int = 16,
    blocks: Sequence[Sequence[int]] = (
        (1, 16, 1, 1),
        (4, 24, 2, 2),
        (4, 32, 2, 2),
        (4, 64, 2, 2),
    ),
    head_filters: int = 256,
    dropout: float = 0.2,
) -> keras.Model:
    """A small MobileNetV2: strided stem, inverted-residual stages, 1x1 head convolution.

    Parameters
    ----------
    input_shape : (H, W, C) of the images.
    num_classes : number of output classes.
    stem_filters : filters of the strided 3x3 stem convolution.
    blocks : ``(expansion, filters, repeats, stride)`` per stage, as in the MobileNetV2 paper's
        table; the stride applies to a stage's first block.
    head_filters : filters of the final 1x1 convolution (0: none).
    dropout : dropout rate before the output layer.
    """
    input_shape = _check_input_shape(input_shape)
    num_classes = _check_num_classes(num_classes)
    (stem_filters,) = _check_positive_ints("stem_filters", (stem_filters,))
    if not isinstance(blocks, (tuple, list)) or not blocks:
        raise ValueError(f"blocks={blocks!r} must be a non-empty sequence of 4-tuples")
    checked = []
    for stage in blocks:
        stage = _check_positive_ints("blocks entry", stage)
        if len(stage) != 4:
            raise ValueError(
                f"blocks entry {stage!r} must be (expansion, filters, repeats, stride)"
            )
        checked.append(stage)
    if not isinstance(head_filters, (int, np.integer)) or head_filters < 0:
        raise ValueError(f"head_filters={head_filters!r} must be a non-negative integer")
    dropout = _check_rate("dropout", dropout)
    inputs, x = _inputs_and_rescale(input_shape)
    x = layers.Conv2D(stem_filters, 3, strides=2, padding="same", use_bias=False, name="stem")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    for stage, (expansion, filters, repeats, stride) in enumerate(checked):
        for index in range(repeats):
            x = inverted_residual(
                x,
                expansion,
                filters,
                strides=stride if index == 0 else 1,
                name=f"stage{stage}_block{index}",
            )
    if head_filters:
        x = layers.Conv2D(head_filters, 1, use_bias=False, name="head")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="head_bn")(x)
        x = layers.ReLU(6.0, name="head_relu")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = _classifier_head(x, num_classes, dropout)
    return keras.Model(inputs, outputs, name="mobilenet")


BUILDERS: dict[str, Callable[..., keras.Model]] = {
    "ann": build_ann,
    "cnn": build_cnn,
    "resnet": build_resnet,
    "inception": build_inception,
    "mobilenet": build_mobilenet,
}
"""The architecture families by name; every builder has the same signature."""


def build(name: str, input_shape, num_classes: int, **options) -> keras.Model:
    """Build family ``name`` (a key of ``BUILDERS``) with the builder's ``options``."""
    if name not in BUILDERS:
        raise ValueError(f"name={name!r} is not a known family; use one of {tuple(BUILDERS)}")
    return BUILDERS[name](input_shape, num_classes, **options)


# ---------------------------------------------------------------------------------------------
# Full-size reference models from keras.applications


REFERENCE_MODELS: dict[str, tuple[str, tuple[int, int, int]]] = {
    "resnet50": ("ResNet50", (224, 224, 3)),
    "vgg16": ("VGG16", (224, 224, 3)),
    "inception_v3": ("InceptionV3", (299, 299, 3)),
    "mobilenet_v2": ("MobileNetV2", (224, 224, 3)),
}
"""``keras.applications`` class name and native input shape of each full-size reference model."""


def build_reference(name: str, input_shape=None, num_classes: int = 1000) -> keras.Model:
    """Build a full-size ``keras.applications`` model with random weights (``weights=None``).

    Parameters
    ----------
    name : a key of ``REFERENCE_MODELS``.
    input_shape : (H, W, C); None uses the model's native ImageNet size.
    num_classes : size of the classifier (1000 as on ImageNet).
    """
    if name not in REFERENCE_MODELS:
        raise ValueError(
            f"name={name!r} is not a reference model; use one of {tuple(REFERENCE_MODELS)}"
        )
    class_name, native_shape = REFERENCE_MODELS[name]
    input_shape = native_shape if input_shape is None else _check_input_shape(input_shape)
    constructor = getattr(keras.applications, class_name)
    return constructor(
        weights=None, input_shape=input_shape, classes=_check_num_classes(num_classes)
    )
