"""Figures of chapter 4 (face-mask detection). Each function draws one figure and returns it."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image

from dlbook import data, detect


def _thumbnail(path: Path, size: int = 128) -> np.ndarray:
    return data.decode_image(path, size)


def duplicate_examples(
    pairs: np.ndarray, paths: list[str], data_dir: Path, n: int = 6, seed: int = 0
):
    """Near-duplicate pairs side by side, with their file names."""
    pairs = np.asarray(pairs).reshape(-1, 2)
    rng = np.random.default_rng(seed)
    chosen = (
        pairs[rng.choice(len(pairs), size=min(n, len(pairs)), replace=False)] if len(pairs) else []
    )
    fig, axes = plt.subplots(
        2, max(1, len(chosen)), figsize=(2.2 * max(1, len(chosen)), 4.8), squeeze=False
    )
    for column, (i, j) in enumerate(chosen):
        for row, index in enumerate((i, j)):
            ax = axes[row, column]
            ax.imshow(_thumbnail(Path(data_dir) / paths[index]))
            ax.set_title(paths[index].split("/", 1)[1][:22], fontsize=7)
            ax.axis("off")
    for ax in axes.ravel()[2 * len(chosen) :]:
        ax.axis("off")
    fig.suptitle("Near-duplicate pairs (top and bottom): flips, re-encodes, crops")
    fig.tight_layout()
    return fig


def metadata_by_class(meta: pd.DataFrame, labels: np.ndarray):
    """Short side (log scale) and file format by class: the shortcuts a model could learn."""
    names = np.array([data.CLASS_NAMES[int(k)] for k in labels])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    bins = np.logspace(
        np.log10(max(1, meta["short_side"].min())), np.log10(meta["short_side"].max() + 1), 40
    )
    for name in data.CLASS_NAMES:
        left.hist(meta["short_side"][names == name], bins=bins, alpha=0.6, label=name)
    left.set_xscale("log")
    left.set(
        xlabel="short side of the original image (px)", ylabel="images", title="Image size by class"
    )
    left.legend()
    kinds = (meta["format"] + " " + meta["mode"]).to_numpy()
    table = pd.crosstab(kinds, names).rename_axis(columns="class")
    table.plot.barh(ax=right, logx=True)
    right.set(xlabel="images (log scale)", ylabel="format and mode", title="File format by class")
    fig.tight_layout()
    return fig


def roc_and_confusion(runs: dict, labels: np.ndarray, split: np.ndarray):
    """ROC curves of every model on the test split, and each model's confusion matrix."""
    from sklearn.metrics import roc_curve

    from dlbook import metrics

    test = split == "test"
    n = len(runs)
    fig, axes = plt.subplots(1, n + 1, figsize=(4.2 + 2.6 * n, 3.8), squeeze=False)
    roc_ax = axes[0, 0]
    for name, run in runs.items():
        fpr, tpr, _ = roc_curve(labels[test], run.probs[test])
        auc = metrics.roc_auc(labels[test], run.probs[test])
        roc_ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.4f})")
    roc_ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, test split")
    roc_ax.legend(fontsize=7, loc="lower right")
    for ax, (name, run) in zip(axes[0, 1:], runs.items(), strict=True):
        matrix = metrics.confusion_counts(labels[test], run.probs[test])
        ax.imshow(matrix, cmap="Blues")
        for (r, c), value in np.ndenumerate(matrix):
            ax.text(
                c,
                r,
                str(value),
                ha="center",
                va="center",
                color="black" if value < matrix.max() / 2 else "white",
            )
        ax.set_xticks([0, 1], ["without", "with"])
        ax.set_yticks([0, 1], ["without", "with"])
        ax.set(xlabel="predicted", ylabel="true", title=name)
        ax.title.set_fontsize(8)
    fig.tight_layout()
    return fig


