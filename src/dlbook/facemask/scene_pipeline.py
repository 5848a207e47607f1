"""The face-mask pipeline on real annotated photos: face crops, detections, three-class verdicts.

A detection here is one row per face found: the photo's stem, the box (x0, y0, x1, y1 in pixels),
one of ``voc.SCENE_CLASSES`` and a score, the form ``methods.detection_metrics`` scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlbook.facemask.data import decode_image
from dlbook.facemask.data.voc import SCENE_CLASSES, Photo
from dlbook.facemask.detect.drawing import crop_faces

CROP_MARGIN = 0.25
"""Crops widen the box by this share of its side on every edge, as ``predict --detect`` does."""


@dataclass(frozen=True)
class FaceCrops:
    """Ground-truth face crops of some photos.

    Attributes
    ----------
    images : ndarray, shape (K, S, S, 3), uint8
    labels : ndarray, shape (K,), int64 into ``SCENE_CLASSES``
    widths : ndarray, shape (K,), float64: the annotated box width in pixels
    photo : ndarray, shape (K,), int64: index of the photo each crop comes from
    """

    images: np.ndarray
    labels: np.ndarray
    widths: np.ndarray
    photo: np.ndarray


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """(n, 4) x0, y0, x1, y1 -> (n, 4) x, y, width, height."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """(n, 4) x, y, width, height -> (n, 4) x0, y0, x1, y1."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def face_crops(
    photos: list[Photo], image_size: int = 224, min_width: float = 0, margin: float = CROP_MARGIN
) -> FaceCrops:
    """The annotated faces of ``photos`` at least ``min_width`` px wide, cropped like
    ``predict --detect`` crops a detector's box (square, widened by ``margin``), resized.

    Returns
    -------
    FaceCrops, faces in photo order then annotation order.
    """
    if min_width < 0 or margin < 0:
        raise ValueError(f"min_width={min_width!r} and margin={margin!r} must be non-negative")
    images, labels, widths, owner = [], [], [], []
    for index, photo in enumerate(photos):
        keep = photo.widths >= min_width
        if not keep.any():
            continue
        pixels = decode_image(photo.image_path, None)
        images.append(crop_faces(pixels, xyxy_to_xywh(photo.boxes[keep]), image_size, margin))
        labels.append(photo.labels[keep])
        widths.append(photo.widths[keep])
        owner.append(np.full(int(keep.sum()), index))
    if not images:
        empty = np.zeros(0)
        return FaceCrops(
            np.zeros((0, image_size, image_size, 3), np.uint8),
            empty.astype(np.int64),
            empty,
            empty.astype(np.int64),
        )
    return FaceCrops(
        np.concatenate(images),
        np.concatenate(labels).astype(np.int64),
        np.concatenate(widths),
        np.concatenate(owner).astype(np.int64),
    )


def masked_vs_not(labels: np.ndarray) -> np.ndarray:
    """Three scene classes -> 1 masked (worn right or wrong), 0 ``without_mask``; shape kept."""
    return (np.asarray(labels) != SCENE_CLASSES.index("without_mask")).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Detections: (boxes (m, 4) x0, y0, x1, y1 float64, scores (m,)) per photo

DETECTIONS_VERSION = 1
"""Bump when the way detections are made changes, so cached ones are not reused."""


