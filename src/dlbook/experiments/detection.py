"""Chapter 4, finding faces: which offline detector finds masked faces, and how fast the pipeline runs.

Two sections, each taking the chapter's run context (``dlbook.book.context``; the settings are
its ``detection`` block) and saving into the ``mask_detection`` results:

- ``detectors``: every detector of the settings' ``detectors`` (single ones and combinations, see
  ``dlbook.facemask.detect``) on scenes composed from validation-split faces, where the winner is chosen
  (the most masked faces found among those with precision at least ``min_precision``), then on
  scenes composed from test-split faces, which score every detector once.
- ``pipeline``: the whole pipeline (detect with the winner, crop, classify with the int8 TF Lite
  export of the shipped model) on one CPU core over a sequence of 640x480 scenes: frames per
  second and the time split between detector and classifier.

The sentences quoting these numbers come from ``story_detectors`` and ``story_pipeline``.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dlbook.book import present
from dlbook.book.context import Run
from dlbook.facemask import data, deploy, detect, tflite

SECTION = "detection"
"""The settings block of the study (``profiles.DETECTION``); results go to the run's chapter."""
TARGET_RECALL = 0.95
TARGET_PRECISION = 0.95
TARGET_FPS = 10.0


def _face_pools(data_dir, seed: int, splits, limit: int) -> dict[str, tuple[list, np.ndarray]]:
    """``{split: (images, labels)}``: original (not resized) images of at most ``limit`` faces
    of each split, label shares kept."""
    folder = data.resolve_data_dir(data_dir)
    ds = data.load_face_mask(folder, image_size=32, seed=seed, progress=False)
    pools = {}
    for split in splits:
        chosen = np.flatnonzero(ds.split == split)
        if len(chosen) > limit:
            chosen = chosen[data.stratified_subset(ds.labels[chosen], limit, seed)]
        images = [data.decode_image(folder / ds.paths[i], None) for i in chosen]
        pools[split] = images, ds.labels[chosen]
    return pools


def _compose(pool: tuple[list, np.ndarray], count: int, seed: int, settings: dict) -> list[dict]:
    """``count`` scenes of the pool's faces, as many and as large as ``settings`` say."""
    images, labels = pool
    return detect.compose_scenes(
        images,
        labels,
        count,
        seed=seed,
        faces_per_scene=tuple(settings["faces_per_scene"]),
        face_size=tuple(settings["face_size"]),
    )


def _scenes(settings: dict, data_dir, seed: int) -> dict[str, list[dict]]:
    """Composed scenes of validation-split and test-split faces."""
    pools = _face_pools(data_dir, seed, ("val", "test"), settings["scene_pool"])
    return {
        split: _compose(
            pools[split], settings[f"{split}_scenes"], seed + 1000 * (offset + 1), settings
        )
        for offset, split in enumerate(("val", "test"))
    }


def _members(names) -> list[str]:
    """The single detectors (tiled ones included) that ``names`` need, each once."""
    needed = []
    for name in names:
        for member in detect.COMBINATIONS.get(name, (name,)):
            if member not in needed:
                needed.append(member)
    return needed


def run_members(names, scenes: list[dict], min_score: float) -> tuple[dict, dict]:
    """Each single detector that ``names`` need, once over every scene.

    BlazeFace-based detectors run at the lowest score threshold to be tried (``min_score``);
    ``boxes_at`` derives any higher threshold from their output exactly.

    Returns
    -------
    (raw, ms): ``{member: [(boxes, scores) per scene]}`` and ``{member: median ms per scene}``.
    """
    raw, ms = {}, {}
    for member in _members(names):
        detector = detect.load_detector(member, min_score=min_score)
        detector.detect(scenes[0]["scene"])  # the first call builds graphs
        raw[member], times = [], []
        for scene in scenes:
            start = time.perf_counter()
            raw[member].append(detector.detect(scene["scene"]))
            times.append((time.perf_counter() - start) * 1000)
        ms[member] = float(np.median(times))
    return raw, ms


