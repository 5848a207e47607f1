"""Scoring boxes found in photos against annotated ones, with the COCO evaluator (pycocotools).

The AP is COCO's own (``pycocotools.cocoeval.COCOeval``, bounding boxes, 101-point interpolated
precision), never re-implemented here: per class at IoU 0.5 and averaged over IoU 0.5:0.95, the
mean over the classes that have faces (mAP@0.5, mAP@[.5:.95]). Recall by face width uses the
same evaluator with classes ignored (a face counts as found when some box of any class matches it
at IoU 0.5), so detector misses and classifier errors can be told apart. Intervals come from
resampling whole photos (``metrics.bootstrap_samples``).

Boxes are ``x0, y0, x1, y1`` in pixels. ``truth`` is a list, one item per photo, of
``(boxes (n, 4), labels (n,))``; ``found`` the same with scores, ``(boxes (m, 4), labels (m,),
scores (m,))``.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

from dlbook.methods import metrics

WIDTH_BINS = (0.0, 16.0, 32.0, 64.0, np.inf)
"""Face-width bin edges in pixels: < 16, 16-32, 32-64, >= 64."""
MAX_DETECTIONS = 500
"""Boxes kept per photo (and class), highest scores first; crowds hold up to ~100 faces."""
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


def width_labels(bins=WIDTH_BINS) -> list[str]:
    """Readable names of the width bins: ``<16``, ``16-32``, ..., ``>=64``."""
    names = []
    for low, high in zip(bins[:-1], bins[1:], strict=True):
        if low == 0:
            names.append(f"<{high:g}")
        elif np.isinf(high):
            names.append(f">={low:g}")
        else:
            names.append(f"{low:g}-{high:g}")
    return names


def _check(truth, found) -> None:
    if len(truth) != len(found):
        raise ValueError(f"truth has {len(truth)} photos but found has {len(found)}")
    for k, (t, f) in enumerate(zip(truth, found, strict=True)):
        if len(t) != 2 or len(f) != 3:
            raise ValueError(
                f"photo {k}: truth needs (boxes, labels), found (boxes, labels, scores)"
            )
        if np.asarray(t[0]).reshape(-1, 4).shape[0] != len(t[1]):
            raise ValueError(f"photo {k}: {len(t[1])} truth labels for a different number of boxes")
        if not len(f[1]) == len(f[2]) == np.asarray(f[0]).reshape(-1, 4).shape[0]:
            raise ValueError(f"photo {k}: found boxes, labels and scores differ in length")


def _annotations(boxes, labels, image_id: int, start: int, scores=None) -> list[dict]:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    rows = []
    for k, (box, label) in enumerate(zip(boxes, labels, strict=True)):
        x0, y0, x1, y1 = (float(v) for v in box)
        row = {
            "id": start + k,
            "image_id": image_id,
            "category_id": int(label) + 1,
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "area": (x1 - x0) * (y1 - y0),
            "iscrowd": 0,
        }
        if scores is not None:
            row["score"] = float(scores[k])
        rows.append(row)
    return rows


def _coco(images, categories, annotations):
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = {"images": images, "categories": categories, "annotations": annotations}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_eval(truth, found, n_classes: int, use_classes: bool = True):
    """A ``COCOeval`` for these photos, evaluated and accumulated (one area range, all sizes).

    ``use_classes`` False pools the classes: any box may match any face.
    """
    from pycocotools.cocoeval import COCOeval

    _check(truth, found)
    if not use_classes:  # one pooled class: COCOeval's useCats=0 still drops other classes' boxes
        truth = [(boxes, np.zeros(len(labels), np.int64)) for boxes, labels in truth]
        found = [(b, np.zeros(len(labels), np.int64), s) for b, labels, s in found]
        n_classes = 1
    images = [{"id": k + 1} for k in range(len(truth))]
    categories = [{"id": c + 1} for c in range(n_classes)]
    gt, dt = [], []
    for k, ((t_boxes, t_labels), (f_boxes, f_labels, f_scores)) in enumerate(
        zip(truth, found, strict=True)
    ):
        gt += _annotations(t_boxes, t_labels, k + 1, len(gt) + 1)
        dt += _annotations(f_boxes, f_labels, k + 1, len(dt) + 1, f_scores)
    evaluator = COCOeval(_coco(images, categories, gt), _coco(images, categories, dt), "bbox")
    evaluator.params.maxDets = [MAX_DETECTIONS]
    evaluator.params.areaRng = [[0.0, 1e12]]
    evaluator.params.areaRngLbl = ["all"]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator


def _ap(precision: np.ndarray) -> float:
    """Mean of COCO's interpolated precision over recall points; NaN for a class without faces."""
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else float("nan")


