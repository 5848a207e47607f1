"""Keras ports of torchvision's MobileNetV2 and VGG16 and of the 2015 InceptionV3.

The fast tests need neither the weight files nor PyTorch: they check the architectures against
the counts of the pinned files, the loaders' layout conversions on synthetic tensors, PyTorch's
padding, the preprocessing, and a safe save/reload of a fine-tuned model of each family. The slow
tests hold each port against PyTorch on real photos (they need ``torch`` and the cached files).
"""

import os
from pathlib import Path

import numpy as np
import pytest

from dlbook.core import paths
from dlbook.methods import backbones
from dlbook.methods.backbones import inception_fid, pypi_weights, torchvision_ports
from dlbook.methods.backbones.safe_pickles import ScriptObject

PORTS = ["mobilenet_v2_torchvision", "vgg16_torchvision", "inception_v3_fid"]

FILE_COUNTS = {
    # name: (convolutions, parameters, values in the file), counted in the pinned files
    "mobilenet_v2_torchvision": (52, 3_504_872, 3_538_984),  # + 34,112 batch-norm statistics
    "vgg16_torchvision": (13, 14_714_688, 14_714_688),
    "inception_v3_fid": (94, 21_768_352, 21_802_784),  # its file lists mean and var as parameters
}

REAL_CACHE = os.environ.get("DLBOOK_CACHE") or str(paths.REPO_ROOT / ".cache")
"""The weights cache as it was before the tests' own throw-away cache (conftest) replaced it."""

PORT_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def built():
    """Each port without weights, built once (InceptionV3 takes a while)."""
    return {
        "mobilenet_v2_torchvision": torchvision_ports.build_mobilenet_v2(include_top=True),
        "vgg16_torchvision": torchvision_ports.build_vgg16(),
        "inception_v3_fid": inception_fid.build_inception_fid(),
    }


def _convolutions(model):
    import keras

    kinds = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
    return [layer for layer in model.layers if isinstance(layer, kinds)]


