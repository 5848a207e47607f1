"""Photos in, faces out: what the ``demo`` page shows, without the page.

With the real-photo pipeline of chapter 4b (``facemask.scene_model``, what the full build ships
by default), every face of a photo is found and judged in three classes exactly as
``predict --detect`` does with it; the score is the probability of the class shown, and no
conformal flag is given (chapter 6 calibrates the two-class classifier, not this pipeline).

With the two-class classifier, every face is found and classified exactly as ``predict --detect`` does, fit-checked
(mask worn wrong, when the fit model of chapter 7 sits beside the classifier) and given its
conformal prediction set (chapter 6's split conformal method, LAC score,
``dlbook.methods.conformal``). A face whose set does not hold exactly one class is flagged "have
a person check". The calibration scores are the shipped model's true-label scores on its
validation split, computed once and cached under the model file's sha256. Many photos give one
table, counts per class and the ``predict --detect`` CSV. ``dlbook.facemask.demo`` serves it.
"""

from __future__ import annotations

import csv
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dlbook.core import cache, logs
from dlbook.facemask import classify, data, detect, predict, runtime
from dlbook.methods import conformal

ALPHA = 0.1
"""Miscoverage of the conformal sets: they hold the true class for at least 90 % of faces."""
MAX_SIDE = 4096
"""A photo whose longer side exceeds this many pixels is downscaled to it (and the page says so)."""
MAX_PHOTOS = 50
"""Photos one request may hold; the rest are named on the page and skipped."""
BATCH_SIZE = 8
"""Faces per forward pass: small, so that a photo of two faces does not pay for 32."""
COLOURS = {"mask": (0, 170, 0), "no mask": (220, 0, 0), "mask worn wrong": (235, 140, 0)}
"""Box colour of each class shown on the page (RGB)."""
COLUMNS = ["photo", "face", "x", "y", "width", "height", "class", "P(mask)", "fit", "set", "check"]
SCENE_COLUMNS = ["photo", "face", "x", "y", "width", "height", "class", "score"]
"""The table's columns with the real-photo pipeline (score: the probability of the class)."""
SHOWN = {"with_mask": "mask", "without_mask": "no mask", "mask_weared_incorrect": "mask worn wrong"}
"""The page's name of each class of the real-photo pipeline."""
CHECK = "have a person check"
FIT_WRONG = ("nose_exposed", "chin")


class PhotoError(ValueError):
    """A file that cannot be shown as a photo; the message says why, for the page."""


@dataclass
class Calibration:
    """Chapter 6's split conformal threshold for the shipped model (LAC score)."""

    alpha: float
    threshold: float
    n: int


@dataclass
class Engine:
    """Everything a request needs, loaded once: the classifier, detector, fit model, calibration,
    or (``scenes``) the real-photo pipeline, which does all of it alone."""

    classify: runtime.Runner | None
    detector: object
    image_size: int
    calibration: Calibration | None
    fit: runtime.Runner | None = None
    fit_names: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)
    scenes: object = None

    @property
    def columns(self) -> list[str]:
        """The table's columns."""
        return SCENE_COLUMNS if self.scenes is not None else COLUMNS


@dataclass
class Face:
    """One face found in a photo: box (x, y, width, height, pixels of the photo as analysed)."""

    box: tuple[int, int, int, int]
    label: str
    prob_with_mask: float
    fit: str
    conformal_set: tuple[str, ...] | None
    score: float | None = None

    @property
    def shown_class(self) -> str:
        """The class on the page: mask, no mask, or mask worn wrong (the real-photo pipeline's
        third class, or the fit model's verdict)."""
        if self.score is not None:
            return SHOWN[self.label]
        return display_class(self.label, self.fit)

    @property
    def check(self) -> bool:
        """Whether the conformal set is not a single class (the model is unsure: ask a person)."""
        return self.conformal_set is not None and len(self.conformal_set) != 1


@dataclass
class PhotoResult:
    """The faces of one photo, its annotated copy and what the page should say about it."""

    name: str
    faces: list[Face]
    annotated: np.ndarray
    notes: list[str]


# ---------------------------------------------------------------------------------------------
# Finding faces


@dataclass
class ConcurrentCombined:
    """A ``detect.Combined`` whose members run at once, one thread each: the same boxes sooner.

    TF Lite and Pillow release the GIL, so on two cores the union of two tiled BlazeFace models
    costs about the slower member rather than the sum. Each member runs in one thread at a
    time (the page runs one request at a time), as its interpreter needs.
    """

    combined: detect.Combined
    pool: ThreadPoolExecutor

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        found = list(self.pool.map(lambda member: member.detect(image), self.combined.members))
        return detect.combine(found, self.combined.threshold)


