"""Chapter 4b's computations: the scenes, today's pipeline on them, and the pipeline made for them.

``scenes(run)`` loads the photos and the committed split; ``baseline(run, sc)`` scores the shipped
pipeline on the test photos and the shipped classifier on their annotated faces;
``improved(run, sc)`` fits the real-photo classifier and box shapes on the train photos, makes
every choice on the validation photos, and scores the chosen pipeline once on the test photos.
Each saves its figures through ``run.save`` and returns what the page draws.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlbook.core import logs
from dlbook.facemask import scene_pipeline as pipe
from dlbook.facemask.data import scene_split, voc
from dlbook.methods import detection_metrics as dm
from dlbook.methods import metrics

CLASSES = voc.SCENE_CLASSES


class MissingModelError(FileNotFoundError):
    """Chapter 4's shipped classifier is not in the results folder."""


@dataclass
class Scenes:
    """The photos of each part (``train``, ``val``, ``test``) and where the shipped models are."""

    parts: dict[str, list[voc.Photo]]
    models_dir: Path
    detections: dict[str, list] = field(default_factory=dict)


def truth_of(photos: list[voc.Photo]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The evaluator's ``truth``: (boxes, labels) per photo."""
    return [(p.boxes, p.labels) for p in photos]


def _subset(photos: list[voc.Photo], limit, seed: int) -> list[voc.Photo]:
    """``limit`` photos (all when None): one holding each class first, then random others."""
    if limit is None or limit >= len(photos):
        return photos
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(len(photos)))
    chosen = []
    for label in range(len(CLASSES)):
        holder = next((k for k in order if label in photos[k].labels and k not in chosen), None)
        if holder is not None:
            chosen.append(holder)
    chosen += [k for k in order if k not in chosen][: max(0, limit - len(chosen))]
    return [photos[k] for k in sorted(chosen[:limit])]


def scenes(run) -> Scenes:
    """Load the mask-scenes photos (checked against their manifest) and the saved split."""
    logs.quiet_tensorflow()  # its start-up lines stay off the page
    photos, parts = scene_parts(run.settings, run.seed)
    values = {"scenes_photos": len(photos), "scenes_faces": int(sum(len(p.labels) for p in photos))}
    for part, chosen in parts.items():
        counts = voc.class_counts(chosen)
        values[f"{part}_photos"] = len(chosen)
        values.update({f"{part}_faces_{name}": n for name, n in counts.items()})
    run.save(values)
    return Scenes(parts, Path(run.results_dir) / "models")


def scene_parts(settings: dict, seed: int) -> tuple[list[voc.Photo], dict[str, list[voc.Photo]]]:
    """Every mask-scenes photo (checked against the manifest) and each part's photos under
    ``settings["photos"]`` (limits per part, drawn with ``seed``)."""
    photos = voc.load_scenes(settings.get("scenes_dir"))
    parts = scene_split.photos_by_part(photos)
    limits = settings["photos"]
    return photos, {part: _subset(parts[part], limits[part], seed) for part in parts}


def detections(sc: Scenes, part: str) -> list:
    """The default detector's boxes on a part's photos (cached on disk and in ``sc``)."""
    if part not in sc.detections:
        sc.detections[part] = pipe.detect_photos(sc.parts[part], progress=False)
    return sc.detections[part]


def shipped_model(sc: Scenes, name: str = "mask_classifier.keras") -> tuple[Path, dict]:
    """Path and metadata of a model chapter 4 (or 7) shipped; MissingModelError when absent."""
    path = sc.models_dir / name
    if not path.is_file() or not path.with_suffix(".json").is_file():
        raise MissingModelError(
            f"{path} (and its .json) is missing: build chapter 4 under this profile first"
        )
    return path, json.loads(path.with_suffix(".json").read_text())


def score_row(truth, found, n_boot: int, seed: int) -> dict:
    """Point figures (``detection_metrics.scores``) and their bootstrap intervals over photos."""
    point = dm.scores(truth, found, CLASSES)
    point["intervals"] = dm.bootstrap_scores(truth, found, CLASSES, n_boot, seed)
    point["curves"] = dm.precision_recall_curves(truth, found, CLASSES)
    matched, _ = dm.matched_faces(truth, found)
    labels = np.concatenate([t[1] for t in truth] + [np.zeros(0, np.int64)])
    # a face no box reaches at IoU 0.5 is a miss whatever the class said: recall's ceiling
    point["boxed"] = {
        name: float(matched[labels == c].mean()) if (labels == c).any() else float("nan")
        for c, name in enumerate(CLASSES)
    }
    point["found"] = found
    return point