def boxes_at(name: str, raw: dict, scenes: list[dict], min_score) -> list:
    """Boxes detector ``name`` finds in each scene at BlazeFace thresholds ``min_score``.

    ``min_score``: ``{model: threshold}`` (or one float for every BlazeFace model; None for a
    detector without BlazeFace). Members' outputs from ``run_members`` are filtered by their
    model's threshold (BlazeFace members only), merged
    as ``detect.Combined`` merges them, and clipped to the scene as ``detect.detect_faces`` does.
    """
    members = detect.COMBINATIONS.get(name, (name,))
    found = []
    for k, scene in enumerate(scenes):
        parts = []
        for member in members:
            boxes, scores = raw[member][k]
            models = detect.blazeface_models(member)
            if min_score is not None and models:
                keep = scores >= detect.score_for(min_score, models[0])
                boxes, scores = boxes[keep], scores[keep]
            parts.append((boxes, scores))
        merged = detect.combine(parts) if len(parts) > 1 else parts[0]
        found.append(detect.clip_boxes(merged[0], scene["scene"].shape))
    return found


def choose_detector(table: pd.DataFrame, min_precision: float = TARGET_PRECISION) -> str:
    """The row finding most masked faces among those with precision >= ``min_precision``.

    Ties go to the higher overall recall, then the faster row, then the earlier row. If none
    reaches the precision, the most precise one wins.

    Parameters
    ----------
    table : one row per candidate, columns ``precision``, ``recall_with_mask``, ``recall``, ``ms``.
    """
    order = pd.Series(np.arange(len(table)), index=table.index)
    precise = table[table["precision"] >= min_precision]
    if precise.empty:
        return str(table.sort_values("precision", ascending=False, kind="stable").index[0])
    ranked = precise.assign(neg_ms=-precise["ms"], neg_order=-order[precise.index])
    ranked = ranked.sort_values(
        ["recall_with_mask", "recall", "neg_ms", "neg_order"], ascending=False
    )
    return str(ranked.index[0])


def _scores(name, raw, ms, scenes, min_score) -> dict:
    scored = detect.score_detections(scenes, boxes_at(name, raw, scenes, min_score))
    scored.pop("matched")
    members = detect.COMBINATIONS.get(name, (name,))
    return {
        **scored,
        "ms": float(sum(ms[m] for m in members)),
        "min_score": detect.describe_scores(min_score),
    }


def threshold_grid(name: str, scores) -> list[dict | None]:
    """Every ``{model: threshold}`` to try for detector ``name``: one of ``scores`` per BlazeFace
    model inside it (highest first, so ties keep fewer boxes); ``[None]`` without BlazeFace."""
    models = detect.blazeface_models(name)
    if not models:
        return [None]
    grid = sorted(scores, reverse=True)
    return [
        dict(zip(models, combo, strict=True))
        for combo in itertools.product(grid, repeat=len(models))
    ]


def select_on_validation(names, scenes: list[dict], settings: dict) -> tuple[pd.DataFrame, dict]:
    """Each detector at its best BlazeFace thresholds on validation scenes (``choose_detector``).

    Thresholds tried: ``threshold_grid`` over ``settings["min_scores"]``, one threshold per
    BlazeFace model, since the short- and full-range models score faces differently.

    Returns
    -------
    (table, thresholds): one validation row per detector; ``{name: {model: threshold} or None}``.
    """
    raw, ms = run_members(names, scenes, min(settings["min_scores"]))
    rows, thresholds = {}, {}
    for name in names:
        tried = threshold_grid(name, settings["min_scores"])
        candidates = pd.DataFrame([_scores(name, raw, ms, scenes, t) for t in tried])
        pick = int(choose_detector(candidates, settings["min_precision"]))
        rows[name] = candidates.loc[pick]
        thresholds[name] = tried[pick]
    return pd.DataFrame(rows).T.rename_axis("detector"), thresholds


