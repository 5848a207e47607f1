"""Boxes to per-cell training targets and per-cell predictions back to boxes (NumPy only).

The one-stage detector predicts, on a grid of cells ``stride`` pixels wide (CenterNet's form):

- a heatmap per class, 1 at the cell holding a face's centre and a Gaussian around it whose
  spread follows the face's width and height (``sigma = size / stride / 6``, at least
  ``MIN_SIGMA`` cells), so cells next to a centre are penalised less for firing;
- at centre cells only: the box size as ``log(width / stride), log(height / stride)`` (the log
  keeps 8 px and 400 px faces on one scale) and the centre's offset inside its cell, in [0, 1).

``decode`` keeps the cells that are the largest of their 3 x 3 neighbourhood (peak picking replaces
non-maximum suppression), the ``max_boxes`` best of them above ``min_score``, and turns offset and
size back into ``x0, y0, x1, y1``. Coordinates here are those of the letterboxed input; the
caller divides by the letterbox scale.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

MIN_SIGMA = 0.5
"""Smallest Gaussian spread in cells: a 6 px face still marks its neighbours a little."""


def grid_shape(input_size: int, stride: int) -> tuple[int, int]:
    """Cells of a square ``input_size`` input at ``stride`` (the backbone pads odd sizes up)."""
    cells = -(-input_size // stride)
    return cells, cells


def encode(
    boxes: np.ndarray, labels: np.ndarray, shape: tuple[int, int], stride: int, n_classes: int
) -> dict[str, np.ndarray]:
    """Training targets of one image.

    Parameters
    ----------
    boxes : ndarray, shape (n, 4), float: x0, y0, x1, y1 in input pixels.
    labels : ndarray, shape (n,), int: class indices below ``n_classes``.
    shape : (h, w), the grid's cells.
    stride : pixels per cell.

    Returns
    -------
    dict of float32 arrays: ``heatmap`` (h, w, n_classes); ``size`` (h, w, 2) log width and
    height in cells; ``offset`` (h, w, 2) centre minus cell corner, in cells; ``mask`` (h, w, 1),
    1 at centre cells.
    """
    h, w = shape
    heatmap = np.zeros((h, w, n_classes), np.float32)
    size = np.zeros((h, w, 2), np.float32)
    offset = np.zeros((h, w, 2), np.float32)
    mask = np.zeros((h, w, 1), np.float32)
    ys, xs = np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    labels = np.asarray(labels, np.int64).reshape(-1)
    if (labels < 0).any() or (labels >= n_classes).any():
        raise ValueError(f"labels must lie in [0, {n_classes}); got {sorted(set(labels))}")
    # Large faces first, so a small face whose centre falls in a large face's cell keeps it.
    order = np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), kind="stable")
    for k in order:
        x0, y0, x1, y1 = boxes[k] / stride
        bw, bh = max(x1 - x0, 1e-3), max(y1 - y0, 1e-3)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        ix, iy = min(int(cx), w - 1), min(int(cy), h - 1)
        sx, sy = max(bw / 6, MIN_SIGMA), max(bh / 6, MIN_SIGMA)
        bump = np.exp(-((xs - ix) ** 2) / (2 * sx**2) - (ys - iy) ** 2 / (2 * sy**2))
        channel = heatmap[:, :, labels[k]]
        np.maximum(channel, bump, out=channel)
        channel[iy, ix] = 1.0
        size[iy, ix] = np.log([bw, bh])
        offset[iy, ix] = (cx - ix, cy - iy)
        mask[iy, ix] = 1.0
    return {"heatmap": heatmap, "size": size, "offset": offset, "mask": mask}


def encode_many(items, shape: tuple[int, int], stride: int, n_classes: int) -> dict:
    """``encode`` for each ``(boxes, labels)`` in ``items``, stacked: arrays (N, h, w, ...)."""
    encoded = [encode(b, lab, shape, stride, n_classes) for b, lab in items]
    return {key: np.stack([e[key] for e in encoded]) for key in encoded[0]}


def peaks(heatmap: np.ndarray) -> np.ndarray:
    """``heatmap`` (h, w, c) where a cell is the maximum of its 3 x 3 neighbourhood, else 0."""
    local_max = ndimage.maximum_filter(heatmap, size=(3, 3, 1), mode="constant", cval=0.0)
    return np.where(heatmap >= local_max, heatmap, 0.0)


def decode(
    heatmap: np.ndarray,
    size: np.ndarray,
    offset: np.ndarray,
    stride: int,
    min_score: float = 0.01,
    max_boxes: int = 300,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes of one image from its predicted maps.

    Parameters
    ----------
    heatmap : ndarray, shape (h, w, c): class probabilities per cell.
    size, offset : ndarray, shape (h, w, 2): as ``encode`` makes them.
    stride : pixels per cell.
    min_score, max_boxes : peaks below ``min_score`` are dropped; at most ``max_boxes`` kept.

    Returns
    -------
    (boxes (m, 4) float64 in input pixels, labels (m,) int64, scores (m,) float64), best first.
    """
    picked = peaks(np.asarray(heatmap, np.float64))
    flat = picked.reshape(-1)
    candidates = np.flatnonzero(flat >= min_score)
    best = candidates[np.argsort(-flat[candidates], kind="stable")][:max_boxes]
    n_classes = heatmap.shape[2]
    iy, rest = np.divmod(best, heatmap.shape[1] * n_classes)
    ix, label = np.divmod(rest, n_classes)
    cx = (ix + offset[iy, ix, 0]) * stride
    cy = (iy + offset[iy, ix, 1]) * stride
    bw = np.exp(size[iy, ix, 0]) * stride
    bh = np.exp(size[iy, ix, 1]) * stride
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    return boxes.astype(np.float64), label.astype(np.int64), flat[best].astype(np.float64)


def suppress_overlaps(boxes: np.ndarray, scores: np.ndarray, max_iou: float) -> np.ndarray:
    """Greedy non-maximum suppression across classes: indices of the boxes kept, best first.

    A peak of the heatmap marks each face once per class and 3 x 3 cells; a face much larger
    than the train photos' faces can raise several peaks, so a box whose IoU with a better-scored
    kept box exceeds ``max_iou`` is dropped (``max_iou`` 1: none is).

    Parameters
    ----------
    boxes : (m, 4) x0, y0, x1, y1; scores : (m,).
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    if max_iou >= 1 or len(order) < 2:
        return order
    boxes = np.asarray(boxes, np.float64)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept = []
    for i in order:
        if kept:
            k = np.array(kept)
            w = np.minimum(boxes[i, 2], boxes[k, 2]) - np.maximum(boxes[i, 0], boxes[k, 0])
            h = np.minimum(boxes[i, 3], boxes[k, 3]) - np.maximum(boxes[i, 1], boxes[k, 1])
            inter = np.clip(w, 0, None) * np.clip(h, 0, None)
            if (inter / (area[i] + area[k] - inter)).max() > max_iou:
                continue
        kept.append(int(i))
    return np.array(kept, dtype=np.int64)


def keep_above(found: list, threshold: float) -> list:
    """The evaluator's ``found`` list with only the boxes scoring at least ``threshold``."""
    kept = []
    for boxes, labels, scores in found:
        chosen = np.asarray(scores) >= threshold
        kept.append(
            (np.asarray(boxes)[chosen], np.asarray(labels)[chosen], np.asarray(scores)[chosen])
        )
    return kept
