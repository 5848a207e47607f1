import numpy as np
import pytest

from dlbook.facemask import classify, deploy, tflite


def _tiny_model():
    import keras

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    backbone = keras.Model(inputs, x)
    keras.utils.set_random_seed(0)
    return classify.build_shipped_model(backbone, np.linspace(-3, 3, 4), 0.1, 1.5, 16)


def test_tflite_export_round_trips_at_every_precision(tmp_path):
    model = _tiny_model()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 16, 16, 3), dtype=np.uint8)
    paths = tflite.export(model, tmp_path, "m", tflite.PRECISIONS, images[:20])
    assert sorted(paths) == sorted(tflite.PRECISIONS)
    expected = classify.predict_images(model, images)
    for precision, path in paths.items():
        assert path == tmp_path / f"m_{precision}.tflite"
        got = tflite.predict(tflite.load_interpreter(path), images)[:, 0]
        tolerance = {"fp32": 1e-5, "fp16": 2e-3, "int8": 0.05}[precision]
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() < tolerance
    # a flatbuffer converted at a fixed batch shape runs from bytes like the fp32 file
    batch = images[:4].astype(np.float32)
    flatbuffer = tflite.convert(model, input_shape=batch.shape)
    np.testing.assert_allclose(
        tflite.invoke(tflite.load_interpreter(flatbuffer), batch)[0][:, 0], expected[:4], atol=1e-5
    )
    rows = deploy.benchmark_tflite({"fp32": paths["fp32"]}, images, expected >= 0.5, repeats=2)
    assert rows[0]["accuracy"] == 1.0 and rows[0]["bytes"] == paths["fp32"].stat().st_size


def test_int8_needs_representative_images_and_precision_is_checked(tmp_path):
    model = _tiny_model()
    with pytest.raises(ValueError, match="representative_images"):
        tflite.export(model, tmp_path, "m", ("int8",))
    with pytest.raises(ValueError, match="precision='int4'"):
        tflite.convert(model, "int4")
