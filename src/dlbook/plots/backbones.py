"""Figures for the pretrained backbones: the ImageNet photo check."""

from __future__ import annotations

import numpy as np

from dlbook import backbones


def class_label(index: int, names: list[str] | None = None) -> str:
    """``"282 tiger cat"`` when the name is known (class index or the check's classes), else ``"class 904"``."""
    if names is not None:
        return f"{index} {names[index]}"
    if index in backbones.EXPECTED_CLASS_NAMES:
        return f"{index} {backbones.EXPECTED_CLASS_NAMES[index]}"
    return f"class {index}"


def plot_photo_checks(checks: dict[str, dict]):
    """Each test photo (as the network sees it) beside each backbone's top-5 ImageNet classes.

    Parameters
    ----------
    checks : backbone name -> the dict from ``backbones.imagenet_photo_check``.

    Returns
    -------
    matplotlib.figure.Figure
        One row per photo; bars of the expected classes are highlighted.
    """
    import matplotlib.pyplot as plt

    if not checks:
        raise ValueError("checks is empty; pass {backbone name: imagenet_photo_check(name)}")
    names = backbones.imagenet_class_names()
    photos = backbones.imagenet_photos()
    columns = 1 + len(checks)
    fig, axes = plt.subplots(
        len(photos), columns, figsize=(3.2 * columns, 2.8 * len(photos)), squeeze=False
    )
    for row, (photo, image) in enumerate(photos.items()):
        size = min(check["image_size"] for check in checks.values())
        axes[row, 0].imshow(backbones.photo_input(image, size))
        axes[row, 0].set_title(f"{photo} (scikit-image)")
        axes[row, 0].axis("off")
        expected = backbones.PHOTO_EXPECTED_CLASSES[photo]
        for col, (backbone, check) in enumerate(checks.items(), start=1):
            ax = axes[row, col]
            top = check[f"{photo}_top_k"]
            labels = [class_label(i, names) for i, _ in top]
            probs = np.array([p for _, p in top])
            colors = ["tab:green" if i in expected else "tab:gray" for i, _ in top]
            ax.barh(np.arange(len(top))[::-1], probs, color=colors)
            ax.set_yticks(np.arange(len(top))[::-1], labels, fontsize=8)
            ax.set_xlim(0, 1)
            ax.set_xlabel("probability")
            verdict = "pass" if check[f"{photo}_ok"] else "FAIL"
            ax.set_title(f"{backbone}: {verdict}", fontsize=9)
    fig.suptitle("ImageNet top-5 on two real photos (green: an expected class)")
    fig.tight_layout()
    return fig
