"""Chapter 4, section 5: how much of the dissertation's accuracy leakage explains.

The custom CNN and the best transfer model are trained again on grouped splits (near-duplicates
kept together) and on plain random splits of the same images, as public notebooks on this data
do; the difference is what near-duplicates straddling train and test are worth. The
dissertation's figures and verdicts come from ``dlbook.book.claims``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dlbook.book import claims, context, present
from dlbook.experiments.mask_detection.classifiers import (
    display_name,
    fine_tune_maps,
    plural,
    refit_transfer,
    train_cnn,
)
from dlbook.experiments.mask_detection.dataset import Chapter, images_for
from dlbook.experiments.mask_detection.evaluation import CV_METRICS
from dlbook.facemask import data
from dlbook.methods import metrics

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
    runs ``settings["cnn_seeds"]`` repeats; the best transfer model ``transfer_repeats`` when it
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
    rows = []
    for r in range(max(s["cnn_seeds"], transfer_repeats)):
        seed = chapter.run.seed + r
        splits = {
            "grouped": ds.split
            if r == 0
            else data.grouped_split(ds.labels, ds.groups, data.SPLIT_FRACTIONS, seed),
            "random": data.stratified_split(ds.labels, data.SPLIT_FRACTIONS, seed),
        }
        for kind, split in splits.items():
            reuse = r == 0 and kind == "grouped"
            if r < s["cnn_seeds"]:
                cnn = runs["custom_cnn"] if reuse else train_cnn(chapter.small, split, s, seed)
                rows.append(
                    _split_row("custom_cnn", kind, r, ds.labels, split, cnn.probs, cnn.info, boot)
                )
            if r < transfer_repeats:
                probs = (
                    best_run.probs
                    if reuse
                    else refit_transfer(chapter, best_run, split, seed, maps)
                )
                rows.append(_split_row(best, kind, r, ds.labels, split, probs, {}, boot))
    table = pd.DataFrame(rows)
    values = {
        "custom_cnn_accuracy_seeds": int(s["cnn_seeds"]),
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
        values[f"{model}_random_minus_grouped_points"] = 100 * (
            values[f"{model}_random_split_accuracy"] - values[f"{model}_grouped_split_accuracy"]
        )
    chapter.run.save(values)
    return {"runs": table, "best": best, "values": values}


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
        row["repeats"] = int((leak["runs"].model == model).sum() // 2)
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
        f"same images: leakage through near-duplicates is worth "
        f"{present.points(v['custom_cnn_random_minus_grouped_points'])}. "
        + _explained(
            "custom CNN", claimed_cnn, v["custom_cnn_grouped_split_accuracy"],
            v["custom_cnn_random_split_accuracy"],
        ),
        claims.sentence("custom_cnn_96", found),
        f"For the best transfer model ({display_name(best)}) the random split gives "
        f"{present.percent(v[f'{best}_random_split_accuracy'], 2)} against "
        f"{present.percent(v[f'{best}_grouped_split_accuracy'], 2)} on grouped splits "
        f"({present.points(v[f'{best}_random_minus_grouped_points'], 2)}). "
        + _explained(
            best, claimed_transfer, v[f"{best}_grouped_split_accuracy"],
            v[f"{best}_random_split_accuracy"],
        ),
        claims.sentence("transfer_995", found),
    ]  # fmt: skip
    return "\n\n".join(parts)


def _explained(model: str, claimed: float, grouped: float, random: float) -> str:
    """How much of the gap between ``claimed`` and the grouped-split accuracy leakage explains."""
    gap = claimed - grouped
    if gap <= 0:
        return (
            f"On these grouped splits {display_name(model)} already reaches the dissertation's "
            f"{present.percent(claimed)}, so leakage is not needed to explain it."
        )
    share = (random - grouped) / gap
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