def detect_photo(detector, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A detector's boxes on one RGB image, clipped to it, with their scores.

    Returns
    -------
    (boxes, scores): ndarray (m, 4) x0, y0, x1, y1 float64, ndarray (m,) float64; empty boxes
    (after clipping) are dropped with their scores.
    """
    boxes, scores = detector.detect(image)
    xyxy = xywh_to_xyxy(boxes)
    height, width = image.shape[:2]
    xyxy = np.clip(xyxy, 0, [width, height, width, height])
    keep = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
    return xyxy[keep], np.asarray(scores, np.float64).ravel()[keep]


def detect_photos(
    photos: list[Photo], detector_name: str | None = None, progress: bool = True
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``detect_photo`` on every photo (``detect.load_detector(detector_name)``), cached.

    The cache key is the detector's name, its score thresholds and every photo's sha256.
    """
    from dlbook.core import cache
    from dlbook.facemask import detect

    name = detector_name or detect.default_detector()
    key = cache.digest(
        "scene-detections",
        DETECTIONS_VERSION,
        name,
        detect.DEFAULT_MIN_SCORES,
        [cache.file_sha256(p.image_path) for p in photos],
    )
    found, _ = cached_detections(
        photos, lambda: detect.load_detector(name), "scene_detections", key, name, progress=progress
    )
    return found


def cached_detections(
    photos: list[Photo],
    make_detector,
    kind: str,
    key: str,
    name: str,
    timed: bool = False,
    progress: bool = False,
) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """Every photo's boxes from ``make_detector()`` (called once, on a cache miss), cached as one
    table under ``kind`` and ``key`` (the caller's: what the boxes depend on).

    Returns
    -------
    per_photo : list of (boxes (n, 4) x0, y0, x1, y1, scores (n,)), one a photo, in order.
    ms : ndarray, shape (len(photos),): each photo's detection time in milliseconds when first
        computed, with ``timed`` (empty otherwise).
    """
    import time

    from dlbook.core import cache, logs

    def compute() -> np.ndarray:
        detector, rows = make_detector(), []
        with logs.progress(len(photos), "detecting", "photo", enabled=progress) as bar:
            for index, photo in enumerate(photos):
                image = decode_image(photo.image_path, None)
                start = time.perf_counter()
                boxes, scores = detect_photo(detector, image)
                ms = 1000 * (time.perf_counter() - start)
                rows.append(np.column_stack([np.full(len(boxes), index), boxes, scores]))
                if timed:  # a row of its own: no box, the milliseconds in the score column
                    rows.append(np.array([[index, np.nan, np.nan, np.nan, np.nan, ms]]))
                bar.update(1)
        return np.concatenate(rows) if rows else np.zeros((0, 6))

    table = cache.cached_array(kind, key, compute, name)
    timing = np.isnan(table[:, 1])
    boxes = table[~timing]
    per_photo = [
        (boxes[boxes[:, 0] == k, 1:5], boxes[boxes[:, 0] == k, 5]) for k in range(len(photos))
    ]
    return per_photo, table[timing, 5]


def crops_of(
    photos: list[Photo], boxes: list[np.ndarray], image_size: int, margin: float = CROP_MARGIN
) -> np.ndarray:
    """Crops of the given x0, y0, x1, y1 boxes of each photo, in order: (K, S, S, 3) uint8."""
    crops = []
    for photo, photo_boxes in zip(photos, boxes, strict=True):
        if len(photo_boxes):
            pixels = decode_image(photo.image_path, None)
            crops.append(crop_faces(pixels, xyxy_to_xywh(photo_boxes), image_size, margin))
    if not crops:
        return np.zeros((0, image_size, image_size, 3), np.uint8)
    return np.concatenate(crops)


def model_outputs(model_path, crops: np.ndarray, kind: str) -> np.ndarray:
    """A saved Keras model's outputs on ``crops``, cached by the model file and the crops.

    ``kind`` names the cache folder (``shipped``, ``fit``, ...). Returns (K, C) float64.
    """
    from dlbook.core import cache

    key = cache.digest("scene-model-outputs", cache.file_sha256(model_path), crops)

    def compute() -> np.ndarray:
        import keras

        from dlbook.facemask import runtime

        if len(crops) == 0:
            return np.zeros((0, 1))
        model = keras.saving.load_model(model_path, compile=False)
        runner = runtime.compile_model(model, tuple(crops.shape[1:]), runtime.FAST_RUNTIME, 32)
        return np.asarray(runner(crops), np.float64).reshape(len(crops), -1)

    return cache.cached_array(f"scene_{kind}", key, compute, kind)


def split_by_photo(values: np.ndarray, counts) -> list[np.ndarray]:
    """Cut a (K, ...) array into consecutive pieces of ``counts`` rows."""
    return np.split(np.asarray(values), np.cumsum(counts)[:-1]) if len(counts) else []


def shipped_verdicts(p_mask: np.ndarray, fit: np.ndarray | None = None) -> tuple:
    """Map the shipped models' outputs to the three scene classes with a score.

    Parameters
    ----------
    p_mask : ndarray (K,), P(with_mask) from the shipped classifier.
    fit : None (fit ignored) or ndarray (K, 3), P(correct, nose_exposed, chin) from the fit model.

    Returns
    -------
    (labels, scores): masked and fit "correct" (or fit ignored) -> ``with_mask``; masked and fit
    wrong -> ``mask_weared_incorrect``; not masked -> ``without_mask``. The score is the
    classifier's probability of its verdict.
    """
    p_mask = np.asarray(p_mask, np.float64).ravel()
    masked = p_mask >= 0.5
    labels = np.where(masked, 0, 1)
    if fit is not None:
        wrong = np.asarray(fit).reshape(len(p_mask), -1).argmax(1) != 0
        labels = np.where(masked & wrong, 2, labels)
    scores = np.where(masked, p_mask, 1 - p_mask)
    return labels.astype(np.int64), scores