def concurrent(detector):
    """``detector`` with its members run concurrently when it is a ``detect.Combined``."""
    if not isinstance(detector, detect.Combined):
        return detector
    pool = ThreadPoolExecutor(len(detector.members), thread_name_prefix="detect")
    return ConcurrentCombined(detector, pool)


# ---------------------------------------------------------------------------------------------
# Reading photos


def read_photo(path: str | os.PathLike, max_side: int = MAX_SIDE) -> tuple[np.ndarray, str | None]:
    """Decode a photo as ``predict`` does, downscaling one larger than ``max_side``.

    Returns
    -------
    (image, note): image (H, W, 3) uint8; note None, or a sentence saying it was downscaled.

    Raises
    ------
    PhotoError
        For a file that is not an image, is truncated or corrupt, or is too large to open.
    """
    name = Path(path).name
    try:
        with Image.open(path) as probe:
            width, height = probe.size
    except UnidentifiedImageError:
        raise PhotoError(f"{name}: not an image (JPEG, PNG, WebP, BMP, GIF or TIFF)") from None
    except Image.DecompressionBombError:
        raise PhotoError(f"{name}: too many pixels to open safely") from None
    except OSError as error:
        raise PhotoError(f"{name}: cannot be read ({error})") from None
    if max(width, height) <= max_side:
        try:
            return data.decode_image(path, None), None
        except data.ImageDecodeError as error:
            raise PhotoError(f"{name}: {error.reason}") from None
    image = _decode_downscaled(path, name, max_side)
    note = (
        f"{name}: {width:,} x {height:,} px, downscaled to {image.shape[1]:,} x "
        f"{image.shape[0]:,} px (boxes are in the downscaled photo's pixels)"
    )
    return image, note


def _decode_downscaled(path, name: str, max_side: int) -> np.ndarray:
    from PIL import ImageOps

    try:
        with Image.open(path) as image:
            image.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale
            image = ImageOps.exif_transpose(image)
            if image.mode not in ("RGB", "RGBA"):
                image = image.convert("RGBA")
            image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
            if image.mode == "RGBA":  # transparency onto white, as data.decode_image does
                white = Image.new("RGBA", image.size, data.BACKGROUND + (255,))
                image = Image.alpha_composite(white, image)
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as error:
        raise PhotoError(f"{name}: corrupt or truncated image ({error})") from None


# ---------------------------------------------------------------------------------------------
# Conformal calibration


def calibration_scores(model_path, model, metadata: dict, data_dir=None) -> np.ndarray:
    """LAC true-label scores of the shipped model on its validation split, cached by sha256.

    The split is the one the model was built with: ``load_face_mask`` at the model's image size,
    with its build's profile limit and seed (from the metadata JSON). The head's strength was
    chosen on these images, which makes the scores slightly optimistic; nothing else saw them.

    Returns
    -------
    ndarray, shape (n,), float64

    Raises
    ------
    dlbook.facemask.data.DataError
        If the face-mask data is not there.
    """
    key = data.file_sha256(model_path)

    def compute():
        from dlbook.book import profiles

        profile = metadata.get("profile")
        limit = profiles.get(profile, "mask_detection")["limit"] if profile else None
        folder = data.resolve_data_dir(data_dir, download=False)
        ds = data.load_face_mask(
            folder,
            image_size=int(metadata["image_size"]),
            limit=limit,
            seed=int(metadata.get("seed", 0)),
            allow_mismatch=True,  # verified, the build's decoded images are reused
            progress=False,
        ).where("val")
        p = classify.predict_images(model, ds.images)
        return conformal.true_label_scores(conformal.binary_probs(p), ds.labels, "lac")

    return cache.cached_array("conformal", key, compute, name="validation-lac-scores")


def calibrate(scores: np.ndarray, alpha: float = ALPHA) -> Calibration:
    """The conformal threshold of ``scores`` (shape (n,)) at miscoverage ``alpha``."""
    return Calibration(float(alpha), conformal.calibrate(scores, alpha), int(len(scores)))


def conformal_sets(p_with_mask: np.ndarray, calibration: Calibration | None) -> list:
    """Each face's LAC prediction set as a tuple of class names (None without a calibration)."""
    p_with_mask = np.asarray(p_with_mask, dtype=np.float64).ravel()
    if calibration is None or len(p_with_mask) == 0:
        return [None for _ in p_with_mask]
    sets = conformal.predict_sets(conformal.binary_probs(p_with_mask), calibration.threshold, "lac")
    return [tuple(n for n, inside in zip(data.CLASS_NAMES, row) if inside) for row in sets]


# ---------------------------------------------------------------------------------------------
# One photo


def display_class(label: str, fit: str) -> str:
    """``with_mask``/``without_mask`` and the fit -> mask, no mask or mask worn wrong."""
    if label != "with_mask":
        return "no mask"
    return "mask worn wrong" if fit in FIT_WRONG else "mask"


