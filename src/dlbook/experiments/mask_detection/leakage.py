"""Chapter 4, section 5: how much of the dissertation's accuracy leakage explains.

The custom CNN and the best transfer model are trained again on grouped splits (near-duplicates
kept together) and on plain random splits of the same images, as public notebooks on this data
do; the difference is what near-duplicates straddling train and test are worth. The
dissertation's figures and verdicts come from ``dlbook.book.claims``.

``probe_leakage`` measures what the grouped split leaves rather than re-applying its hash rule:
each test image's nearest training image in the shipped backbone's feature space, a sweep of the
hash threshold, and the shipped model's accuracy on the test images nearest the training set
against the rest (``methods.leakage_probe``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dlbook.book import claims, context, present
from dlbook.experiments.mask_detection.classifiers import (
    ModelRun,
    display_name,
    fine_tune_maps,
    plural,
    refit_transfer,
    train_cnn,
)
from dlbook.experiments.mask_detection.dataset import Chapter, images_for
from dlbook.experiments.mask_detection.evaluation import CV_METRICS
from dlbook.facemask import data, features
from dlbook.methods import leakage_probe, metrics

PROBE_THRESHOLDS = (0, 2, 4, 6, 8, 10, 12, 16)
"""Hamming distances (of 64-bit difference hashes) swept around the split's own rule, 4."""
PROBE_NEAR_SHARE = 0.1
"""The share of test images, nearest the training set in feature space, counted as near."""

# The dissertation's rows, by the claim id that judges each.
MODEL_CLAIMS = {
    "custom_cnn": "custom_cnn_96",
    "inception_v3": "inception_v3_995",
    "mobilenet_v2": "mobilenet_v2_991",
}


def story_claimed() -> str:
    """The dissertation's reported accuracies, as ``dlbook.book.claims`` records them."""
    named = {"custom_cnn": "its custom CNN", "inception_v3": "InceptionV3",
             "mobilenet_v2": "MobileNetV2"}  # fmt: skip
    parts = [
        f"{present.percent(claimed['accuracy'])} for {named.get(model, model)}"
        for model, claimed in claims.DISSERTATION_MODELS.items()
    ]
    return (
        "The dissertation reports test accuracies of " + ", ".join(parts[:-1]) + f" and {parts[-1]}"
        " on this data set (precision and recall in section 5)."
    )


def claimed_accuracy(leak: dict) -> dict[str, float]:
    """The dissertation's accuracy for the custom CNN and for the best transfer model's claim."""
    return {
        "custom_cnn": claims.DISSERTATION_MODELS["custom_cnn"]["accuracy"],
        leak["best"]: claims.DISSERTATION_MODELS["inception_v3"]["accuracy"],
    }


