"""Chapter 4b's tables and sentences, built from the numbers the study computed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dlbook.book import present
from dlbook.experiments.real_photos.finding import tiles_key
from dlbook.experiments.real_photos.study import CLASSES
from dlbook.methods import detection_metrics as dm

PUBLISHED = (
    {
        "row": "Modified YOLOv5, trained on the 853 photos (published; its own split)",
        "name": "a modified YOLOv5",
        "map50": 0.848,
        "ap50_with_mask": None,
    },
    {
        "row": "YOLOv4, trained on the 853 photos (published; its own split)",
        "name": "YOLOv4",
        "map50": 0.736,
        "ap50_with_mask": 0.901,
    },
)
"""Published results on the full Kaggle set (853 photos, of which ours are 581): a bar to aim
at, not a paired comparison, since the photos and splits differ."""

TARGETS = {"map50": 0.85, "ap50_with_mask": 0.92, "recall_ge32": 0.95}
"""The issue's targets on the test photos."""

ROW_NAMES = {
    "baseline/fit_used": "Today's pipeline: tiled BlazeFace, shipped classifier, fit model",
    "baseline/fit_ignored": "Today's pipeline, fit column ignored",
    "improved/head3": "(a) three-class head on real faces, detector boxes",
    "improved/improved": "(a)+(d) chosen on validation",
    "own/own": "(b) the book's own detector, its own classes",
    "own/own_head": "(b) the own detector's boxes, judged by the (a)+(d) head",
}


def _rows(base: dict, imp: dict | None, own: dict | None = None) -> dict:
    rows = {f"baseline/{k}": v for k, v in base["rows"].items()}
    for name, study in (("improved", imp), ("own", own)):
        if study is not None:
            rows.update({f"{name}/{k}": v for k, v in study["rows"].items()})
    return rows


SHOWN = {
    "baseline/fit_ignored": "today, fit ignored",
    "baseline/fit_used": "today, fit used",
    "improved/improved": "(a)+(d)",
    "own/own": "(b) own",
    "own/own_head": "(b) + head",
}


def shown_rows(base: dict, imp: dict | None = None, own: dict | None = None) -> dict:
    """The rows the figures draw, ``{short name: scored row}``."""
    rows = _rows(base, imp, own)
    return {name: rows[key] for key, name in SHOWN.items() if key in rows}


def rows_table(base: dict, imp: dict | None = None, own: dict | None = None):
    """Our rows on the test photos beside the published ones."""
    records = []
    for key, row in _rows(base, imp, own).items():
        low, high = row["intervals"]["map50"]
        records.append(
            {
                "pipeline": ROW_NAMES[key],
                "mAP@0.5": row["map50"],
                "95 % interval": present.interval(low, high, as_percent=False, decimals=3),
                **{f"AP@0.5 {name}": row["ap50"][name] for name in CLASSES},
                "mAP@[.5:.95]": row["map"],
                "faces >= 32 px found": row["recall_ge32"],
                "boxes that are faces": row["box_precision"],
            }
        )
    for published in PUBLISHED:
        records.append(
            {
                "pipeline": published["row"],
                "mAP@0.5": published["map50"],
                "AP@0.5 with_mask": published["ap50_with_mask"],
            }
        )
    frame = pd.DataFrame.from_records(records)
    return present.show(
        frame,
        percent_columns=["faces >= 32 px found", "boxes that are faces"],
        missing="not published",
    )


def recall_table(base: dict, imp: dict | None = None, own: dict | None = None):
    """Share of faces found (any class, IoU 0.5) by face width, per pipeline."""
    rows = _rows(base, imp, own)
    first = next(iter(rows.values()))
    records = [
        {"face width (px)": name, "faces": first["faces_by_width"][name]}
        | {ROW_NAMES[k]: row["recall_by_width"][name] for k, row in rows.items()}
        for name in dm.width_labels()
    ]
    return present.show(
        pd.DataFrame.from_records(records), percent_columns=[ROW_NAMES[k] for k in rows]
    )


