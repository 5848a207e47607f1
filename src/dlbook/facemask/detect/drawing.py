"""What the pipeline does with a detector's boxes on an image: crop the faces, draw the verdicts."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image


def crop_faces(
    image: np.ndarray, boxes: np.ndarray, image_size: int, margin: float = 0.25
) -> np.ndarray:
    """Square crops around ``boxes``, enlarged by ``margin`` of the side on every edge, resized.

    A cascade's box hugs the eyes-to-mouth region; the training images show the whole head, so
    the crop is widened to match them.

    Returns
    -------
    ndarray, shape (K, image_size, image_size, 3), uint8
    """
    height, width = image.shape[:2]
    crops = []
    for x, y, w, h in np.asarray(boxes).reshape(-1, 4):
        side = max(w, h) * (1 + 2 * margin)
        cx, cy = x + w / 2, y + h / 2
        left, top = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
        right, bottom = int(min(width, cx + side / 2)), int(min(height, cy + side / 2))
        crop = Image.fromarray(image[top:bottom, left:right])
        crops.append(np.asarray(crop.resize((image_size, image_size), Image.Resampling.BILINEAR)))
    return np.stack(crops) if crops else np.zeros((0, image_size, image_size, 3), np.uint8)


def annotate(image: np.ndarray, boxes: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Copy of ``image`` with each box drawn (green: with_mask, red: without) and its P(mask)."""
    import cv2

    out = np.ascontiguousarray(image.copy())
    thickness = max(2, image.shape[1] // 300)
    for (x, y, w, h), prob in zip(np.asarray(boxes).reshape(-1, 4), probs, strict=True):
        colour = (0, 200, 0) if prob >= 0.5 else (220, 0, 0)
        cv2.rectangle(out, (int(x), int(y)), (int(x + w), int(y + h)), colour, thickness)
        text = f"{'mask' if prob >= 0.5 else 'no mask'} {prob:.2f}"
        cv2.putText(
            out,
            text,
            (int(x), max(12, int(y) - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            max(0.4, w / 250),
            colour,
            max(1, thickness // 2),
        )
    return out


def save_annotated(
    image: np.ndarray, boxes: np.ndarray, probs: np.ndarray, path: str | os.PathLike
) -> Path:
    """Write ``annotate(image, boxes, probs)`` as PNG to ``path``."""
    Image.fromarray(annotate(image, boxes, probs)).save(path)
    return Path(path)