def reliability(calibration: dict, model_name: str):
    """Reliability diagram on the test split before and after temperature scaling."""
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    for key, label in (("curve_before", "before"), ("curve_after", "after")):
        curve = calibration[key]
        filled = curve["count"] > 0
        ece = calibration[key.replace("curve", "ece")]
        ax.plot(
            curve["confidence"][filled],
            curve["accuracy"][filled],
            "o-",
            label=f"{label} (ECE {ece:.4f})",
        )
    ax.plot([0.5, 1], [0.5, 1], "k:", lw=0.8, label="perfect calibration")
    ax.set(
        xlabel="confidence (mean in bin)",
        ylabel="accuracy in bin",
        title=f"Reliability of {model_name}, T = {calibration['temperature']:.2f}",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def robustness(tables: dict[str, pd.DataFrame]):
    """Accuracy against corruption severity, one panel per corruption, one line per model."""
    kinds = list(next(iter(tables.values()))["corruption"].unique())
    columns = 4
    rows = math.ceil(len(kinds) / columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(3.2 * columns, 2.8 * rows), squeeze=False, sharey=True
    )
    for ax, kind in zip(axes.ravel(), kinds, strict=False):
        for name, table in tables.items():
            part = table[table["corruption"] == kind]
            ax.plot(part["severity"], part["accuracy"], "o-", label=name)
        ax.set(title=kind, xlabel="severity (0 = clean)", ylabel="test accuracy")
    for ax in axes.ravel()[len(kinds) :]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Robustness to corruptions")
    fig.tight_layout()
    return fig


def test_errors(ds: data.ImageSet, probs: np.ndarray, model_name: str, max_images: int = 40):
    """Every test error (up to ``max_images``) with its true label and P(with_mask)."""
    test = ds.split == "test"
    wrong = np.flatnonzero(test & ((probs >= 0.5) != ds.labels))[:max_images]
    columns = min(8, max(1, len(wrong)))
    rows = max(1, math.ceil(len(wrong) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.8 * columns, 2.1 * rows), squeeze=False)
    for ax, index in zip(axes.ravel(), wrong, strict=False):
        ax.imshow(ds.images[index])
        ax.set_title(
            f"true: {data.CLASS_NAMES[ds.labels[index]].replace('_mask', '')}\nP(mask) {probs[index]:.2f}",
            fontsize=7,
        )
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle(f"Test errors of {model_name}: {len(wrong)}")
    fig.tight_layout()
    return fig


def saliency(ds: data.ImageSet, result: dict, model_name: str):
    """Images with their occlusion-sensitivity maps overlaid (the redder, the more the model relies on it)."""
    count = len(result["index"])
    fig, axes = plt.subplots(1, max(1, count), figsize=(2.2 * max(1, count), 2.8), squeeze=False)
    scale = np.abs(result["maps"]).max() or 1.0
    for ax, index, kind, heat, share in zip(
        axes[0],
        result["index"],
        result["kind"],
        result["maps"],
        result["lower_half_share"],
        strict=False,
    ):
        image = ds.images[index]
        size = image.shape[0]
        ax.imshow(image)
        upsampled = np.asarray(
            Image.fromarray(heat.astype(np.float32)).resize((size, size), Image.Resampling.BILINEAR)
        )
        overlay = np.zeros((size, size, 4))
        overlay[..., 0] = 1.0
        overlay[..., 3] = 0.7 * np.clip(upsampled / scale, 0, 1)
        ax.imshow(overlay)
        share_text = "n/a" if np.isnan(share) else f"{share:.0%}"
        ax.set_title(f"{kind}\nlower half {share_text}", fontsize=7)
        ax.axis("off")
    fig.suptitle(f"Occlusion sensitivity of {model_name}")
    fig.tight_layout()
    return fig


def scenes(examples: list[dict], max_scenes: int = 4):
    """Composed scenes: true boxes dashed, detections coloured by the classifier's verdict."""
    shown = examples[:max_scenes]
    fig, axes = plt.subplots(
        1, max(1, len(shown)), figsize=(4.6 * max(1, len(shown)), 3.6), squeeze=False
    )
    for ax, example in zip(axes[0], shown, strict=False):
        ax.imshow(detect.annotate(example["scene"], example["boxes"], example["probs"]))
        for x, y, w, h in example["truth"]:
            ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, ls="--", ec="yellow", lw=1))
        ax.set_title(
            f"{len(example['truth'])} faces, {len(example['boxes'])} detections", fontsize=8
        )
        ax.axis("off")
    fig.suptitle("Composed test scenes (dashed: true faces; green: mask, red: no mask)")
    fig.tight_layout()
    return fig