def confusion_table(matrix: np.ndarray, columns):
    """A confusion matrix with the annotated class per row and the predicted class per column."""
    frame = pd.DataFrame(np.asarray(matrix), columns=[f"said {c}" for c in columns])
    frame.insert(0, "annotated", list(CLASSES))
    return present.show(frame)


def finding_table(table: pd.DataFrame):
    """``finding.finding_faces``' table: one row per way of finding faces (validation photos);
    recall by width beyond the smallest faces is left to the recall table below."""
    names = {"boxes_per_photo": "boxes a photo", "box_precision": "box precision",
             "recall": "recall", "recall_ge32": "recall >=32", "recall_<16": "recall <16",
             "ms_per_photo": "ms a photo"}  # fmt: skip
    frame = table[list(names)].rename(columns=names).reset_index(names="finding faces")
    return present.show(
        frame, percent_columns=["box precision", "recall", "recall >=32", "recall <16"]
    )


def _found_share(values: dict, key: str) -> str:
    return (
        f"{present.percent(values[f'finding_{key}_recall_ge32'])} of the faces 32 px and wider "
        f"and {present.percent(values[f'finding_{key}_recall'])} of all faces, "
        f"{present.percent(values[f'finding_{key}_box_precision'])} of its boxes on a face"
    )


def story_finding(values: dict) -> str:
    """Whether finer tiles close the gap to the own detector, on the validation photos."""
    lines = [
        f"On the {values['val_photos']} validation photos the shipped tiles find "
        f"{_found_share(values, 'shipped')} "
        f"({present.number(values['finding_shipped_ms_per_photo'])} ms a photo)."
    ]
    for share in values["finding_tile_shares"].split(","):
        key = tiles_key(float(share))
        if key != "shipped":
            lines.append(
                f"Adding tiles of {share}: {_found_share(values, key)} "
                f"({present.number(values[f'finding_{key}_ms_per_photo'])} ms)."
            )
    lines.append(
        f"The own detector, cut where validation chose: {_found_share(values, 'own_detector')}; "
        f"its boxes scoring at least {present.number(values['finding_head_floor'])}, which the "
        f"real-photo head judges: {_found_share(values, 'own_detector_floor')}."
    )
    return " ".join(lines)


def validation_table(imp: dict):
    """Every pipeline variant tried on the validation photos and its mAP@0.5."""
    frame = pd.DataFrame.from_records(
        [
            {k: t[k] for k in ("head", "boxes", "score", "not-a-face boxes", "val_map50")}
            for t in imp["tried"]
        ]
    )
    return present.show(frame.rename(columns={"val_map50": "validation mAP@0.5"}))


def story_data(values: dict) -> str:
    """How the photos were split."""
    parts = ", ".join(
        f"{part} {values[f'{part}_photos']} photos "
        f"({sum(values[f'{part}_faces_{c}'] for c in CLASSES)} faces, "
        f"{values[f'{part}_faces_mask_weared_incorrect']} worn wrong)"
        for part in ("train", "val", "test")
    )
    return (
        f"The set holds {values['scenes_photos']} photos and {values['scenes_faces']} faces. "
        f"This run uses {parts}."
    )


def story_baseline(values: dict) -> str:
    """The baseline in words."""
    ignored = (
        f"Today's pipeline reaches mAP@0.5 {present.number(values['baseline_fit_ignored_map50'])} "
        f"on the test photos when the fit column is ignored "
        f"(AP@0.5 {present.number(values['baseline_fit_ignored_ap50_with_mask'])} for "
        f"`with_mask`); it finds "
        f"{present.percent(values['baseline_fit_ignored_recall_ge32'])} of the faces 32 px and "
        f"wider and {present.percent(values['baseline_fit_ignored_recall_lt16'])} of those under "
        f"16 px, and {present.percent(values['baseline_fit_ignored_box_precision'])} of its boxes "
        "are faces."
    )
    if not values.get("baseline_fit_model_found"):
        return (
            ignored
            + " The fit model (chapter 7) is not in this results folder: that row is not run."
        )
    return (
        ignored
        + f" With the fit column, mAP@0.5 is {present.number(values['baseline_fit_used_map50'])} "
        f"and `with_mask` AP@0.5 {present.number(values['baseline_fit_used_ap50_with_mask'])}: "
        "every masked face the fit model calls badly worn becomes `mask_weared_incorrect`."
    )