def saved_thresholds(saved: dict, name: str) -> dict | None:
    """The BlazeFace thresholds chosen for detector ``name``, from the saved result keys."""
    found = {
        model: saved[f"detector_min_score_{name}_{model}"]
        for model in detect.blazeface_models(name)
        if f"detector_min_score_{name}_{model}" in saved
    }
    return found or None


def detectors(run: Run) -> dict:
    """Compare the face detectors; choose on validation scenes, score on test scenes; save.

    Each BlazeFace-based detector's score threshold and then the detector are chosen on the
    validation scenes; the test scenes score every detector once, at its chosen threshold.

    Parameters
    ----------
    run : the chapter's run context; its ``detection`` block holds the settings.

    Returns
    -------
    dict with ``table`` (test scenes, one row per detector, with the validation columns
    ``val_recall_with_mask`` and ``val_precision``), ``best``, ``examples`` (the first test
    scenes with the winner's boxes), ``values`` (the saved result keys) and ``target_recall``.
    """
    start = time.perf_counter()
    settings = run.part(SECTION).settings
    names = [n for n in settings["detectors"] if detect.available(n)[0]]
    scenes = _scenes(settings, run.data_dir, run.seed)
    val_table, thresholds = select_on_validation(names, scenes["val"], settings)
    best = choose_detector(
        val_table.astype({"precision": float, "ms": float}), settings["min_precision"]
    )
    used = [v for t in thresholds.values() if t is not None for v in t.values()]
    raw, ms = run_members(names, scenes["test"], min(used) if used else None)
    table = pd.DataFrame(
        [_scores(n, raw, ms, scenes["test"], thresholds[n]) for n in names], index=names
    ).rename_axis("detector")
    table["val_recall_with_mask"] = val_table["recall_with_mask"].astype(float)
    table["val_precision"] = val_table["precision"].astype(float)
    values = {
        "detector_best": best,
        "detector": best,
        "detector_best_min_score": detect.describe_scores(thresholds[best]),
        "detector_selected_on": "validation",
        "detector_min_precision": settings["min_precision"],
        "detector_recall_with_mask": float(table.loc[best, "recall_with_mask"]),
        "detector_precision": float(table.loc[best, "precision"]),
        "detector_test_scenes": len(scenes["test"]),
        "detector_val_scenes": len(scenes["val"]),
        "detector_test_faces": int(table.loc[best, "faces"]),
        "detector_test_masked_faces": int(sum((s["labels"] == 1).sum() for s in scenes["test"])),
        "detector_face_size_min": int(settings["face_size"][0]),
        "detector_face_size_max": int(settings["face_size"][1]),
        "detectors_compared": len(names),
    }
    for name in names:
        row = table.loc[name]
        values[f"detector_recall_with_mask_{name}"] = float(row["recall_with_mask"])
        values[f"detector_recall_without_mask_{name}"] = float(row["recall_without_mask"])
        values[f"detector_precision_{name}"] = float(row["precision"])
        values[f"detector_ms_{name}"] = float(row["ms"])
        values[f"detector_val_recall_with_mask_{name}"] = float(row["val_recall_with_mask"])
        if thresholds[name] is not None:
            values[f"detector_min_score_{name}"] = detect.describe_scores(thresholds[name])
            for model, threshold in thresholds[name].items():
                values[f"detector_min_score_{name}_{model}"] = float(threshold)
    values.update(_misses(scenes["test"], boxes_at(best, raw, scenes["test"], thresholds[best])))
    values["detector_seconds"] = time.perf_counter() - start
    run.save(values)
    best_boxes = boxes_at(best, raw, scenes["test"][:3], thresholds[best])
    examples = [
        {"scene": s["scene"], "truth": s["truth"], "boxes": b, "labels": s["labels"]}
        for s, b in zip(scenes["test"][:3], best_boxes, strict=True)
    ]
    return {
        "table": table,
        "best": best,
        "examples": examples,
        "values": values,
        "target_recall": TARGET_RECALL,
    }


