"""Chapter 4, sections 9 and 10: what the best model looks at, and how it bears corruptions.

Occlusion sensitivity slides a grey patch over each image and records the drop in the log-odds
of the true label; the stress test measures accuracy under the corruptions of
``dlbook.facemask.corruptions`` at several severities.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dlbook.book import present
from dlbook.experiments.mask_detection.classifiers import ModelRun, display_name
from dlbook.experiments.mask_detection.dataset import (
    Chapter,
    images_for,
    network_size,
    stratified_pick,
)
from dlbook.facemask import classify, corruptions, data, features


def classifier(run: ModelRun, image_size: int | None = None):
    """A function (N, S, S, 3) uint8 -> (N,) P(with_mask) for ``run``, uncalibrated.

    Frozen-backbone runs go through ``features.extract`` (cached on disk, so repeated
    corruptions of the same images cost nothing the second time); the others through Keras.
    """
    if run.kind == "head":

        def predict(images):
            feats = features.extract(run.backbone, images, progress=False)
            return classify.sigmoid(feats @ run.head[0] + run.head[1])

        return predict
    if run.kind == "finetuned":
        if image_size is None:
            raise ValueError("image_size is needed for a fine-tuned run")
        model = classify.build_shipped_model(
            run.keras_model, run.head[0], run.head[1], 1.0, image_size
        )
    else:
        model = run.keras_model
    return lambda images: classify.predict_images(model, images, batch_size=64)


def occlusion_saliency(
    predict, images: np.ndarray, labels: np.ndarray, patch_fraction: float = 0.25, steps: int = 7
) -> np.ndarray:
    """Occlusion sensitivity: drop in the log-odds of the true label when a grey patch covers each position.

    Parameters
    ----------
    predict : function (N, S, S, 3) uint8 -> (N,) P(with_mask).
    images : ndarray, shape (N, S, S, 3), uint8
    labels : ndarray, shape (N,), 0 or 1.

    Returns
    -------
    ndarray, shape (N, steps, steps), float64: positive where covering the region lowers the
    log-odds of the true label (the model relies on it).
    """
    images = np.asarray(images)
    size = images.shape[1]
    patch = max(1, int(round(patch_fraction * size)))
    starts = np.linspace(0, size - patch, steps).round().astype(int)
    maps = np.zeros((len(images), steps, steps))
    for n, (image, label) in enumerate(zip(images, labels, strict=True)):
        batch = np.repeat(image[None], steps * steps + 1, axis=0)
        for k, (i, j) in enumerate((i, j) for i in range(steps) for j in range(steps)):
            top, left = starts[i], starts[j]
            batch[k + 1, top : top + patch, left : left + patch] = 127
        # Log-odds, not probabilities: a confident model's probability barely moves.
        logits = classify.probs_to_logits(predict(batch))
        true_logit = logits if label == 1 else -logits
        maps[n] = (true_logit[0] - true_logit[1:]).reshape(steps, steps)
    return maps


def lower_half_share(maps: np.ndarray) -> np.ndarray:
    """Share of each map's positive saliency in its lower half (where a mask sits), shape (N,)."""
    positive = np.clip(maps, 0, None)
    steps = maps.shape[1]
    lower = positive[:, steps // 2 + steps % 2 :, :].sum(axis=(1, 2))
    upper = positive[:, : steps // 2, :].sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return lower / (lower + upper)


def saliency_examples(
    predict, ds: data.ImageSet, probs: np.ndarray, n_each: int = 4, seed: int = 0
) -> dict:
    """Occlusion maps for test images: correct ones of each class and the errors (up to n_each).

    Returns
    -------
    dict with ``index`` (image indices), ``kind`` (list of str), ``maps`` (K, steps, steps),
    ``lower_half_share`` (K,).
    """
    rng = np.random.default_rng(seed)
    test = ds.split == "test"
    predicted = (probs >= 0.5).astype(int)
    groups = {
        "correct with_mask": test & (predicted == ds.labels) & (ds.labels == 1),
        "correct without_mask": test & (predicted == ds.labels) & (ds.labels == 0),
        "error": test & (predicted != ds.labels),
    }
    index, kind = [], []
    for name, chosen in groups.items():
        members = np.flatnonzero(chosen)
        picked = rng.choice(members, size=min(n_each, len(members)), replace=False)
        index += picked.tolist()
        kind += [name] * len(picked)
    index = np.array(index, dtype=np.int64)
    maps = occlusion_saliency(predict, ds.images[index], ds.labels[index])
    return {"index": index, "kind": kind, "maps": maps, "lower_half_share": lower_half_share(maps)}


def look_inside(chapter: Chapter, models: dict, evaluation: dict) -> dict:
    """Occlusion saliency of the best model on correct and wrong test images (saved)."""
    best = evaluation["best"]
    run = models["runs"][best]
    ds = images_for(chapter, run.backbone)
    predict = classifier(run, network_size(chapter.run.settings, run.backbone))
    found = saliency_examples(
        predict, ds, run.probs, chapter.run.settings["saliency_per_kind"], chapter.run.seed
    )
    found["model"] = best
    correct = np.array([kind.startswith("correct") for kind in found["kind"]])
    share = found["lower_half_share"][correct]
    found["values"] = {
        "saliency_lower_half_share_correct": float(np.nanmedian(share)) if share.size else None
    }
    chapter.run.save(found["values"])
    return found


def story_saliency(found: dict) -> str:
    share = found["values"]["saliency_lower_half_share_correct"]
    if share is None:
        return "No correctly classified test image was drawn."
    return (
        f"On the correctly classified images shown, a median "
        f"{present.percent(share, 0)} of the positive saliency of {display_name(found['model'])} "
        "lies in the "
        "lower half of the image, where a mask sits."
    )


def robustness(
    predict,
    images: np.ndarray,
    labels: np.ndarray,
    severities=(1, 3, 5),
    seed: int = 0,
) -> pd.DataFrame:
    """Accuracy under each corruption of ``dlbook.facemask.corruptions`` at each severity.

    Parameters
    ----------
    predict : function (N, S, S, 3) uint8 -> (N,) P(with_mask).

    Returns
    -------
    DataFrame with columns corruption, severity, accuracy (severity 0 = clean, once per kind).
    """
    clean = float(((predict(images) >= 0.5) == labels).mean())
    rows = []
    for kind in corruptions.CORRUPTIONS:
        rows.append({"corruption": kind, "severity": 0, "accuracy": clean})
        for severity in severities:
            corrupted = corruptions.corrupt(images, kind, severity, seed)
            accuracy = float(((predict(corrupted) >= 0.5) == labels).mean())
            rows.append({"corruption": kind, "severity": severity, "accuracy": accuracy})
    return pd.DataFrame(rows)


def stress_test(chapter: Chapter, models: dict, evaluation: dict) -> dict:
    """Accuracy of the best model and the custom CNN under corruptions (saved)."""
    s, ds, best = chapter.run.settings, chapter.images, evaluation["best"]
    runs = models["runs"]
    sized = images_for(chapter, runs[best].backbone)
    pick = stratified_pick(ds.labels, ds.split == "test", s["robustness_limit"], chapter.run.seed)
    tables = {
        best: robustness(
            classifier(runs[best], network_size(s, runs[best].backbone)), sized.images[pick],
            ds.labels[pick],
            s["severities"], chapter.run.seed,
        ),
        "custom_cnn": robustness(
            classifier(runs["custom_cnn"]), chapter.small.images[pick], ds.labels[pick],
            s["severities"], chapter.run.seed,
        ),
    }  # fmt: skip
    worst = tables[best].sort_values("accuracy").iloc[0]
    values = {
        f"robustness_{best}_worst_accuracy": float(worst.accuracy),
        "robustness_worst_corruption": str(worst.corruption),
        "robustness_worst_severity": int(worst.severity),
        "robustness_test_images": int(len(pick)),
    }
    chapter.run.save(values)
    return {"tables": tables, "best": best, "values": values}


def story_robustness(found: dict) -> str:
    v, best = found["values"], found["best"]
    return (
        f"The hardest corruption for {display_name(best)} is "
        f"**{v['robustness_worst_corruption']}** at "
        f"severity {v['robustness_worst_severity']}: accuracy "
        f"{present.percent(v[f'robustness_{best}_worst_accuracy'])} on "
        f"{v['robustness_test_images']} test images."
    )