def measure_leakage(chapter: Chapter, models: dict, evaluation: dict) -> dict:
    """The custom CNN and the best transfer model on grouped and on plain random splits (saved).

    Repeat ``r`` uses the grouped split made with seed ``seed + r`` (repeat 0 is the chapter's
    split, whose runs are reused) and a stratified random split with the same seed and
    fractions, which lets near-duplicates straddle train and test, as public notebooks on this
    data do. Each repeat changes the split, the initialisation, the mini-batch order and the
    augmentation draws, so the interval over repeats (Student t) reflects all of them; with a
    single repeat it is the bootstrap interval over that split's test images. The custom CNN
    runs ``settings["cnn_seeds"]`` grouped repeats (its verdict) and the first
    ``settings["cnn_random_seeds"]`` of them on random splits too (they explain the gap to the
    dissertation; "random minus grouped" pairs the repeats that ran both, so one seed's easy
    split does not count for leakage); the best transfer model ``transfer_repeats`` when it
    is a frozen-backbone head and ``transfer_repeats_finetuned`` when it is fine-tuned (each
    fine-tuning costs about a minute and a half on two cores).

    Returns
    -------
    dict with ``runs`` (DataFrame: one row per model, split kind and repeat), ``best`` and
    ``values``.
    """
    s, ds = chapter.run.settings, chapter.images
    runs, best = models["runs"], evaluation["best"]
    best_run = runs[best]
    tuned = best_run.kind == "finetuned"
    transfer_repeats = s["transfer_repeats_finetuned"] if tuned else s["transfer_repeats"]
    sized = images_for(chapter, best_run.backbone).images
    maps = fine_tune_maps(best_run.backbone, sized, s) if tuned else None
    boot = {"n_boot": s["n_boot"], "seed": chapter.run.seed}
    repeats = range(max(s["cnn_seeds"], transfer_repeats))
    splits = {r: repeat_splits(ds, r, chapter.run.seed) for r in repeats}
    # the custom CNN's trainings are independent: they run as tasks, side by side
    cnn_repeats = {"grouped": s["cnn_seeds"], "random": s["cnn_random_seeds"]}
    tasks = [
        (chapter.small, split, s, chapter.run.seed + r)
        for r in repeats
        for kind, split in splits[r].items()
        if r < cnn_repeats[kind] and not (r == 0 and kind == "grouped")
    ]
    trained = iter(chapter.run.map(cnn_task, tasks))
    rows = []
    for r in repeats:
        for kind, split in splits[r].items():
            reuse = r == 0 and kind == "grouped"
            if r < cnn_repeats[kind]:
                cnn = runs["custom_cnn"] if reuse else next(trained)
                rows.append(
                    _split_row("custom_cnn", kind, r, ds.labels, split, cnn.probs, cnn.info, boot)
                )
            if r < transfer_repeats:
                probs = (
                    best_run.probs
                    if reuse
                    else refit_transfer(chapter, best_run, split, chapter.run.seed + r, maps)
                )
                rows.append(_split_row(best, kind, r, ds.labels, split, probs, {}, boot))
    table = pd.DataFrame(rows)
    values = {
        "custom_cnn_accuracy_seeds": int(s["cnn_seeds"]),
        "custom_cnn_random_split_seeds": int(s["cnn_random_seeds"]),
        "custom_cnn_image_size": int(s["cnn_image_size"]),
        "custom_cnn_epoch_cap": int(s["cnn_epochs"]),
        "leakage_repeats_transfer": int(transfer_repeats),
        "leakage_best_model": best,
    }
    cnn = table[table.model == "custom_cnn"]
    values["custom_cnn_epochs_used"] = float(cnn["epochs"].mean())
    values["custom_cnn_epochs_used_max"] = int(cnn["epochs"].max())
    values["custom_cnn_stopped_early_fraction"] = float(cnn["stopped_early"].mean())
    grouped_cnn = cnn[cnn.split == "grouped"]
    for metric in CV_METRICS:
        found = _over_repeats(grouped_cnn, metric)
        values.update({f"custom_cnn_{metric}{k}": v for k, v in found.items()})
    for model in ("custom_cnn", best):
        part = table[table.model == model]
        for kind in ("grouped", "random"):
            found = _over_repeats(part[part.split == kind], "accuracy")
            values.update({f"{model}_{kind}_split_accuracy{k}": v for k, v in found.items()})
        values[f"{model}_random_minus_grouped_points"] = 100 * paired_gap(part)
    chapter.run.save(values)
    return {"runs": table, "best": best, "values": values}


def repeat_splits(ds: data.ImageSet, repeat: int, seed: int) -> dict[str, np.ndarray]:
    """Repeat ``repeat``'s grouped split (the chapter's own for repeat 0) and random split, both
    made with seed ``seed + repeat``."""
    return {
        "grouped": ds.split
        if repeat == 0
        else data.grouped_split(ds.labels, ds.groups, data.SPLIT_FRACTIONS, seed + repeat),
        "random": data.stratified_split(ds.labels, data.SPLIT_FRACTIONS, seed + repeat),
    }


def paired_gap(rows: pd.DataFrame) -> float:
    """Mean of random- minus grouped-split accuracy over the repeats that ran both.

    Parameters
    ----------
    rows : one model's rows of the leakage table (columns ``repeat``, ``split``, ``accuracy``).

    Raises
    ------
    ValueError
        If no repeat ran both splits.
    """
    wide = rows.pivot_table(index="repeat", columns="split", values="accuracy").dropna()
    if wide.empty or not {"grouped", "random"} <= set(wide.columns):
        raise ValueError("no repeat ran both the grouped and the random split")
    return float((wide["random"] - wide["grouped"]).mean())


def cnn_task(task: tuple) -> ModelRun:
    """One custom-CNN training, ``(small, split, settings, seed)``: a ``run.map`` task. The Keras
    model stays in the worker; its probabilities and record come back."""
    small, split, settings, seed = task
    trained = train_cnn(small, split, settings, seed)
    return ModelRun(trained.name, trained.probs, trained.kind, info=trained.info)


def _over_repeats(rows: pd.DataFrame, metric: str) -> dict:
    """Mean of ``metric`` over repeats with a t interval; one repeat: its bootstrap interval."""
    if len(rows) == 1 and metric == "accuracy":
        row = rows.iloc[0]
        return {"": row.accuracy, "_ci_low": row.accuracy_ci_low, "_ci_high": row.accuracy_ci_high}
    mean, low, high = metrics.mean_confidence_interval(rows[metric])
    return {"": mean, "_ci_low": max(low, 0.0), "_ci_high": min(high, 1.0)}