def story_faces(values: dict) -> str:
    """The shipped classifier on annotated faces: the external test."""
    return (
        f"On the {values['external_test_n']} annotated test faces at least "
        f"{values['external_test_min_width']} px wide, the shipped classifier says masked or not "
        f"correctly for {present.percent(values['external_test_accuracy'])} "
        f"({present.interval(values['external_test_accuracy_ci_low'], values['external_test_accuracy_ci_high'])}, "
        "bootstrap over faces; `mask_weared_incorrect` counted as masked); over faces of every "
        f"width, {present.percent(values['external_test_all_widths_accuracy'])}. It calls "
        f"{present.percent(values['shipped_faces_without_mask_called_masked'])} of the unmasked "
        "faces masked: those errors are the classifier's, not the detector's."
    )


def story_improved(values: dict) -> str:
    """What the real-photo pipeline is and what it reaches."""
    return (
        f"The head chosen on validation is the {values['improved_head'].replace('_', '-')} one, "
        f'with {values["improved_boxes"]}, score "{values["improved_score"]}" and the boxes '
        f"it calls not a face {'dropped' if values['improved_rejects'] else 'kept but ranked last'} "
        f"(validation mAP@0.5 {present.number(values['improved_val_map50'])}). Class imbalance: "
        f"each `mask_weared_incorrect` face counts {values['improved_weight_incorrect']} times in "
        "the training loss (weights = largest class count over the class's count), and the "
        "head's strength is chosen by balanced accuracy, which the common class cannot dominate. "
        f'The "not a face" class learns from {values["improved_train_background_boxes"]} '
        "boxes of the train photos that hold no face (the detector's false alarms first). The "
        f"box shape, fitted on {values['box_shape_pairs']} detector boxes matched to faces, makes "
        f"a detector box {present.number(values['box_shape_width'])} times as wide and "
        f"{present.number(values['box_shape_height'])} times as tall. On the test photos: "
        f"mAP@0.5 {present.number(values['improved_map50'])} "
        f"({present.interval(values['improved_map50_ci_low'], values['improved_map50_ci_high'], as_percent=False, decimals=3)}), "
        f"`with_mask` AP@0.5 {present.number(values['improved_ap50_with_mask'])}, "
        f"`mask_weared_incorrect` AP@0.5 {present.number(values['improved_ap50_mask_weared_incorrect'])}; "
        f"{present.percent(values['improved_box_precision'])} of its boxes are faces."
    )


def story_expectations(values: dict, prefix: str | None = None) -> str:
    """What a user should expect at each face size from the pipeline chosen on validation
    (``prefix``; default: the saved ``pipeline_chosen``), and of the verdict once a face is found."""
    prefix = prefix or values.get("pipeline_chosen", "improved")
    names = {
        "lt16": "under 16 px",
        "16_32": "16-32 px",
        "32_64": "32-64 px",
        "ge64": "64 px and over",
    }
    found = ", ".join(
        f"{present.percent(values[f'{prefix}_recall_{key}'])} of faces {name}"
        for key, name in names.items()
    )
    verdicts = ", ".join(
        f"{present.percent(values[f'improved_faces_recall_{name}'])} of `{name}` faces"
        for name in CLASSES
    )
    return (
        f"A user should expect the pipeline chosen on validation ({PIPELINE_NAMES[prefix]}) to "
        f"find {found} (any class, IoU 0.5). Once a face "
        f"is boxed as annotated, the chosen head names the class of {verdicts} right "
        "(annotated test faces of every size)."
    )


PIPELINE_NAMES = {
    "improved": "(a)+(d), the tiled BlazeFace boxes judged by the real-photo head",
    "own": "(b), the book's own detector with its own classes",
    "own_head": "(b) with the head, the own detector's boxes judged by the real-photo head",
}


