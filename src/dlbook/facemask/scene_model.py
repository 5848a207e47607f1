"""The real-photo pipeline a user runs: the one chapter 4b chose on validation, saved and loaded.

A saved pipeline is a folder (``mask_scenes/``) with:

- ``mask_scenes.json``: what finds the boxes (``"own"``: the book's detector on EfficientNet-Lite
  maps; ``"blazeface"``: the default off-the-shelf detector, boxes reshaped by ``shape``), what
  judges them (``"own"``: the detector's own classes; ``"head"``: the real-photo logistic head on
  crops), the settings those steps need (``ScenePipeline`` lists them) and the sha256 of each
  file below, checked on load;
- ``detector_head.keras``: the own detector's head (when boxes come from it);
- ``class_head.npz``: the logistic head as plain arrays (scaler mean and scale, coefficients,
  intercepts, classes), so loading it runs no pickled code.

``ScenePipeline.find(image)`` returns every box scoring at least ``min_score`` (a ranking, as
AP needs); a user's boxes are those scoring at least ``cut``, the score with the best F1 on the
validation photos.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dlbook.core import cache, paths
from dlbook.facemask.data.voc import SCENE_CLASSES

FOLDER = "mask_scenes"
SETTINGS_FILE = "mask_scenes.json"
DETECTOR_FILE = "detector_head.keras"
HEAD_FILE = "class_head.npz"
FORMAT = 1
DEFAULT_PATH = paths.REPO_ROOT / "results" / "full" / "models" / FOLDER
"""Where the last full build ships the pipeline."""
BOXES = ("own", "blazeface")
JUDGES = ("own", "head")


class SceneModelError(ValueError):
    """A saved pipeline that is missing, incomplete or altered."""


@dataclass(frozen=True)
class LinearHead:
    """A fitted ``StandardScaler`` + ``LogisticRegression`` as arrays (``methods.heads``' model).

    Attributes
    ----------
    mean, scale : (D,) the scaler's; coef : (K, D) (K = 1 for two classes); intercept : (K,);
    classes : (C,) int, the labels the head was fitted on; n_labels : the probability columns.
    """

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    classes: np.ndarray
    n_labels: int

    @classmethod
    def from_estimator(cls, model, n_labels: int) -> LinearHead:
        """From ``make_pipeline(StandardScaler(), LogisticRegression)``, fitted."""
        scaler, logistic = model[0], model[-1]
        return cls(
            np.asarray(scaler.mean_, np.float64),
            np.asarray(scaler.scale_, np.float64),
            np.asarray(logistic.coef_, np.float64),
            np.asarray(logistic.intercept_, np.float64),
            np.asarray(logistic.classes_, np.int64),
            int(n_labels),
        )

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """(N, D) features -> (N, n_labels) probabilities, zero for a label never fitted."""
        z = (np.asarray(features, np.float64) - self.mean) / self.scale
        logits = z @ self.coef.T + self.intercept
        if self.coef.shape[0] == 1:  # two classes: one logit for the second
            p = 1 / (1 + np.exp(-logits[:, 0]))
            probs = np.stack([1 - p, p], axis=1)
        else:
            logits = logits - logits.max(axis=1, keepdims=True)
            probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        out = np.zeros((len(z), self.n_labels))
        out[:, self.classes] = probs
        return out


@dataclass
class ScenePipeline:
    """Boxes, classes and scores of faces in a photo: the pipeline chapter 4b ships.

    Attributes
    ----------
    boxes, judge : one of ``BOXES``, ``JUDGES``.
    backbone : the key of the backbone whose pooled features the head reads.
    detector_backbone : the EfficientNet-Lite key whose maps the own detector reads.
    input_size : the own detector's letterbox side (pixels).
    detector_min_score, max_boxes, max_iou : the own detector's decoding (boxes below the score
    are not judged; overlaps above the IoU are suppressed, 1: none).
    min_score : boxes whose final score is below this are dropped (0: keep the ranking).
    cut : the score a user's box must reach (chosen on validation).
    crop_size : the head's input side; use_det_score : the head's probability times the
    detector's score; reject : drop boxes the head calls "not a face"; shape : (width, height,
    shift_x, shift_y) of ``scene_classifier.BoxShape`` for BlazeFace boxes.
    chosen_on : what the choice was made on, and its score there (for the record).
    """

    boxes: str
    judge: str
    backbone: str
    cut: float
    detector_backbone: str = "efficientnet_lite0"
    input_size: int = 512
    detector_min_score: float = 0.05
    max_boxes: int = 100
    max_iou: float = 1.0
    min_score: float = 0.0
    crop_size: int = 128
    use_det_score: bool = False
    reject: bool = False
    shape: tuple[float, float, float, float] = (1.0, 1.0, 0.0, 0.0)
    chosen_on: dict = field(default_factory=dict)
    detector_head: object = field(default=None, repr=False)
    class_head: LinearHead | None = field(default=None, repr=False)
    _runtime: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.boxes not in BOXES or self.judge not in JUDGES:
            raise SceneModelError(
                f"boxes={self.boxes!r}, judge={self.judge!r}: use one of {BOXES} and {JUDGES}"
            )
        if self.boxes == "blazeface" and self.judge == "own":
            raise SceneModelError("BlazeFace boxes have no classes of their own: judge='head'")
        if self.boxes == "own" and self.detector_head is None:
            raise SceneModelError("boxes='own' needs the detector's head")
        if self.judge == "head" and self.class_head is None:
            raise SceneModelError("judge='head' needs the class head")

    def find_boxes(self, image: np.ndarray, floor: float = 0.0) -> tuple:
        """Candidate faces of one RGB image (H, W, 3) uint8.

        ``floor``: the final score the caller keeps. When the final score is the detector's, or
        a probability times it, a box whose detector score is below ``floor`` cannot reach it
        and is dropped here, before its crop is judged (the same boxes, sooner).

        Returns
        -------
        (boxes (m, 4) x0, y0, x1, y1 in the image's pixels, labels (m,) into ``SCENE_CLASSES``
        (-1 when the detector has no classes), detector scores (m,)).
        """
        boxes, labels, scores = self._candidates(image)
        if floor > 0 and (self.judge == "own" or self.use_det_score):
            keep = scores >= floor
            boxes, labels, scores = boxes[keep], labels[keep], scores[keep]
        return boxes, labels, scores

    def _candidates(self, image: np.ndarray) -> tuple:
        if self.boxes == "own":
            return self._own_boxes(image)
        from dlbook.facemask import detect
        from dlbook.facemask import scene_pipeline as pipe
        from dlbook.facemask.scene_classifier import BoxShape

        if "detector" not in self._runtime:
            self._runtime["detector"] = detect.load_detector(None, num_threads=1)
        boxes, scores = pipe.detect_photo(self._runtime["detector"], image)
        boxes = BoxShape(*self.shape).apply(boxes, (image.shape[1], image.shape[0]))
        return boxes, np.full(len(boxes), -1, np.int64), scores

    def _own_boxes(self, image: np.ndarray):
        from PIL import Image

        from dlbook.facemask.detect.own import model as own

        pixels, scale = own.letterbox(Image.fromarray(image), self.input_size)
        maps = own.multi_scale_model(self.detector_backbone).predict_on_batch(
            pixels[None].astype(np.float32)
        )
        cells = -(-self.input_size // own.MULTIPLE) * own.MULTIPLE
        padded = [
            own.pad_maps([np.asarray(m[0], np.float16)], cells // stride)
            for m, stride in zip(maps, own.STRIDES, strict=True)
        ]
        predicted = own.predict_maps(self.detector_head, padded)
        size = (image.shape[1], image.shape[0])
        (found,) = own.found_boxes(
            predicted,
            [scale],
            [size],
            own.STRIDES[0],
            self.detector_min_score,
            self.max_boxes,
            self.max_iou,
        )
        return found

    def judge_boxes(self, image: np.ndarray, boxes, labels, scores) -> tuple:
        """Classes and scores of the candidate boxes: ``find``'s output before ``min_score``."""
        if self.judge == "own":
            return boxes, labels, scores
        from dlbook.facemask import detect, features, runtime
        from dlbook.facemask import scene_classifier as head
        from dlbook.facemask import scene_pipeline as pipe

        if not len(boxes):
            return boxes, labels, scores
        crops = detect.crop_faces(image, pipe.xyxy_to_xywh(boxes), self.crop_size)
        if "features" not in self._runtime:
            shape = (self.crop_size, self.crop_size, 3)
            self._runtime["features"] = features.runner(
                self.backbone, shape, runtime.FAST_RUNTIME, 8
            )
        feats = self._runtime["features"](crops).reshape(len(crops), -1)
        probs = self.class_head.predict_proba(feats)
        new_labels, new_scores = head.head_verdicts(probs)
        if self.use_det_score:
            new_scores = new_scores * scores
        keep = probs.argmax(1) != len(SCENE_CLASSES) if self.reject else np.ones(len(boxes), bool)
        return boxes[keep], new_labels[keep], new_scores[keep]

    def find(self, image: np.ndarray, min_score: float | None = None) -> tuple:
        """Faces of one RGB image (H, W, 3) uint8, best first.

        Returns
        -------
        (boxes (m, 4) x0, y0, x1, y1 float64, labels (m,) int into ``SCENE_CLASSES``, scores
        (m,)): every box scoring at least ``min_score`` (default: the pipeline's own).
        """
        floor = self.min_score if min_score is None else min_score
        boxes, labels, scores = self.judge_boxes(image, *self.find_boxes(image, floor))
        keep = np.asarray(scores) >= floor
        order = np.argsort(-np.asarray(scores)[keep], kind="stable")
        return boxes[keep][order], labels[keep][order], np.asarray(scores)[keep][order]

    def faces(self, image: np.ndarray, min_score: float | None = None) -> list[tuple]:
        """``find`` as a user reads it: one ``((x, y, width, height), class name, score)`` a face,
        best first, box in whole pixels; faces scoring at least ``min_score`` (default: ``cut``,
        the boxes a user gets)."""
        from dlbook.facemask.scene_pipeline import xyxy_to_xywh

        floor = self.cut if min_score is None else min_score
        boxes, labels, scores = self.find(image, floor)
        xywh = np.rint(xyxy_to_xywh(boxes)).astype(int)
        return [
            (tuple(int(v) for v in box), SCENE_CLASSES[int(c)], float(p))
            for box, c, p in zip(xywh, labels, scores, strict=True)
        ]


