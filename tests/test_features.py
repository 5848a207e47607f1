"""The book's cached feature sets: extraction, cache keys, the face-mask feature set."""

import numpy as np
import pytest

from dlbook.book import profiles
from dlbook.facemask import data, features


def test_features_are_cached_and_batch_independent(monkeypatch):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (5, 40, 48, 3), dtype=np.uint8)
    first = features.extract("efficientnet_lite0", images, batch_size=2, progress=False)
    assert first.shape == (5, 1280) and first.dtype == np.float32
    assert (first >= 0).all()  # pooled ReLU6 activations
    alone = features.extract("efficientnet_lite0", images[3:4], progress=False)
    np.testing.assert_allclose(alone[0], first[3], rtol=1e-4, atol=1e-5)

    def no_extraction(*args, **kwargs):
        raise AssertionError("features should have come from the cache")

    monkeypatch.setattr(features, "_extract", no_extraction)
    np.testing.assert_array_equal(features.extract("efficientnet_lite0", images), first)
    changed = images.copy()
    changed[0, 0, 0, 0] ^= 1
    with pytest.raises(AssertionError, match="cache"):
        features.extract("efficientnet_lite0", changed)
    assert features.cache_key("efficientnet_lite0", images) != features.cache_key(
        "efficientnet_lite1", images
    )


@pytest.mark.parametrize(
    "images, match",
    [
        (np.zeros((2, 32, 32), np.uint8), "shape"),
        (np.zeros((2, 32, 32, 1), np.uint8), "shape"),
        (np.zeros((2, 32, 32, 3), np.int64), "dtype"),
        (np.zeros((2, 16, 16, 3), np.uint8), "at least 32"),
    ],
)
def test_features_validates_images(images, match):
    with pytest.raises(ValueError, match=match):
        features.extract("efficientnet_lite0", images, progress=False)


def test_face_mask_features_line_up_with_the_images(synthetic_data, monkeypatch):
    settings = {"backbone": "efficientnet_lite0", "image_size": 40, "limit": None}
    real_loader = data.load_face_mask
    monkeypatch.setattr(data, "load_face_mask", lambda **kw: real_loader(verify=False, **kw))
    result = features.face_mask_features(settings, data_dir=synthetic_data, progress=False)
    images = real_loader(synthetic_data, image_size=40, verify=False, progress=False)
    assert result.features.shape == (40, 1280) and result.image_size == 40
    np.testing.assert_array_equal(result.labels, images.labels)
    assert result.paths == images.paths and set(result.split) <= {"train", "val", "calib", "test"}
    np.testing.assert_array_equal(
        result.features, features.extract("efficientnet_lite0", images.images, progress=False)
    )
    train_x, train_y = result.where("train")
    assert len(train_x) == len(train_y) == (result.split == "train").sum()


@pytest.mark.slow
def test_smoke_features_separate_the_real_classes(real_data):
    """Pooled ImageNet features make the face-mask classes linearly separable (a linear probe)."""
    from sklearn.linear_model import LogisticRegression

    settings = profiles.get("smoke", "features")
    result = features.face_mask_features(settings, data_dir=real_data, progress=False)
    assert result.features.shape == (settings["limit"], 1280)
    assert result.backbone == settings["backbone"] and np.isfinite(result.features).all()
    train_x, train_y = result.where("train")
    test_x, test_y = result.where("test")
    probe = LogisticRegression(max_iter=2000).fit(train_x, train_y)
    assert probe.score(test_x, test_y) > 0.9


def _real_looking_images(size: int) -> np.ndarray:
    """The two ImageNet test photos, their crops and mirror images: natural image statistics."""
    from dlbook.methods import backbones

    photos = list(backbones.imagenet_photos().values())
    out = []
    for photo in photos:
        out.append(backbones.photo_input(photo, size))
        out.append(backbones.photo_input(photo, size, crop_fraction=0.5))
        out.append(backbones.photo_input(photo[:, ::-1], size, crop_fraction=0.7))
    return np.stack(out)


@pytest.mark.parametrize("fast_runtime", ["function", "tflite"])
def test_fast_runtimes_give_the_keras_features(fast_runtime):
    from dlbook.facemask import runtime

    images = _real_looking_images(96)
    reference = features.extract("efficientnet_lite0", images, progress=False, runtime_name="keras")
    fast = features.extract("efficientnet_lite0", images, progress=False, runtime_name=fast_runtime)
    assert fast.shape == reference.shape == (len(images), 1280)
    assert runtime.relative_difference(fast, reference) < features.MAX_RELATIVE_DIFFERENCE
    # the comparison is not vacuous: different photos give clearly different features
    assert (
        runtime.relative_difference(fast[::-1], reference) > 100 * features.MAX_RELATIVE_DIFFERENCE
    )
    # one runtime's cached features are never served for another's
    keras_key = features.cache_key("efficientnet_lite0", images, "keras")
    assert keras_key != features.cache_key("efficientnet_lite0", images, fast_runtime)


def test_runtime_choice_depends_only_on_the_number_of_images(monkeypatch):
    from dlbook.facemask import runtime

    assert runtime.choose_runtime(1) == runtime.choose_runtime(10**6) == runtime.FAST_RUNTIME
    monkeypatch.setattr(runtime, "FAST_RUNTIME", "tflite")  # a runtime that converts first
    assert runtime.choose_runtime(runtime.FAST_MIN_IMAGES - 1) == "keras"
    assert runtime.choose_runtime(runtime.FAST_MIN_IMAGES) == "tflite"


def test_a_failed_conversion_falls_back_to_the_keras_features(monkeypatch, capsys):
    from dlbook.facemask import runtime

    real = runtime.compile_model

    def no_converter(model, shape, name, *args, **kwargs):
        if name != "keras":
            raise RuntimeError("no converter here")
        return real(model, shape, name, *args, **kwargs)

    monkeypatch.setattr(runtime, "compile_model", no_converter)
    features.runner.cache_clear()
    images = np.random.default_rng(2).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    try:
        fast = features.extract("efficientnet_lite0", images, progress=False, runtime_name="tflite")
    finally:
        features.runner.cache_clear()
    keras_features = features.extract(
        "efficientnet_lite0", images, progress=False, runtime_name="keras"
    )
    np.testing.assert_array_equal(fast, keras_features)
    assert "using keras" in capsys.readouterr().err
