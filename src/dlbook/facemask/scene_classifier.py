"""A classifier made for real photos: three face classes plus "not a face", and box shapes.

- ``background_boxes``: boxes of train photos that hold no face, the detector's own false alarms
  first, then random boxes sized like the annotated faces, so the head learns to say "not a face".
- ``BoxShape``: the median scale and shift from a detector's square boxes to the tight boxes the
  photos are annotated with, fitted on detector boxes matched to faces of the train photos.
- ``fit_scene_head``: a logistic head (``methods.heads``) on backbone features, four classes
  (``SCENE_LABELS``), with integer class weights inversely proportional to class frequency, so
  the rare ``mask_weared_incorrect`` faces weigh about as much in the loss as the common
  ``with_mask`` ones; the weights are applied by repeating rows, which is the same in the
  logistic loss. Its strength is chosen on validation by balanced accuracy (mean recall over
  classes), a score the common class cannot dominate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlbook.facemask.data.voc import SCENE_CLASSES, Photo
from dlbook.facemask.detect.geometry import box_iou
from dlbook.facemask.scene_pipeline import xyxy_to_xywh

NOT_A_FACE = "not_a_face"
SCENE_LABELS = (*SCENE_CLASSES, NOT_A_FACE)
FACE_IOU = 0.3
"""A detector box whose IoU with a face is at least this counts as that face's box."""
BACKGROUND_MAX_IOU = 0.05
"""A background box overlaps every face less than this (IoU)."""


def match_to_faces(truth: np.ndarray, found: np.ndarray, min_iou: float = FACE_IOU):
    """Greedy one-to-one matching of found boxes to faces by IoU (both x0, y0, x1, y1).

    Returns
    -------
    (face_of, best_iou): ndarray (m,) int, the matched face or -1; ndarray (m,) float, each found
    box's highest IoU with any face.
    """
    truth, found = np.asarray(truth).reshape(-1, 4), np.asarray(found).reshape(-1, 4)
    face_of = np.full(len(found), -1, dtype=np.int64)
    if not len(truth) or not len(found):
        return face_of, np.zeros(len(found))
    iou = box_iou(xyxy_to_xywh(found), xyxy_to_xywh(truth))
    best = iou.max(axis=1)
    taken = set()
    for i, j in zip(*np.unravel_index(np.argsort(-iou, axis=None), iou.shape), strict=True):
        if iou[i, j] < min_iou:
            break
        if face_of[i] < 0 and j not in taken:
            face_of[i] = j
            taken.add(j)
    return face_of, best


def background_boxes(
    photos: list[Photo], detections, per_photo: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Per photo, boxes that overlap no annotated face: detector false alarms, then random ones.

    Random boxes are squares with sides drawn from the photo's own face widths (or 10-25 % of
    its shorter side when it has none), placed uniformly; tries that touch a face are dropped.

    Returns
    -------
    list of ndarray (b, 4) x0, y0, x1, y1, at most ``per_photo`` per photo.
    """
    chosen = []
    for photo, (boxes, _) in zip(photos, detections, strict=True):
        _, best = match_to_faces(photo.boxes, boxes)
        alarms = boxes[best < BACKGROUND_MAX_IOU][:per_photo]
        sides = (
            photo.widths
            if len(photo.widths)
            else np.array([0.1, 0.25]) * min(photo.width, photo.height)
        )
        extra = []
        for _ in range(4 * per_photo):
            if len(alarms) + len(extra) >= per_photo:
                break
            side = float(np.clip(rng.choice(sides), 8, min(photo.width, photo.height) - 1))
            x0 = rng.uniform(0, photo.width - side)
            y0 = rng.uniform(0, photo.height - side)
            box = np.array([[x0, y0, x0 + side, y0 + side]])
            if not len(photo.boxes) or match_to_faces(photo.boxes, box)[1][0] < BACKGROUND_MAX_IOU:
                extra.append(box[0])
        chosen.append(np.concatenate([alarms, np.array(extra).reshape(-1, 4)]))
    return chosen


@dataclass(frozen=True)
class BoxShape:
    """From a detector box to the annotated face box, in units of the detector box's width.

    ``width`` and ``height`` scale the box; ``shift_x`` and ``shift_y`` move its centre.
    """

    width: float = 1.0
    height: float = 1.0
    shift_x: float = 0.0
    shift_y: float = 0.0

    def apply(self, boxes: np.ndarray, image_size: tuple[int, int] | None = None) -> np.ndarray:
        """Reshaped boxes (m, 4) x0, y0, x1, y1; clipped to ``image_size`` (width, height)."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        side = boxes[:, 2] - boxes[:, 0]
        cx = (boxes[:, 0] + boxes[:, 2]) / 2 + self.shift_x * side
        cy = (boxes[:, 1] + boxes[:, 3]) / 2 + self.shift_y * side
        half_w, half_h = self.width * side / 2, self.height * side / 2
        out = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
        if image_size is not None:
            out = np.clip(out, 0, [image_size[0], image_size[1]] * 2)
        return out