def _split_row(model, kind, repeat, labels, split, probs, info, boot) -> dict:
    test = split == "test"
    report = metrics.classification_report(labels[test], probs[test], **boot)
    return {
        "model": model,
        "split": kind,
        "repeat": repeat,
        **{metric: report[metric]["value"] for metric in CV_METRICS},
        "accuracy_ci_low": report["accuracy"]["ci_low"],
        "accuracy_ci_high": report["accuracy"]["ci_high"],
        "epochs": info.get("epochs", np.nan),
        "stopped_early": info.get("stopped_early", np.nan),
    }


def leakage_table(leak: dict) -> pd.DataFrame:
    """Mean accuracy over repeats, grouped against random split, per model."""
    v, rows = leak["values"], []
    for model in ("custom_cnn", leak["best"]):
        row = {"model": display_name(model)}
        for kind in ("grouped", "random"):
            key = f"{model}_{kind}_split_accuracy"
            row[f"{kind} split"] = v[key]
            row[f"{kind} CI"] = present.interval(v[f"{key}_ci_low"], v[f"{key}_ci_high"])
        runs = leak["runs"][leak["runs"].model == model]
        for kind in ("grouped", "random"):
            row[f"{kind} repeats"] = int((runs.split == kind).sum())
        row["random minus grouped"] = present.points(v[f"{model}_random_minus_grouped_points"])
        rows.append(row)
    return present.table(pd.DataFrame(rows), percent_columns=["grouped split", "random split"])


def story_leakage(leak: dict, run: context.Run) -> str:
    v, best = leak["values"], leak["best"]
    found = run.load_all()
    claimed_cnn = claims.DISSERTATION_MODELS["custom_cnn"]["accuracy"]
    claimed_transfer = claims.DISSERTATION_MODELS["inception_v3"]["accuracy"]
    parts = [
        f"The custom CNN ({plural(v['custom_cnn_accuracy_seeds'], 'seed')}, "
        f"{v['custom_cnn_image_size']} px, augmentation and batch normalisation, early stopping on validation loss) reaches "
        f"{present.percent(v['custom_cnn_grouped_split_accuracy'])} on grouped splits and "
        f"{present.percent(v['custom_cnn_random_split_accuracy'])} on random splits of the "
        f"same images ({plural(v['custom_cnn_random_split_seeds'], 'seed')}: the random split "
        "explains, it does not judge). Leakage through near-duplicates is worth "
        f"{present.points(v['custom_cnn_random_minus_grouped_points'])}, random minus grouped "
        "on the seeds that ran both. "
        + _explained("custom_cnn", claimed_cnn, v),
        claims.sentence("custom_cnn_96", found),
        f"For the best transfer model ({display_name(best)}) the random split gives "
        f"{present.percent(v[f'{best}_random_split_accuracy'], 2)} against "
        f"{present.percent(v[f'{best}_grouped_split_accuracy'], 2)} on grouped splits "
        f"({present.points(v[f'{best}_random_minus_grouped_points'], 2)}). "
        + _explained(best, claimed_transfer, v),
        claims.sentence("transfer_995", found),
    ]  # fmt: skip
    return "\n\n".join(parts)


def _explained(model: str, claimed: float, values: dict) -> str:
    """How much of the gap between ``claimed`` and the grouped-split accuracy leakage (the paired
    random-minus-grouped difference of ``values``) explains."""
    grouped = values[f"{model}_grouped_split_accuracy"]
    random = values[f"{model}_random_split_accuracy"]
    gap = claimed - grouped
    if gap <= 0:
        return (
            f"On these grouped splits {display_name(model)} already reaches the dissertation's "
            f"{present.percent(claimed)}, so leakage is not needed to explain it."
        )
    share = values[f"{model}_random_minus_grouped_points"] / 100 / gap
    if random >= claimed:
        return (
            f"On a random split {display_name(model)} reaches the dissertation's "
            f"{present.percent(claimed)}: leakage explains the whole "
            f"{present.points(100 * gap)} gap between that figure and the grouped split."
        )
    return (
        f"Of the {present.points(100 * gap)} between the dissertation's "
        f"{present.percent(claimed)} and the grouped split, leakage explains "
        f"{present.percent(max(share, 0.0), 0)}."
    )


def claims_table(run: context.Run) -> pd.DataFrame:
    """The dissertation's per-model claims beside the measurements, judged by ``dlbook.book.claims``."""
    found = run.load_all()
    rows = []
    for model, claim_id in (*MODEL_CLAIMS.items(), ("best transfer model", "transfer_995")):
        claimed = claims.DISSERTATION_MODELS.get(model, claims.DISSERTATION_MODELS["inception_v3"])
        verdict = claims.judge(claim_id, found)
        rows.append(
            {
                "model": display_name(model),
                "claimed accuracy": claimed["accuracy"],
                "measured": verdict.measured if verdict.measured != "-" else "not measured",
                "verdict": verdict.verdict,
                "note": verdict.note or "",
            }
        )
    return present.table(pd.DataFrame(rows), percent_columns=["claimed accuracy"])


