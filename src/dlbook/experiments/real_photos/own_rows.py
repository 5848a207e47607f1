"""(b) The book's own detector in the chapter, and the pipeline a user gets, chosen on validation.

Two rows come from the own detector (``own_detector.train_and_score``): its boxes with its own
classes, and its boxes judged by the real-photo head that (a)+(d) chose (the detector finds
faces well, the head tells the rarer classes apart better). Which score the second row ranks by
(the head's class probability, or that times the detector's score) is chosen on the validation
photos. So is the pipeline a user gets: the one of (a)+(d), the own detector, or the own
detector's boxes with the head, whichever has the highest validation mAP@0.5. Each row is scored
on the test photos once.
"""

from __future__ import annotations

import numpy as np

from dlbook.experiments.real_photos import own_detector as od
from dlbook.experiments.real_photos.improved import classify_boxes
from dlbook.experiments.real_photos.study import (
    CLASSES,
    Scenes,
    _flat,
    _recall_ge,
    score_row,
    truth_of,
)
from dlbook.facemask.detect.own import targets
from dlbook.methods import detection_metrics as dm

PIPELINES = ("improved", "own", "own_head")
"""The pipelines validation chooses among (their results prefixes)."""


def _val_map50(truth, found) -> float:
    value = dm.average_precision(truth, found, CLASSES)["map50"]
    return float(np.nan_to_num(value, nan=-1.0))


def head_on_own_boxes(run, photos, found, model, use_det_score: bool) -> list:
    """The own detector's boxes scoring at least ``own_head_min_score``, judged by ``model``."""
    kept = targets.keep_above(found, run.settings["own_head_min_score"])
    boxes = [b for b, _, _ in kept]
    scores = [s for _, _, s in kept]
    return classify_boxes(run, photos, boxes, scores, model, use_det_score, reject=False)


def chosen_pipeline(val_map50: dict[str, float]) -> str:
    """The pipeline with the highest validation mAP@0.5 (ties: the earlier in ``PIPELINES``)."""
    return max(PIPELINES, key=lambda name: (val_map50[name], -PIPELINES.index(name)))


def own_pipeline(run, sc: Scenes, imp: dict) -> dict:
    """Train the own detector, choose on validation, score on test; saves ``own_*``.

    Parameters
    ----------
    imp : what ``improved.improved`` returned (its chosen head and validation mAP@0.5).

    Returns
    -------
    dict: ``rows`` {"own", "own_head"} (scored test rows), ``det`` (the detector's training
    record), ``val`` {pipeline: validation mAP@0.5}, ``chosen`` (the pipeline a user gets),
    ``cut`` (its score cut, None for "improved"), ``use_det`` (whether the head's score is
    multiplied by the detector's).
    """
    det = od.train_and_score(sc.parts, run.settings["own_detector"], run.seed)
    model = imp["fitted"][imp["best"]["head"]]["model"]
    truth_val, truth_test = truth_of(sc.parts["val"]), truth_of(sc.parts["test"])
    head_val = {
        use_det: head_on_own_boxes(run, sc.parts["val"], det["found"]["val"], model, use_det)
        for use_det in (False, True)
    }
    tried = {use_det: _val_map50(truth_val, found) for use_det, found in head_val.items()}
    use_det = max(tried, key=lambda k: (tried[k], k))
    val = {
        "improved": float(np.nan_to_num(imp["best"]["val_map50"], nan=-1.0)),
        "own": _val_map50(truth_val, det["found"]["val"]),
        "own_head": tried[use_det],
    }
    chosen = chosen_pipeline(val)
    found_val = {
        "own": det["found"]["val"],
        "own_head": head_val[use_det],
    }
    # the boxes a user sees: the chosen pipeline's cut at the score with the best F1 on validation
    cut = None
    if chosen in found_val:
        f1 = od.f1_by_threshold(
            truth_val, found_val[chosen], run.settings["own_detector"]["thresholds"]
        )
        cut = max(f1, key=lambda t: f1[t]["f1"])
    found = {
        "own": det["found"]["test"],
        "own_head": head_on_own_boxes(run, sc.parts["test"], det["found"]["test"], model, use_det),
    }
    rows = {}
    for name, boxes in found.items():
        rows[name] = score_row(truth_test, boxes, run.settings["n_boot"], run.seed)
        rows[name]["recall_ge32"] = _recall_ge(truth_test, boxes, 32)
    values = {
        "own_val_map50": val["own"],
        "own_head_val_map50": val["own_head"],
        "own_head_score": "class x detector" if use_det else "class",
        "own_head_min_score": run.settings["own_head_min_score"],
        "own_threshold": det["threshold"],
        "own_input_size": det["input_size"],
        "own_max_iou": det["max_iou"],
        "own_epochs": det["epochs"],
        "own_seconds_features": det["seconds"]["features"],
        "own_seconds_training": det["seconds"]["training"],
        "own_seconds_test": det["seconds"]["test"],
        "own_train_photos": len(sc.parts["train"]),
        "pipeline_chosen": chosen,
        "pipeline_chosen_val_map50": val[chosen],
        "pipeline_chosen_cut": cut,
    }
    kept = targets.keep_above(det["found"]["test"], det["threshold"])
    values["own_at_threshold_box_precision"] = dm.box_precision(truth_test, kept)
    values["own_at_threshold_recall"] = float(dm.matched_faces(truth_test, kept)[0].mean())
    for name, row in rows.items():
        values.update(_flat(name, row))
    run.save(values)
    return {
        "rows": rows,
        "det": det,
        "val": val,
        "chosen": chosen,
        "cut": cut,
        "use_det": use_det,
    }


def chosen_found(imp: dict, own: dict) -> list:
    """The test photos' boxes of the pipeline chosen on validation, as a user gets them (the own
    detector's cut at the score validation chose), for the gallery."""
    if own["chosen"] == "improved":
        return imp["rows"]["improved"]["found"]
    return targets.keep_above(own["rows"][own["chosen"]]["found"], own["cut"])
