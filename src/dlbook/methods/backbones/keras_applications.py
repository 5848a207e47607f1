"""The ``keras.applications`` family: ResNet50, VGG16, InceptionV3 and MobileNetV2.

Their ImageNet weights are HDF5 files that ``keras.utils.get_file`` downloads into the Keras cache
(``$KERAS_HOME/models`` or ``~/.keras/models``). Offline, they can be copied there with
``python -m dlbook weights import PATH`` (see ``dlbook.methods.backbones.weights``), which checks each file against
the digest Keras itself pins for it (``WEIGHT_FILES``).

Preprocessing runs inside the model through ``ImagePreprocessing``, a registered layer, so a model
holding one saves and reloads with ``keras.saving.load_model(..., safe_mode=True)`` (a ``Lambda``
layer would not).
"""

from __future__ import annotations

import functools
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

DOWNLOAD_PROBE_TIMEOUT_S = 3.0
URL = "https://storage.googleapis.com/tensorflow/keras-applications/"

CAFFE = "caffe"
"""RGB -> BGR, minus the ImageNet channel means (ResNet50, VGG16)."""
TF = "tf"
"""x / 127.5 - 1 (InceptionV3, MobileNetV2)."""
CAFFE_MEANS_BGR = (103.939, 116.779, 123.68)


@dataclass(frozen=True)
class WeightFile:
    """One official ``keras.applications`` weight file.

    Attributes
    ----------
    backbone : the registry name it belongs to.
    include_top : whether it holds the ImageNet classifier too.
    digest : the digest ``keras.applications`` checks it against when downloading (``md5:...``),
        or None where Keras pins none (MobileNetV2): such a file is checked by loading it into
        the architecture instead.
    url_folder : where Keras downloads it from.
    """

    backbone: str
    include_top: bool
    digest: str | None
    url_folder: str


# Digests as in keras/src/applications/{resnet,vgg16,inception_v3}.py (Keras 3.x); MobileNetV2's
# loader passes no file_hash.
WEIGHT_FILES = {
    "resnet50_weights_tf_dim_ordering_tf_kernels.h5": WeightFile(
        "resnet50", True, "md5:2cb95161c43110f7111970584f804107", URL + "resnet/"
    ),
    "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5": WeightFile(
        "resnet50", False, "md5:4d473c1dd8becc155b73f8504c6f6626", URL + "resnet/"
    ),
    "vgg16_weights_tf_dim_ordering_tf_kernels.h5": WeightFile(
        "vgg16", True, "md5:64373286793e3c8b2b4e3219cbf3544b", URL + "vgg16/"
    ),
    "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5": WeightFile(
        "vgg16", False, "md5:6d6bbae143d832006294945121d1f1fc", URL + "vgg16/"
    ),
    "inception_v3_weights_tf_dim_ordering_tf_kernels.h5": WeightFile(
        "inception_v3", True, "md5:9a0d58056eeedaa3f26cb7ebd46da564", URL + "inception_v3/"
    ),
    "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5": WeightFile(
        "inception_v3", False, "md5:bcbd6486424b2319ff4ef7d526e38f63", URL + "inception_v3/"
    ),
    "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5": WeightFile(
        "mobilenet_v2", True, None, URL + "mobilenet_v2/"
    ),
    "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5": WeightFile(
        "mobilenet_v2", False, None, URL + "mobilenet_v2/"
    ),
}


def weight_file_name(backbone: str, include_top: bool) -> str:
    """The official file name of ``backbone``'s weights, with or without the classifier."""
    for name, entry in WEIGHT_FILES.items():
        if entry.backbone == backbone and entry.include_top == include_top:
            return name
    raise ValueError(f"backbone={backbone!r} is not a keras.applications backbone")


