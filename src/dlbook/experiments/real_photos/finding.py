"""(b) Finding faces on the validation photos: finer tiles for the off-the-shelf detector, against
the book's own detector.

The shipped detector is a union of MediaPipe's BlazeFace models run over overlapping square tiles
(the short-range model on tiles of 0.45 of the photo's shorter side, the full-range one on tiles
of 0.6). BlazeFace resizes whatever it is given to its own input (128 or 192 px), so scaling the
whole photo up changes nothing once it is cut into tiles by a share of its side: what shows a
small face larger is a smaller tile. Smaller tiles alone cut large faces apart, so each variant
keeps the shipped union and adds the short-range model on a finer grid of tiles (the union keeps
one box a face), at the cost of more tiles per photo. Every
box is reshaped to the annotations' shape fitted on the train photos (``scene_classifier``), as
(a)+(d) does, so the comparison is of finding, not of box shape. Only validation photos are
used: nothing here is chosen on, or scored on, the test photos.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dlbook.core import cache
from dlbook.experiments.real_photos.study import Scenes, truth_of
from dlbook.facemask import detect
from dlbook.facemask import scene_pipeline as pipe
from dlbook.facemask.detect.own import targets
from dlbook.methods import detection_metrics as dm

SHIPPED_SHARE = 0.45
FINDING_VERSION = 2
"""Bump when the way the variants find faces changes, so cached boxes are not reused."""


def tiles_key(share: float) -> str:
    """The results-key part of a tile share: ``shipped`` for 0.45, ``tiles_03`` for 0.3."""
    return "shipped" if share == SHIPPED_SHARE else f"tiles_{share:g}".replace(".", "")


def tiled_union(share: float):
    """The shipped detector, plus (for ``share`` other than ``SHIPPED_SHARE``) the short-range
    model on tiles of ``share`` of the photo's shorter side, ranked after the shipped members."""
    shipped = detect.load_detector(detect.DEFAULT_DETECTOR, num_threads=1)
    if share == SHIPPED_SHARE:
        return shipped
    finer = detect.Tiled("finer", detect.load_detector("blazeface_short", num_threads=1), share)
    return detect.Combined(f"shipped + tiles {share:g}", [*shipped.members, finer])


def boxes_with_tiles(photos, share: float) -> tuple[list, np.ndarray]:
    """Each photo's boxes (x0, y0, x1, y1, score) with tiles of ``share``, and the milliseconds
    each photo took when first computed (cached by the share, thresholds and photo contents)."""
    key = cache.digest(
        "scene-finding",
        FINDING_VERSION,
        share,
        detect.DEFAULT_MIN_SCORES,
        [cache.file_sha256(p.image_path) for p in photos],
    )
    return pipe.cached_detections(
        photos, lambda: tiled_union(share), "scene_finding", key, f"tiles-{share:g}", timed=True
    )


def finding_row(truth, found) -> dict:
    """Face recall (any class, IoU 0.5) overall, by width and >= 32 px, and box precision."""
    matched, widths = dm.matched_faces(truth, found)
    by_width = dm.recall_by_width(truth, found)["recall"]
    return {
        "boxes_per_photo": float(np.mean([len(b) for b, _, _ in found])),
        "box_precision": dm.box_precision(truth, found),
        "recall": float(matched.mean()) if len(matched) else float("nan"),
        "recall_ge32": float(matched[widths >= 32].mean()) if (widths >= 32).any() else np.nan,
        **{f"recall_{name}": value for name, value in by_width.items()},
    }


def _as_found(per_photo: list, shape, photos) -> list:
    out = []
    for (boxes, scores), photo in zip(per_photo, photos, strict=True):
        reshaped = shape.apply(boxes, (photo.width, photo.height))
        out.append((reshaped, np.zeros(len(boxes), np.int64), scores))
    return out


def finding_faces(run, sc: Scenes, imp: dict, own: dict) -> pd.DataFrame:
    """Recall and precision of each tile share and of the own detector on the validation photos.

    Saves ``finding_<key>_*`` for each row (``tiles_key`` of each share; ``own_detector`` cut at
    its validation threshold; ``own_detector_floor``: every box scoring at least
    ``own_head_min_score``, what the real-photo head judges) and ``finding_head_floor``.
    Returns the table the page shows, one row per way of finding faces.
    """
    photos, truth = sc.parts["val"], truth_of(sc.parts["val"])
    shape = imp["box"]["shape"]
    rows, labels = {}, {}
    for share in run.settings["tile_shares"]:
        per_photo, ms = boxes_with_tiles(photos, share)
        key = tiles_key(share)
        labels[key] = "shipped (tiles 0.45)" if key == "shipped" else f"+ tiles {share:g}"
        rows[key] = {**finding_row(truth, _as_found(per_photo, shape, photos)),
                     "ms_per_photo": float(np.median(ms))}  # fmt: skip
    det, floor = own["det"], run.settings["own_head_min_score"]
    for key, cut, label in (
        ("own_detector", det["threshold"], "own, at its cut"),
        ("own_detector_floor", floor, f"own, >= {floor:g} (head judges)"),
    ):
        kept = targets.keep_above(det["found"]["val"], cut)
        rows[key], labels[key] = {**finding_row(truth, kept), "ms_per_photo": np.nan}, label
    values = {f"finding_{key}_{k}": v for key, row in rows.items() for k, v in row.items()}
    values["finding_tile_shares"] = ",".join(f"{s:g}" for s in run.settings["tile_shares"])
    values["finding_head_floor"] = floor
    run.save(values)
    return pd.DataFrame(rows).T.rename(index=labels)
