"""Figures of chapter 4 (face-mask detection). Each function draws one figure and returns it.

Figures are sized for the book's page (about 8 inches wide), with at most three panels a row
and no text under 9 points, so every label stays readable at page width.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image

from dlbook.facemask import data

PAGE_WIDTH = 8.0  # inches
COLUMNS = 3  # panels a row, at most
SMALL = 9  # points, the smallest text on a figure
SHORT_LABELS = {0: "without", 1: "with"}


def short_name(model: str) -> str:
    """A model's name short enough for a panel title: the chapter's ``display_name`` without
    "EfficientNet-" and its comma, ``"efficientnet_lite0_finetuned"`` -> ``"Lite0 fine-tuned"``,
    ``"inception_v3_fid"`` -> ``"InceptionV3 (2015)"``."""
    from dlbook.experiments.mask_detection.classifiers import display_name

    if model == "custom_cnn":
        return "custom CNN"
    return display_name(model).removeprefix("EfficientNet-").replace(", fine-tuned", " fine-tuned")


def _grid(count: int, panel_height: float, columns: int = COLUMNS):
    columns = max(1, min(columns, count))
    rows = max(1, math.ceil(count / columns))
    fig, axes = plt.subplots(
        rows, columns, figsize=(PAGE_WIDTH, panel_height * rows), squeeze=False
    )
    for ax in axes.ravel()[count:]:
        ax.axis("off")
    return fig, axes.ravel()


def _say(ax, text: str) -> None:
    """An empty panel that says why it is empty."""
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.axis("off")


def _side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 4) -> np.ndarray:
    """Two RGB images of equal height next to each other, a white gap between."""
    white = np.full((left.shape[0], gap, 3), 255, dtype=np.uint8)
    return np.concatenate([left, white, right], axis=1)


def duplicate_examples(pictures: list[tuple[str, np.ndarray, np.ndarray]]):
    """Near-duplicate pairs, each side by side in one panel, titled with the first file's name.

    ``pictures``: (title, left image, right image) per pair, e.g. ``dataset.duplicate_pictures``.
    """
    fig, axes = _grid(max(1, len(pictures)), 1.9)
    for ax, (title, left, right) in zip(axes, pictures, strict=False):
        ax.imshow(_side_by_side(left, right))
        ax.set_title(title, fontsize=SMALL)
        ax.axis("off")
    fig.suptitle("Near-duplicate pairs (left and right): flips, re-encodes, crops")
    fig.tight_layout()
    return fig


def metadata_by_class(meta: pd.DataFrame, labels: np.ndarray):
    """Short side (log scale) and file format by class: the shortcuts a model could learn."""
    names = np.array([data.CLASS_NAMES[int(k)] for k in labels])
    fig, (left, right) = plt.subplots(1, 2, figsize=(PAGE_WIDTH, 3.4))
    bins = np.logspace(
        np.log10(max(1, meta["short_side"].min())), np.log10(meta["short_side"].max() + 1), 40
    )
    for name in data.CLASS_NAMES:
        left.hist(meta["short_side"][names == name], bins=bins, alpha=0.6, label=name)
    left.set_xscale("log")
    left.set(xlabel="short side (px)", ylabel="images", title="Image size by class")
    left.legend(fontsize=SMALL)
    kinds = (meta["format"] + " " + meta["mode"]).to_numpy()
    table = pd.crosstab(kinds, names).rename_axis(columns="class")
    table.plot.barh(ax=right, logx=True)
    right.set(xlabel="images (log scale)", ylabel="", title="Format and mode by class")
    right.legend(fontsize=SMALL)
    fig.tight_layout()
    return fig


def roc(curves: dict[str, dict]):
    """ROC curves of every model on the test split, zoomed on the top-left corner.

    ``curves``: ``{model: {"fpr", "tpr", "auc"}}``, e.g. ``evaluation.test_curves``.
    """
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    for name, curve in curves.items():
        ax.plot(curve["fpr"], curve["tpr"], label=f"{name} (AUC {curve['auc']:.4f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, test split")
    ax.set_xlim(-0.01, 0.5)
    ax.set_ylim(0.5, 1.01)
    ax.legend(fontsize=SMALL, loc="lower right")
    fig.tight_layout()
    return fig


def confusion_matrices(curves: dict[str, dict]):
    """Each model's confusion matrix on the test split (``curves[model]["confusion"]``), three a
    row."""
    fig, axes = _grid(len(curves), 2.7)
    for ax, (name, curve) in zip(axes, curves.items(), strict=False):
        matrix = curve["confusion"]
        ax.imshow(matrix, cmap="Blues")
        for (r, c), value in np.ndenumerate(matrix):
            colour = "black" if value < matrix.max() / 2 else "white"
            ax.text(c, r, str(value), ha="center", va="center", color=colour, fontsize=11)
        ax.set_xticks([0, 1], ["without", "with"], fontsize=SMALL)
        ax.set_yticks([0, 1], ["without", "with"], fontsize=SMALL)
        ax.set_xlabel("predicted", fontsize=SMALL)
        ax.set_ylabel("true", fontsize=SMALL)
        ax.set_title(short_name(name), fontsize=10)
    fig.suptitle("Confusion matrices, test split")
    fig.tight_layout()
    return fig


def cv_folds(cv: dict):
    """Accuracy of each transfer model on each grouped fold, with the mean and its interval."""
    names = list(cv["per_fold"])
    fig, ax = plt.subplots(figsize=(6.5, 0.7 + 0.6 * len(names)))
    for row, name in enumerate(names):
        accuracies = cv["per_fold"][name]["accuracy"].to_numpy()
        found = cv["summary"][name]["accuracy"]
        ax.plot(accuracies, np.full(len(accuracies), row), "o", color="0.6", ms=5)
        ax.errorbar(
            found["value"],
            row,
            xerr=[[found["value"] - found["ci_low"]], [found["ci_high"] - found["value"]]],
            fmt="D",
            color="C0",
            capsize=4,
        )
    ax.set_yticks(range(len(names)), [short_name(n) for n in names])
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_xlabel("accuracy on the held-out fold")
    ax.set_title(f"Grouped {cv['values']['cv_folds']}-fold CV: folds (grey), mean and 95% CI")
    fig.tight_layout()
    return fig


def leakage(leak: dict, claimed: dict[str, float]):
    """Accuracy on grouped and on random splits, per repeat (dots) and mean, with the claim.

    ``leak``: from ``leakage.measure_leakage``; ``claimed``: ``{model: dissertation accuracy}``.
    """
    runs, means = leak["runs"], leak["values"]
    models = list(dict.fromkeys(runs["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(PAGE_WIDTH, 3.4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        part = runs[runs.model == model]
        for x, kind in enumerate(("grouped", "random")):
            values = part[part.split == kind]["accuracy"].to_numpy()
            ax.plot(np.full(len(values), x), values, "o", color="0.6", ms=5)
            mean = means[f"{model}_{kind}_split_accuracy"]
            ax.plot([x - 0.2, x + 0.2], [mean] * 2, color="C0", lw=2.5)
        shown = list(part["accuracy"])
        if model in claimed:
            ax.axhline(claimed[model], color="C3", ls="--", lw=1.2, label="dissertation")
            ax.legend(fontsize=SMALL, loc="best")
            shown.append(claimed[model])
        margin = max(0.005, 0.1 * (max(shown) - min(shown)))
        ax.set_ylim(min(shown) - margin, min(1.0, max(shown)) + margin)
        ax.set_xticks([0, 1], ["grouped split", "random split"])
        ax.set_xlim(-0.6, 1.6)
        ax.set_title(short_name(model))
        ax.set_ylabel("test accuracy")
    fig.suptitle("The same recipe on grouped and on random splits (dots: repeats; bar: mean)")
    fig.tight_layout()
    return fig


def label_issues(ds: data.ImageSet, audit_result: dict, max_images: int = 12):
    """The suspected label issues, most suspicious first, with their label and out-of-fold P."""
    issues = audit_result["issues"][:max_images]
    oof = audit_result["oof"]
    fig, axes = _grid(max(1, len(issues)), 2.9)
    for ax, index in zip(axes, issues, strict=False):
        ax.imshow(ds.images[index])
        ax.set_title(
            f"labelled {SHORT_LABELS[int(ds.labels[index])]} mask\n"
            f"P(with mask) {oof[index]:.2f}, {ds.split[index]}",
            fontsize=SMALL,
        )
        ax.axis("off")
    if len(issues) == 0:
        _say(axes[0], "no suspected label issue")
    total = len(audit_result["issues"])
    fig.suptitle(f"Suspected label issues: {len(issues)} shown of {total}")
    fig.tight_layout()
    return fig


def test_errors(ds: data.ImageSet, audit_result: dict, max_images: int = 24):
    """Every test error (left) beside its nearest training image (right), three pairs a row.

    Titles give the error's label and P(with_mask), whether the label audit suspects it, the
    neighbour's label and its cosine distance in backbone-feature space.
    """
    errors = audit_result["errors"][:max_images]
    probs, flagged = audit_result["probs"], audit_result["flagged"]
    fig, axes = _grid(max(1, len(errors)), 2.3)
    for ax, index, neighbour, distance in zip(
        axes, errors, audit_result["neighbour"], audit_result["neighbour_distance"], strict=False
    ):
        ax.imshow(_side_by_side(ds.images[index], ds.images[neighbour]))
        mark = " (suspect)" if flagged[index] else ""
        ax.set_title(
            f"labelled {SHORT_LABELS[int(ds.labels[index])]}{mark}, P {probs[index]:.2f}\n"
            f"neighbour: {SHORT_LABELS[int(ds.labels[neighbour])]}, d {distance:.2f}",
            fontsize=SMALL,
        )
        ax.axis("off")
    if len(errors) == 0:
        _say(axes[0], "no test error")
    fig.suptitle(
        f"Test errors of {short_name(audit_result['best'])} ({len(audit_result['errors'])}), "
        "each beside its nearest training image"
    )
    fig.tight_layout()
    return fig


def reliability(calibration: dict, model_name: str, min_count: int = 10):
    """Reliability diagram before and after temperature scaling, with the count in each bin.

    Bins with fewer than ``min_count`` test images are not drawn: their accuracy is noise.
    """
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(6.0, 5.2), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]}
    )
    edges = calibration["curve_before"]["edges"]
    width = (edges[1] - edges[0]) / 2.4
    centres = (edges[:-1] + edges[1:]) / 2
    for offset, (key, label) in zip(
        (-width / 2, width / 2), (("curve_before", "before"), ("curve_after", "after")), strict=True
    ):
        curve = calibration[key]
        kept = curve["count"] >= min_count
        ece = calibration[key.replace("curve", "ece")]
        top.plot(
            curve["confidence"][kept],
            curve["accuracy"][kept],
            "o-",
            label=f"{label} scaling (ECE {ece:.4f})",
        )
        bottom.bar(centres + offset, curve["count"], width=width, label=label)
    top.plot([0.5, 1], [0.5, 1], "k:", lw=0.8, label="perfect calibration")
    top.set(ylabel="accuracy in bin", title=f"Reliability of {short_name(model_name)}, T = "
            f"{calibration['temperature']:.2f}")  # fmt: skip
    top.legend(fontsize=SMALL)
    bottom.set_yscale("log")
    bottom.axhline(min_count, color="0.4", ls=":", lw=1)
    bottom.set(xlabel="confidence", ylabel="test images")
    fig.tight_layout()
    return fig


def robustness(tables: dict[str, pd.DataFrame]):
    """Accuracy against corruption severity, one panel per corruption, one line per model."""
    kinds = list(next(iter(tables.values()))["corruption"].unique())
    fig, axes = _grid(len(kinds), 2.5)
    for ax, kind in zip(axes, kinds, strict=False):
        for name, table in tables.items():
            part = table[table["corruption"] == kind]
            ax.plot(part["severity"], part["accuracy"], "o-", label=short_name(name))
        ax.set_title(kind)
        ax.set_xlabel("severity (0 = clean)", fontsize=SMALL)
        ax.set_ylabel("accuracy", fontsize=SMALL)
        ax.tick_params(labelsize=SMALL)
    axes[0].legend(fontsize=SMALL)
    fig.suptitle("Robustness to corruptions, test images")
    fig.tight_layout()
    return fig


def saliency(ds: data.ImageSet, result: dict, model_name: str):
    """Images with their occlusion-sensitivity maps overlaid, three a row (red: relied on)."""
    count = len(result["index"])
    fig, axes = _grid(max(1, count), 2.9)
    scale = np.abs(result["maps"]).max() or 1.0
    for ax, index, kind, heat, share in zip(
        axes,
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
        ax.set_title(f"{kind}\nlower half {share_text}", fontsize=SMALL)
        ax.axis("off")
    fig.suptitle(f"Occlusion sensitivity of {short_name(model_name)}")
    fig.tight_layout()
    return fig
