"""The pipeline chosen on validation, shipped as the model ``predict --detect`` and
``evaluate-scenes`` run by default (``results/<profile>/models/mask_scenes/``).

``ship`` builds a ``facemask.scene_model.ScenePipeline`` from the chapter's choices, saves it,
loads it back from disk and runs the loaded copy on the first test photos: its boxes must be the
ones the chapter scored (same boxes, scores within float noise), so the file a user gets is the
pipeline the page measured.
"""

from __future__ import annotations

import numpy as np

from dlbook.experiments.real_photos.study import Scenes
from dlbook.facemask import scene_classifier as head
from dlbook.facemask import scene_model
from dlbook.facemask.data import decode_image
from dlbook.facemask.detect.geometry import box_iou
from dlbook.facemask.scene_pipeline import xyxy_to_xywh

SAME_BOX_IOU = 0.99
"""A shipped box matches the chapter's when their IoU is at least this."""


def pipeline_of(run, imp: dict, own: dict) -> scene_model.ScenePipeline:
    """The pipeline validation chose (``own["chosen"]``), with its heads and settings."""
    chosen, settings = own["chosen"], run.settings
    detector = settings["own_detector"]
    common = {
        "backbone": settings["backbone"],
        "crop_size": settings["image_size"],
        "chosen_on": {"pipeline": chosen, "val_map50": own["val"][chosen]},
    }
    if chosen == "improved":
        best = imp["best"]
        shape = best["shape"]
        return scene_model.ScenePipeline(
            "blazeface",
            "head",
            cut=0.0,
            use_det_score=bool(best["use_det"]),
            reject=bool(best["reject"]),
            shape=(shape.width, shape.height, shape.shift_x, shape.shift_y),
            class_head=_linear(imp["fitted"][best["head"]]["model"]),
            **common,
        )
    judged = chosen == "own_head"
    return scene_model.ScenePipeline(
        "own",
        "head" if judged else "own",
        cut=float(own["cut"]),
        input_size=int(own["det"]["input_size"]),
        detector_min_score=settings["own_head_min_score"] if judged else detector["min_score"],
        max_boxes=detector["max_boxes"],
        max_iou=float(own["det"]["max_iou"]),
        use_det_score=bool(own["use_det"]) if judged else False,
        detector_head=own["det"]["head"],
        class_head=_linear(imp["fitted"][imp["best"]["head"]]["model"]) if judged else None,
        detector_backbone=detector["backbone"],
        **common,
    )


def _linear(model) -> scene_model.LinearHead:
    return scene_model.LinearHead.from_estimator(model, len(head.SCENE_LABELS))


def chapter_found(imp: dict, own: dict) -> list:
    """The chosen pipeline's test boxes as the chapter scored them (every box, before the cut)."""
    if own["chosen"] == "improved":
        return imp["rows"]["improved"]["found"]
    return own["rows"][own["chosen"]]["found"]


def agreement(expected: list, got: list) -> dict:
    """How far the shipped pipeline's boxes are from the chapter's, photo by photo.

    Parameters
    ----------
    expected, got : per photo (boxes (m, 4) x0, y0, x1, y1, labels (m,), scores (m,)).

    Returns
    -------
    dict: ``boxes`` (the chapter's count), ``matched`` (share of them with a shipped box of the
    same class at IoU >= ``SAME_BOX_IOU``), ``extra`` (shipped boxes beyond the chapter's count),
    ``max_score_difference`` (over matched pairs).
    """
    total, matched, extra, worst = 0, 0, 0, 0.0
    for (boxes, labels, scores), (g_boxes, g_labels, g_scores) in zip(expected, got, strict=True):
        total += len(boxes)
        extra += max(0, len(g_boxes) - len(boxes))
        if not len(boxes) or not len(g_boxes):
            continue
        iou = box_iou(xyxy_to_xywh(np.asarray(boxes)), xyxy_to_xywh(np.asarray(g_boxes)))
        same = (iou >= SAME_BOX_IOU) & (np.asarray(labels)[:, None] == np.asarray(g_labels)[None])
        for k in range(len(boxes)):
            partners = np.flatnonzero(same[k])
            if len(partners):
                matched += 1
                gap = np.abs(np.asarray(g_scores)[partners] - scores[k]).min()
                worst = max(worst, float(gap))
    return {
        "boxes": total,
        "matched": matched / total if total else float("nan"),
        "extra": extra,
        "max_score_difference": worst,
    }


def ship(run, sc: Scenes, imp: dict, own: dict) -> dict:
    """Save the chosen pipeline, reload it and check it on ``ship_check_photos`` test photos.

    Saves ``shipped_pipeline`` (its boxes and judge), ``shipped_cut``, ``shipped_check_*``.
    Returns the reloaded ``ScenePipeline`` under ``"pipeline"`` and the saved values.
    """
    folder = sc.models_dir / scene_model.FOLDER
    scene_model.save(pipeline_of(run, imp, own), folder)
    shipped = scene_model.load(folder)
    count = run.settings["ship_check_photos"]
    photos = sc.parts["test"][:count]
    got = [shipped.find(decode_image(p.image_path, None)) for p in photos]
    check = agreement(chapter_found(imp, own)[:count], got)
    values = {
        "shipped_pipeline": f"{shipped.boxes} boxes, judged by {shipped.judge}",
        "shipped_pipeline_chosen": own["chosen"],
        "shipped_cut": shipped.cut,
        "shipped_check_photos": len(photos),
        **{f"shipped_check_{k}": v for k, v in check.items()},
    }
    run.save(values)
    return {"pipeline": shipped, **values}
