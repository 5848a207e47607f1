"""Chapter 4b's own detector: trained on the train photos, chosen on validation, run on test.

``train_and_score(parts, settings, seed)`` caches the backbone maps of every photo at each
candidate input size, trains the head on the train photos (seeded initialisation and photo
order), scores the validation photos every ``eval_every`` epochs and keeps the weights of the
best validation mAP@0.5 (the epoch count is chosen there), keeps the input size whose best
validation mAP@0.5 is highest, picks the score threshold that maximises the F1 of boxes against
faces on validation, and only then decodes the test photos once. It returns the evaluator's
``found`` lists (every box above ``min_score``, since AP needs the whole ranking; the threshold
is what a user's boxes are cut at), the training history and the timings; the chapter scores
them with ``detection_metrics.scores``.

Why 512 px: the photos' long side is 400 px or less and a third of the faces are under 16 px
wide; scaled by 1.28 an 8 px face spans about 10 px, more than one stride-8 cell, so its centre
cell still sees most of it. Both 512 and 640 were trained and scored on validation when the
default was set; 640 was no better there and costs about half as much again, so the full profile
lists 512 only (``input_sizes`` may list several: the best on validation is kept).
"""

from __future__ import annotations

import time

import numpy as np
from PIL import Image

from dlbook.book import profiles
from dlbook.facemask.data import voc
from dlbook.facemask.detect.own import model as own
from dlbook.facemask.detect.own import targets
from dlbook.methods import detection_metrics as dm

CLASSES = voc.SCENE_CLASSES
PREPARE_CHUNK = 64  # photos letterboxed at once: bounds the memory held in pixels

DEFAULTS = {name: block["own_detector"] for name, block in profiles.REAL_PHOTOS.items()}
"""Settings per profile, from the ``own_detector`` entry of ``profiles.REAL_PHOTOS``.

``width``/``depth``: the head's channels and separable convolutions; ``dropout``,
``weight_decay``: its regularisation; ``schedule``: "constant" or "cosine" learning rate;
``class_balance``: power of the rare-class weight on face centres (0: none); ``average``: per-epoch
decay of the weight average validation scores (0: the current weights); ``min_score``,
``max_boxes``: what ``decode`` keeps; ``thresholds``: the score cuts tried on validation;
``max_ious``: the overlap suppressions tried on validation (1: none). The
full values are the ones validation preferred when they were set (a cosine schedule with
class-weighted centres and averaged weights scored lower there)."""


