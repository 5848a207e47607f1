"""Is the mask worn right? Synthetic masks drawn from face landmarks, and a fit classifier.

No labelled incorrect-mask images exist here, so they are made: ``draw_mask`` paints a mask on a
face, placed from its five MTCNN landmarks (eyes, nose tip, mouth corners), in one of three fits:

- ``correct``: from the bridge of the nose (between eyes and nose tip) to below the chin;
- ``nose_exposed``: from between the nose tip and the mouth to below the chin;
- ``chin``: below the lips, on the chin only.

Shapes (surgical, cloth, pointed), colours, textures and pleats vary at random so that a model
cannot learn one template. ``heads.fit_logistic`` is a logistic regression on backbone features;
``build_fit_model`` folds it with the backbone into one Keras model, which ``add_fit_column``
applies to the faces of a ``predict --detect`` CSV.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dlbook.core import cache

FIT_CLASSES = ("correct", "nose_exposed", "chin")
KEYPOINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
SHAPES = ("surgical", "cloth", "pointed")
TEXTURES = ("plain", "noise", "stripes", "dots")
PALETTE = (
    (140, 190, 230),  # surgical blue
    (235, 235, 235),  # white
    (40, 40, 45),  # black
    (120, 125, 130),  # grey
    (30, 45, 90),  # navy
    (230, 170, 190),  # pink
    (90, 140, 90),  # green
    (200, 180, 140),  # beige
)


# ---------------------------------------------------------------------------------------------
# Landmarks


def landmarks_array(keypoints: dict) -> np.ndarray:
    """MTCNN's keypoint dict as an array (5, 2) float64 in ``KEYPOINTS`` order (x, y)."""
    return np.array([keypoints[name] for name in KEYPOINTS], dtype=np.float64)


def find_landmarks(detector, images: np.ndarray, min_confidence: float = 0.9) -> np.ndarray:
    """The largest confident face's landmarks in each image (MTCNN, via ``dlbook.facemask.detect``).

    Parameters
    ----------
    detector : ``dlbook.facemask.detect.load_detector("mtcnn")``.
    images : ndarray, shape (N, H, W, 3), uint8.

    Returns
    -------
    ndarray, shape (N, 5, 2), float64; NaN where no face was found.
    """
    out = np.full((len(images), len(KEYPOINTS), 2), np.nan)
    for i, image in enumerate(images):
        faces = [
            f
            for f in detector.model.detect_faces(np.asarray(image))
            if f["confidence"] >= min_confidence
        ]
        if faces:
            largest = max(faces, key=lambda f: f["box"][2] * f["box"][3])
            out[i] = landmarks_array(largest["keypoints"])
    return out


def cached_landmarks(images: np.ndarray, detector_factory) -> np.ndarray:
    """``find_landmarks`` on ``images`` (N, H, W, 3) uint8, cached by the images' content.

    ``detector_factory()`` gives the MTCNN detector; it is called only when the cache misses.
    """
    key = cache.digest("mtcnn-landmarks-v1", np.asarray(images))
    return cache.cached_array(
        "mask_fit", key, lambda: find_landmarks(detector_factory(), images), name="landmarks"
    )


# ---------------------------------------------------------------------------------------------
# Drawing a mask