def _settings_of(pipeline: ScenePipeline) -> dict:
    skip = {"detector_head", "class_head", "_runtime"}
    return {k: v for k, v in asdict(pipeline).items() if k not in skip}


def save(pipeline: ScenePipeline, folder: str | os.PathLike) -> Path:
    """Write the pipeline into ``folder``; returns the settings file's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    if pipeline.detector_head is not None:
        pipeline.detector_head.save(folder / DETECTOR_FILE)
        files[DETECTOR_FILE] = cache.file_sha256(folder / DETECTOR_FILE)
    if pipeline.class_head is not None:
        cache.write_atomically(
            folder / HEAD_FILE,
            lambda tmp: np.savez(open(tmp, "wb"), **asdict(pipeline.class_head)),
        )
        files[HEAD_FILE] = cache.file_sha256(folder / HEAD_FILE)
    settings = {"format": FORMAT, "classes": list(SCENE_CLASSES), **_settings_of(pipeline)}
    settings["files"] = files
    return cache.write_json(folder / SETTINGS_FILE, settings)


def is_scene_model(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a saved pipeline's folder or its settings file."""
    path = Path(path)
    return (path / SETTINGS_FILE).is_file() or path.name == SETTINGS_FILE


def load(path: str | os.PathLike) -> ScenePipeline:
    """Load a pipeline from its folder (or its ``mask_scenes.json``).

    Raises
    ------
    SceneModelError
        Naming the file: missing, not valid JSON, of another format, or whose sha256 differs
        from the one recorded when it was saved.
    """
    path = Path(path)
    settings_path = path if path.name == SETTINGS_FILE else path / SETTINGS_FILE
    folder = settings_path.parent
    if not settings_path.is_file():
        raise SceneModelError(f"{settings_path} does not exist (not a saved {FOLDER} pipeline)")
    try:
        settings = json.loads(settings_path.read_text())
    except ValueError as error:
        raise SceneModelError(f"{settings_path} is not valid JSON ({error})") from None
    if settings.get("format") != FORMAT:
        raise SceneModelError(f"{settings_path}: format {settings.get('format')!r}, need {FORMAT}")
    for name, digest in settings.get("files", {}).items():
        if not (folder / name).is_file():
            raise SceneModelError(f"{folder / name} (part of the pipeline) does not exist")
        if cache.file_sha256(folder / name) != digest:
            raise SceneModelError(f"{folder / name} differs from the file saved with the pipeline")
    keep = {k: v for k, v in settings.items() if k not in ("format", "classes", "files")}
    keep["shape"] = tuple(keep.get("shape", (1.0, 1.0, 0.0, 0.0)))
    if DETECTOR_FILE in settings.get("files", {}):
        import keras

        keep["detector_head"] = keras.saving.load_model(folder / DETECTOR_FILE, compile=False)
    if HEAD_FILE in settings.get("files", {}):
        with np.load(folder / HEAD_FILE) as arrays:
            keep["class_head"] = LinearHead(
                **{k: arrays[k] for k in ("mean", "scale", "coef", "intercept", "classes")},
                n_labels=int(arrays["n_labels"]),
            )
    try:
        return ScenePipeline(**keep)
    except TypeError as error:
        raise SceneModelError(f"{settings_path}: {error}") from None