def _trainable(model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize("name", PORTS)
def test_layer_and_parameter_counts_match_the_file(built, name):
    convolutions, parameters, values = FILE_COUNTS[name]
    model = built[name]
    assert len(_convolutions(model)) == convolutions
    assert _trainable(model) == parameters and model.count_params() == values
    with_head = name == "mobilenet_v2_torchvision"
    assert model.output_shape[-1] == (1000 if with_head else backbones.spec(name).feature_dim)


def test_the_registry_knows_the_ports():
    assert backbones.spec("inception_v3_fid").image_size == 299
    assert {backbones.spec(n).family for n in PORTS} == {"torchvision_ports", "inception_fid"}
    assert set(pypi_weights.SOURCES) == set(PORTS)


# ---------------------------------------------------------------------------------------------
# Loaders, on synthetic tensors in each file's own layout


def _mobilenet_state(model, rng) -> dict[str, np.ndarray]:
    """A state dict shaped like torchvision's, made from the model's layers."""
    import keras

    state = {}
    for layer in model.layers:
        key = layer.name.replace("_", ".")
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kh, kw, c, _ = layer.kernel.shape
            state[f"{key}.weight"] = rng.normal(size=(c, 1, kh, kw))
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            state[f"{key}.weight"] = rng.normal(size=(cout, cin, kh, kw))
        elif isinstance(layer, keras.layers.BatchNormalization):
            for p in ("weight", "bias", "running_mean", "running_var"):
                state[f"{key}.{p}"] = rng.uniform(0.5, 1.5, layer.gamma.shape)
            state[f"{key}.num_batches_tracked"] = np.array(0)
        elif isinstance(layer, keras.layers.Dense):
            state[f"{key}.weight"] = rng.normal(size=tuple(layer.kernel.shape)[::-1])
            state[f"{key}.bias"] = rng.normal(size=layer.bias.shape)
    return {k: v.astype(np.float32) if v.ndim else v for k, v in state.items()}


def test_mobilenet_v2_loader_converts_layouts_and_uses_every_tensor(built):
    model = built["mobilenet_v2_torchvision"]
    state = _mobilenet_state(model, np.random.default_rng(0))
    assert len(state) == 314  # as many entries as the real checkpoint
    assert "features.17.conv.2.weight" in state and "classifier.1.weight" in state
    torchvision_ports.load_mobilenet_v2(model, state)
    depthwise = model.get_layer("features_2_conv_1_0").get_weights()[0]
    np.testing.assert_array_equal(
        depthwise[1, 2, 5, 0], state["features.2.conv.1.0.weight"][5, 0, 1, 2]
    )
    project = model.get_layer("features_2_conv_2").get_weights()[0]
    np.testing.assert_array_equal(
        project[0, 0, 7, 3], state["features.2.conv.2.weight"][3, 7, 0, 0]
    )
    dense = model.get_layer("classifier_1").get_weights()[0]
    np.testing.assert_array_equal(dense[4, 9], state["classifier.1.weight"][9, 4])

    missing = {k: v for k, v in state.items() if k != "features.5.conv.3.running_var"}
    with pytest.raises(ValueError, match="features.5.conv.3.running_var"):
        torchvision_ports.load_mobilenet_v2(model, missing)
    with pytest.raises(ValueError, match="did not use.*extra.weight"):
        torchvision_ports.load_mobilenet_v2(model, {**state, "extra.weight": np.zeros(3)})
    wrong = {**state, "features.0.0.weight": np.zeros((32, 3, 5, 5), np.float32)}
    with pytest.raises(ValueError, match=r"features.0.0.weight has shape \(32, 3, 5, 5\)"):
        torchvision_ports.load_mobilenet_v2(model, wrong)


def test_vgg16_loader_takes_the_thirteen_convolutions(built):
    model, rng = built["vgg16_torchvision"], np.random.default_rng(1)
    convs = {
        f"Conv_{i}": {"kernel": rng.normal(size=tuple(layer.kernel.shape)).astype(np.float32),
                      "bias": rng.normal(size=tuple(layer.bias.shape)).astype(np.float32)}
        for i, layer in enumerate(_convolutions(model))
    }  # fmt: skip
    tree = {"VGG16_0": convs, "NetLinLayer_0": {"Conv_0": {"kernel": np.zeros((1, 1, 64, 1))}}}
    torchvision_ports.load_vgg16(model, tree)
    np.testing.assert_array_equal(
        model.get_layer("block5_conv3").get_weights()[0], convs["Conv_12"]["kernel"]
    )
    del convs["Conv_7"]
    with pytest.raises(ValueError, match="expected"):
        torchvision_ports.load_vgg16(model, tree)


def _inception_tree(model, rng) -> ScriptObject:
    """A module tree shaped like the fid-helper archive's, made from the model's convolutions."""
    import keras

    root = ScriptObject("__torch__.torch.nn.modules.container.Sequential")
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Conv2D):
            continue
        kh, kw, cin, cout = layer.kernel.shape
        *parents, leaf = layer.name.split(".")
        node = root
        for part in parents:
            node = node.attributes.setdefault(part, ScriptObject(f"__torch__.inceptionv3.{part}"))
        padding = [(kh - 1) // 2, (kw - 1) // 2] if layer.padding == "same" else 0
        node.attributes[leaf] = ScriptObject(
            "__torch__.inceptionv3.Conv2dLayer",
            {
                "weight": rng.normal(size=(cout, cin, kh, kw)).astype(np.float32),
                **{p: rng.uniform(0.5, 1.5, cout).astype(np.float32) for p in ("beta", "mean", "var")},
                "stride": layer.strides[0],
                "padding": padding,
            },
        )  # fmt: skip
    for block, kind in (("mixed_9", "AvgPool2d"), ("mixed_10", "MaxPool2d")):
        root.attributes[block].attributes["tower_2_pool"] = ScriptObject(f"__torch__.x.{kind}")
    net = ScriptObject("__torch__.inceptionv3.InceptionV3", {"layers": root})
    return ScriptObject("__torch__.wrap_net.WrapNet", {"net": net})


def test_inception_loader_follows_the_archive_and_checks_it(built):
    model = built["inception_v3_fid"]
    tree = _inception_tree(model, np.random.default_rng(2))
    assert len(inception_fid.conv_modules(tree)) == inception_fid.NUM_CONVOLUTIONS
    inception_fid.load_inception_fid(model, tree)
    conv = tree.attributes["net"].attributes["layers"].attributes["mixed_4"].attributes["tower"]
    conv = conv.attributes["conv_1"].attributes  # a 1x7 convolution
    kernel = model.get_layer("mixed_4.tower.conv_1").get_weights()[0]
    np.testing.assert_array_equal(kernel[0, 5, 3, 2], conv["weight"][2, 3, 0, 5])
    beta, mean, var = model.get_layer("mixed_4.tower.conv_1.bn").get_weights()
    np.testing.assert_array_equal(var, conv["var"])

    conv["padding"] = [3, 0]  # the padding of a 7x1 convolution on a 1x7 kernel
    with pytest.raises(ValueError, match=r"mixed_4.tower.conv_1: stride 1 padding \(3, 0\)"):
        inception_fid.load_inception_fid(model, tree)
    conv["padding"] = [0, 3]
    layers = tree.attributes["net"].attributes["layers"]
    layers.attributes["mixed_10"].attributes["tower_2_pool"] = ScriptObject("__torch__.AvgPool2d")
    with pytest.raises(ValueError, match="mixed_10.tower_2_pool .* expected MaxPool2d"):
        inception_fid.load_inception_fid(model, tree)


# ---------------------------------------------------------------------------------------------
# Arithmetic the ports must get right


def _cross_correlate(x, kernel, stride, pad):
    """x (H, W, C), kernel (kh, kw, C, O), symmetric zero padding ``pad`` -> (H', W', O)."""
    x = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    kh, kw = kernel.shape[:2]
    out_h, out_w = (x.shape[0] - kh) // stride + 1, (x.shape[1] - kw) // stride + 1
    out = np.zeros((out_h, out_w, kernel.shape[3]))
    for i in range(kh):
        for j in range(kw):
            patch = x[i : i + stride * out_h : stride, j : j + stride * out_w : stride]
            out += patch @ kernel[i, j]
    return out


def test_stride_two_convolutions_pad_like_pytorch(built):
    """PyTorch pads a stride-2 3x3 convolution one pixel on every side, not only bottom-right."""
    import keras

    model = built["mobilenet_v2_torchvision"]
    stem = keras.Model(model.input, model.get_layer("features_0_0").output)
    rng = np.random.default_rng(3)
    image = rng.uniform(0, 255, (1, 16, 16, 3)).astype(np.float32)  # even: "same" would differ
    model.get_layer("features_0_0").set_weights([rng.normal(size=(3, 3, 3, 32)).astype(np.float32)])
    standardized = model.get_layer("standardize")(image)[0]
    expected = _cross_correlate(
        np.asarray(standardized), model.get_layer("features_0_0").get_weights()[0], 2, 1
    )
    assert stem.predict_on_batch(image).shape == (1, 8, 8, 32)
    np.testing.assert_allclose(stem.predict_on_batch(image)[0], expected, rtol=1e-4, atol=1e-4)


def test_each_port_standardizes_as_it_was_trained(built):
    rgb = np.array([[[[0.0, 128.0, 255.0]]]], np.float32)
    mean, std = np.array(torchvision_ports.IMAGENET_MEAN), np.array(torchvision_ports.IMAGENET_STD)
    for name in ("mobilenet_v2_torchvision", "vgg16_torchvision"):
        torchvision = np.asarray(built[name].get_layer("standardize")(rgb)).ravel()
        np.testing.assert_allclose(torchvision, (rgb.ravel() / 255 - mean) / std, rtol=1e-5)
    inception = np.asarray(built["inception_v3_fid"].get_layer("rescale")(rgb)).ravel()
    np.testing.assert_allclose(inception, [-1.0, 0.0, 127 / 128], atol=1e-7)  # (x - 128) / 128


@pytest.mark.parametrize("name", PORTS)
def test_each_family_fine_tunes_saves_and_reloads_safely(name, tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    size = backbones.spec(name).min_size
    backbone = backbones.build(name, include_top=False, weights=None)
    for layer in backbone.layers[: int(len(backbone.layers) * 0.75)]:
        layer.trainable = False  # fine-tune the top quarter, as a top-blocks fine-tune would
    features = backbone.output
    if len(features.shape) == 4:
        features = keras.layers.GlobalAveragePooling2D()(features)
    model = keras.Model(backbone.input, keras.layers.Dense(1, activation="sigmoid")(features))
    assert 0 < _trainable(model) < model.count_params()
    # eager: one step on two images does not repay tracing a 300-layer graph
    model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy", run_eagerly=True)
    images = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    before = np.asarray(model(images))
    loss = model.train_on_batch(images, np.ones(2, np.float32))
    after = np.asarray(model(images))
    assert np.isfinite(loss) and not np.allclose(before, after)  # the step changed the model
    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    np.testing.assert_allclose(np.asarray(reloaded(images)), after, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Against the originals (slow: PyTorch and the cached weight files)


@pytest.fixture
def real_weights(monkeypatch):
    """The real weights cache; skips a test whose files are not there."""
    monkeypatch.setenv("DLBOOK_CACHE", REAL_CACHE)

    def require(name):
        ok, reason = pypi_weights.is_cached(name)
        if not ok:
            pytest.skip(f"the weight file is not cached: {reason}")

    return require


def _face_photos(folder: Path, size: int, per_class: int = 8) -> np.ndarray:
    """The first ``per_class`` photos of each class, centre-cropped to (2 per_class, S, S, 3)."""
    from PIL import Image

    files = [
        f for c in ("with_mask", "without_mask") for f in sorted((folder / c).iterdir())[:per_class]
    ]
    return np.stack(
        [backbones.photo_input(np.asarray(Image.open(f).convert("RGB")), size) for f in files]
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", PORTS)
def test_port_matches_pytorch_on_real_photos(name, real_weights, real_data):
    pytest.importorskip("torch", reason="the PyTorch reference needs torch (see the README)")
    from dlbook.methods.backbones import torch_reference

    real_weights(name)
    images = _face_photos(real_data, backbones.spec(name).image_size)
    agreement = torch_reference.port_agreement(name, images)
    print(
        f"{name}: max |Keras - PyTorch| = {agreement['max_abs_diff']:.2e} on {len(images)} photos"
    )
    assert agreement["n_images"] >= 16
    assert agreement["max_abs_diff"] <= PORT_TOLERANCE
    assert agreement["max_abs_feature"] > 1.0  # real features, not a dead network


@pytest.mark.slow
def test_mobilenet_v2_head_names_the_photos(real_weights):
    real_weights("mobilenet_v2_torchvision")
    check = backbones.imagenet_photo_check("mobilenet_v2_torchvision")
    assert check["ok"], check  # a cat among the cat classes, an espresso as espresso


@pytest.mark.slow
@pytest.mark.parametrize("name", PORTS)
def test_the_real_file_loads_into_its_port(name, real_weights):
    real_weights(name)
    model = backbones.load(name)  # every tensor of the file used, shapes checked
    assert len(_convolutions(model)) == FILE_COUNTS[name][0]