def face_frame(landmarks: np.ndarray) -> dict:
    """The face's own axes: origin between the eyes, ``u`` along the eyes, ``v`` down the face.

    Returns origin, u, v (each (2,)), the eye distance and the depths (along ``v``) of the nose
    tip, the mouth and an estimated chin.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    left, right, nose, mouth_l, mouth_r = landmarks
    origin = (left + right) / 2
    eye_distance = float(np.linalg.norm(right - left))
    if eye_distance < 1e-6:
        raise ValueError("the two eye landmarks coincide; cannot place a mask")
    u = (right - left) / eye_distance
    v = np.array([-u[1], u[0]])
    mouth = (mouth_l + mouth_r) / 2
    if (mouth - origin) @ v < 0:  # the face is upside down in these coordinates
        u, v = -u, -v
    nose_depth = float((nose - origin) @ v)
    mouth_depth = float((mouth - origin) @ v)
    gap = max(mouth_depth - nose_depth, 0.15 * eye_distance)
    chin_depth = mouth_depth + max(1.3 * gap, 0.45 * eye_distance)
    return {
        "origin": origin,
        "u": u,
        "v": v,
        "eye_distance": eye_distance,
        "nose": nose_depth,
        "mouth": mouth_depth,
        "gap": gap,
        "chin": chin_depth,
    }


def mask_outline(landmarks: np.ndarray, fit: str, rng: np.random.Generator) -> np.ndarray:
    """Polygon (K, 2) of a mask in ``fit`` placed on the face, in image coordinates (x, y).

    The top edge's depth sets the fit (see the module docstring); width, curvature and shape are
    drawn from ``rng``.
    """
    if fit not in FIT_CLASSES:
        raise ValueError(f"fit={fit!r} is unknown; use one of {FIT_CLASSES}")
    f = face_frame(landmarks)
    nose, mouth, gap, chin = f["nose"], f["mouth"], f["gap"], f["chin"]
    if fit == "correct":
        top = nose * rng.uniform(0.4, 0.65)
    elif fit == "nose_exposed":
        top = nose + gap * rng.uniform(0.3, 0.55)
    else:
        top = mouth + gap * rng.uniform(0.4, 0.6)
    bottom = chin + gap * rng.uniform(0.1, 0.3)
    half_width = f["eye_distance"] * rng.uniform(0.95, 1.2)
    shape = SHAPES[rng.integers(len(SHAPES))]
    xs = np.linspace(-1, 1, 21)
    if shape == "surgical":
        top_y = top + 0.08 * gap * xs**2
        bottom_y = bottom - 0.15 * gap * xs**2
    elif shape == "cloth":
        top_y = top + 0.35 * gap * xs**2
        bottom_y = bottom - 0.6 * gap * xs**2
    else:  # pointed, like an FFP2 mask folded down the middle
        top_y = top + 0.5 * gap * np.abs(xs)
        bottom_y = bottom - 0.7 * gap * np.abs(xs)
    bottom_y = np.maximum(bottom_y, top_y + 0.2 * gap)
    upper = np.stack([xs * half_width, top_y], axis=1)
    lower = np.stack([xs * half_width, bottom_y], axis=1)[::-1]
    local = np.concatenate([upper, lower])
    return f["origin"] + local[:, :1] * f["u"] + local[:, 1:] * f["v"]


def _texture(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """An RGB fabric (H, W, 3) float: a base colour, a texture and a soft vertical shading."""
    height, width = shape
    base = np.array(PALETTE[rng.integers(len(PALETTE))], dtype=np.float64)
    base = np.clip(base + rng.normal(0, 12, 3), 0, 255)
    cloth = np.broadcast_to(base, (height, width, 3)).copy()
    kind = TEXTURES[rng.integers(len(TEXTURES))]
    yy, xx = np.mgrid[0:height, 0:width]
    if kind == "noise":
        cloth += rng.normal(0, 14, (height, width, 1))
    elif kind == "stripes":
        period = rng.integers(4, 12)
        second = np.array(PALETTE[rng.integers(len(PALETTE))], dtype=np.float64)
        stripe = ((yy + xx * rng.uniform(-1, 1)) // period % 2 == 0)[..., None]
        cloth = np.where(stripe, cloth, 0.5 * cloth + 0.5 * second)
    elif kind == "dots":
        period = rng.integers(6, 14)
        dots = (((yy % period) - period / 2) ** 2 + ((xx % period) - period / 2) ** 2) < (
            period / 4
        ) ** 2
        cloth = np.where(dots[..., None], 255 - cloth, cloth)
    shading = 1.0 - 0.18 * np.abs(np.linspace(-1, 1, height))[:, None, None]
    return np.clip(cloth * shading, 0, 255)


def draw_mask(
    image: np.ndarray, landmarks: np.ndarray, fit: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Paint a synthetic mask in ``fit`` on a face.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8.
    landmarks : ndarray, shape (5, 2): eyes, nose tip, mouth corners (``KEYPOINTS`` order).
    fit : one of ``FIT_CLASSES``.

    Returns
    -------
    (masked, covered): masked (H, W, 3) uint8, a new image; covered (H, W) bool, the pixels the
    mask's fabric covers (ear loops and pleats excluded).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 of shape (H, W, 3); got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    outline = mask_outline(landmarks, fit, rng)
    stencil = Image.new("L", (width, height), 0)
    ImageDraw.Draw(stencil).polygon([tuple(p) for p in outline], fill=255)
    covered = np.asarray(stencil) > 127
    out = np.where(covered[..., None], _texture((height, width), rng), image).astype(np.uint8)
    canvas = Image.fromarray(out)
    draw = ImageDraw.Draw(canvas)
    f = face_frame(landmarks)
    line_width = max(1, int(round(f["eye_distance"] / 30)))
    fabric_dark = (
        tuple(int(c) for c in np.clip(out[covered].mean(0) * 0.7, 0, 255))
        if covered.any()
        else (0, 0, 0)
    )
    half = len(outline) // 2
    upper, lower = outline[:half], outline[half:][::-1]
    if rng.random() < 0.6:  # pleats
        for share in (0.3, 0.5, 0.7):
            pleat = upper + share * (lower - upper)
            draw.line([tuple(p) for p in pleat[2:-2]], fill=fabric_dark, width=line_width)
    loop_colour = (230, 230, 230) if rng.random() < 0.7 else fabric_dark
    for end in (0, -1):  # ear loops, from the mask's corners towards the ears
        corner_top, corner_bottom = upper[end], lower[end]
        ear = f["origin"] + (1 if end else -1) * 1.25 * f["eye_distance"] * f["u"]
        ear = ear + 0.3 * f["eye_distance"] * f["v"]
        draw.line(
            [tuple(corner_top), tuple(ear), tuple(corner_bottom)],
            fill=loop_colour,
            width=line_width,
        )
    return np.asarray(canvas), covered


def synthetic_set(
    images: np.ndarray, landmarks: np.ndarray, out_size: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every face with a found landmark set, drawn once in each fit and resized to ``out_size``.

    Returns
    -------
    (masked, labels, source): masked (M, S, S, 3) uint8; labels (M,) int64 indices into
    ``FIT_CLASSES``; source (M,) int64, the face each image came from.
    """
    rng = np.random.default_rng(seed)
    masked, labels, source = [], [], []
    for i in np.flatnonzero(~np.isnan(landmarks).any(axis=(1, 2))):
        for label, fit in enumerate(FIT_CLASSES):
            drawn, _ = draw_mask(images[i], landmarks[i], fit, rng)
            resized = Image.fromarray(drawn).resize((out_size, out_size), Image.Resampling.BILINEAR)
            masked.append(np.asarray(resized))
            labels.append(label)
            source.append(i)
    if not masked:
        return (
            np.zeros((0, out_size, out_size, 3), np.uint8),
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
        )
    return np.stack(masked), np.array(labels, np.int64), np.array(source, np.int64)


