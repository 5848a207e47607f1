"""The pipeline made for real photos, every choice made on the validation photos.

(a) a classifier of real faces from the train photos: a class-weighted logistic head on
EfficientNet-Lite0 features with ``mask_weared_incorrect`` as a third class; (d) a fourth class,
"not a face", learnt from boxes of the train photos that hold no face, and detector boxes
reshaped to the annotations' shape. Which head, which boxes and which score are chosen by mAP@0.5
on the validation photos; the chosen pipeline is scored once on the test photos.
"""

from __future__ import annotations

import numpy as np

from dlbook.experiments.real_photos.study import (
    CLASSES,
    Scenes,
    _flat,
    _recall_ge,
    confusion,
    detections,
    score_row,
    truth_of,
)
from dlbook.facemask import features
from dlbook.facemask import scene_classifier as head
from dlbook.facemask import scene_pipeline as pipe
from dlbook.methods import detection_metrics as dm


def _features(run, crops: np.ndarray) -> np.ndarray:
    return features.extract(run.settings["backbone"], crops, progress=False)


def head_probs(model, feats: np.ndarray) -> np.ndarray:
    """(K, 4) probabilities over ``SCENE_LABELS``, zero for a class the head never saw."""
    out = np.zeros((len(feats), len(head.SCENE_LABELS)))
    if len(feats):
        out[:, model.classes_] = model.predict_proba(feats)
    return out


def training_crops(run, sc: Scenes, part: str) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of a part's annotated faces and of its background boxes (label 3)."""
    size = run.settings["image_size"]
    photos = sc.parts[part]
    faces = pipe.face_crops(photos, size)
    rng = np.random.default_rng(run.seed + {"train": 0, "val": 1, "test": 2}[part])
    background = head.background_boxes(
        photos, detections(sc, part), run.settings["background_per_photo"], rng
    )
    crops = np.concatenate([faces.images, pipe.crops_of(photos, background, size)])
    labels = np.concatenate(
        [faces.labels, np.full(sum(len(b) for b in background), len(CLASSES))]
    ).astype(np.int64)
    return _features(run, crops), labels


def heads(run, sc: Scenes) -> dict:
    """The three-class head (faces only) and the four-class head (faces + not a face)."""
    train_x, train_y = training_crops(run, sc, "train")
    val_x, val_y = training_crops(run, sc, "val")
    fitted = {}
    for name, keep_train, keep_val in (
        ("three_class", train_y < len(CLASSES), val_y < len(CLASSES)),
        ("four_class", np.ones(len(train_y), bool), np.ones(len(val_y), bool)),
    ):
        model, strength, tried = head.fit_scene_head(
            train_x[keep_train],
            train_y[keep_train],
            val_x[keep_val],
            val_y[keep_val],
            tuple(run.settings["strengths"]),
            run.seed,
        )
        fitted[name] = {"model": model, "C": strength, "tried": tried}
    fitted["weights"] = head.class_weights(train_y)
    fitted["train_background"] = int((train_y == len(CLASSES)).sum())
    return fitted


def classify_boxes(run, photos, boxes, det_scores, model, use_det_score: bool, reject: bool):
    """Boxes of ``photos`` classified by ``model``: (boxes, labels, scores) per photo.

    ``boxes`` and ``det_scores``: per photo, (n, 4) and (n,). ``use_det_score`` multiplies the
    class probability by the detector's score; ``reject`` drops the boxes the head calls "not a
    face" (their likeliest class).
    """
    crops = pipe.crops_of(photos, boxes, run.settings["image_size"])
    probs = head_probs(model, _features(run, crops))
    labels, scores = head.head_verdicts(probs)
    if use_det_score:
        scores = scores * np.concatenate(list(det_scores) + [np.zeros(0)])
    keep = probs.argmax(1) != len(CLASSES) if reject else np.ones(len(probs), bool)
    counts = [len(b) for b in boxes]
    return [
        (b[k], lab[k], s[k])
        for b, lab, s, k in zip(
            boxes,
            pipe.split_by_photo(labels, counts),
            pipe.split_by_photo(scores, counts),
            pipe.split_by_photo(keep, counts),
            strict=True,
        )
    ]