def analyse_image(engine: Engine, image: np.ndarray, name: str) -> PhotoResult:
    """Find, classify, fit-check and flag every face of one RGB image (H, W, 3) uint8.

    Faces are found and cropped exactly as ``predict --detect`` does, so the boxes, labels and
    P(mask) (or, with the real-photo pipeline, classes and scores) are the command's.
    """
    if engine.scenes is not None:
        return _analyse_scene(engine, image, name)
    boxes = detect.detect_faces(engine.detector, image)
    crops = detect.crop_faces(image, boxes, engine.image_size)
    probs = np.zeros(0)
    if len(crops):
        probs = np.asarray(engine.classify(crops), dtype=np.float64).reshape(len(crops), -1)[:, -1]
    labels = [predict.label(p) for p in probs]
    fits = _fits(engine, crops, labels)
    sets = conformal_sets(probs, engine.calibration)
    faces = [
        Face(tuple(int(v) for v in box), label, float(p), fit, s)
        for box, label, p, fit, s in zip(boxes, labels, probs, fits, sets, strict=True)
    ]
    notes = [] if faces else [f"{name}: no face found"]
    return PhotoResult(name, faces, annotate(image, faces), notes)


def _analyse_scene(engine: Engine, image: np.ndarray, name: str) -> PhotoResult:
    """``analyse_image`` with the real-photo pipeline: its faces scoring at least its cut."""
    faces = [Face(box, name, None, "", None, p) for box, name, p in engine.scenes.faces(image)]
    notes = [] if faces else [f"{name}: no face found"]
    return PhotoResult(name, faces, annotate(image, faces), notes)


def _fits(engine: Engine, crops: np.ndarray, labels: list[str]) -> list[str]:
    """The fit model's class of each masked face ("" for the others, or without a fit model)."""
    masked = [i for i, label in enumerate(labels) if label == "with_mask"]
    fits = [""] * len(labels)
    if engine.fit is None or not masked:
        return fits
    probs = np.asarray(engine.fit(crops[masked])).reshape(len(masked), -1)
    for i, k in zip(masked, probs.argmax(axis=1), strict=True):
        fits[i] = engine.fit_names[int(k)]
    return fits