# ---------------------------------------------------------------------------------------------
# The fit classifier


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, n_classes: int = 3) -> np.ndarray:
    """Counts (n_classes, n_classes): rows are the true fit, columns the predicted one."""
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(truth), np.asarray(predicted)), 1)
    return counts


def build_fit_model(backbone, classifier, image_size: int):
    """Backbone + the fitted scaler and logistic regression as one Keras model.

    Returns keras.Model: (B, S, S, 3) float32 in [0, 255] -> (B, 3) probabilities of
    ``FIT_CLASSES``.
    """
    import keras

    scaler, logistic = classifier[0], classifier[-1]
    scale = scaler.scale_
    weights = (logistic.coef_ / scale).T.astype(np.float32)
    bias = (logistic.intercept_ - logistic.coef_ @ (scaler.mean_ / scale)).astype(np.float32)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    features = backbone(inputs)
    head = keras.layers.Dense(len(FIT_CLASSES), activation="softmax", name="fit")
    probs = head(features)
    head.set_weights([weights, bias])
    return keras.Model(inputs, probs, name="mask_fit")


def save_fit_model(model, path: str | os.PathLike, metadata: dict) -> Path:
    """Save the fit model (``.keras``) and its JSON (``image_size``, ``class_names``) beside it."""
    path = cache.write_atomically(Path(path), model.save)
    cache.write_json(path.with_suffix(".json"), {"class_names": list(FIT_CLASSES), **metadata})
    return path


def load_fit_model(path: str | os.PathLike):
    """(keras.Model, metadata) of a saved fit model; FileNotFoundError names what is missing."""
    import keras

    path = Path(path)
    meta_path = path.with_suffix(".json")
    for needed in (path, meta_path):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed} does not exist (the chapter 7 build writes it)")
    return keras.saving.load_model(path, compile=False), json.loads(meta_path.read_text())


# ---------------------------------------------------------------------------------------------
# predict --detect --fit


def add_fit_column(csv_path: str | os.PathLike, model, metadata: dict) -> int:
    """Add a ``fit`` column to a ``predict --detect`` CSV, in place; return the rows classified.

    Faces labelled ``with_mask`` are cropped again from their image (same crop as the mask
    classifier's) and given the fit model's most likely class; other rows get an empty cell.
    """
    from dlbook.facemask import data, detect

    csv_path = Path(csv_path)
    with open(csv_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if rows and "x" not in rows[0]:
        raise ValueError(f"{csv_path} has no face boxes; --fit needs --detect")
    size = int(metadata["image_size"])
    names = list(metadata.get("class_names", FIT_CLASSES))
    wanted = [i for i, r in enumerate(rows) if r["label"] == "with_mask" and r.get("x")]
    crops, images = [], {}
    for i in wanted:
        path = rows[i]["path"]
        if path not in images:
            images[path] = data.decode_image(path, None)
        box = np.array([[int(rows[i][k]) for k in ("x", "y", "width", "height")]])
        crops.append(detect.crop_faces(images[path], box, size)[0])
    fits = [""] * len(rows)
    if crops:
        probs = model.predict(np.stack(crops).astype(np.float32), verbose=0)
        for i, p in zip(wanted, np.asarray(probs).argmax(1), strict=True):
            fits[i] = names[int(p)]
    fieldnames = [*(rows[0].keys() if rows else ["path", "label", "prob_with_mask"]), "fit"]

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=fieldnames, lineterminator="\n")
            writer.writeheader()
            for row, fit in zip(rows, fits, strict=True):
                writer.writerow({**row, "fit": fit})

    cache.write_atomically(csv_path, write)
    return len(wanted)


def run_fit(csv_path: str | os.PathLike, model_path: str | os.PathLike) -> int:
    """The ``predict --fit`` step: exit status 0, or 2 when the fit model cannot be loaded."""
    try:
        model, metadata = load_fit_model(model_path)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    count = add_fit_column(csv_path, model, metadata)
    print(f"added the fit of {count} masked faces to {csv_path}", file=sys.stderr)
    return 0
