"""A fine-tuned model of every backbone family saves and reloads with ``safe_mode=True``.

Each family's backbone is built without weights at a tiny input size (the file format, not the
weights, is under test), its last block fine-tuned for one epoch on random feature maps by the
chapter's fine-tuner, wrapped as the shipped classifier, saved and reloaded in safe mode: the
reloaded model must give the same probabilities and hold the fine-tuned weights, and no layer
may be a ``Lambda`` (whose code safe mode refuses to run).
"""

import numpy as np
import pytest

from dlbook.facemask import classify
from dlbook.methods import backbones
from dlbook.methods.backbones import fine_tune

FAMILY_MODELS = {
    "efficientnet_lite": ("efficientnet_lite0", 32),
    "keras_applications": ("vgg16", 32),
    "torchvision_ports": ("mobilenet_v2_torchvision", 32),
    "torchvision_ports_vgg16": ("vgg16_torchvision", 32),
    "inception_fid": ("inception_v3_fid", 75),
}


def all_layers(model):
    """Every layer of ``model``, nested models opened."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from all_layers(layer)


def test_every_family_is_covered():
    covered = {backbones.spec(name).family for name, _ in FAMILY_MODELS.values()}
    assert covered == set(backbones.FAMILIES)


@pytest.mark.parametrize("family", sorted(FAMILY_MODELS))
def test_a_fine_tuned_model_reloads_in_safe_mode(family, tmp_path):
    import keras

    name, size = FAMILY_MODELS[family]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, size, size, 3)).astype(np.uint8)
    labels = (np.arange(12) % 3 == 0).astype(np.int64)  # unbalanced: the head must move
    backbone = backbones.build(name, weights=None)
    bottom, _, boundary = fine_tune.split(backbone, 1)
    maps = fine_tune.feature_maps(bottom, images)
    head = (rng.normal(0, 0.01, backbones.spec(name).feature_dim).astype(np.float32), 0.0)
    before = [w.copy() for w in backbone.get_weights()]
    train = np.arange(12) < 8
    found = fine_tune.train_top(
        lambda: backbone, maps, labels, train, ~train, head,
        blocks=1, epochs=1, patience=1, learning_rate=1e-2,
    )  # fmt: skip
    tuned = found["backbone"].get_weights()
    changed = [not np.array_equal(a, b) for a, b in zip(before, tuned, strict=True)]
    assert any(changed) or found["head"][1] != head[1]  # trained, so the file has news

    model = classify.build_shipped_model(found["backbone"], *found["head"], 1.5, size)
    path, _ = classify.save_shipped_model(
        model, tmp_path / "m.keras", {"image_size": size, "temperature": 1.5}
    )
    reloaded = keras.saving.load_model(path, safe_mode=True, compile=False)

    assert not any(isinstance(layer, keras.layers.Lambda) for layer in all_layers(reloaded))
    np.testing.assert_allclose(
        classify.predict_images(reloaded, images), classify.predict_images(model, images),
        rtol=1e-5, atol=1e-6,
    )  # fmt: skip
    saved = next(la for la in reloaded.layers if la.name == found["backbone"].name)
    for weights, trained in zip(saved.get_weights(), tuned, strict=True):
        np.testing.assert_array_equal(weights, trained)