def cache_dirs() -> list[Path]:
    """Folders where ``keras.utils.get_file`` keeps weights (``cache_subdir="models"``), in order."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return [Path(home) / "models", Path("/tmp/.keras/models")]


def cached_file(filename: str) -> Path | None:
    """Where ``filename`` sits in the Keras cache, or None."""
    for folder in cache_dirs():
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


def register_layers():
    """Define and register ``ImagePreprocessing`` (once; Keras is imported lazily)."""
    return _preprocessing_layer_class()


@functools.cache
def _preprocessing_layer_class():
    import keras

    @keras.saving.register_keras_serializable(package="dlbook")
    class ImagePreprocessing(keras.layers.Layer):
        """Map RGB in [0, 255] to what a ``keras.applications`` network expects.

        ``mode="tf"``: x / 127.5 - 1. ``mode="caffe"``: RGB -> BGR, minus the ImageNet means.
        """

        def __init__(self, mode: str = TF, **kwargs):
            super().__init__(**kwargs)
            if mode not in (TF, CAFFE):
                raise ValueError(f"mode={mode!r} is unknown; use {TF!r} or {CAFFE!r}")
            self.mode = mode

        def call(self, x):
            from keras import ops

            if self.mode == TF:
                return x / 127.5 - 1.0
            means = ops.convert_to_tensor(CAFFE_MEANS_BGR, dtype=x.dtype)
            return ops.flip(x, axis=-1) - means

        def compute_output_shape(self, input_shape):
            return input_shape

        def get_config(self):
            return {**super().get_config(), "mode": self.mode}

    return ImagePreprocessing


@dataclass(frozen=True)
class KerasApplications:
    """The family object: availability, weights and model building for ``keras.applications``.

    ``specs`` maps each backbone name to its ``BackboneSpec`` (``keras_class``, ``image_size``,
    ``preprocessing`` in {"caffe", "tf"}).
    """

    specs: dict

    def weights_status(self, name: str, include_top: bool = False) -> tuple[bool, str]:
        filename = weight_file_name(name, include_top)
        cached = cached_file(filename)
        if cached is not None:
            return True, f"ImageNet weights cached at {cached}"
        url = WEIGHT_FILES[filename].url_folder + filename
        reachable, reason = _download_reachable(url)
        if reachable:
            return True, f"ImageNet weights downloadable from {url}"
        return False, (
            f"{name}: no ImageNet weights in the Keras cache ({cache_dirs()[0] / filename}) and "
            f"the download failed ({reason}); copy the file in with "
            f"`python -m dlbook weights import PATH` to use this backbone offline"
        )

    def available(self, name: str) -> tuple[bool, str]:
        return self.weights_status(name, include_top=False)

    def require(self, name: str, include_top: bool = False) -> None:
        from dlbook.methods.backbones import BackboneUnavailableError

        ok, reason = self.weights_status(name, include_top)
        if not ok:
            raise BackboneUnavailableError(reason)

    def weights_path(self, name: str) -> Path:
        filename = weight_file_name(name, include_top=False)
        cached = cached_file(filename)
        if cached is None:
            self.build(name, include_top=False, weights="imagenet")  # downloads into the cache
            cached = cached_file(filename)
        return cached

    def build(self, name: str, include_top: bool = False, weights: str | None = "imagenet", **_):
        """Preprocessing layer + the application; pooled features, or ImageNet probabilities.

        Without the top the input takes any size (at least the architecture's ``min_size``).
        """
        import keras

        spec = self.specs[name]
        application = getattr(keras.applications, spec.keras_class)
        size = (spec.image_size, spec.image_size) if include_top else (None, None)
        inputs = keras.Input(shape=(*size, 3), name="image")
        x = register_layers()(spec.preprocessing, name="preprocess")(inputs)
        # Built on the preprocessed tensor, the application's layers join one flat graph with
        # the preprocessing (no nested model), which ``fine_tune.split`` can cut at any block.
        if include_top:
            model = application(include_top=True, weights=weights, input_tensor=x)
        else:
            model = application(include_top=False, weights=weights, input_tensor=x, pooling="avg")
        return keras.Model(model.input, model.output, name=name)
