"""The ``python -m dlbook predict`` command: classify a folder of photos with the shipped model.

Files are decoded in batches by a background thread while the model runs on the previous batch,
so memory stays bounded (two batches of images) whatever the folder's size. The model runs
through ``dlbook.facemask.runtime`` at one fixed batch shape (``runtime.FAST_RUNTIME`` by default; a
converting runtime such as TFLite is cached under the model file's sha256).
``predict_one_at_a_time`` is the simple reference the batched path is tested against.
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlbook.core import cache, logs
from dlbook.facemask import classify, data, runtime

SCENE_CLASSES = ("with_mask", "without_mask", "mask_weared_incorrect")
"""The three classes a ``--detect`` row's ``class`` column takes (the mask-scenes classes)."""
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
"""Files with these suffixes are picked up when a folder is walked."""
BATCH_SIZE = 32


@dataclass
class Prediction:
    """One CSV row: a whole image, or one detected face in it (box in original pixels).

    Rows of the real-photo pipeline (``facemask.scene_model``) carry their class in ``label``
    and its probability in ``score``; ``prob_with_mask`` is then None.
    """

    path: str
    label: str
    prob_with_mask: float | None
    box: tuple[int, int, int, int] | None = None
    score: float | None = None


def default_model(detect_faces: bool) -> Path:
    """The model the last full build shipped: with ``detect_faces`` the real-photo pipeline
    (``results/full/models/mask_scenes/``) when there is one, else the mask classifier."""
    from dlbook.facemask import scene_model
    from dlbook.facemask.demo import DEFAULT_MODEL

    if detect_faces and scene_model.DEFAULT_PATH.is_dir():
        return scene_model.DEFAULT_PATH
    return Path(DEFAULT_MODEL)


def collect_image_files(inputs: list[str | os.PathLike]) -> tuple[list[Path], list[Path]]:
    """Expand ``inputs`` into image files, walking folders recursively (sorted).

    Returns
    -------
    (files, missing): files to read (given files are kept whatever their suffix; files found in
    folders need an image suffix) and inputs that do not exist.
    """
    files, missing = [], []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            found = [
                p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            ]
            files += sorted(found)
        elif item.is_file():
            files.append(item)
        else:
            missing.append(item)
    return files, missing


def label(prob: float) -> str:
    """The class name for P(with_mask) = ``prob`` (threshold 0.5)."""
    return data.CLASS_NAMES[int(prob >= 0.5)]


def scene_class(label_name: str, prob: float | None, score: float | None = None) -> tuple[str, str]:
    """The ``class`` and ``score`` cells of a ``--detect`` row: the verdict and its probability.

    ``no_face`` rows get empty cells; with the two-class model ``mask_weared_incorrect`` comes
    from ``apply_fit``; a real-photo pipeline's row gives its own ``score``.
    """
    if score is not None and label_name in SCENE_CLASSES:
        return label_name, f"{score:.6f}"
    if label_name not in SCENE_CLASSES or prob is None:
        return "", ""
    return label_name, f"{prob if label_name == 'with_mask' else 1 - prob:.6f}"


def _decode(paths: list[Path], image_size: int | None):
    images, kept, skipped = [], [], []
    for path in paths:
        try:
            images.append(data.decode_image(path, image_size))
            kept.append(path)
        except data.ImageDecodeError as error:
            skipped.append((str(error.path), error.reason))
    return images, kept, skipped


def decoded_batches(
    files: list[Path], image_size: int | None, batch_size: int = BATCH_SIZE
) -> Iterator[tuple[list[np.ndarray], list[Path], list[tuple[str, str]]]]:
    """Yield ``(images, paths, skipped)`` batch by batch, in file order.

    The next batch is decoded by a background thread while the caller works on this one, so at
    most two batches of images are in memory. ``image_size`` None keeps each image's own size.
    """
    chunks = [files[i : i + batch_size] for i in range(0, len(files), batch_size)]
    if not chunks:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as pool:
        pending = pool.submit(_decode, chunks[0], image_size)
        for index in range(len(chunks)):
            result = pending.result()
            if index + 1 < len(chunks):
                pending = pool.submit(_decode, chunks[index + 1], image_size)
            yield result


def classifier(model, image_size: int, count: int, runtime_name: str | None = None, key=None):
    """A ``runtime.Runner`` for the shipped model: ``runner(images)`` -> (N, 1) P(with_mask).

    ``runtime_name`` None picks ``runtime.choose_runtime(count)``; ``key`` (the model file's
    sha256) lets a converted model be cached.
    """
    return runtime.compile_model(
        model,
        (image_size, image_size, 3),
        runtime_name or runtime.choose_runtime(count),
        BATCH_SIZE,
        cache_key=key,
    )


