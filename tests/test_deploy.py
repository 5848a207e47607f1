import numpy as np
import pytest

from dlbook.facemask import classify, deploy


def _tiny_model():
    import keras

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    backbone = keras.Model(inputs, x)
    keras.utils.set_random_seed(0)
    return classify.build_shipped_model(backbone, np.linspace(-3, 3, 4), 0.1, 1.5, 16)


@pytest.mark.parametrize("precision", deploy.PRECISIONS)
def test_tflite_export_round_trips(tmp_path, precision):
    model = _tiny_model()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 16, 16, 3), dtype=np.uint8)
    path = deploy.export_tflite(model, tmp_path / f"m_{precision}.tflite", precision, images[:20])
    expected = classify.predict_images(model, images)
    got = deploy.tflite_predict(deploy.load_interpreter(path), images)[:, 0]
    tolerance = {"fp32": 1e-5, "fp16": 2e-3, "int8": 0.05}[precision]
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < tolerance


def test_int8_needs_representative_images_and_precision_is_checked(tmp_path):
    model = _tiny_model()
    with pytest.raises(ValueError, match="representative_images"):
        deploy.export_tflite(model, tmp_path / "m.tflite", "int8")
    with pytest.raises(ValueError, match="precision='int4'"):
        deploy.export_tflite(model, tmp_path / "m.tflite", "int4")