def _misses(scenes: list[dict], found: list) -> dict:
    """How large the masked faces the chosen detector misses are pasted, against all of them."""
    scored = detect.score_detections(scenes, found)
    sizes, missed = [], []
    for scene, matched in zip(scenes, scored["matched"], strict=True):
        masked = np.asarray(scene["labels"]) == 1
        side = np.asarray(scene["truth"])[:, 2:].max(axis=1)
        sizes += side[masked].tolist()
        missed += side[masked & (matched < 0)].tolist()
    return {
        "detector_best_missed_masked": len(missed),
        "detector_best_missed_masked_median_px": float(np.median(missed)) if missed else None,
        "detector_masked_median_px": float(np.median(sizes)) if sizes else None,
    }


TABLE_COLUMNS = {
    "detector": "detector",
    "recall_with_mask": "recall, masked",
    "recall_without_mask": "recall, unmasked",
    "precision": "precision",
    "unverified_per_scene": "unverified boxes per scene",
    "min_score": "BlazeFace thresholds",
    "ms": "ms per scene",
    "val_recall_with_mask": "validation recall, masked",
    "val_precision": "validation precision",
}
"""The comparison's columns the page shows, in order, and their headings."""


def detector_table(result: dict):
    """The comparison as the page shows it (``present.show``: formatted and styled)."""
    frame = result["table"].reset_index()[list(TABLE_COLUMNS)].rename(columns=TABLE_COLUMNS)
    return present.show(
        frame,
        missing={"BlazeFace thresholds": "none (no BlazeFace)"},
        percent_columns=[
            "recall, masked",
            "recall, unmasked",
            "precision",
            "validation recall, masked",
            "validation precision",
        ],
    )


def _compared(values: dict) -> list[str]:
    """The detectors whose scores the saved ``values`` hold."""
    prefix = "detector_recall_with_mask_"
    return [key.removeprefix(prefix) for key in values if key.startswith(prefix)]


def story_detectors(values: dict) -> str:
    """Sentences on the chosen detector against the 95 % targets, from the saved values."""
    best = values["detector_best"]
    recall = values[f"detector_recall_with_mask_{best}"]
    precision = values[f"detector_precision_{best}"]
    unmasked = values[f"detector_recall_without_mask_{best}"]
    text = (
        f"Chosen on validation scenes (the most masked faces found at a precision of at least "
        f"{present.percent(values['detector_min_precision'], 0)}), **{best}** finds "
        f"{present.percent(recall)} of the {values['detector_test_masked_faces']} masked faces "
        f"and {present.percent(unmasked)} of the unmasked ones in "
        f"{values['detector_test_scenes']} test scenes, at a precision of "
        f"{present.percent(precision)}."
    )
    if best == detect.DEFAULT_DETECTOR:
        text += " `predict --detect` uses it."
    missed = []
    if recall < TARGET_RECALL:
        missed.append(
            f"masked-face recall misses the {present.percent(TARGET_RECALL, 0)} target by "
            f"{present.number(100 * (TARGET_RECALL - recall))} points"
        )
    if precision < TARGET_PRECISION:
        missed.append(
            f"precision misses the {present.percent(TARGET_PRECISION, 0)} target by "
            f"{present.number(100 * (TARGET_PRECISION - precision))} points"
        )
    if missed:
        text += " The " + " and ".join(missed) + "."
    else:
        text += (
            f" Both targets ({present.percent(TARGET_RECALL, 0)} masked-face recall, "
            f"{present.percent(TARGET_PRECISION, 0)} precision) are met on these scenes."
        )
    if values.get("detector_best_missed_masked"):
        text += (
            f" The {values['detector_best_missed_masked']} masked faces it misses are pasted at a "
            f"median of {present.number(values['detector_best_missed_masked_median_px'])} px "
            f"(all masked faces: {present.number(values['detector_masked_median_px'])} px)."
        )
    others = {
        name: values[f"detector_recall_with_mask_{name}"]
        for name in _compared(values)
        if values.get(f"detector_precision_{name}", 0) >= TARGET_PRECISION
    }
    if others:
        top = max(others, key=others.get)
        if top != best and others[top] > recall:
            text += (
                f" On the test scenes **{top}** finds more masked faces "
                f"({present.percent(others[top])}) at "
                f"{present.number(values[f'detector_ms_{top}'])} ms a scene against "
                f"{present.number(values[f'detector_ms_{best}'])} ms"
            )
            tied = values.get(f"detector_val_recall_with_mask_{top}") == values.get(
                f"detector_val_recall_with_mask_{best}"
            )
            text += (
                "; the two tied on validation, where the faster one wins."
                if tied
                else "; on validation it found fewer."
            )
    mtcnn = values.get("detector_recall_with_mask_mtcnn")
    if mtcnn is not None and best != "mtcnn":
        text += f" MTCNN alone finds {present.percent(mtcnn)} of the masked faces."
    return text


