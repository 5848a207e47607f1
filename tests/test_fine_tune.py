import numpy as np
import pytest

from dlbook.methods import backbones
from dlbook.methods.backbones import fine_tune

FAMILIES = ["resnet50", "vgg16", "inception_v3", "mobilenet_v2", "efficientnet_lite0"]


def test_cut_points_of_a_small_residual_graph():
    import keras

    inputs = keras.Input((8,))
    a = keras.layers.Dense(8, name="a")(inputs)
    b = keras.layers.Dense(8, name="b")(a)
    c = keras.layers.Add(name="c")([a, b])  # a is still needed after b: b is no cut point
    d = keras.layers.Dense(4, name="d")(c)
    e = keras.layers.Dense(2, name="e")(d)
    model = keras.Model(inputs, e)
    names = [model.layers[i].name for i in fine_tune.cut_points(model)]
    assert names == ["a", "c", "d"]
    bottom, top, boundary = fine_tune.split(model, top_fraction=0.1)
    assert boundary == "d"
    x = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    np.testing.assert_allclose(top(bottom(x)), model(x), rtol=1e-6)
    with pytest.raises(ValueError, match="top_fraction=1.5"):
        fine_tune.split(model, 1.5)


@pytest.mark.parametrize("name", FAMILIES)
def test_each_family_fine_tunes_a_step_saves_and_reloads_safely(name, tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    size = backbones.spec(name).min_size
    backbone = backbones.build(name, include_top=False, weights=None)
    bottom, top, boundary = fine_tune.split(backbone, top_fraction=0.25)
    model = fine_tune.classifier(backbone, top_fraction=0.25)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert 0 < trainable < model.count_params()  # the bottom is frozen, the top and head train
    frozen_before = [w.numpy().copy() for w in bottom.weights[:3]]
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    images = np.random.default_rng(0).uniform(0, 255, (4, size, size, 3)).astype(np.float32)
    labels = np.array([0, 1, 0, 1], np.float32)
    history = model.fit(images, labels, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for before, after in zip(frozen_before, bottom.weights[:3], strict=True):
        np.testing.assert_array_equal(before, after.numpy())
    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    np.testing.assert_allclose(
        reloaded.predict_on_batch(images), model.predict_on_batch(images), rtol=1e-5, atol=1e-6
    )