def story_own(values: dict) -> str:
    """(b): the own detector, what validation chose, and the pipeline a user gets."""
    if "own_map50" not in values:
        return "The own detector did not run in this build."
    chosen = values["pipeline_chosen"]
    return (
        f"The detector trained on {values['own_train_photos']} train photos at "
        f"{values['own_input_size']} px; validation kept the weights of epoch "
        f"{values['own_epochs']} (mAP@0.5 {present.number(values['own_val_map50'])} on the "
        f"validation photos){_suppression(values)}. Training took {present.number(values['own_seconds_training'])} s "
        f"after {present.number(values['own_seconds_features'])} s of caching backbone maps. On "
        f"the test photos it reaches mAP@0.5 {present.number(values['own_map50'])} and "
        f"`with_mask` AP {present.number(values['own_ap50_with_mask'])}, and finds "
        f"{present.percent(values['own_recall_ge32'])} of the faces 32 px and wider; cut at the "
        f"score validation chose ({present.number(values['own_threshold'])}), "
        f"{present.percent(values['own_at_threshold_box_precision'])} of its boxes are faces and "
        f"it finds {present.percent(values['own_at_threshold_recall'])} of all faces. Its boxes "
        f"judged by the real-photo head (ranked by {values['own_head_score']}, chosen on "
        f"validation) reach mAP@0.5 {present.number(values['own_head_map50'])}.\n\n"
        f"The pipeline with the highest validation mAP@0.5 "
        f"({present.number(values['pipeline_chosen_val_map50'])}) is {PIPELINE_NAMES[chosen]}: "
        "the targets below are read on it."
    )


def _suppression(values: dict) -> str:
    iou = values.get("own_max_iou")
    if iou is None or iou >= 1:
        return ", with no overlapping boxes suppressed (chosen on validation)"
    return (
        f", a box overlapping a better one by IoU above {present.number(iou)} suppressed (chosen "
        "on validation: a face larger than the train photos' faces can raise several peaks)"
    )


def story_targets(values: dict, prefix: str | None = None) -> str:
    """Each target of the issue, met or missed, by how much, for the pipeline chosen on
    validation (``prefix``; default: the saved ``pipeline_chosen``, else ``improved``)."""
    prefix = prefix or values.get("pipeline_chosen", "improved")
    lines = [f"On {PIPELINE_NAMES[prefix]}:"]
    for key, target in TARGETS.items():
        value = values.get(f"{prefix}_{key}")
        label = {
            "map50": "mAP@0.5",
            "ap50_with_mask": "`with_mask` AP@0.5",
            "recall_ge32": "recall of faces >= 32 px",
        }[key]
        if value is None:
            lines.append(f"- {label}: not measured in this run.")
            continue
        verdict = "met" if value >= target else f"missed by {present.number(target - value)}"
        if key == "ap50_with_mask" and value < target:
            verdict += (
                f"; its boxes reach only {present.percent(values[f'{prefix}_boxed_with_mask'])} "
                "of the `with_mask` faces at IoU 0.5, a ceiling on its recall"
            )
        lines.append(
            f"- {label}: {present.number(value)} against {present.number(target)}: {verdict}."
        )
    fps = values.get("real_photos_fps_one_core")
    if fps is None:
        lines.append("- 10 frames/s on one core at 640x480: not measured in this run.")
    else:
        target = values["real_photos_target_fps"]
        # four digits: a frame rate a hair under the target must not read as the target
        verdict = "met" if fps >= target else f"missed by {present.number(target - fps)} frames/s"
        lines.append(
            f"- {present.number(target)} frames/s on one core at 640x480: "
            f"{present.number(fps, 4)} ({present.number(values['real_photos_detector_ms'])} ms "
            f"finding faces, {present.number(values['real_photos_classifier_ms'])} ms judging "
            f"{present.number(values['real_photos_boxes_per_frame'])} boxes a frame, medians over "
            f"{values['real_photos_speed_frames']} test photos): {verdict}" + _timed_on(values)
        )
    return "\n".join(lines)


def _timed_on(values: dict) -> str:
    timed = values.get("real_photos_speed_pipeline")
    if timed is None:  # results of a build that timed (a)+(d) whatever was chosen
        return "; timed on (a)+(d)."
    return f"; timed on the shipped pipeline as a user runs it ({timed})."