def hash_bits(gray: np.ndarray) -> np.ndarray:
    """64-bit difference hashes as bits: ``gray`` (N, H, W, 1) uint8 -> (N, 64) bool."""
    hashes = data.difference_hash(gray)
    return np.unpackbits(hashes.view(np.uint8).reshape(len(hashes), 8), axis=1).astype(bool)


def probe_leakage(chapter: Chapter, models: dict, evaluation: dict) -> dict:
    """Leakage measured on the chapter's grouped split for the shipped model (saved).

    Test against training images: cosine distance to the nearest one in the frozen features of
    the shipped model's backbone; the share of test images with a training image within each
    Hamming distance (``PROBE_THRESHOLDS``) of their difference hash at 32 px, the training
    images' mirrors included as the split's rule includes them; and the shipped model's test
    accuracy on the ``PROBE_NEAR_SHARE`` of test images nearest the training set against the
    rest.

    Returns
    -------
    dict with ``sweep`` (DataFrame), ``accuracy`` (``leakage_probe.near_far_accuracy``),
    ``distance`` (M,) and ``values``.
    """
    ds, best = chapter.images, evaluation["best"]
    run = models["runs"][best]
    feats = features.extract(run.backbone, images_for(chapter, run.backbone).images, progress=False)
    gray = data.load_face_mask(
        chapter.data_dir, image_size=32, color_mode="grayscale", seed=chapter.run.seed,
        progress=False,
    )  # fmt: skip
    order = {p: i for i, p in enumerate(gray.paths)}
    gray_images = gray.images[[order[p] for p in ds.paths]]
    test, train = ds.split == "test", ds.split == "train"
    correct = (run.probs[test] >= 0.5) == ds.labels[test]
    train_gray = gray_images[train]
    found = leakage_probe.leakage_probe(
        feats[test], feats[train], correct, hash_bits(gray_images[test]),
        np.concatenate([hash_bits(train_gray), hash_bits(train_gray[:, :, ::-1])]),
        PROBE_THRESHOLDS, PROBE_NEAR_SHARE,
    )  # fmt: skip
    near = found["accuracy"]
    values = {
        "leakage_probe_model": best,
        "leakage_probe_backbone": run.backbone,
        "leakage_probe_test_images": int(test.sum()),
        "leakage_probe_split_threshold": int(data.DUPLICATE_MAX_DISTANCE),
        "leakage_probe_median_distance": float(np.median(found["distance"])),
        **{f"leakage_probe_{key}": value for key, value in near.items()},
    }
    for row in found["sweep"].itertuples():
        values[f"leakage_probe_share_within_{row.threshold}"] = row.share_within
    chapter.run.save(values)
    return {**found, "values": values}


def probe_table(probe: dict) -> pd.DataFrame:
    """The hash-threshold sweep: test images with a training image within each distance."""
    table = probe["sweep"].rename(
        columns={"threshold": "Hamming distance at most", "test_items_within": "test images",
                 "share_within": "share of test"}
    )  # fmt: skip
    return present.table(table, percent_columns=["share of test"])


def story_probe(probe: dict) -> str:
    v = probe["values"]
    rule = v["leakage_probe_split_threshold"]
    widest = max(PROBE_THRESHOLDS)
    return (
        f"Measured rather than re-derived: of the {v['leakage_probe_test_images']} test images, "
        f"{present.percent(v[f'leakage_probe_share_within_{rule}'])} have a training image "
        f"within Hamming distance {rule} of their difference hash (the split's own rule, which "
        f"should leave none), {present.percent(v[f'leakage_probe_share_within_{2 * rule}'])} "
        f"within {2 * rule} and {present.percent(v[f'leakage_probe_share_within_{widest}'])} "
        f"within {widest}. In the feature space of {display_name(v['leakage_probe_backbone'])}, "
        f"the {v['leakage_probe_near_items']} test images nearest the training set (cosine "
        f"distance at most {present.number(v['leakage_probe_near_distance_max'])}, against a "
        f"median of {present.number(v['leakage_probe_median_distance'])}) score "
        f"{present.percent(v['leakage_probe_near_accuracy'])} with "
        f"{display_name(v['leakage_probe_model'])} and the other "
        f"{v['leakage_probe_far_items']} {present.percent(v['leakage_probe_far_accuracy'])} "
        f"({present.points(100 * v['leakage_probe_near_minus_far'])}): leakage the hash misses "
        "would show as near images scoring higher than far ones. One error among the "
        f"{v['leakage_probe_near_items']} near images moves their accuracy by "
        f"{present.number(100 / v['leakage_probe_near_items'], 2)} points, so a smaller gap "
        "is noise."
    )
