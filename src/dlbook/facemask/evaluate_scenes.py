"""The ``python -m dlbook evaluate-scenes`` command: score the pipeline on any VOC-annotated folder.

The photos go through ``predict --detect`` (by default the real-photo pipeline the last full build
shipped, every box it keeps ranked; or a given classifier with the default detector), or a CSV it
wrote already is read (``--predictions``); the rows are scored against the annotations with
``methods.detection_metrics`` (COCO AP per class, mAP@0.5, mAP@[.5:.95], recall by face width),
intervals from resampling photos, and written as a JSON report.
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import numpy as np

from dlbook.core import cache
from dlbook.facemask.data import voc
from dlbook.methods import detection_metrics as dm


class PredictionsError(ValueError):
    """A predictions CSV the evaluator cannot read."""


def default_model() -> Path:
    """The model the last full build shipped: the real-photo pipeline, else the classifier."""
    from dlbook.facemask.predict import default_model as shipped

    return shipped(detect_faces=True)


def found_from_csv(csv_path: str | os.PathLike, photos: list[voc.Photo]) -> list[tuple]:
    """A ``predict --detect`` CSV as the evaluator's ``found``, one (boxes, labels, scores) per
    photo, matched by file name; rows without a box (``no_face``) are skipped.

    Raises
    ------
    PredictionsError
        Naming the file and line: missing columns, an unknown class or a bad number.
    """
    csv_path = Path(csv_path)
    by_name = {p.image_path.name: k for k, p in enumerate(photos)}
    boxes = [[] for _ in photos]
    labels = [[] for _ in photos]
    scores = [[] for _ in photos]
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        needed = {"path", "x", "y", "width", "height", "class", "score"}
        if not needed <= set(reader.fieldnames or ()):
            raise PredictionsError(
                f"{csv_path}: needs the columns {sorted(needed)} (write it with predict --detect)"
            )
        for line, row in enumerate(reader, start=2):
            if not row["class"]:
                continue
            if row["class"] not in voc.SCENE_CLASSES:
                raise PredictionsError(
                    f"{csv_path}, line {line}: class {row['class']!r} is not one of "
                    f"{voc.SCENE_CLASSES}"
                )
            photo = by_name.get(Path(row["path"]).name)
            if photo is None:
                continue
            try:
                x, y, w, h = (float(row[k]) for k in ("x", "y", "width", "height"))
                score = float(row["score"])
            except ValueError as error:
                raise PredictionsError(f"{csv_path}, line {line}: {error}") from None
            boxes[photo].append([x, y, x + w, y + h])
            labels[photo].append(voc.SCENE_CLASSES.index(row["class"]))
            scores[photo].append(score)
    return [
        (np.array(b, np.float64).reshape(-1, 4), np.array(lab, np.int64), np.array(s))
        for b, lab, s in zip(boxes, labels, scores, strict=True)
    ]


def report(photos: list[voc.Photo], found: list, n_boot: int, seed: int) -> dict:
    """The JSON report: point figures, their intervals and what was scored."""
    truth = [(p.boxes, p.labels) for p in photos]
    point = dm.scores(truth, found, voc.SCENE_CLASSES)
    intervals = dm.bootstrap_scores(truth, found, voc.SCENE_CLASSES, n_boot, seed)
    return {
        "photos": len(photos),
        "faces": voc.class_counts(photos),
        "boxes_found": int(sum(len(f[0]) for f in found)),
        **point,
        "intervals_95": {k: list(v) for k, v in intervals.items()},
        "bootstrap": {"resamples": n_boot, "seed": seed, "unit": "photo"},
    }


def _predict_csv(model_path: Path, photos: list[voc.Photo], out_csv: Path, progress: bool):
    """Run ``model_path`` (a classifier, or a real-photo pipeline ranking every box it keeps,
    as AP needs) on the photos and write ``predict --detect``'s CSV."""
    from dlbook.core import logs
    from dlbook.facemask import classify, detect, predict, scene_model

    logs.import_tensorflow()
    files = [p.image_path for p in photos]
    if scene_model.is_scene_model(model_path):
        pipeline = scene_model.load(model_path)
        predictions, _ = predict.predict_scene_files(pipeline, files, None, progress, 0.0)
    else:
        model, metadata = classify.load_shipped_model(model_path)
        predictions, _ = predict.predict_files(
            model,
            int(metadata["image_size"]),
            files,
            detect.load_detector(),
            progress=progress,
            model_key=cache.file_sha256(model_path),
        )
    predict.write_predictions_csv(predictions, out_csv, detect=True)


def run(
    images: str | os.PathLike,
    annotations: str | os.PathLike,
    out: str | os.PathLike,
    model: str | os.PathLike | None = None,
    predictions: str | os.PathLike | None = None,
    fit_model: str | os.PathLike | None = None,
    n_boot: int = 200,
    seed: int = 0,
    progress: bool = True,
) -> int:
    """The command: 0 ok, 2 no usable model, annotations or predictions (said on stderr).

    ``fit_model`` (a ``mask_fit.keras``) adds ``predict --fit``'s column: a masked face whose
    fit is not ``correct`` counts as ``mask_weared_incorrect``.
    """
    from dlbook.facemask import classify, predict, scene_model
    from dlbook.facemask import fit as mask_fit

    out = Path(out)
    try:
        photos = voc.load_photos(images, annotations)
    except voc.AnnotationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    model_path = None
    if predictions is None:
        model_path = Path(model) if model else default_model()
        if not model_path.exists():
            print(
                f"error: no model at {model_path}: pass --model, or run the full build "
                "(make book), which ships results/full/models/mask_scenes/ and "
                "mask_classifier.keras",
                file=sys.stderr,
            )
            return 2
        if fit_model is not None and scene_model.is_scene_model(model_path):
            print(
                f"error: {model_path} judges mask fit itself (mask_weared_incorrect); "
                "--fit-model goes with a mask_classifier.keras",
                file=sys.stderr,
            )
            return 2
        predictions = out.with_suffix(".csv")
        try:
            _predict_csv(model_path, photos, Path(predictions), progress)
        except (classify.ModelLoadError, scene_model.SceneModelError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        if fit_model is not None:
            if mask_fit.run_fit(predictions, fit_model) != 0:
                return 2
            predict.apply_fit(predictions)
    try:
        found = found_from_csv(predictions, photos)
    except (PredictionsError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    values = report(photos, found, n_boot, seed)
    values["predictions"] = str(predictions)
    values["model"] = str(model_path) if model_path is not None else None
    cache.write_json(out, _json_safe(values))
    print(
        f"{len(photos)} photos: mAP@0.5 {values['map50']:.3f}, mAP@[.5:.95] {values['map']:.3f}; "
        f"report in {out}",
        file=sys.stderr,
    )
    return 0


def _json_safe(value):
    """NaN -> None, NumPy numbers -> Python ones, recursively."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value