def predict_files(
    model,
    image_size: int,
    files: list[Path],
    detector=None,
    annotated_dir: str | os.PathLike | None = None,
    progress: bool = True,
    runtime_name: str | None = None,
    model_key: str | None = None,
) -> tuple[list[Prediction], list[tuple[str, str]]]:
    """Classify each file (or, with a ``detector``, each face found in it), in batches.

    Parameters
    ----------
    model : the shipped Keras model.
    image_size : its input side.
    files : image files.
    detector : None, or a ``dlbook.facemask.detect`` detector; faces are cropped from the original
        image, resized like the loader does and classified; an image without a face gets one
        row with label "no_face".
    annotated_dir : with a detector, write each image with its boxes drawn here.
    progress : show a progress bar (a few lines when stderr is not a terminal).
    runtime_name : see ``classifier``.
    model_key : the model file's sha256 (caches the fast runtime's conversion).

    Returns
    -------
    (predictions, skipped): skipped lists (path, reason) of files that could not be decoded.
    """
    classify = classifier(model, image_size, len(files), runtime_name, model_key)
    predictions, skipped = [], []
    decode_size = image_size if detector is None else None
    with logs.progress(len(files), "predicting", "image", enabled=progress) as bar:
        for images, kept, bad in decoded_batches(files, decode_size):
            for path, reason in bad:
                print(f"skipped {path}: {reason}", file=sys.stderr)
            skipped += bad
            if detector is None and images:
                probs = np.asarray(classify(np.stack(images)), dtype=np.float64).reshape(
                    len(kept), -1
                )
                predictions += [
                    Prediction(str(path), label(p), float(p))
                    for path, p in zip(kept, probs[:, -1], strict=True)
                ]
            elif detector is not None:
                for path, image in zip(kept, images, strict=True):
                    predictions += _faces(
                        classify, detector, path, image, image_size, annotated_dir
                    )
            bar.update(len(kept) + len(bad))
    return predictions, skipped


def _faces(
    classify, detector, path: Path, image, image_size: int, annotated_dir
) -> list[Prediction]:
    from dlbook.facemask import detect

    boxes = detect.detect_faces(detector, image)
    if len(boxes) == 0:
        rows, probs = [Prediction(str(path), "no_face", None)], np.zeros(0)
    else:
        crops = detect.crop_faces(image, boxes, image_size)
        probs = np.asarray(classify(crops), dtype=np.float64).reshape(len(crops), -1)[:, -1]
        rows = [
            Prediction(str(path), label(p), float(p), tuple(int(v) for v in box))
            for box, p in zip(boxes, probs, strict=True)
        ]
    if annotated_dir is not None:
        out = Path(annotated_dir) / f"{path.stem}_annotated.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        detect.save_annotated(image, boxes, probs, out)
    return rows


def predict_scene_files(
    pipeline,
    files: list[Path],
    annotated_dir: str | os.PathLike | None = None,
    progress: bool = True,
    min_score: float | None = None,
) -> tuple[list[Prediction], list[tuple[str, str]]]:
    """Every face of each file found and judged by a real-photo pipeline, one row per face.

    Parameters
    ----------
    pipeline : a ``facemask.scene_model.ScenePipeline``.
    min_score : rows score at least this (default: the pipeline's ``cut``, the boxes a user
        gets; 0 keeps the whole ranking, as AP needs).

    Returns
    -------
    (predictions, skipped): as ``predict_files``; an image without a face gets one ``no_face`` row.
    """
    from dlbook.facemask import detect

    predictions, skipped = [], []
    with logs.progress(len(files), "finding faces", "image", enabled=progress) as bar:
        for images, kept, bad in decoded_batches(files, None):
            for path, reason in bad:
                print(f"skipped {path}: {reason}", file=sys.stderr)
            skipped += bad
            for path, image in zip(kept, images, strict=True):
                faces = pipeline.faces(image, min_score)
                rows = [Prediction(str(path), name, None, box, p) for box, name, p in faces]
                predictions += rows or [Prediction(str(path), "no_face", None)]
                if annotated_dir is not None:
                    # drawn in the two-class colours: green for a mask worn, red otherwise
                    shown = [p if name == "with_mask" else 1 - p for _, name, p in faces]
                    boxes = np.array([box for box, _, _ in faces], int).reshape(-1, 4)
                    out = Path(annotated_dir) / f"{path.stem}_annotated.png"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    detect.save_annotated(image, boxes, np.array(shown, float), out)
            bar.update(len(kept) + len(bad))
    return predictions, skipped


