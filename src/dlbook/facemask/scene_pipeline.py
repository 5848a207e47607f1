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
