"""The fine-tuner chapter 4 uses, on a tiny backbone named like EfficientNet-Lite's blocks."""

import numpy as np
import pytest

from dlbook.methods.backbones import fine_tune


def tiny_backbone():
    """Images (N, 8, 8, 3) -> pooled features (N, 4), in three ``block<k>_`` blocks."""
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="stem_conv")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", name="block1_conv")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", name="block2_conv")(x)
    x = keras.layers.BatchNormalization(name="block2_bn")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="block3_conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, x, name="tiny")


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 3)).astype(np.uint8)


def test_split_cuts_before_the_last_blocks_and_the_halves_compose():
    backbone = tiny_backbone()
    bottom, top, boundary = fine_tune.split(backbone, blocks=2)
    assert boundary == "block2_conv"
    assert fine_tune.split(backbone, blocks=1)[2] == "block3_conv"
    x = images(3).astype(np.float32)
    np.testing.assert_allclose(top(bottom(x)), backbone(x), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="blocks=3"):
        fine_tune.split(backbone, blocks=3)


def test_feature_maps_are_the_bottom_outputs_in_float16_across_batches():
    bottom, _, _ = fine_tune.split(tiny_backbone(), blocks=1)
    x = images(fine_tune.MAPS_BATCH + 5)
    maps = fine_tune.feature_maps(bottom, x)
    assert maps.dtype == np.float16 and maps.shape == (len(x), 8, 8, 4)
    np.testing.assert_array_equal(maps, np.asarray(bottom(x.astype(np.float32)), np.float16))


def test_boundary_maps_are_cached_by_content(monkeypatch, tmp_path):
    monkeypatch.setenv("DLBOOK_CACHE", str(tmp_path))
    backbone = tiny_backbone()
    monkeypatch.setattr(fine_tune.backbones, "load", lambda name: backbone)
    monkeypatch.setattr(fine_tune.backbones, "weights_sha256", lambda name: "weights-1")
    calls = []
    compute = fine_tune.feature_maps
    monkeypatch.setattr(fine_tune, "feature_maps", lambda *args: calls.append(1) or compute(*args))
    x = images(6)
    first = fine_tune.boundary_maps("tiny", x, blocks=1)
    again = fine_tune.boundary_maps("tiny", x, blocks=1)
    assert len(calls) == 1
    np.testing.assert_array_equal(first, again)
    fine_tune.boundary_maps("tiny", images(6, seed=1), blocks=1)  # other images: computed
    assert len(calls) == 2


def tiny_task():
    """Feature maps of 64 images under a seeded backbone's bottom, and labels they predict."""
    import keras

    keras.utils.set_random_seed(0)
    bottom, _, _ = fine_tune.split(tiny_backbone(), blocks=1)
    x = images(64)
    labels = (x[:, 4:].mean(axis=(1, 2, 3)) > x[:, :4].mean(axis=(1, 2, 3))).astype(int)
    return fine_tune.feature_maps(bottom, x), labels


def fit_tiny(maps, labels, learning_rate: float, epochs: int = 3, seed: int = 0):
    train = np.arange(64) < 48
    head = (np.full(4, 0.01, np.float32), -0.2)
    found = fine_tune.train_top(
        tiny_backbone, maps, labels, train, ~train, head, blocks=1, epochs=epochs, patience=5,
        learning_rate=learning_rate, seed=seed,
    )  # fmt: skip
    return found, head


def test_train_top_starts_from_the_head_and_trains_only_the_top_blocks():
    import keras

    maps, labels = tiny_task()
    found, head = fit_tiny(maps, labels, learning_rate=1e-2)
    assert found["probs"].shape == (64,) and found["probs"].dtype == np.float64
    assert found["epochs"] == 3 and not found["stopped_early"]
    trained = found["backbone"]
    keras.utils.set_random_seed(0)
    fresh = tiny_backbone()  # the weights train_top started from (same seed, same order)
    for name in ("stem_conv", "block1_conv", "block2_conv", "block2_bn"):
        for before, after in zip(
            fresh.get_layer(name).get_weights(), trained.get_layer(name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(before, after)
    assert not np.array_equal(
        fresh.get_layer("block3_conv").get_weights()[0],
        trained.get_layer("block3_conv").get_weights()[0],
    )
    assert not np.allclose(found["head"][0], head[0])
    # With no step size the model is the starting head on the untouched top.
    still, _ = fit_tiny(maps, labels, learning_rate=1e-12, epochs=1)
    _, top, _ = fine_tune.split(fresh, blocks=1)
    logit = np.asarray(top(maps.astype(np.float32))) @ head[0] + head[1]
    np.testing.assert_allclose(still["probs"], 1 / (1 + np.exp(-logit)), rtol=1e-5, atol=1e-6)


def test_train_top_lowers_the_training_loss_from_its_starting_head():
    def log_loss(probs, labels):
        return -np.mean(np.log(np.where(labels == 1, probs, 1 - probs)))

    maps, labels = tiny_task()
    trained, _ = fit_tiny(maps, labels, learning_rate=1e-2, epochs=5)
    start, _ = fit_tiny(maps, labels, learning_rate=1e-12, epochs=1)
    train = np.arange(64) < 48
    assert log_loss(trained["probs"][train], labels[train]) < log_loss(
        start["probs"][train], labels[train]
    )


@pytest.mark.parametrize(
    "name, blocks, boundary",
    [
        ("mobilenet_v2_torchvision", 2, "features_17_conv_0_0"),
        ("inception_v3_fid", 1, "mixed_10.tower_1_conv"),
        ("vgg16_torchvision", 1, "block5_conv1"),
    ],
)
def test_the_ported_networks_cut_at_their_blocks_and_the_halves_compose(name, blocks, boundary):
    from dlbook.methods import backbones

    backbone = backbones.build(name, weights=None)
    bottom, top, found = fine_tune.split(backbone, blocks)
    assert found == boundary
    x = np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 3)).astype(np.float32)
    np.testing.assert_allclose(top(bottom(x)), backbone(x), rtol=1e-5, atol=1e-5)