def fit_box_shape(photos: list[Photo], detections) -> tuple[BoxShape, int]:
    """Median ``BoxShape`` over detector boxes matched to faces; returns it and the pairs used."""
    ratios = []
    for photo, (boxes, _) in zip(photos, detections, strict=True):
        face_of, _ = match_to_faces(photo.boxes, boxes)
        for box, face in zip(boxes, face_of, strict=True):
            if face < 0:
                continue
            side = box[2] - box[0]
            truth = photo.boxes[face]
            ratios.append(
                [
                    (truth[2] - truth[0]) / side,
                    (truth[3] - truth[1]) / side,
                    ((truth[0] + truth[2]) - (box[0] + box[2])) / 2 / side,
                    ((truth[1] + truth[3]) - (box[1] + box[3])) / 2 / side,
                ]
            )
    if not ratios:
        return BoxShape(), 0
    return BoxShape(*(float(v) for v in np.median(np.array(ratios), axis=0))), len(ratios)


def balanced_accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    """Mean over the classes present in ``labels`` of the share of them predicted right."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    return float(np.mean([(predicted[labels == c] == c).mean() for c in np.unique(labels)]))


def class_weights(labels: np.ndarray) -> dict[int, int]:
    """Integer weight per class: the largest class's count over this class's, rounded (>= 1)."""
    counts = np.bincount(np.asarray(labels))
    present = np.flatnonzero(counts)
    return {int(c): max(1, int(round(counts.max() / counts[c]))) for c in present}


def balancing_repeats(labels: np.ndarray) -> np.ndarray:
    """Row indices with each row repeated its class's ``class_weights`` times.

    Repeating a row k times is the same, in the logistic loss, as weighting it by k.
    """
    weights = class_weights(labels)
    return np.repeat(np.arange(len(labels)), [weights[int(y)] for y in labels])


def fit_scene_head(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    val_features: np.ndarray,
    val_labels: np.ndarray,
    strengths: tuple[float, ...],
    seed: int = 0,
):
    """Class-weighted logistic head (``methods.heads``), its ``C`` chosen on validation.

    Parameters
    ----------
    train_features, val_features : ndarray, shape (N, D), float32
    train_labels, val_labels : ndarray, shape (N,), int into ``SCENE_LABELS``
    strengths : candidate values of scikit-learn's ``C``.

    Returns
    -------
    (estimator, C, {C: validation balanced accuracy})
    """
    from threadpoolctl import threadpool_limits

    from dlbook.methods import heads

    repeats = balancing_repeats(train_labels)
    tried, best = {}, None
    with threadpool_limits(limits=1):
        for strength in strengths:
            model = heads.fit_logistic(
                train_features[repeats], train_labels[repeats], strength, seed
            )
            tried[strength] = balanced_accuracy(val_labels, model.predict(val_features))
            if best is None or tried[strength] > tried[best[1]]:
                best = (model, strength)
    return best[0], best[1], tried


def head_verdicts(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From four-class probabilities (K, 4) to a face class and a score per box.

    The class is the likeliest of the three face classes; its probability (which is low when
    "not a face" takes most of the mass) is the score, so boxes that are not faces rank last.
    """
    probs = np.asarray(probs, np.float64).reshape(-1, len(SCENE_LABELS))
    faces = probs[:, : len(SCENE_CLASSES)]
    labels = faces.argmax(1)
    return labels.astype(np.int64), faces[np.arange(len(faces)), labels]
