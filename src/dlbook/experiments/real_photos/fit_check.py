"""(c) Is a mask worn wrong? A fit head trained on maskedfacenet, judged on real faces.

maskedfacenet's masks are drawn onto real faces (synthetic), in four ways: worn right, nose out,
nose and mouth out, chin out. A class-weighted logistic head on backbone features learns "right"
against "wrong" from them, its strength chosen on a held-out quarter of maskedfacenet. Both it and
today's fit model (trained on the book's home-made masks, chapter 7) are then judged on the real
masked faces of the test photos: how many ``mask_weared_incorrect`` faces each flags, and how many
``with_mask`` faces it flags by mistake.
"""

from __future__ import annotations

import numpy as np

from dlbook.experiments.real_photos.improved import _features
from dlbook.experiments.real_photos.study import CLASSES, Scenes
from dlbook.facemask import scene_classifier as head
from dlbook.facemask import scene_pipeline as pipe
from dlbook.facemask.data import decode_image, split, voc
from dlbook.methods import metrics

WORN_RIGHT = voc.MASKEDFACENET_FOLDERS[0]


def maskedfacenet(
    root, image_size: int, limit: int | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, S, S, 3) uint8 and labels (N,) int64, 0 worn right and 1 worn wrong.

    ``limit`` keeps a random subset of that many with the label proportions kept.
    """
    paths, labels = [], []
    for folder in voc.MASKEDFACENET_FOLDERS:
        found = sorted((root / folder).glob("*.jpg"))
        paths += found
        labels += [int(folder != WORN_RIGHT)] * len(found)
    if not paths:
        raise FileNotFoundError(f"{root}: no .jpg files in {voc.MASKEDFACENET_FOLDERS}")
    labels = np.array(labels, dtype=np.int64)
    keep = np.arange(len(paths))
    if limit is not None and limit < len(paths):
        keep = split.stratified_subset(labels, limit, seed)
    images = np.stack([decode_image(paths[k], image_size) for k in keep])
    return images, labels[keep]


def _flags(wrong: np.ndarray, real_labels: np.ndarray) -> dict:
    """Share of real worn-wrong faces flagged, and of real worn-right faces flagged by mistake."""
    incorrect = real_labels == CLASSES.index("mask_weared_incorrect")
    flagged = float(wrong[incorrect].mean()) if incorrect.any() else float("nan")
    false_alarm = float(wrong[~incorrect].mean()) if (~incorrect).any() else float("nan")
    return {
        "flags_incorrect": flagged,
        "flags_with_mask": false_alarm,
        "balanced_accuracy": (flagged + 1 - false_alarm) / 2,
    }


def shipped_fit_on_real(wrong: np.ndarray, real_labels: np.ndarray, run) -> dict:
    """The claims page's figures for the shipped fit model on real masked faces: its balanced
    accuracy (worn wrong flagged, worn right passed; chance 0.5) with a bootstrap interval over
    faces (``fit_real_*``)."""
    draws = metrics.bootstrap_samples(
        lambda w, y: _flags(w, y)["balanced_accuracy"],
        wrong,
        real_labels,
        n_boot=run.settings["n_boot"],
        seed=run.seed,
    )
    low, high = metrics.percentile_interval(draws)
    return {
        "fit_real_accuracy": _flags(wrong, real_labels)["balanced_accuracy"],
        "fit_real_accuracy_ci_low": low,
        "fit_real_accuracy_ci_high": high,
        "fit_real_n": int(len(real_labels)),
        "fit_real_chance": 0.5,
    }


def fit_on_real_faces(run, sc: Scenes) -> dict:
    """Train on maskedfacenet, judge both fit models on the real masked test faces; saves
    ``fit_maskedfacenet_*`` and ``fit_today_*``."""
    size = run.settings["image_size"]
    root = voc.maskedfacenet_dir(run.settings.get("maskedfacenet_dir"))
    images, labels = maskedfacenet(root, size, run.settings["maskedfacenet_limit"], run.seed)
    feats = _features(run, images)
    held = np.random.default_rng(run.seed).random(len(labels)) < 0.25
    model, strength, _ = head.fit_scene_head(
        feats[~held],
        labels[~held],
        feats[held],
        labels[held],
        tuple(run.settings["strengths"]),
        run.seed,
    )
    faces = pipe.face_crops(sc.parts["test"], size)
    masked = faces.labels != CLASSES.index("without_mask")
    new = _flags(model.predict(_features(run, faces.images))[masked] == 1, faces.labels[masked])
    values = {
        "fit_maskedfacenet_images": len(labels),
        "fit_maskedfacenet_C": strength,
        "fit_maskedfacenet_heldout_balanced_accuracy": head.balanced_accuracy(
            labels[held], model.predict(feats[held])
        ),
        "fit_real_masked_faces": int(masked.sum()),
        **{f"fit_maskedfacenet_{k}": v for k, v in new.items()},
    }
    fit_path = sc.models_dir / "mask_fit.keras"
    if fit_path.is_file():
        import json

        fit_size = int(json.loads(fit_path.with_suffix(".json").read_text())["image_size"])
        crops = pipe.face_crops(sc.parts["test"], fit_size).images[masked]
        today = pipe.model_outputs(fit_path, crops, "fit").argmax(1) != 0
        values.update({f"fit_today_{k}": v for k, v in _flags(today, faces.labels[masked]).items()})
        values.update(shipped_fit_on_real(today, faces.labels[masked], run))
    run.save(values)
    return values
