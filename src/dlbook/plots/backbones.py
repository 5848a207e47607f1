"""Figures for the pretrained backbones: the ImageNet photo check."""

from __future__ import annotations

import numpy as np

from dlbook.methods import backbones


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
        The photos in the first row, then per photo the top-5 of each backbone, at most three
        panels a row; bars of the expected classes are highlighted.
    """
    import matplotlib.pyplot as plt

    if not checks:
        raise ValueError("checks is empty; pass {backbone name: imagenet_photo_check(name)}")
    names = backbones.imagenet_class_names()
    photos = backbones.imagenet_photos()
    columns = max(len(photos), min(3, len(checks)))
    rows_per_photo = -(-len(checks) // columns)
    rows = 1 + rows_per_photo * len(photos)
    fig, axes = plt.subplots(rows, columns, figsize=(2.7 * columns, 2.4 * rows), squeeze=False)
    used = set()
    size = min(check["image_size"] for check in checks.values())
    for col, (photo, image) in enumerate(photos.items()):
        axes[0, col].imshow(backbones.photo_input(image, size))
        axes[0, col].axis("off")
        used.add((0, col))
        axes[0, col].set_title(f"{photo} (scikit-image)", fontsize=10)
    for index, (photo, _) in enumerate(photos.items()):
        expected = backbones.PHOTO_EXPECTED_CLASSES[photo]
        for position, (backbone, check) in enumerate(checks.items()):
            where = (1 + index * rows_per_photo + position // columns, position % columns)
            used.add(where)
            ax = axes[where]
            top = check[f"{photo}_top_k"]
            labels = [class_label(i, names) for i, _ in top]
            probs = np.array([p for _, p in top])
            colors = ["tab:green" if i in expected else "tab:gray" for i, _ in top]
            ax.barh(np.arange(len(top))[::-1], probs, color=colors)
            ax.set_yticks(np.arange(len(top))[::-1], [label[:18] for label in labels], fontsize=9)
            ax.set_xlim(0, 1)
            ax.set_xlabel("probability")
            verdict = "pass" if check[f"{photo}_ok"] else "FAIL"
            ax.set_title(f"{photo}, {backbone}: {verdict}", fontsize=10)
    for where in np.ndindex(axes.shape):
        if where not in used:
            fig.delaxes(axes[where])
    fig.suptitle("ImageNet top-5 on two real photos (green: an expected class)", fontsize=11)
    fig.tight_layout()
    return fig