def annotate(image: np.ndarray, faces: list[Face]) -> np.ndarray:
    """Copy of ``image`` with each face boxed in its class's colour, numbered as in the table."""
    import cv2

    out = np.ascontiguousarray(image.copy())
    thickness = max(2, image.shape[1] // 400)
    for number, face in enumerate(faces, start=1):
        x, y, w, h = face.box
        colour = COLOURS[face.shown_class]
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, thickness)
        text = f"{number} {face.shown_class}" + (" ?" if face.check else "")
        scale = max(0.35, min(w, 400) / 220)
        cv2.putText(
            out,
            text,
            (x, max(12, y - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            colour,
            thickness // 2 + 1,
        )
    return out


# ---------------------------------------------------------------------------------------------
# Many photos: the table, the counts, the CSV


def table_rows(results: list[PhotoResult]) -> list[list]:
    """One row per face in ``COLUMNS`` order (a photo without faces has none)."""
    rows = []
    for result in results:
        for number, face in enumerate(result.faces, start=1):
            if face.score is not None:
                rows.append([result.name, number, *face.box, face.shown_class, f"{face.score:.3f}"])
                continue
            rows.append(
                [
                    result.name,
                    number,
                    *face.box,
                    face.shown_class,
                    f"{face.prob_with_mask:.3f}",
                    face.fit,
                    _describe_set(face.conformal_set),
                    CHECK if face.check else "",
                ]
            )
    return rows


def _describe_set(classes: tuple[str, ...] | None) -> str:
    if classes is None:
        return ""
    return "{" + ", ".join(classes) + "}"


def class_counts(results: list[PhotoResult]) -> dict[str, int]:
    """Faces per shown class (every class, zero included) and how many to check."""
    faces = [face for result in results for face in result.faces]
    counts = {name: sum(f.shown_class == name for f in faces) for name in COLOURS}
    counts["to check"] = sum(f.check for f in faces)
    return counts


def counts_markdown(counts: dict[str, int], calibrated: bool) -> str:
    """The count line shown above the table."""
    total = sum(counts[name] for name in COLOURS)
    parts = [f"{name}: **{counts[name]}**" for name in COLOURS]
    if calibrated:
        parts.append(f"{CHECK}: **{counts['to check']}**")
    return f"**{total}** face{'s' if total != 1 else ''} · " + " · ".join(parts)


def write_csv(results: list[PhotoResult], path: Path, with_fit: bool) -> Path:
    """The ``predict --detect`` CSV of ``results`` (plus ``fit``, as ``predict --fit`` adds it)."""
    predictions, fits = [], []
    for result in results:
        if not result.faces:
            predictions.append(predict.Prediction(result.name, "no_face", None))
            fits.append("")
        for face in result.faces:
            predictions.append(
                predict.Prediction(
                    result.name, face.label, face.prob_with_mask, face.box, face.score
                )
            )
            fits.append(face.fit)
    predict.write_predictions_csv(predictions, path, detect=True)
    if with_fit:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        rows = [rows[0] + ["fit"]] + [row + [fit] for row, fit in zip(rows[1:], fits, strict=True)]
        with open(path, "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle, lineterminator="\n").writerows(rows)
    return path


def analyse_files(engine: Engine, files: list[str], out_dir: Path) -> dict:
    """Every photo of one request: results, page notes and the CSV (written in ``out_dir``).

    Returns
    -------
    dict with ``results`` (list of PhotoResult), ``notes`` (list of str) and ``csv`` (Path or
    None when no photo could be read).
    """
    notes = []
    if len(files) > MAX_PHOTOS:
        skipped = ", ".join(Path(f).name for f in files[MAX_PHOTOS:])
        notes.append(f"only the first {MAX_PHOTOS} photos are analysed; skipped: {skipped}")
        files = files[:MAX_PHOTOS]
    results = []
    for path in files:
        try:
            image, note = read_photo(path)
        except PhotoError as error:
            notes.append(str(error))
            continue
        result = analyse_image(engine, image, Path(path).name)
        result.notes = ([note] if note else []) + result.notes
        results.append(result)
        notes += result.notes
    csv_path = None
    if results:
        out_dir.mkdir(parents=True, exist_ok=True)
        csv_path = write_csv(results, out_dir / "faces.csv", engine.fit is not None)
    return {"results": results, "notes": notes, "csv": csv_path}


# ---------------------------------------------------------------------------------------------
# Loading


def load_engine(model_path, data_dir=None, alpha: float = ALPHA, detector=None) -> Engine:
    """Load the shipped model, the default detector, the fit model beside it and the calibration.

    Raises
    ------
    dlbook.facemask.classify.ModelLoadError, dlbook.facemask.scene_model.SceneModelError
        If the model cannot be loaded.
    """
    from dlbook.facemask import scene_model

    logs.import_tensorflow()
    if scene_model.is_scene_model(model_path):
        return _scene_engine(scene_model.load(model_path))
    model, metadata = classify.load_shipped_model(model_path)
    size = int(metadata["image_size"])
    notes = []
    try:
        calibration = calibrate(calibration_scores(model_path, model, metadata, data_dir), alpha)
    except (data.DataError, ValueError) as error:
        calibration = None
        print(f"note: no conformal calibration ({error})", file=sys.stderr)
        notes.append(
            f"No '{CHECK}' flag: the face-mask data to calibrate on was not found (start the "
            "demo with DLBOOK_DATA set, or --data-dir)."
        )
    engine = Engine(
        runtime.compile_model(model, (size, size, 3), runtime.FAST_RUNTIME, BATCH_SIZE),
        concurrent(detector if detector is not None else detect.load_detector()),
        size,
        calibration,
        notes=notes,
    )
    fit_path = Path(model_path).with_name("mask_fit.keras")
    if fit_path.is_file():
        from dlbook.facemask import fit

        fit_model, fit_meta = fit.load_fit_model(fit_path)
        fit_size = int(fit_meta["image_size"])
        if fit_size == size:
            engine.fit = runtime.compile_model(
                fit_model, (size, size, 3), runtime.FAST_RUNTIME, BATCH_SIZE
            )
            engine.fit_names = tuple(fit_meta.get("class_names", fit.FIT_CLASSES))
    if engine.fit is None:
        notes.append("No fit column: no mask_fit.keras of the same input size beside the model.")
    analyse_image(engine, np.zeros((480, 640, 3), np.uint8), "warm-up")
    engine.classify(np.zeros((1, size, size, 3), np.uint8))  # traces the graph once
    return engine


def _scene_engine(pipeline) -> Engine:
    """An engine on the real-photo pipeline, warmed up on a blank 640x480 frame."""
    engine = Engine(
        None,
        None,
        pipeline.crop_size,
        None,
        notes=[
            f"Faces are found and judged by the real-photo pipeline of chapter 4b; a face is "
            f"shown when its score reaches {pipeline.cut:g}, the cut chosen on validation "
            "photos. No conformal flag: chapter 6 calibrates the two-class classifier, not "
            "this pipeline."
        ],
        scenes=pipeline,
    )
    analyse_image(engine, np.zeros((480, 640, 3), np.uint8), "warm-up")
    return engine
