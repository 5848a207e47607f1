"""Box geometry: every box is (x, y, width, height) in an image's pixels, float64.

``intersection`` is the one place two sets of boxes are overlapped; ``box_iou``, ``overlap`` and
``inside`` are its readings (``overlap`` and ``covered`` recover the intersection from the IoU, see
``intersection_from_iou``). ``suppress`` and ``weighted_nms`` keep one box per face;
``clip_boxes`` fits boxes to an image.
"""

from __future__ import annotations

import numpy as np


def as_boxes(boxes, scores=None) -> tuple[np.ndarray, np.ndarray]:
    """``boxes`` as (K, 4) float64 and ``scores`` as (K,) float64 (all ones when None)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.ones(len(boxes)) if scores is None else np.asarray(scores, np.float64).ravel()
    return boxes, scores


def area(boxes: np.ndarray) -> np.ndarray:
    """Width times height, shape (K,)."""
    return boxes[:, 2] * boxes[:, 3]


def intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Area shared by each box of ``a`` with each box of ``b``: (len(a), len(b)) float64."""
    a, _ = as_boxes(a)
    b, _ = as_boxes(b)
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2) - np.maximum(a[:, None, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2) - np.maximum(a[:, None, 1], b[:, 1]), 0, None)
    return iw * ih


def _share(inter: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """``inter / whole``, 0 where ``whole`` is 0 (an empty box overlaps nothing)."""
    return np.where(whole > 0, inter / np.where(whole > 0, whole, 1), 0.0)


def intersection_from_iou(iou: np.ndarray, area_a: np.ndarray, area_b: np.ndarray) -> np.ndarray:
    """The intersection recovered from IoU: ``iou * (area_a + area_b) / (1 + iou)``.

    ``intersection`` up to the last bit. ``overlap`` and ``covered`` have always read it this
    way, and a box whose overlap lands exactly on a threshold (integer boxes often do) must fall
    on the same side it always did: computing it directly moves about one decision in 2,000
    scenes.
    """
    return iou * (area_a[:, None] + area_b[None, :]) / (1 + iou)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union: (len(a), len(b)) float64."""
    a, _ = as_boxes(a)
    b, _ = as_boxes(b)
    inter = intersection(a, b)
    return _share(inter, area(a)[:, None] + area(b) - inter)


def overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How much boxes overlap: the larger of IoU and intersection over the smaller box.

    Detectors frame a face differently (a cascade's box hugs eyes to mouth, MTCNN's reaches the
    chin), so two boxes of one face can have a low IoU while one lies inside the other.

    Returns
    -------
    ndarray, shape (len(a), len(b)), float64
    """
    a, _ = as_boxes(a)
    b, _ = as_boxes(b)
    iou = box_iou(a, b)
    inter = intersection_from_iou(iou, area(a), area(b))
    return np.maximum(iou, _share(inter, np.minimum(area(a)[:, None], area(b))))


def covered(found: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cover, iou): the share of each found box inside each true box, and their IoU.

    Returns
    -------
    two ndarrays, shape (len(truth), len(found)), float64
    """
    truth, _ = as_boxes(truth)
    found, _ = as_boxes(found)
    iou = box_iou(truth, found)
    return intersection_from_iou(iou, area(truth), area(found)) / area(found)[None, :], iou


def inside(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Share of each box of ``a`` lying inside each box of ``b``: (len(a), len(b)) float64."""
    a, _ = as_boxes(a)
    return _share(intersection(a, b), area(a)[:, None])


def suppress(
    boxes: np.ndarray, ranks: np.ndarray, threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Non-maximum suppression by ``overlap``: keep the best-ranked box of each cluster.

    Parameters
    ----------
    boxes : ndarray, shape (K, 4).
    ranks : ndarray, shape (K,); lower is better (e.g. the detector's priority, then -score).
    threshold : boxes overlapping a kept box by at least this much are dropped.

    Returns
    -------
    (kept boxes (M, 4), indices into ``boxes`` (M,))
    """
    boxes, _ = as_boxes(boxes)
    order = np.argsort(np.asarray(ranks, dtype=np.float64), kind="stable")
    kept = []
    for i in order:
        if not kept or overlap(boxes[i], boxes[kept]).max() < threshold:
            kept.append(int(i))
    kept = np.array(kept, dtype=np.int64)
    return boxes[kept], kept


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's weighted non-maximum suppression.

    Boxes overlapping the best remaining one by at least ``iou_threshold`` (IoU) are merged into
    it: their score-weighted mean box, with the best score.
    """
    boxes, scores = as_boxes(boxes, scores)
    order = np.argsort(-scores, kind="stable")
    boxes, scores = boxes[order], scores[order]
    alive = np.ones(len(boxes), dtype=bool)
    kept_boxes, kept_scores = [], []
    for i in range(len(boxes)):
        if not alive[i]:
            continue
        cluster = alive & (box_iou(boxes[i], boxes)[0] >= iou_threshold)
        cluster[i] = True
        weights = scores[cluster]
        kept_boxes.append((boxes[cluster] * weights[:, None]).sum(0) / weights.sum())
        kept_scores.append(scores[i])
        alive &= ~cluster
    return as_boxes(kept_boxes, kept_scores)


def clip_boxes(boxes: np.ndarray, shape) -> np.ndarray:
    """``boxes`` clipped to an image of ``shape`` (H, W, ...), rounded; empty ones dropped.

    Returns
    -------
    ndarray, shape (M, 4), int64
    """
    height, width = shape[:2]
    boxes, _ = as_boxes(boxes)
    x0, y0 = np.clip(boxes[:, 0], 0, width), np.clip(boxes[:, 1], 0, height)
    x1 = np.clip(boxes[:, 0] + boxes[:, 2], 0, width)
    y1 = np.clip(boxes[:, 1] + boxes[:, 3], 0, height)
    boxes = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1).round().astype(np.int64)
    return boxes[(boxes[:, 2] > 0) & (boxes[:, 3] > 0)]
