"""Composed scenes with known face positions, and how well a detector's boxes find those faces.

Masks cover the mouth and nose some detectors rely on, so each detector is measured rather than
trusted: ``compose_scenes`` pastes face images at known positions on a background and
``score_detections`` reports recall on masked and unmasked faces and precision
(``dlbook.experiments.detection`` runs the comparison).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from dlbook.facemask.detect.geometry import as_boxes, covered, inside, overlap


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


def match_detections(truth: np.ndarray, found: np.ndarray, min_overlap: float = 0.3) -> np.ndarray:
    """For each true box, the index of the found box covering it best, or -1.

    A found box matches a true box when it lies mostly inside it: intersection over the found
    box's area at least ``min_overlap`` (a cascade's box covers the inner face, smaller than a
    pasted image that shows the whole head), and each found box matches at most one true box.

    Returns
    -------
    ndarray, shape (len(truth),), int64
    """
    truth, _ = as_boxes(truth)
    found, _ = as_boxes(found)
    matched = np.full(len(truth), -1, dtype=np.int64)
    if len(found) == 0:
        return matched
    cover, iou = covered(found, truth)
    # Among boxes equally inside a face, the one covering more of it (higher IoU) matches.
    preference = cover + 0.01 * iou
    used = set()
    for t in np.argsort(-cover.max(axis=1), kind="stable"):
        for f in np.argsort(-preference[t], kind="stable"):
            if cover[t, f] >= min_overlap and f not in used:
                matched[t] = f
                used.add(int(f))
                break
    return matched


def compose_scenes(
    images: list[np.ndarray],
    labels: np.ndarray,
    n_scenes: int,
    seed: int = 0,
    faces_per_scene: tuple[int, int] = (2, 4),
    face_size: tuple[int, int] = (60, 220),
    canvas: tuple[int, int] = (480, 640),
) -> list[dict]:
    """Scenes of randomly drawn face images, each a dict with ``scene``, ``truth``, ``labels``.

    Parameters
    ----------
    images : list of N face images, each (h, w, 3) uint8, any size.
    labels : ndarray, shape (N,), 0 or 1.
    faces_per_scene : inclusive range of the number of faces in a scene.
    face_size : inclusive range of a pasted face's longer side, in pixels.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    scenes = []
    for _ in range(n_scenes):
        count = int(rng.integers(faces_per_scene[0], faces_per_scene[1] + 1))
        pick = rng.choice(len(images), size=count, replace=False)
        scene, truth = compose_scene([images[i] for i in pick], rng, canvas, face_size)
        scenes.append({"scene": scene, "truth": truth, "labels": labels[pick], "index": pick})
    return scenes


def classify_detections(truth: np.ndarray, found: np.ndarray) -> dict:
    """Sort the boxes found in one scene into matched, duplicate, background and unverified.

    ``matched``: the box matching each true face, or -1 (``match_detections``). An unmatched box
    is a ``duplicate`` when it overlaps a matched box (``overlap`` at least 0.3), ``background``
    when less than half of it lies inside any pasted image, and ``unverified`` otherwise: a box
    inside a pasted photo away from its matched face, which may be a second person in that photo
    (the scene knows one face per pasted image, so it can neither confirm nor refute it).

    Returns
    -------
    dict with ``matched`` (len(truth),) int64 and the counts ``duplicate``, ``background``,
    ``unverified``.
    """
    found, _ = as_boxes(found)
    matched = match_detections(truth, found)
    used = matched[matched >= 0]
    counts = {"duplicate": 0, "background": 0, "unverified": 0}
    for f in sorted(set(range(len(found))) - set(used.tolist())):
        if len(used) and overlap(found[f], found[used]).max() >= 0.3:
            counts["duplicate"] += 1
        elif len(truth) == 0 or inside(found[f], truth).max() < 0.5:
            counts["background"] += 1
        else:
            counts["unverified"] += 1
    return {"matched": matched, **counts}


def score_detections(scenes: list[dict], found: list[np.ndarray]) -> dict:
    """Recall on masked and unmasked faces, and precision, of boxes found in composed scenes.

    Recall: the share of pasted faces with a box lying mostly inside them. Precision: matched
    boxes over matched, duplicate and background boxes (``classify_detections``); unverified
    boxes (possibly real second faces inside a pasted photo) are counted apart.

    Returns
    -------
    dict with ``recall``, ``recall_with_mask``, ``recall_without_mask``, ``precision``,
    ``false_detections_per_scene`` (duplicate + background), ``unverified_per_scene``,
    ``faces``, ``detections`` and ``matched`` (per scene, the box index matching each face or -1).
    """
    hits, labels, matched_all = [], [], []
    counts = {"duplicate": 0, "background": 0, "unverified": 0}
    for scene, boxes in zip(scenes, found, strict=True):
        sorted_boxes = classify_detections(scene["truth"], boxes)
        matched_all.append(sorted_boxes["matched"])
        hits += (sorted_boxes["matched"] >= 0).tolist()
        labels += np.asarray(scene["labels"]).tolist()
        for key in counts:
            counts[key] += sorted_boxes[key]
    hits, labels = np.array(hits, dtype=bool), np.array(labels)
    false = counts["duplicate"] + counts["background"]
    n_scenes = max(1, len(scenes))

    def share(chosen):
        return float(hits[chosen].mean()) if chosen.any() else float("nan")

    return {
        "recall": share(np.ones(len(hits), dtype=bool)),
        "recall_with_mask": share(labels == 1),
        "recall_without_mask": share(labels == 0),
        "precision": int(hits.sum()) / (int(hits.sum()) + false) if hits.any() or false else 1.0,
        "false_detections_per_scene": false / n_scenes,
        "unverified_per_scene": counts["unverified"] / n_scenes,
        "faces": int(len(hits)),
        "detections": int(hits.sum()) + false + counts["unverified"],
        "matched": matched_all,
    }
