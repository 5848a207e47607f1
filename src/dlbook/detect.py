"""Finding faces before classifying them, and measuring how well that works.

Two offline detectors are offered: OpenCV's bundled Haar cascades (``opencv-python-headless``
ships them) and MTCNN (the ``mtcnn`` package ships its TensorFlow weights). Masks cover the mouth
and nose the cascades were trained on, so each detector is measured rather than trusted: ``compose_scene`` pastes test-split face images at known
positions on a background, and ``evaluate_detector`` reports recall (faces found) and end-to-end
accuracy (faces found and classified correctly) over such scenes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

CASCADES = {
    "haar_default": "haarcascade_frontalface_default.xml",
    "haar_alt": "haarcascade_frontalface_alt.xml",
    "haar_alt2": "haarcascade_frontalface_alt2.xml",
}
DETECTORS = (*CASCADES, "mtcnn")
DEFAULT_DETECTOR = "mtcnn"


@dataclass
class Detector:
    """A face detector (a Haar cascade or MTCNN) with its detection settings."""

    name: str
    model: object
    scale_factor: float = 1.1
    min_neighbors: int = 3
    min_size: int = 24
    min_confidence: float = 0.9


def load_detector(name: str = DEFAULT_DETECTOR, min_neighbors: int = 3) -> Detector:
    """Load a detector: one of OpenCV's bundled cascades (see ``CASCADES``) or "mtcnn"."""
    if name not in DETECTORS:
        raise ValueError(f"name={name!r} is unknown; use one of {DETECTORS}")
    if name == "mtcnn":
        from mtcnn import MTCNN

        return Detector(name, MTCNN(device="CPU:0"))
    import cv2

    cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, CASCADES[name]))
    if cascade.empty():
        raise RuntimeError(f"OpenCV could not load its bundled cascade {CASCADES[name]}")
    return Detector(name, cascade, min_neighbors=min_neighbors)


def detect_faces(detector: Detector, image: np.ndarray) -> np.ndarray:
    """Face boxes in an RGB image.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8

    Returns
    -------
    ndarray, shape (K, 4), int64: x, y, width, height of each face, largest first.
    """
    import cv2

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 of shape (H, W, 3); got {image.dtype} {image.shape}")
    if detector.name == "mtcnn":
        faces = detector.model.detect_faces(image)
        boxes = [f["box"] for f in faces if f["confidence"] >= detector.min_confidence]
    else:
        gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        boxes = detector.model.detectMultiScale(
            gray,
            scaleFactor=detector.scale_factor,
            minNeighbors=detector.min_neighbors,
            minSize=(detector.min_size, detector.min_size),
        )
    boxes = np.clip(np.asarray(boxes, dtype=np.int64).reshape(-1, 4), 0, None)
    return boxes[np.argsort(-boxes[:, 2] * boxes[:, 3], kind="stable")]


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


# ---------------------------------------------------------------------------------------------
# Composed scenes with known face positions