def truth_of(photos: list[voc.Photo]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The evaluator's ``truth``: (boxes, labels) per photo."""
    return [(p.boxes, p.labels) for p in photos]


def prepare(photos: list[voc.Photo], input_size: int, backbone: str) -> dict:
    """Letterboxed photos' backbone maps (cached), squared by padding; scales and sizes.

    Returns
    -------
    dict: ``maps`` [(N, S/8, S/8, c_8), (N, S/16, S/16, c_16)] float16 (S: ``input_size``
    rounded up to 16), ``scales`` (N,), ``sizes`` [(width, height)] * N.
    """
    cells = -(-input_size // own.MULTIPLE) * own.MULTIPLE
    maps, scales = [[], []], []
    for start in range(0, len(photos), PREPARE_CHUNK):
        chunk = photos[start : start + PREPARE_CHUNK]
        boxed = [own.letterbox(Image.open(p.image_path), input_size) for p in chunk]
        scales += [scale for _, scale in boxed]
        per_stride = own.feature_maps(backbone, [image for image, _ in boxed])
        for k, (stride, part) in enumerate(zip(own.STRIDES, per_stride, strict=True)):
            maps[k].append(own.pad_maps(part, cells // stride))
    return {
        "maps": [np.concatenate(m) for m in maps],
        "scales": np.array(scales),
        "sizes": [(p.width, p.height) for p in photos],
    }


def found_of(head, prepared: dict, settings: dict, max_iou: float = 1.0) -> list:
    """Decoded boxes of prepared photos, in the evaluator's ``found`` format (overlaps above
    ``max_iou`` suppressed)."""
    predicted = own.predict_maps(head, prepared["maps"])
    return own.found_boxes(
        predicted,
        prepared["scales"],
        prepared["sizes"],
        own.STRIDES[0],
        settings["min_score"],
        settings["max_boxes"],
        max_iou,
    )


def train_at_size(parts: dict, prepared: dict, settings: dict, input_size: int, seed: int) -> dict:
    """Train a fresh head on the train photos; keep the weights of the best validation mAP@0.5.

    Returns
    -------
    dict: ``head`` (best weights restored), ``epochs`` (chosen), ``val_map50``, ``history``
    (per epoch: loss, focal, box, and val_map50 where scored), ``seconds``.
    """
    import keras

    train = prepared["train"]
    boxes = [(p.boxes * s, p.labels) for p, s in zip(parts["train"], train["scales"], strict=True)]
    grid = train["maps"][0].shape[1:3]
    target = targets.encode_many(boxes, grid, own.STRIDES[0], len(CLASSES))
    keras.utils.set_random_seed(seed)
    channels = {
        own.STRIDES[0]: train["maps"][0].shape[-1],
        own.STRIDES[1]: train["maps"][1].shape[-1],
    }
    head = own.build_head(
        channels, len(CLASSES), settings["width"], settings["depth"], settings["dropout"]
    )
    steps = settings["epochs"] * -(-len(parts["train"]) // settings["batch"])
    rate = settings["learning_rate"]
    if settings["schedule"] == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(rate, steps)
    optimizer = keras.optimizers.AdamW(rate, settings["weight_decay"])
    weights = own.class_weights(
        np.concatenate([p.labels for p in parts["train"]]), len(CLASSES), settings["class_balance"]
    )
    step = own.make_train_step(head, optimizer, settings["size_weight"], weights)
    rng = np.random.default_rng(seed)
    truth_val = truth_of(parts["val"])
    history, best, average = [], (-1.0, 0, None), None
    start = time.perf_counter()
    for epoch in range(1, settings["epochs"] + 1):
        order = rng.permutation(len(parts["train"]))
        row = {
            "epoch": epoch,
            **own.train_epoch(step, train["maps"], target, order, settings["batch"]),
        }
        current = head.get_weights()
        average = own.averaged(average, current, settings["average"])
        if epoch % settings["eval_every"] == 0 or epoch == settings["epochs"]:
            head.set_weights(average)  # validation scores the weights averaged over epochs
            found = found_of(head, prepared["val"], settings)
            row["val_map50"] = dm.average_precision(truth_val, found, CLASSES)["map50"]
            if row["val_map50"] > best[0]:
                best = (row["val_map50"], epoch, average)
            head.set_weights(current)
        history.append(row)
    head.set_weights(best[2])
    return {
        "head": head,
        "epochs": best[1],
        "val_map50": best[0],
        "history": history,
        "seconds": time.perf_counter() - start,
        "input_size": input_size,
    }


def f1_by_threshold(truth, found, thresholds) -> dict[float, dict]:
    """Box precision, face recall (any class, IoU 0.5) and their F1 at each score threshold."""
    rows = {}
    for threshold in thresholds:
        kept = targets.keep_above(found, threshold)
        precision = dm.box_precision(truth, kept)
        recall = float(dm.matched_faces(truth, kept)[0].mean())
        precision = 0.0 if np.isnan(precision) else precision
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows[float(threshold)] = {"precision": precision, "recall": recall, "f1": f1}
    return rows


def train_and_score(parts: dict[str, list[voc.Photo]], settings: dict, seed: int) -> dict:
    """Train, choose on validation, decode the test photos once.

    Parameters
    ----------
    parts : {"train", "val", "test"}: photos, as ``scene_split.photos_by_part`` gives them.
    settings : the keys of ``DEFAULTS["full"]``.
    seed : initialises the head and orders the photos in each epoch.

    Returns
    -------
    dict: ``found`` {"val", "test"} (lists in the evaluator's format, boxes above
    ``min_score``), ``threshold`` (chosen on validation), ``thresholds`` (validation precision,
    recall, F1 per threshold), ``input_size`` and ``epochs`` (chosen), ``sizes`` {input size:
    best validation mAP@0.5, epochs}, ``history`` (the chosen size's epochs), ``seconds``
    {"features", "training", "test"} (wall-clock; "test" includes the test photos' maps),
    ``head`` (the chosen Keras head, to decode more photos with ``found_of``), ``max_iou``
    (the overlap suppression chosen on validation among ``settings["max_ious"]``) and
    ``val_map50_by_max_iou``.
    """
    missing = [k for k in DEFAULTS["full"] if k not in settings]
    if missing:
        raise ValueError(f"settings lack {missing}; see own_detector.DEFAULTS")
    if settings["schedule"] not in ("constant", "cosine"):
        raise ValueError(f"schedule={settings['schedule']!r}: use 'constant' or 'cosine'")
    if not parts.get("train") or not parts.get("val"):
        raise ValueError("parts need train and val photos")
    seconds = {"features": 0.0, "training": 0.0, "test": 0.0}
    runs = []
    for input_size in settings["input_sizes"]:
        start = time.perf_counter()
        prepared = {
            p: prepare(parts[p], input_size, settings["backbone"]) for p in ("train", "val")
        }
        seconds["features"] += time.perf_counter() - start
        run = train_at_size(parts, prepared, settings, input_size, seed)
        seconds["training"] += run["seconds"]
        run["val_found"] = found_of(run["head"], prepared["val"], settings)
        runs.append(run)
    chosen = max(runs, key=lambda r: r["val_map50"])
    # overlap suppression, chosen on validation like the rest (1: none; ties keep the first)
    prepared_val = prepare(parts["val"], chosen["input_size"], settings["backbone"])
    by_iou = {
        iou: found_of(chosen["head"], prepared_val, settings, iou) for iou in settings["max_ious"]
    }
    val_by_iou = {
        iou: dm.average_precision(truth_of(parts["val"]), found, CLASSES)["map50"]
        for iou, found in by_iou.items()
    }
    max_iou = max(val_by_iou, key=lambda iou: np.nan_to_num(val_by_iou[iou], nan=-1.0))
    chosen["val_found"] = by_iou[max_iou]
    thresholds = f1_by_threshold(
        truth_of(parts["val"]), chosen["val_found"], settings["thresholds"]
    )
    threshold = max(thresholds, key=lambda t: thresholds[t]["f1"])
    start = time.perf_counter()
    test = prepare(parts["test"], chosen["input_size"], settings["backbone"])
    test_found = found_of(chosen["head"], test, settings, max_iou)
    seconds["test"] = time.perf_counter() - start
    return {
        "found": {"val": chosen["val_found"], "test": test_found},
        "threshold": threshold,
        "thresholds": thresholds,
        "input_size": chosen["input_size"],
        "epochs": chosen["epochs"],
        "max_iou": max_iou,
        "val_map50_by_max_iou": val_by_iou,
        "sizes": {
            r["input_size"]: {"val_map50": r["val_map50"], "epochs": r["epochs"]} for r in runs
        },
        "history": chosen["history"],
        "seconds": seconds,
        "head": chosen["head"],
    }
