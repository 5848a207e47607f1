"""Figures of chapter 4b (real photographs). Each function draws one figure and returns it.

They draw what ``dlbook.experiments.real_photos`` returns; ``rows`` is ``{pipeline name: scored
row}`` (``real_photos.shown_rows``).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from dlbook.facemask.data import decode_image
from dlbook.facemask.data.voc import SCENE_CLASSES
from dlbook.facemask.detect.drawing import annotate
from dlbook.facemask.scene_classifier import match_to_faces
from dlbook.facemask.scene_pipeline import xyxy_to_xywh
from dlbook.methods import detection_metrics as dm


def pr_curves(rows: dict):
    """Precision against recall at IoU 0.5 on the test photos, one panel per class."""
    fig, axes = plt.subplots(1, len(SCENE_CLASSES), figsize=(12, 3.6), sharey=True)
    for ax, name in zip(axes, SCENE_CLASSES, strict=True):
        for key, row in rows.items():
            curve = row["curves"]
            ap = row["ap50"][name]
            label = f"{key} (AP {ap:.2f})"
            ax.plot(curve["recall"], curve["precision"][name], label=label, lw=1.5)
        ax.set(title=name, xlabel="recall", xlim=(0, 1), ylim=(0, 1.02))
        ax.legend(fontsize=7, loc="lower left")
    axes[0].set_ylabel("precision (interpolated)")
    fig.tight_layout()
    return fig


def recall_by_width(rows: dict, target: float):
    """Share of faces found (any class, IoU 0.5) in each face-width bin, per pipeline; the
    dashed line is the recall ``target`` for faces from 32 px."""
    names = dm.width_labels()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    width = 0.8 / max(1, len(rows))
    x = np.arange(len(names))
    for k, (key, row) in enumerate(rows.items()):
        values = [row["recall_by_width"][n] for n in names]
        ax.bar(x + (k - (len(rows) - 1) / 2) * width, values, width, label=key)
    ax.axhline(target, ls="--", c="grey", lw=1, label="target from 32 px")
    faces = next(iter(rows.values()))["faces_by_width"]
    ax.set_xticks(x, [f"{n} px\n({faces[n]} faces)" for n in names])
    ax.set(ylim=(0, 1), ylabel="faces found (test photos)")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def _errors(photo, found) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Missed faces, false alarms and wrong-class boxes of one photo (x0, y0, x1, y1 each)."""
    boxes, labels, _ = found
    face_of, _ = match_to_faces(photo.boxes, boxes, min_iou=0.5)
    missed = np.setdiff1d(np.arange(len(photo.boxes)), face_of[face_of >= 0])
    wrong = (face_of >= 0) & (labels != photo.labels[np.maximum(face_of, 0)])
    return photo.boxes[missed], boxes[face_of < 0], boxes[wrong]


def gallery(photos: list, found: list, count: int = 6, columns: int = 3):
    """Test photos with the most errors: the pipeline's boxes drawn by ``detect.drawing``
    (green masked, red not), missed faces dashed yellow, false alarms dashed magenta."""
    errors = [_errors(p, f) for p, f in zip(photos, found, strict=True)]
    worst = np.argsort([-(len(m) + len(a) + len(w)) for m, a, w in errors], kind="stable")[:count]
    rows = int(np.ceil(len(worst) / columns)) or 1
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows))
    axes = np.atleast_1d(axes).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, k in zip(axes, worst, strict=False):
        boxes, labels, scores = found[k]
        masked = np.where(labels == SCENE_CLASSES.index("without_mask"), 1 - scores, scores)
        ax.imshow(annotate(decode_image(photos[k].image_path, None), xyxy_to_xywh(boxes), masked))
        missed, alarms, wrong = errors[k]
        for group, colour in ((missed, "yellow"), (alarms, "magenta")):
            for x0, y0, x1, y1 in group:
                ax.add_patch(
                    plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=colour, ls="--")
                )
        ax.set_title(
            f"{len(missed)} missed, {len(alarms)} false alarms, {len(wrong)} wrong class",
            fontsize=9,
        )
    fig.tight_layout()
    return fig