# ---------------------------------------------------------------------------------------------
# The whole pipeline on one core


def shipped_int8(results_dir: Path) -> tuple[Path, int] | None:
    """The int8 TF Lite export of the shipped model and its input side, if both exist."""
    import json

    tflite = Path(results_dir) / "models" / "mask_classifier_int8.tflite"
    meta = Path(results_dir) / "models" / "mask_classifier.json"
    if not tflite.is_file() or not meta.is_file():
        return None
    return tflite, int(json.loads(meta.read_text())["image_size"])


def run_pipeline(detector, interpreter, image_size: int, frames: list[np.ndarray]) -> dict:
    """Detect, crop and classify each frame in turn, timing the detector and the classifier.

    Medians over frames, so a pause caused by other work on a shared machine does not count.

    Returns
    -------
    dict with ``fps`` (1000 over the median frame's milliseconds), ``detector_ms`` and
    ``classifier_ms`` (medians per frame; the classifier's includes cropping),
    ``fps_mean`` (frames over the whole sequence's time), ``faces_per_frame``.
    """
    detector_ms, classifier_ms, total_ms, faces = [], [], [], 0
    for frame in frames:
        start = time.perf_counter()
        boxes = detect.detect_faces(detector, frame)
        middle = time.perf_counter()
        crops = detect.crop_faces(frame, boxes, image_size)
        if len(crops):
            tflite.predict(interpreter, crops)
        end = time.perf_counter()
        detector_ms.append(1000 * (middle - start))
        classifier_ms.append(1000 * (end - middle))
        total_ms.append(1000 * (end - start))
        faces += len(boxes)
    return {
        "fps": 1000 / float(np.median(total_ms)),
        "fps_mean": 1000 * len(total_ms) / float(np.sum(total_ms)) if total_ms else float("nan"),
        "detector_ms": float(np.median(detector_ms)),
        "classifier_ms": float(np.median(classifier_ms)),
        "faces_per_frame": faces / max(1, len(frames)),
    }


