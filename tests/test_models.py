"""The architecture builders: shapes, structure, a training step, and the cost counters."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from dlbook.methods import costs, models  # noqa: E402

SHAPE = (32, 32, 3)


def _pixels(n, shape=SHAPE, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=(n, *shape)).astype(np.float32)


@pytest.mark.parametrize("name", sorted(models.BUILDERS))
def test_every_family_gives_class_probabilities_and_trains_a_step(name):
    model = models.build(name, SHAPE, 3)
    x = _pixels(8)
    y = np.arange(8) % 3
    probs = np.asarray(model(x, training=False))
    assert probs.shape == (8, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert model.name == name

    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    before = [w.copy() for w in model.get_weights()]
    loss = float(model.train_on_batch(x, y))
    assert np.isfinite(loss)
    changed = [not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True)]
    # Every trainable kernel moves after one step (batch-norm statistics move too).
    assert sum(changed) >= len(model.trainable_weights)


@pytest.mark.parametrize("name", sorted(models.BUILDERS))
def test_one_class_gives_a_sigmoid_unit(name):
    model = models.build(name, (24, 24, 1), 1)
    out = np.asarray(model(_pixels(4, (24, 24, 1)), training=False))
    assert out.shape == (4, 1)
    assert np.all((out > 0) & (out < 1))


def test_registry_and_validation_messages():
    assert set(models.BUILDERS) == {"ann", "cnn", "resnet", "inception", "mobilenet"}
    with pytest.raises(ValueError, match="name='vit'"):
        models.build("vit", SHAPE, 2)
    with pytest.raises(ValueError, match="input_shape"):
        models.build("cnn", (32, 32), 2)
    with pytest.raises(ValueError, match="num_classes=0"):
        models.build("resnet", SHAPE, 0)
    with pytest.raises(ValueError, match="dropout=1.5"):
        models.build("ann", SHAPE, 2, dropout=1.5)
    with pytest.raises(ValueError, match="must have 6 widths"):
        models.build("inception", SHAPE, 2, module_widths=[(8, 8, 8)])
    with pytest.raises(ValueError, match="expansion, filters, repeats, stride"):
        models.build("mobilenet", SHAPE, 2, blocks=[(1, 8, 1)])


def test_models_rescale_pixels_themselves():
    model = models.build("cnn", SHAPE, 2)
    assert model.get_layer("rescale").scale == pytest.approx(1 / 255)


def test_resnet_projects_only_where_the_shape_changes():
    model = models.build_resnet(
        SHAPE, 2, stem_filters=16, stage_filters=(16, 32), blocks_per_stage=2
    )
    names = {layer.name for layer in model.layers}
    assert "stage0_block0_proj_conv" not in names  # 16 -> 16 channels, stride 1: identity
    assert "stage1_block0_proj_conv" in names  # 16 -> 32 channels, stride 2: projection
    assert "stage1_block1_proj_conv" not in names
    assert model.get_layer("stage1_block0_proj_conv").strides == (2, 2)
    assert sum(isinstance(layer, keras.layers.Add) for layer in model.layers) == 4


def test_inception_module_concatenates_its_four_branches():
    widths = (8, 4, 12, 2, 6, 5)
    model = models.build_inception(SHAPE, 2, module_widths=[widths])
    concat = model.get_layer("inception0_concat")
    assert concat.output.shape[-1] == 8 + 12 + 6 + 5
    assert model.get_layer("inception0_5x5_conv").kernel_size == (5, 5)
    # the spatial size is kept inside a module
    assert concat.output.shape[1:3] == model.get_layer("stem_relu").output.shape[1:3]


def test_mobilenet_uses_depthwise_convolutions_and_linear_bottlenecks():
    model = models.build_mobilenet(SHAPE, 2, blocks=[(1, 16, 1, 1), (4, 24, 2, 2)])
    depthwise = [layer for layer in model.layers if isinstance(layer, keras.layers.DepthwiseConv2D)]
    assert len(depthwise) == 3
    # the residual add sits only on the stride-1 block with matching channels
    adds = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Add)]
    assert adds == ["stage0_block0_add", "stage1_block1_add"]
    # linear bottleneck: the add takes the projection's batch norm, with no activation between
    add_inputs = model.get_layer("stage1_block1_add").input
    assert add_inputs[1] is model.get_layer("stage1_block1_project_bn").output
    assert model.get_layer("stage1_block1_expand").filters == 24 * 4


def test_cnn_augmentation_acts_in_training_only():
    plain = models.build_cnn(SHAPE, 2)
    augmented = models.build_cnn(SHAPE, 2, augmentation=True, seed=3)
    assert any(layer.name.startswith("aug_") for layer in augmented.layers)
    assert not any(layer.name.startswith("aug_") for layer in plain.layers)
    augmented.set_weights(plain.get_weights())
    x = _pixels(4)
    np.testing.assert_allclose(
        np.asarray(augmented(x, training=False)), np.asarray(plain(x, training=False)), atol=1e-6
    )
    # in training, the augmentation changes what the convolutions see
    first_conv = keras.Model(augmented.input, augmented.get_layer("block0_0_conv").output)
    assert not np.allclose(np.asarray(first_conv(x, training=True)), np.asarray(first_conv(x)))
    custom = models.build_cnn(SHAPE, 2, augmentation=[keras.layers.RandomFlip("vertical")])
    assert isinstance(custom.layers[1], keras.layers.RandomFlip)
    with pytest.raises(ValueError, match="augmentation"):
        models.build_cnn(SHAPE, 2, augmentation=["flip"])


def test_count_flops_matches_hand_counts():
    inputs = keras.Input((10, 12, 4))
    x = keras.layers.Conv2D(6, 3, padding="same")(inputs)  # 10*12*6 * 3*3*4
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same")(x)  # 5*6*6 * 3*3
    x = keras.layers.SeparableConv2D(8, 3, padding="valid", depth_multiplier=2)(x)  # 3*4 outputs
    x = keras.layers.Conv2D(4, 1, groups=2)(x)  # 3*4*4 * 8/2
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(5)(x)  # 4*5
    model = keras.Model(inputs, outputs)
    separable = 3 * 4 * 6 * 2 * 3 * 3 + 3 * 4 * 6 * 2 * 8
    macs = 10 * 12 * 6 * 3 * 3 * 4 + 5 * 6 * 6 * 3 * 3 + separable + 3 * 4 * 4 * 4 + 4 * 5
    assert costs.count_flops(model) == 2 * macs


def test_count_flops_agrees_with_published_counts():
    # MobileNetV2 1.0 at 224 px: 300M multiply-adds (Sandler et al., 2018, table 4).
    mobilenet = models.build_reference("mobilenet_v2")
    assert costs.count_flops(mobilenet) / 2 == pytest.approx(300e6, rel=0.01)
    assert mobilenet.count_params() == 3_538_984
    # VGG16 at 224 px: 15.5G multiply-adds, the figure usually quoted.
    assert costs.count_flops(models.build_reference("vgg16")) / 2 == pytest.approx(15.5e9, rel=0.01)


def test_count_flops_refuses_unknown_input_size():
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs))
    with pytest.raises(ValueError, match="fixed height"):
        costs.count_flops(model)


def test_count_flops_ignores_augmentation():
    plain = costs.count_flops(models.build_cnn(SHAPE, 2))
    assert costs.count_flops(models.build_cnn(SHAPE, 2, augmentation=True)) == plain


def test_count_flops_at_an_image_shape_equals_the_fixed_size_build():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same")(x)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    with pytest.raises(ValueError, match="image_shape"):
        costs.count_flops(model)
    # 8*8 * 3*3*3*4 + 4*4 * 3*3*4 + 4*2 multiply-accumulates, 2 FLOPs each
    assert costs.count_flops(model, (8, 8, 3)) == 2 * (64 * 108 + 16 * 36 + 8)
    assert costs.count_flops(model, (16, 16, 3)) == 2 * (4 * (64 * 108 + 16 * 36) + 8)


def test_measure_latency_and_model_cost():
    model = models.build("ann", (16, 16, 3), 2, hidden_units=(8,))
    timing = costs.measure_latency(model, batch_size=4, min_repeats=3, max_repeats=3)
    assert timing["repeats"] == 3
    assert timing["ms_per_batch"] > 0
    assert timing["ms_per_image"] == pytest.approx(timing["ms_per_batch"] / 4)
    cost = costs.model_cost(model, batch_sizes=(1, 2), min_repeats=1, max_repeats=2)
    assert set(cost) == {"params", "mflops", "latency_b1_ms", "latency_b2_ms"}
    assert cost["params"] == 16 * 16 * 3 * 8 + 8 + 8 * 2 + 2
    assert cost["mflops"] == pytest.approx(2 * (16 * 16 * 3 * 8 + 8 * 2) / 1e6)
    with pytest.raises(ValueError, match="batch_size=0"):
        costs.measure_latency(model, batch_size=0)


def test_build_reference_rejects_unknown_names():
    with pytest.raises(ValueError, match="resnet18"):
        models.build_reference("resnet18")