def pipeline_found(
    run, sc: Scenes, part: str, model, shape, use_det_score: bool, reject: bool = False
) -> list:
    """Detections of a part's photos, reshaped by ``shape``, classified by ``model``."""
    photos, dets = sc.parts[part], detections(sc, part)
    boxes = [shape.apply(b, (p.width, p.height)) for p, (b, _) in zip(photos, dets, strict=True)]
    return classify_boxes(run, photos, boxes, [s for _, s in dets], model, use_det_score, reject)


def choose_on_validation(run, sc: Scenes, fitted: dict) -> tuple[list[dict], dict]:
    """mAP@0.5 on the validation photos of every head x box shape x score; the best wins."""
    shape, pairs = head.fit_box_shape(sc.parts["train"], detections(sc, "train"))
    truth = truth_of(sc.parts["val"])
    shapes = {"detector boxes": head.BoxShape(), "boxes reshaped": shape}
    tried = []
    for head_name in ("three_class", "four_class"):
        for shape_name, box_shape in shapes.items():
            for use_det, reject in ((False, False), (True, False), (True, True)):
                if reject and head_name == "three_class":
                    continue
                found = pipeline_found(
                    run, sc, "val", fitted[head_name]["model"], box_shape, use_det, reject
                )
                tried.append(
                    {
                        "head": head_name,
                        "boxes": shape_name,
                        "score": "class x detector" if use_det else "class",
                        "not-a-face boxes": "dropped" if reject else "kept, ranked last",
                        "val_map50": dm.average_precision(truth, found, CLASSES)["map50"],
                        "shape": box_shape,
                        "use_det": use_det,
                        "reject": reject,
                    }
                )
    return tried, {"shape": shape, "pairs": pairs}


def improved(run, sc: Scenes) -> dict:
    """Fit on train, choose on validation, score on test; saves ``improved_*`` and ``head3_*``."""
    fitted = heads(run, sc)
    tried, box = choose_on_validation(run, sc, fitted)
    best = max(tried, key=lambda t: np.nan_to_num(t["val_map50"], nan=-1))
    best_three = max(
        (t for t in tried if t["head"] == "three_class" and t["boxes"] == "detector boxes"),
        key=lambda t: np.nan_to_num(t["val_map50"], nan=-1),
    )
    truth, rows = truth_of(sc.parts["test"]), {}
    for name, choice in (("head3", best_three), ("improved", best)):
        model = fitted[choice["head"]]["model"]
        found = pipeline_found(
            run, sc, "test", model, choice["shape"], choice["use_det"], choice["reject"]
        )
        row = score_row(truth, found, run.settings["n_boot"], run.seed)
        row["recall_ge32"] = _recall_ge(truth, found, 32)
        rows[name] = row
    faces = pipe.face_crops(sc.parts["test"], run.settings["image_size"])
    probs = head_probs(fitted[best["head"]]["model"], _features(run, faces.images))
    matrix = confusion(faces.labels, probs.argmax(1), len(CLASSES), len(head.SCENE_LABELS))
    values = {
        "improved_head": best["head"],
        "improved_boxes": best["boxes"],
        "improved_score": best["score"],
        "improved_rejects": best["reject"],
        "improved_val_map50": best["val_map50"],
        "head3_val_map50": best_three["val_map50"],
        "improved_C": fitted[best["head"]]["C"],
        "improved_weight_incorrect": fitted["weights"].get(2, 0),
        "improved_train_background_boxes": fitted["train_background"],
        "box_shape_pairs": box["pairs"],
        "box_shape_width": box["shape"].width,
        "box_shape_height": box["shape"].height,
        "box_shape_shift_y": box["shape"].shift_y,
        "improved_faces_accuracy": float(np.trace(matrix[:, :3]) / max(1, matrix.sum())),
    }
    recalls = matrix.diagonal() / np.maximum(1, matrix.sum(1))
    values.update({f"improved_faces_recall_{n}": r for n, r in zip(CLASSES, recalls, strict=True)})
    for name, row in rows.items():
        values.update(_flat(name, row))
    run.save(values)
    return {
        "rows": rows,
        "tried": tried,
        "best": best,
        "confusion": matrix,
        "fitted": fitted,
        "box": box,
    }