def compose_scene(
    faces: list[np.ndarray],
    rng: np.random.Generator,
    canvas: tuple[int, int] = (480, 640),
    face_size: tuple[int, int] = (110, 170),
) -> tuple[np.ndarray, np.ndarray]:
    """Paste face images side by side, at random sizes and offsets, onto a textured background.

    Parameters
    ----------
    faces : list of K images, each (h, w, 3) uint8, pasted left to right in K equal columns.
    rng : source of the sizes, offsets and background.
    canvas : (height, width) of the scene.
    face_size : range of the pasted side (the longer side of each face image).

    Returns
    -------
    (scene, boxes): scene (H, W, 3) uint8; boxes (K, 4) int64 of x, y, width, height.
    """
    height, width = canvas
    if not faces:
        raise ValueError("faces is empty; give at least one face image")
    column = width // len(faces)
    if column < face_size[0]:
        raise ValueError(
            f"{len(faces)} faces of at least {face_size[0]} px do not fit in width {width}"
        )
    low = rng.integers(60, 200, size=3)
    gradient = np.linspace(0, 1, width)[None, :, None]
    scene = low + gradient * rng.integers(-50, 50, size=3) + rng.normal(0, 12, (height, width, 3))
    scene = np.clip(scene, 0, 255).astype(np.uint8)
    boxes = []
    for k, face in enumerate(faces):
        longest = int(rng.integers(face_size[0], min(face_size[1], column, height) + 1))
        scale = longest / max(face.shape[:2])
        w, h = max(1, round(face.shape[1] * scale)), max(1, round(face.shape[0] * scale))
        x = k * column + int(rng.integers(0, column - w + 1))
        y = int(rng.integers(0, height - h + 1))
        resized = Image.fromarray(face).resize((w, h), Image.Resampling.BILINEAR)
        scene[y : y + h, x : x + w] = np.asarray(resized)
        boxes.append((x, y, w, h))
    return scene, np.array(boxes, dtype=np.int64)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of (x, y, w, h) boxes: (len(a), len(b)) float64."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2) - np.maximum(a[:, None, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2) - np.maximum(a[:, None, 1], b[:, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_detections(truth: np.ndarray, found: np.ndarray, min_overlap: float = 0.3) -> np.ndarray:
    """For each true box, the index of the found box covering it best, or -1.

    A found box matches a true box when it lies mostly inside it: intersection over the found
    box's area at least ``min_overlap`` (a cascade's box covers the inner face, smaller than a
    pasted image that shows the whole head), and each found box matches at most one true box.

    Returns
    -------
    ndarray, shape (len(truth),), int64
    """
    truth = np.asarray(truth, dtype=np.float64).reshape(-1, 4)
    found = np.asarray(found, dtype=np.float64).reshape(-1, 4)
    matched = np.full(len(truth), -1, dtype=np.int64)
    if len(found) == 0:
        return matched
    iou = box_iou(truth, found)
    union = (truth[:, 2] * truth[:, 3])[:, None] + found[:, 2] * found[:, 3]
    inter = iou * union / (1 + iou)
    cover = inter / (found[:, 2] * found[:, 3])[None, :]
    used = set()
    for t in np.argsort(-cover.max(axis=1)):
        for f in np.argsort(-cover[t]):
            if cover[t, f] >= min_overlap and f not in used:
                matched[t] = f
                used.add(int(f))
                break
    return matched


def evaluate_detector(
    detector: Detector,
    classify,
    images: np.ndarray,
    labels: np.ndarray,
    image_size: int,
    n_scenes: int = 40,
    faces_per_scene: int = 3,
    seed: int = 0,
) -> dict:
    """Detector recall and end-to-end accuracy on composed scenes.

    Parameters
    ----------
    classify : function (K, S, S, 3) uint8 -> (K,) P(with_mask), e.g. the shipped model's.
    images : ndarray, shape (N, H, W, 3), uint8, test-split face images (any size).
    labels : ndarray, shape (N,), 0 or 1.
    image_size : S, the classifier's input side.

    Returns
    -------
    dict with ``recall`` (true faces matched by a detection), ``recall_with_mask`` and
    ``recall_without_mask``, ``end_to_end_accuracy`` (true faces matched and classified
    correctly, over all true faces), ``accuracy_on_found`` and ``false_detections_per_scene``;
    plus ``examples``: the first scenes with their true and found boxes and probabilities.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    found_faces, correct, truth_labels, false_positives = [], [], [], 0
    examples = []
    for scene_index in range(n_scenes):
        pick = rng.choice(len(images), size=faces_per_scene, replace=False)
        scene, truth = compose_scene([images[i] for i in pick], rng)
        boxes = detect_faces(detector, scene)
        matched = match_detections(truth, boxes)
        probs = classify(crop_faces(scene, boxes, image_size)) if len(boxes) else np.zeros(0)
        false_positives += len(boxes) - int((matched >= 0).sum())
        for t, f in enumerate(matched):
            truth_labels.append(labels[pick[t]])
            found_faces.append(f >= 0)
            correct.append(f >= 0 and int(probs[f] >= 0.5) == labels[pick[t]])
        if scene_index < 4:
            examples.append({"scene": scene, "truth": truth, "boxes": boxes, "probs": probs})
    found_faces, correct = np.array(found_faces), np.array(correct)
    truth_labels = np.array(truth_labels)
    return {
        "recall": float(found_faces.mean()),
        "recall_with_mask": float(found_faces[truth_labels == 1].mean()),
        "recall_without_mask": float(found_faces[truth_labels == 0].mean()),
        "end_to_end_accuracy": float(correct.mean()),
        "accuracy_on_found": float(correct[found_faces].mean()) if found_faces.any() else np.nan,
        "false_detections_per_scene": false_positives / n_scenes,
        "faces": int(len(found_faces)),
        "examples": examples,
    }