def average_precision(truth, found, class_names) -> dict:
    """COCO AP per class at IoU 0.5 and over 0.5:0.95, and their means over classes with faces.

    Returns
    -------
    dict: ``ap50`` and ``ap`` ({class: float, NaN where the class has no face}), ``map50``,
    ``map``.
    """
    evaluator = coco_eval(truth, found, len(class_names))
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # (IoU, recall, class)
    ap50 = {name: _ap(precision[0, :, c]) for c, name in enumerate(class_names)}
    ap = {name: _ap(precision[:, :, c]) for c, name in enumerate(class_names)}
    return {
        "ap50": ap50,
        "ap": ap,
        "map50": _nanmean(list(ap50.values())),
        "map": _nanmean(list(ap.values())),
    }


def _nanmean(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def precision_recall_curves(truth, found, class_names) -> dict:
    """COCO's interpolated precision at 101 recall points, IoU 0.5, per class.

    Returns
    -------
    dict: ``recall`` (101,) and ``precision`` {class: (101,) float, NaN where not reached}.
    """
    evaluator = coco_eval(truth, found, len(class_names))
    precision = evaluator.eval["precision"][0, :, :, 0, -1]
    precision = np.where(precision < 0, np.nan, precision)
    return {
        "recall": evaluator.params.recThrs.copy(),
        "precision": {name: precision[:, c] for c, name in enumerate(class_names)},
    }


def matched_faces(truth, found) -> tuple[np.ndarray, np.ndarray]:
    """Which annotated faces some box (of any class) matches at IoU 0.5, COCO's greedy matching.

    Returns
    -------
    (matched, widths): ndarray (F,) bool and ndarray (F,) float, over all faces in photo order.
    """
    evaluator = coco_eval(truth, found, 1, use_classes=False)
    by_id = {}
    for item in evaluator.evalImgs:
        if item is not None:
            by_id.update(zip(item["gtIds"], item["gtMatches"][0] > 0, strict=True))
    matched, widths, next_id = [], [], 1
    for boxes, _ in truth:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        for box in boxes:
            matched.append(bool(by_id.get(next_id, False)))
            widths.append(box[2] - box[0])
            next_id += 1
    return np.array(matched, dtype=bool), np.array(widths, dtype=np.float64)


def recall_by_width(truth, found, bins=WIDTH_BINS) -> dict:
    """Share of faces found (any class, IoU 0.5) in each width bin, and the faces in each.

    Returns
    -------
    dict: ``recall`` {bin: float, NaN for an empty bin}, ``faces`` {bin: int}.
    """
    matched, widths = matched_faces(truth, found)
    which = np.digitize(widths, bins[1:-1])
    recall, faces = {}, {}
    for k, name in enumerate(width_labels(bins)):
        inside = which == k
        faces[name] = int(inside.sum())
        recall[name] = float(matched[inside].mean()) if inside.any() else float("nan")
    return {"recall": recall, "faces": faces}


def box_precision(truth, found) -> float:
    """Share of found boxes that match a face (any class, IoU 0.5): 1 - the false-alarm share."""
    evaluator = coco_eval(truth, found, 1, use_classes=False)
    hits = total = 0
    for item in evaluator.evalImgs:
        if item is not None:
            hits += int((item["dtMatches"][0] > 0).sum())
            total += len(item["dtIds"])
    return hits / total if total else float("nan")


def scores(truth, found, class_names, bins=WIDTH_BINS) -> dict:
    """All the point figures: AP (``average_precision``), recall by width, box precision."""
    summary = average_precision(truth, found, class_names)
    widths = recall_by_width(truth, found, bins)
    summary["recall_by_width"] = widths["recall"]
    summary["faces_by_width"] = widths["faces"]
    summary["box_precision"] = box_precision(truth, found)
    return summary


def _flatten(summary: dict) -> dict[str, float]:
    flat = {}
    for key, value in summary.items():
        if isinstance(value, dict):
            flat.update({f"{key}/{k}": float(v) for k, v in value.items()})
        else:
            flat[key] = float(value)
    return flat


def bootstrap_scores(
    truth, found, class_names, n_boot: int = 200, seed: int = 0, level: float = 0.95
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of ``average_precision``'s figures over photos resampled with
    replacement (the AP figures only: each resample runs the evaluator once).

    Returns
    -------
    dict: ``"map50"``, ``"map"``, ``"ap50/with_mask"``, ``"ap/with_mask"``, ... -> (low, high).
    """
    _check(truth, found)

    def statistic(index):
        chosen = [int(k) for k in index]
        return _flatten(
            average_precision([truth[k] for k in chosen], [found[k] for k in chosen], class_names)
        )

    draws = metrics.bootstrap_samples(statistic, np.arange(len(truth)), n_boot=n_boot, seed=seed)
    return {key: metrics.percentile_interval([d[key] for d in draws], level) for key in draws[0]}