def _flat(prefix: str, row: dict) -> dict:
    values = {f"{prefix}_map50": row["map50"], f"{prefix}_map": row["map"]}
    values.update({f"{prefix}_ap50_{k}": v for k, v in row["ap50"].items()})
    values.update({f"{prefix}_ap_{k}": v for k, v in row["ap"].items()})
    labels = dict(zip(dm.width_labels(), ("lt16", "16_32", "32_64", "ge64"), strict=True))
    values.update({f"{prefix}_recall_{labels[k]}": v for k, v in row["recall_by_width"].items()})
    values[f"{prefix}_recall_ge32"] = row["recall_ge32"]
    values[f"{prefix}_box_precision"] = row["box_precision"]
    values.update({f"{prefix}_boxed_{k}": v for k, v in row["boxed"].items()})
    for key in ("map50", "ap50/with_mask"):
        low, high = row["intervals"][key]
        name = key.replace("/", "_")
        values[f"{prefix}_{name}_ci_low"], values[f"{prefix}_{name}_ci_high"] = low, high
    return values


def _recall_ge(truth, found, min_width: float) -> float:
    matched, widths = dm.matched_faces(truth, found)
    wide = widths >= min_width
    return float(matched[wide].mean()) if wide.any() else float("nan")


def shipped_rows(run, sc: Scenes, part: str = "test") -> dict:
    """Today's pipeline on a part's photos: fit used (when the fit model exists) and ignored."""
    photos, dets = sc.parts[part], detections(sc, part)
    path, meta = shipped_model(sc)
    size = int(meta["image_size"])
    crops = pipe.crops_of(photos, [b for b, _ in dets], size)
    p_mask = pipe.model_outputs(path, crops, "shipped")[:, -1]
    counts = [len(b) for b, _ in dets]
    fit_path = sc.models_dir / "mask_fit.keras"
    fits = {"fit_ignored": None}
    if fit_path.is_file():
        fits["fit_used"] = pipe.model_outputs(fit_path, crops, "fit")
    truth, rows = truth_of(photos), {}
    for name, fit in fits.items():
        labels, score = pipe.shipped_verdicts(p_mask, fit)
        det_scores = np.concatenate([s for _, s in dets]) if dets else np.zeros(0)
        found = [
            (b, lab, s)
            for (b, _), lab, s in zip(
                dets,
                pipe.split_by_photo(labels, counts),
                pipe.split_by_photo(score * det_scores, counts),
                strict=True,
            )
        ]
        row = score_row(truth, found, run.settings["n_boot"], run.seed)
        row["recall_ge32"] = _recall_ge(truth, found, 32)
        rows[name] = row
    return rows


def confusion(truth: np.ndarray, predicted: np.ndarray, n_true: int, n_pred: int) -> np.ndarray:
    """Counts (n_true, n_pred): row = annotated class, column = predicted class."""
    matrix = np.zeros((n_true, n_pred), dtype=np.int64)
    np.add.at(matrix, (np.asarray(truth), np.asarray(predicted)), 1)
    return matrix


def shipped_on_faces(run, sc: Scenes) -> dict:
    """The shipped classifier on the annotated faces of the test photos (no detector involved).

    Saves the external-test figures: accuracy on faces at least ``min_width`` px wide, two
    classes (``mask_weared_incorrect`` counted as masked), with a bootstrap interval over faces.
    """
    path, meta = shipped_model(sc)
    faces = pipe.face_crops(sc.parts["test"], int(meta["image_size"]))
    p_mask = pipe.model_outputs(path, faces.images, "shipped")[:, -1]
    said_mask = (p_mask >= 0.5).astype(np.int64)
    # columns: 0 without_mask, 1 with_mask (the shipped model's class order)
    matrix = confusion(faces.labels, said_mask, len(CLASSES), 2)
    wide = faces.widths >= run.settings["min_width"]
    right = (said_mask == pipe.masked_vs_not(faces.labels)).astype(np.float64)[wide]
    draws = metrics.bootstrap_samples(np.mean, right, n_boot=run.settings["n_boot"], seed=run.seed)
    low, high = metrics.percentile_interval(draws) if right.size else (np.nan, np.nan)
    values = {
        "external_test_accuracy": float(right.mean()) if right.size else float("nan"),
        "external_test_accuracy_ci_low": low,
        "external_test_accuracy_ci_high": high,
        "external_test_n": int(wide.sum()),
        "external_test_min_width": int(run.settings["min_width"]),
        "external_test_all_widths_accuracy": float(
            (said_mask == pipe.masked_vs_not(faces.labels)).mean()
        ),
    }
    for k, name in enumerate(CLASSES):
        total = max(1, matrix[k].sum())
        values[f"shipped_faces_{name}_called_masked"] = float(matrix[k, 1] / total)
    run.save(values)
    return {"confusion": matrix, "values": values, "faces": faces, "p_mask": p_mask}


def baseline(run, sc: Scenes) -> dict:
    """The baseline rows on the test photos, saved as ``baseline_fit_used_*`` and
    ``baseline_fit_ignored_*``, and the shipped classifier on the test photos' faces."""
    rows = shipped_rows(run, sc, "test")
    values = {"baseline_fit_model_found": "fit_used" in rows}
    for name, row in rows.items():
        values.update(_flat(f"baseline_{name}", row))
    run.save(values)
    return {"rows": rows, "faces": shipped_on_faces(run, sc)}
