"""Figures of chapter 4's face-finding sections. Each function draws one figure and returns it.

They draw what ``dlbook.experiments.detection`` returns, targets included.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def detectors(result: dict):
    """Masked-face recall, unmasked-face recall and precision of each detector on the test scenes.

    The dashed line is the recall target (``result["target_recall"]``); the chosen detector's
    name is in bold.
    """
    table, target = result["table"], result["target_recall"]
    names = list(table.index)
    measures = {
        "recall, masked faces": "recall_with_mask",
        "recall, unmasked faces": "recall_without_mask",
        "precision": "precision",
    }
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.55 * len(names)))
    height = 0.8 / len(measures)
    y = np.arange(len(names))
    for k, (label, column) in enumerate(measures.items()):
        ax.barh(y + (k - 1) * height, table[column].to_numpy(), height, label=label)
    ax.axvline(target, ls="--", c="grey", lw=1, label=f"target {target:.0%}")
    ax.set_yticks(y, names)
    for tick in ax.get_yticklabels():
        if tick.get_text() == result["best"]:
            tick.set_fontweight("bold")
    ax.invert_yaxis()
    ax.set(xlim=(0, 1.0), xlabel="share (composed test scenes)")
    ax.set_title("Face detectors on composed scenes (bold: chosen on validation)", fontsize=10)
    return _legend_below(fig, ax, columns=4, height=0.08)


def scenes(result: dict, max_scenes: int = 3):
    """Test scenes with the chosen detector's boxes (solid) and the pasted faces (dashed)."""
    shown = result["examples"][:max_scenes]
    fig, axes = plt.subplots(1, max(1, len(shown)), figsize=(4.4 * max(1, len(shown)), 3.4))
    axes = np.atleast_1d(axes)
    for ax, example in zip(axes, shown, strict=False):
        ax.imshow(example["scene"])
        for (x, y, w, h), label in zip(example["truth"], example["labels"], strict=True):
            colour = "tab:green" if label == 1 else "tab:red"
            ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, ls="--", ec=colour, lw=1))
        for x, y, w, h in example["boxes"]:
            ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, ec="yellow", lw=2))
        ax.set_title(f"{len(example['truth'])} faces, {len(example['boxes'])} boxes", fontsize=8)
        ax.axis("off")
    fig.suptitle(
        f"{result['best']} on test scenes (dashed: pasted faces, green masked, red not; "
        "yellow: boxes found)",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def pipeline(result: dict):
    """Milliseconds per 640x480 frame on one core, detector and classifier stacked; the dashed
    line is the saved frame-rate target (``pipeline_target_fps``)."""
    rows = result["rows"]
    fig, ax = plt.subplots(figsize=(7.5, 1.8 + 0.5 * max(1, len(rows))))
    if not rows:
        ax.text(0.5, 0.5, "not run: no int8 export of the shipped model", ha="center")
        ax.axis("off")
        return fig
    names = [row["detector"] for row in rows]
    detector_ms = np.array([row["detector_ms"] for row in rows])
    classifier_ms = np.array([row["classifier_ms"] for row in rows])
    ax.barh(names, detector_ms, label="detector")
    ax.barh(names, classifier_ms, left=detector_ms, label="crop + int8 classifier")
    target_fps = result["values"]["pipeline_target_fps"]
    ax.axvline(1000 / target_fps, ls="--", c="grey", lw=1, label=f"{target_fps:g} frames/s")
    ax.invert_yaxis()
    ax.set(xlabel="ms per frame, one CPU core", title="Where a frame's time goes")
    return _legend_below(fig, ax, columns=3, height=0.12)


def _legend_below(fig, ax, columns: int, height: float):
    """``ax``'s legend in ``columns`` under the figure, in the bottom ``height`` of it."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=columns, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, height, 1, 1))
    return fig
