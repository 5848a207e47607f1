"""Pretrained backbones side by side: availability, size, extraction speed, ImageNet sanity checks."""

from __future__ import annotations

import numpy as np

from dlbook import backbones, features
from dlbook.backbones import efficientnet_lite

LITE_NAMES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
KERAS_APPLICATION_NAMES = ("resnet50", "vgg16", "inception_v3", "mobilenet_v2")


def architecture_params(name: str) -> int:
    """Parameters of a backbone's feature extractor as trained (batch norms unfolded, no ImageNet
    classifier), whether or not its weights are available."""
    if backbones.BACKBONES[name].family == "efficientnet_lite":
        return int(
            efficientnet_lite.build_efficientnet_lite(name, include_top=False).count_params()
        )
    return int(
        backbones._build_keras_application(name, include_top=False, weights=None).count_params()
    )


def photo_checks(names=LITE_NAMES) -> dict[str, dict]:
    """``imagenet_photo_check`` for every available backbone in ``names``."""
    return {
        name: backbones.imagenet_photo_check(name) for name in names if backbones.available(name)[0]
    }


def backbone_report(
    names, images, checks: dict[str, dict] | None = None, batch_size: int = 32
) -> dict:
    """Flat results for the architectures chapter.

    Parameters
    ----------
    names : backbone registry names.
    images : ndarray, shape (N, H, W, 3), uint8; what the extraction speed is measured on.
    checks : photo checks already computed by ``photo_checks`` (computed here otherwise).
    batch_size : images per forward pass while timing.

    Returns
    -------
    dict
        ``<backbone>_available`` (bool), ``<backbone>_params`` (int, the architecture's, even
        without weights), ``<backbone>_features_per_s`` (float, None without weights), and for
        EfficientNet-Lite ``<backbone>_imagenet_top1_ok`` plus the photo check's top-1 classes and
        expected-class probabilities (``_cat_top1``, ``_cat_prob``, ``_coffee_top1``,
        ``_coffee_prob``).
    """
    unknown = [name for name in names if name not in backbones.BACKBONES]
    if unknown:
        raise ValueError(f"names has unknown backbones {unknown}; use {tuple(backbones.BACKBONES)}")
    images = np.asarray(images)
    checks = {} if checks is None else dict(checks)
    report = {}
    for name in names:
        ok, reason = backbones.available(name)
        report[f"{name}_available"] = ok
        report[f"{name}_params"] = architecture_params(name)
        if not ok:
            print(f"{name}: unavailable: {reason}")
            report[f"{name}_features_per_s"] = None
            continue
        report[f"{name}_features_per_s"] = features.benchmark(name, images, batch_size)
        if backbones.BACKBONES[name].family == "efficientnet_lite":
            check = checks.get(name) or backbones.imagenet_photo_check(name)
            report[f"{name}_imagenet_top1_ok"] = check["ok"]
            for photo in backbones.PHOTO_EXPECTED_CLASSES:
                report[f"{name}_{photo}_top1"] = check[f"{photo}_top1"]
                report[f"{name}_{photo}_prob"] = check[f"{photo}_expected_prob"]
    return report


def backbone_table(names, report: dict):
    """One row per backbone: availability (with the reason), parameters, features/s, ImageNet check."""
    import pandas as pd

    rows = []
    for name in names:
        spec = backbones.BACKBONES[name]
        rows.append(
            {
                "backbone": name,
                "available": report[f"{name}_available"],
                "parameters (M)": report[f"{name}_params"] / 1e6,
                "feature dim": spec.feature_dim,
                "native size": spec.image_size,
                "features/s": report[f"{name}_features_per_s"],
                "ImageNet photo check": report.get(f"{name}_imagenet_top1_ok"),
                "weights": backbones.available(name)[1],
            }
        )
    return pd.DataFrame(rows).set_index("backbone")


def reference_agreements(names=LITE_NAMES):
    """Keras-versus-NumPy logit agreement on the test photos, one row per EfficientNet-Lite."""
    import pandas as pd

    rows = {name: backbones.reference_agreement(name) for name in names}
    return pd.DataFrame.from_dict(rows, orient="index")