def story_shipped(values: dict) -> str:
    """What ``predict --detect`` runs: the shipped pipeline, and its check against the page."""
    if "shipped_pipeline" not in values:
        return "No pipeline was shipped in this run."
    matched = values["shipped_check_matched"]
    return (
        f"The pipeline chosen on validation ({PIPELINE_NAMES[values['shipped_pipeline_chosen']]}) "
        f"ships as `models/mask_scenes/` in the results folder: the files `predict --detect` and "
        f"`evaluate-scenes` load by default ({values['shipped_pipeline']}; "
        + (
            f"a user gets the boxes scoring at least {present.number(values['shipped_cut'])}"
            if values["shipped_cut"] > 0
            else "a user gets every box it keeps"
        )
        + "). Loaded back from disk and "
        f"run on the first {values['shipped_check_photos']} test photos, it gives "
        f"{present.percent(matched)} of the {values['shipped_check_boxes']} boxes this page "
        f"scored there (same class, IoU >= 0.99), with scores within "
        f"{values['shipped_check_max_score_difference']:.1e}"
        + (
            f" and {values['shipped_check_extra']} boxes more."
            if values["shipped_check_extra"]
            else "."
        )
    )


def story_fit(values: dict) -> str:
    """(c): the two fit models on real masked faces."""
    new = (
        f"The fit head trained on {values['fit_maskedfacenet_images']} maskedfacenet faces "
        f"(balanced accuracy {present.percent(values['fit_maskedfacenet_heldout_balanced_accuracy'])} "
        "on its held-out quarter of synthetic masks) flags "
        f"{present.percent(values['fit_maskedfacenet_flags_incorrect'])} of the real "
        "`mask_weared_incorrect` faces of the test photos and "
        f"{present.percent(values['fit_maskedfacenet_flags_with_mask'])} of the real `with_mask` "
        f"ones by mistake ({values['fit_real_masked_faces']} annotated masked faces)."
    )
    if values.get("fit_today_flags_incorrect") is None:
        return new + " Today's fit model is not in this results folder: it is not compared."
    return new + (
        f" Today's fit model, trained on home-made masks, flags "
        f"{present.percent(values['fit_today_flags_incorrect'])} and "
        f"{present.percent(values['fit_today_flags_with_mask'])}: balanced accuracy "
        f"{present.percent(values['fit_today_balanced_accuracy'])} against "
        f"{present.percent(values['fit_maskedfacenet_balanced_accuracy'])}."
    )


def story_for_claims(values: dict) -> str:
    """The claims page's paragraph on real photos: the pipeline chosen on validation, on the
    test photos, beside the published detectors and the targets (empty results: not run)."""
    prefix = values.get("pipeline_chosen")
    if prefix is None or f"{prefix}_map50" not in values:
        return "The real-photo chapter has not run under this profile."
    interval = present.interval(
        values[f"{prefix}_map50_ci_low"], values[f"{prefix}_map50_ci_high"], as_percent=False,
        decimals=3,
    )  # fmt: skip
    published = " and ".join(f"{p['name']} {present.number(p['map50'])}" for p in PUBLISHED)
    text = (
        f"The dissertation's accuracy is on face crops. On {values['test_photos']} real crowd "
        f"photos no choice has seen (the test part of mask-scenes), every face found and judged "
        f"in three classes, the pipeline chosen on validation ({PIPELINE_NAMES[prefix]}) reaches "
        f"mAP@0.5 {present.number(values[f'{prefix}_map50'])} ({interval}) against the target "
        f"{present.number(TARGETS['map50'])}, `with_mask` AP "
        f"{present.number(values[f'{prefix}_ap50_with_mask'])} (target "
        f"{present.number(TARGETS['ap50_with_mask'])}) and finds "
        f"{present.percent(values[f'{prefix}_recall_ge32'])} of the faces 32 px and wider "
        f"(target {present.percent(TARGETS['recall_ge32'])}). Published detectors trained on "
        f"the full set of 853 photos, with splits of their own, report mAP@0.5 {published}."
    )
    if "baseline_fit_used_map50" in values:
        text += (
            f" Today's shipped pipeline reaches "
            f"{present.number(values['baseline_fit_used_map50'])} there."
        )
    return text