def predict_one_at_a_time(
    model, image_size: int, files: list[Path]
) -> tuple[list[Prediction], list[tuple[str, str]]]:
    """The reference: decode each file and call ``model.predict`` on it alone (slow, simple)."""
    predictions, skipped = [], []
    for path in files:
        images, kept, bad = _decode([path], image_size)
        skipped += bad
        if images:
            prob = float(classify.predict_images(model, images[0][None])[0])
            predictions.append(Prediction(str(path), label(prob), prob))
    return predictions, skipped


def write_predictions_csv(
    predictions: list[Prediction], path: str | os.PathLike, detect: bool = False
) -> Path:
    """Write ``path,label,prob_with_mask`` (+ ``x,y,width,height,class,score`` when any row has
    a box, or always when ``detect``: the box in pixels, one of ``SCENE_CLASSES`` and the
    probability of that class)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with_boxes = detect or any(p.box is not None for p in predictions)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(
            ["path", "label", "prob_with_mask"]
            + (["x", "y", "width", "height", "class", "score"] if with_boxes else [])
        )
        for p in predictions:
            row = [p.path, p.label, "" if p.prob_with_mask is None else f"{p.prob_with_mask:.6f}"]
            if with_boxes:
                row += list(p.box) if p.box is not None else ["", "", "", ""]
                row += list(scene_class(p.label, p.prob_with_mask, p.score))
            writer.writerow(row)
    return path


def apply_fit(csv_path: str | os.PathLike) -> int:
    """After ``predict --fit``: a masked face whose fit is not ``correct`` becomes
    ``mask_weared_incorrect`` in the ``class`` column (its score kept); returns how many did."""
    csv_path = Path(csv_path)
    with open(csv_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "fit" not in rows[0] or "class" not in rows[0]:
        return 0
    changed = 0
    for row in rows:
        if row["class"] == "with_mask" and row["fit"] not in ("", "correct"):
            row["class"], changed = "mask_weared_incorrect", changed + 1

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)

    cache.write_atomically(csv_path, write)
    return changed


def run(
    model_path: str | os.PathLike,
    inputs: list[str | os.PathLike],
    out_csv: str | os.PathLike,
    detect_faces: bool = False,
    annotated_dir: str | os.PathLike | None = None,
    progress: bool = True,
    runtime_name: str | None = None,
    min_score: float | None = None,
) -> int:
    """The ``predict`` command: returns the exit status (0 ok, 2 bad model, 3 nothing readable).

    ``model_path`` is a ``mask_classifier.keras`` (``detect_faces``: the default detector finds
    the faces it judges) or a real-photo pipeline's folder (``facemask.scene_model``; it finds
    faces itself, ``min_score`` as in ``predict_scene_files``). Problems are reported on stderr
    in one line each.
    """
    from dlbook.facemask import scene_model

    logs.import_tensorflow()
    scenes = scene_model.is_scene_model(model_path)
    try:
        if scenes:
            pipeline = scene_model.load(model_path)
        else:
            model, metadata = classify.load_shipped_model(model_path)
    except (classify.ModelLoadError, scene_model.SceneModelError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    files, missing = collect_image_files(inputs)
    for item in missing:
        print(f"skipped {item}: no such file or folder", file=sys.stderr)
    if scenes:
        predictions, skipped = predict_scene_files(
            pipeline, files, annotated_dir, progress, min_score
        )
    else:
        detector = None
        if detect_faces:
            from dlbook.facemask import detect

            detector = detect.load_detector()
        predictions, skipped = predict_files(
            model,
            int(metadata["image_size"]),
            files,
            detector,
            annotated_dir,
            progress,
            runtime_name,
            model_key=cache.file_sha256(model_path),
        )
    if not predictions:
        print(
            f"error: no readable image among the inputs ({len(files)} files tried, "
            f"{len(skipped)} unreadable, {len(missing)} missing)",
            file=sys.stderr,
        )
        return 3
    write_predictions_csv(predictions, out_csv, detect=detect_faces or scenes)
    print(
        f"wrote {len(predictions)} predictions to {out_csv}"
        + (f"; skipped {len(skipped) + len(missing)} inputs" if skipped or missing else ""),
        file=sys.stderr,
    )
    return 0