def pipeline(run: Run) -> dict:
    """Frames per second of detect + crop + int8 classify on one CPU core at 640x480; save.

    Needs the chapter's shipped model and its int8 export (``models/mask_classifier_int8.tflite``
    in the results folder). The detector is the saved ``detector_best`` (the default otherwise).
    The process is pinned to one core while the frames run (``deploy.one_core``).

    Returns
    -------
    dict with ``values`` (the saved keys: ``pipeline_fps_one_core``, ``pipeline_detector_ms``,
    ``pipeline_classifier_ms``, ...) and, per detector timed, ``rows``.
    """
    settings = run.part(SECTION).settings
    shipped = shipped_int8(run.results_dir)
    if shipped is None:
        values = {"pipeline_run": False, "pipeline_note": "no int8 export of the shipped model"}
        run.save(values)
        return {"values": values, "rows": []}
    model_file, image_size = shipped
    saved = run.load()
    best = saved.get("detector_best", detect.DEFAULT_DETECTOR)
    pool = _face_pools(run.data_dir, run.seed, ("test",), settings["scene_pool"])["test"]
    frames = [
        s["scene"] for s in _compose(pool, settings["pipeline_frames"], run.seed + 3000, settings)
    ]
    rows = []
    with deploy.one_core() as core:
        interpreter = tflite.load_interpreter(model_file, num_threads=1)
        for name in dict.fromkeys([best, *settings["pipeline_alternatives"]]):
            min_score = saved_thresholds(saved, name)  # None: detect.DEFAULT_MIN_SCORES
            detector = detect.load_detector(name, num_threads=1, min_score=min_score)
            run_pipeline(detector, interpreter, image_size, frames[:1])  # warm-up
            rows.append(
                {"detector": name, **run_pipeline(detector, interpreter, image_size, frames)}
            )
    chosen = rows[0]
    values = {
        "pipeline_run": True,
        "pipeline_detector": best,
        "pipeline_fps_one_core": chosen["fps"],
        "pipeline_fps_one_core_whole_sequence": chosen["fps_mean"],
        "pipeline_detector_ms": chosen["detector_ms"],
        "pipeline_classifier_ms": chosen["classifier_ms"],
        "pipeline_faces_per_frame": chosen["faces_per_frame"],
        "pipeline_frames": len(frames),
        "pipeline_frame_size": "640x480",
        "pipeline_core": int(core),
        "pipeline_target_fps": TARGET_FPS,
    }
    for row in rows[1:]:
        values[f"pipeline_fps_one_core_with_{row['detector']}"] = row["fps"]
    for row in rows:
        recall = saved.get(f"detector_recall_with_mask_{row['detector']}")
        if recall is not None:
            values[f"pipeline_recall_with_mask_with_{row['detector']}"] = float(recall)
    run.save(values)
    return {"values": values, "rows": rows}


def story_pipeline(values: dict) -> str:
    """Sentences on the pipeline's frame rate against the 10 frames/s target."""
    if not values.get("pipeline_run"):
        return (
            "The pipeline was not timed: the shipped model's int8 export is missing "
            "(the TF Lite section writes it)."
        )
    fps = values["pipeline_fps_one_core"]
    detector_ms, classifier_ms = values["pipeline_detector_ms"], values["pipeline_classifier_ms"]
    text = (
        f"On one CPU core, detecting with **{values['pipeline_detector']}**, cropping and "
        f"classifying with the int8 model runs at **{present.number(fps)} frames/s** on "
        f"{values['pipeline_frame_size']} scenes ({present.number(values['pipeline_faces_per_frame'])} "
        f"faces per frame): {present.number(detector_ms)} ms of detection and "
        f"{present.number(classifier_ms)} ms of classification in the median frame "
        f"({present.number(values['pipeline_fps_one_core_whole_sequence'])} frames/s over the "
        "whole sequence, pauses included)."
    )
    if fps >= values["pipeline_target_fps"]:
        text += f" That meets the {present.number(values['pipeline_target_fps'])} frames/s target."
    else:
        share = detector_ms / (detector_ms + classifier_ms)
        text += (
            f" That misses the {present.number(values['pipeline_target_fps'])} frames/s target by "
            f"{present.number(values['pipeline_target_fps'] - fps)} frames/s; the detector takes "
            f"{present.percent(share, 0)} of the time."
        )
    faster = {
        k.removeprefix("pipeline_fps_one_core_with_"): v
        for k, v in values.items()
        if k.startswith("pipeline_fps_one_core_with_")
    }
    if faster:
        others = []
        for name, rate in sorted(faster.items(), key=lambda item: item[1]):
            recall = values.get(f"pipeline_recall_with_mask_with_{name}")
            others.append(
                f"{name} {present.number(rate)} frames/s"
                + (f", finding {present.percent(recall)} of the masked faces" if recall else "")
            )
        text += " With another detector: " + "; ".join(others) + "."
    text += (
        " Timings come from the build machine, which may be shared with other work; they are an "
        "upper bound on the latency of an idle core."
    )
    return text
