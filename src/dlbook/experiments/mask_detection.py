"""Chapter 4: the face-mask classifier and detector, evaluated honestly.

The chapter is a sequence of sections; each is one function here that computes, saves its
numbers to ``results/<profile>/mask_detection.json`` and returns what the page shows:

``load`` -> ``audit_data`` -> ``train_models`` -> ``evaluate_test_split`` -> ``cross_validate``
-> ``measure_leakage`` -> ``audit_labels`` -> ``calibrate_best`` -> ``ship_best`` ->
``look_inside`` -> ``stress_test`` -> ``export_tflite`` -> ``find_faces``.

``run`` calls them all. Sentences quoting numbers come from the ``story_*`` functions, and any
sentence about a dissertation claim from ``dlbook.book.claims``. The lower-level steps (training a
head, fine-tuning, the evaluation table, saliency, ...) sit below the sections.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dlbook.book import claims, present
from dlbook.core import results
from dlbook.facemask import audit, classify, data
from dlbook.methods import heads, metrics

CHAPTER = "mask_detection"
METRIC_NAMES = ("accuracy", "precision", "recall", "f1", "roc_auc")
CV_METRICS = ("accuracy", "precision", "recall", "roc_auc")
# The dissertation's rows, by the claim id that judges each.
MODEL_CLAIMS = {
    "custom_cnn": "custom_cnn_96",
    "inception_v3": "inception_v3_995",
    "mobilenet_v2": "mobilenet_v2_991",
}


@dataclass
class Chapter:
    """What every section needs: settings, the images at both sizes, where results go."""

    settings: dict
    seed: int
    data_dir: Path
    results_dir: Path
    profile: str
    images: data.ImageSet  # at the backbone size
    small: data.ImageSet  # at the custom CNN's size, same order
    meta: pd.DataFrame
    started: float = field(default_factory=time.perf_counter)

    def save(self, values: dict) -> None:
        results.save(self.results_dir, CHAPTER, values)


@dataclass
class ModelRun:
    """One trained model's P(with_mask) for every image, and how to rebuild it."""

    name: str
    probs: np.ndarray
    kind: str  # "head" (backbone + linear head), "cnn" or "finetuned"
    backbone: str | None = None
    head: tuple[np.ndarray, float] | None = None
    keras_model: object = None
    info: dict = field(default_factory=dict)


def display_name(token: str) -> str:
    """A model's name for the page: ``claims.human``, which also knows every EfficientNet-Lite."""
    base = token.removesuffix("_finetuned")
    if base.startswith("efficientnet_lite"):
        name = "EfficientNet-Lite" + base.removeprefix("efficientnet_lite")
        return name + (", fine-tuned" if token.endswith("_finetuned") else "")
    return claims.human(token)


# ---------------------------------------------------------------------------------------------
# Sections


def load(settings: dict, data_dir=None, seed: int = 0, results_dir=None, profile: str = "smoke"):
    """Load the images at ``settings["image_size"]`` and ``settings["cnn_image_size"]``.

    ``results_dir`` None means ``results/<profile>`` in the repository.
    """
    from dlbook.core import paths

    quiet_tensorflow()
    folder = data.resolve_data_dir(data_dir)
    kwargs = dict(data_dir=folder, limit=settings["limit"], seed=seed, progress=False)
    images = data.load_face_mask(image_size=settings["image_size"], **kwargs)
    small = data.load_face_mask(image_size=settings["cnn_image_size"], **kwargs)
    if images.paths != small.paths:
        raise RuntimeError("the two image sizes decoded different files")
    return Chapter(
        settings,
        seed,
        folder,
        paths.results_dir(profile, results_dir),
        profile,
        images,
        small,
        audit.file_metadata(folder, images.paths),
    )


def story_load(chapter: Chapter) -> str:
    s = chapter.settings
    return (
        f"{len(chapter.images):,} images, decoded at {s['image_size']} px for the pretrained "
        f"backbones and at {s['cnn_image_size']} px for the custom CNN."
    )


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


def audit_data(chapter: Chapter) -> dict:
    """Duplicates, split leakage, ``splits.csv`` and the shortcut models (saved)."""
    found = run_audit(chapter, chapter.results_dir, chapter.seed)
    chapter.save(found["values"])
    return found


def duplicates_table(found: dict) -> pd.DataFrame:
    """Near-duplicate pairs and groups by method, and how many cross splits or classes."""
    names = {
        "pairs": "pairs",
        "groups": "groups",
        "images_in_groups": "images in groups",
        "cross_split_pairs": "pairs across splits",
        "cross_class_pairs": "pairs across classes",
    }
    return present.table(found["duplicates"].rename(columns=names), index=True)


def split_table(found: dict) -> pd.DataFrame:
    """Images, classes and near-duplicate groups per split."""
    table = found["split_table"].rename(
        columns={"without_mask": "without mask", "with_mask": "with mask",
                 "with_mask_share": "share with mask"}
    )  # fmt: skip
    return present.table(table, index=True, percent_columns=["share with mask"])


def by_class_table(found: dict) -> pd.DataFrame:
    """File format, colour mode and size by class: the shortcuts."""
    table = found["by_class"].rename(
        columns={
            "jpeg_share": "JPEG",
            "rgb_share": "RGB",
            "short_side_min": "short side min",
            "short_side_median": "median",
            "short_side_max": "max",
            "aspect_median": "aspect (median)",
            "kilobytes_median": "kB (median)",
        }
    )
    return present.table(table.rename_axis("class"), index=True, percent_columns=["JPEG", "RGB"])


def story_audit(found: dict) -> str:
    v = found["values"]
    return (
        f"Of the {v['duplicate_pairs']} near-duplicate pairs found by any of the three methods "
        f"(the split's definition, recomputed here from the hashes), "
        f"**{v['split_leakage_pairs']}** cross splits, touching "
        f"{v['test_images_with_cross_split_duplicate']} test images. The images form "
        f"{v['duplicate_groups']} groups of two or more. The split is written to `splits.csv` "
        "in the results folder."
    )


def story_shortcuts(found: dict) -> str:
    s, v = found["shortcut"], found["values"]
    return (
        "A gradient-boosted tree that never sees a mask, only file metadata (format, colour "
        f"mode, size, file size) and a 4×4 colour thumbnail, reaches "
        f"**{present.percent(s['metadata + thumbnail'])}** test accuracy (metadata only "
        f"{present.percent(s['metadata only'])}, thumbnail only "
        f"{present.percent(s['thumbnail only'])}). Any model's accuracy must be read against "
        "that. The shortcut-free test subset keeps RGB JPEG images whose size lies in the "
        f"without_mask range: {v['shortcut_free_test_images']} test images."
    )


def train_models(chapter: Chapter) -> dict:
    """Frozen-backbone heads, the custom CNN (on the chapter's split) and one fine-tuned backbone.

    Returns
    -------
    dict with ``status`` (backbones and whether their weights are here), ``runs``
    (``{name: ModelRun}``) and ``seconds`` per model.
    """
    s, ds = chapter.settings, chapter.images
    status = backbone_status(s["backbones"])
    chapter.save({f"{name}_available": bool(ok) for name, ok in status["available"].items()})
    runs = train_heads(chapter, status.index[status["available"]], chapter.seed)
    runs["custom_cnn"] = train_cnn(chapter.small, ds.split, s, chapter.seed, name="custom_cnn")
    tuned = fine_tune(chapter, runs.get(s["fine_tune_backbone"]), s, chapter.seed)
    if tuned is not None:
        runs[tuned.name] = tuned
    seconds = {name: run.info.get("seconds", np.nan) for name, run in runs.items()}
    return {"status": status, "runs": runs, "seconds": seconds}


def status_table(models: dict) -> pd.DataFrame:
    """The backbones, whether each has ImageNet weights here, and the time its model took."""
    table = models["status"].copy()
    table["seconds"] = [models["seconds"].get(name, np.nan) for name in table.index]
    table.index = table.index.map(display_name)
    return present.table(
        table.rename_axis("backbone"),
        index=True,
        missing={"seconds": "not trained"},
    )


def story_models(models: dict, settings: dict) -> str:
    runs = models["runs"]
    heads = [name for name, run in runs.items() if run.kind == "head"]
    cnn = runs["custom_cnn"].info
    text = (
        f"Linear heads were trained on {_count(len(heads), 'frozen backbone')} with ImageNet weights "
        f"here ({', '.join(map(display_name, heads)) or 'none'}). The custom CNN trained for "
        f"{cnn['epochs']} "
        f"epochs (cap {cnn['epoch_cap']}; early stopping "
        f"{'fired' if cnn['stopped_early'] else 'did not fire'})."
    )
    tuned = [run for run in runs.values() if run.kind == "finetuned"]
    if tuned:
        info = tuned[0].info
        text += (
            f" Fine-tuning {display_name(tuned[0].backbone)} ran {info['epochs']} epochs "
            f"(cap {settings['fine_tune_epochs']})."
        )
    else:
        text += " Fine-tuning is not run in this profile."
    return text


def evaluate_test_split(chapter: Chapter, found: dict, models: dict) -> dict:
    """Every model on the chapter's test split; the best transfer model chosen on validation.

    Saves the transfer models' test metrics with bootstrap intervals, their accuracy on the
    shortcut-free and leak-free test subsets, ``best_model`` and ``selected_on``. The custom
    CNN's headline keys come from ``measure_leakage`` (a mean over seeds); here it is one run.
    """
    ds = chapter.images
    runs = models["runs"]
    subsets = {"shortcut_free": found["shortcut_free"], "clean": ~found["leaked_test"]}
    table, values = evaluate_models(
        runs, ds.labels, ds.split, subsets, chapter.settings["n_boot"], chapter.seed
    )
    best = choose_best(table, [name for name, run in runs.items() if run.kind != "cnn"])
    kept = {k: v for k, v in values.items() if not k.startswith("custom_cnn_")}
    kept.update(
        {
            f"{best}_test_errors": int(table.loc[best, "test_errors"]),
            "best_model": best,
            "best_model_val_accuracy": float(table.loc[best, "val_accuracy"]),
            "selected_on": "validation",
        }
    )
    chapter.save(kept)
    return {"table": table, "best": best, "values": values}


def evaluation_table(evaluation: dict) -> pd.DataFrame:
    """The test-split table for the page: one row per model."""
    table = evaluation["table"].rename(index=display_name)
    table = table.rename(index={display_name("custom_cnn"): "the custom CNN (seed 0)"})
    columns = {
        "accuracy": "accuracy",
        "accuracy_ci_low": "CI low",
        "accuracy_ci_high": "CI high",
        "precision": "precision",
        "recall": "recall",
        "roc_auc": "ROC-AUC",
        "val_accuracy": "val. accuracy",
        "test_errors": "test errors",
        "shortcut_free_accuracy": "shortcut-free",
        "clean_accuracy": "leak-free",
    }
    shown = table[list(columns)].rename(columns=columns).rename_axis("model")
    return present.table(
        shown,
        index=True,
        percent_columns=["accuracy", "CI low", "CI high", "val. accuracy", "shortcut-free",
                         "leak-free"],
        missing="no such test images",
    )  # fmt: skip


def story_evaluation(evaluation: dict) -> str:
    table, best = evaluation["table"], evaluation["best"]
    row = table.loc[best]
    return (
        f"The best transfer model, chosen on **validation** accuracy, is **{display_name(best)}**: "
        "test "
        f"accuracy {present.percent(row.accuracy)} "
        f"({present.interval(row.accuracy_ci_low, row.accuracy_ci_high)}), precision "
        f"{present.number(row.precision)}, recall {present.number(row.recall)}, ROC-AUC "
        f"{present.number(row.roc_auc, 4)}, {int(row.test_errors)} errors on "
        f"{int(row.test_images)} test images; {present.percent(row.shortcut_free_accuracy)} on "
        f"the shortcut-free subset. This is one split of {int(row.test_images)} test images: "
        "the next section asks how much the number moves when the split changes."
    )


def cross_validate(chapter: Chapter, models: dict, evaluation: dict) -> dict:
    """Grouped k-fold cross-validation of the transfer models (saved).

    Every image is held out once; near-duplicate groups never straddle folds. Frozen-backbone
    heads are refitted per fold (strength chosen on a grouped validation part of the training
    folds); with ``settings["cv_fine_tune"]`` the fine-tuned model is fine-tuned again per
    fold, from that fold's head. The interval over folds reflects split variation.

    Returns
    -------
    dict with ``folds`` (N,), ``probs`` (``{model: out-of-fold P(with_mask)}``), ``per_fold``
    (``{model: DataFrame}``), ``summary`` (``{model: {metric: {value, ci_low, ci_high}}}``)
    and ``values``.
    """
    from dlbook.facemask import features

    s, ds = chapter.settings, chapter.images
    folds = data.grouped_folds(ds.labels, ds.groups, s["cv_folds"], chapter.seed)
    probs, heads = {}, {}
    best_tuned = models["runs"][evaluation["best"]].kind == "finetuned"
    for name, run in models["runs"].items():
        if run.kind != "head":
            continue
        feats = features.extract(run.backbone, ds.images, progress=False)
        fitted = classify.cross_validate_head(feats, ds.labels, ds.groups, folds, chapter.seed)
        probs[name], heads[name] = fitted["probs"], fitted
    tuned = [run for run in models["runs"].values() if run.kind == "finetuned"]
    if s["cv_fine_tune"] and tuned and tuned[0].backbone in heads:
        run = tuned[0]
        fitted = heads[run.backbone]
        maps = fine_tune_maps(run.backbone, ds.images, s)
        oof = np.full(len(ds), np.nan)
        for k, fold in enumerate(np.unique(folds)):
            held_out = folds == fold
            val = fitted["val"][k]
            result = fine_tune_top(
                run.backbone, maps, ds.labels, ~held_out & ~val, val, fitted["heads"][k], s,
                chapter.seed + k,
            )  # fmt: skip
            oof[held_out] = result["probs"][held_out]
        probs[run.name] = oof
    per_fold = {name: metrics.fold_metrics(ds.labels, p, folds) for name, p in probs.items()}
    summary = {name: metrics.summarise_folds(table) for name, table in per_fold.items()}
    values = {"cv_folds": int(s["cv_folds"]), "cv_images": int(len(ds))}
    for name, metric_summary in summary.items():
        for metric in CV_METRICS:
            found = metric_summary[metric]
            values[f"{name}_cv_{metric}"] = found["value"]
            values[f"{name}_cv_{metric}_ci_low"] = found["ci_low"]
            values[f"{name}_cv_{metric}_ci_high"] = found["ci_high"]
    best = evaluation["best"]
    values["cv_best_model_included"] = best in probs
    chapter.save(values)
    return {
        "folds": folds,
        "probs": probs,
        "per_fold": per_fold,
        "summary": summary,
        "values": values,
        "best": best,
        "fine_tune_seconds": models["runs"][best].info.get("seconds") if best_tuned else None,
    }


def cv_table(cv: dict) -> pd.DataFrame:
    """Mean over folds of each metric, with the accuracy's interval over folds."""
    rows = []
    for name, summary in cv["summary"].items():
        row = {"model": display_name(name)}
        for metric in CV_METRICS:
            row[metric] = summary[metric]["value"]
        row["CI low"] = summary["accuracy"]["ci_low"]
        row["CI high"] = summary["accuracy"]["ci_high"]
        row["worst fold"] = cv["per_fold"][name]["accuracy"].min()
        rows.append(row)
    frame = pd.DataFrame(rows)[
        ["model", "accuracy", "CI low", "CI high", "worst fold", "precision", "recall", "roc_auc"]
    ].rename(columns={"roc_auc": "ROC-AUC"})
    return present.table(frame, percent_columns=["accuracy", "CI low", "CI high", "worst fold"])


def story_cv(cv: dict) -> str:
    v, best = cv["values"], cv["best"]
    text = (
        f"Over {v['cv_folds']} grouped folds (every one of the {v['cv_images']:,} images held "
        "out once, near-duplicate groups never split)"
    )
    heads = f" the best frozen-feature head, **{display_name(_best_cv_model(cv))}**,"
    if f"{best}_cv_accuracy" not in v:
        cost = cv.get("fine_tune_seconds")
        text = (
            f"The best model, {display_name(best)}, is not cross-validated at this budget: "
            f"fine-tuning once per fold would cost {v['cv_folds']} more fine-tunings"
            + (f" of about {present.number(cost, 2)} s each" if cost else "")
            + ", so its verdict rests on the test split above. "
            + text
        )
        best = _best_cv_model(cv)
    else:
        heads = f" **{display_name(best)}**"
    accuracies = cv["per_fold"][best]["accuracy"]
    return (
        text + f",{heads} reaches a mean accuracy of "
        f"**{present.percent(v[f'{best}_cv_accuracy'], 2)}** "
        f"({present.interval(v[f'{best}_cv_accuracy_ci_low'], v[f'{best}_cv_accuracy_ci_high'])}"
        f" over folds), fold accuracies from {present.percent(accuracies.min())} to "
        f"{present.percent(accuracies.max())}, ROC-AUC "
        f"{present.number(v[f'{best}_cv_roc_auc'], 4)}, precision "
        f"{present.number(v[f'{best}_cv_precision'])} and recall "
        f"{present.number(v[f'{best}_cv_recall'])}."
    )


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
    s, ds = chapter.settings, chapter.images
    runs, best = models["runs"], evaluation["best"]
    best_run = runs[best]
    tuned = best_run.kind == "finetuned"
    transfer_repeats = s["transfer_repeats_finetuned"] if tuned else s["transfer_repeats"]
    maps = fine_tune_maps(best_run.backbone, ds.images, s) if tuned else None
    boot = {"n_boot": s["n_boot"], "seed": chapter.seed}
    rows = []
    for r in range(max(s["cnn_seeds"], transfer_repeats)):
        seed = chapter.seed + r
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
    chapter.save(values)
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


def story_leakage(leak: dict, chapter: Chapter) -> str:
    v, best = leak["values"], leak["best"]
    found = results.load_all(chapter.results_dir)
    claimed_cnn = claims.DISSERTATION_MODELS["custom_cnn"]["accuracy"]
    claimed_transfer = claims.DISSERTATION_MODELS["inception_v3"]["accuracy"]
    parts = [
        f"The custom CNN ({_count(v['custom_cnn_accuracy_seeds'], 'seed')}, "
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


def _count(n: int, noun: str) -> str:
    """``_count(1, "seed") == "1 seed"``, ``_count(3, "seed") == "3 seeds"``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


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


def claims_table(chapter: Chapter) -> pd.DataFrame:
    """The dissertation's per-model claims beside the measurements, judged by ``dlbook.book.claims``."""
    found = results.load_all(chapter.results_dir)
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


def audit_labels(chapter: Chapter, models: dict, evaluation: dict, cv: dict) -> dict:
    """Suspected label issues (cleanlab on out-of-fold probabilities) and every test error (saved).

    The audit flags; it never relabels or drops: the manifest stays the source of truth, and
    accuracies are reported both as labelled and with the suspected issues set aside.

    Returns
    -------
    dict with ``issues`` (indices, most suspicious first), ``source`` (the model whose
    out-of-fold probabilities were audited), ``oof`` (those probabilities), ``errors``
    (indices of the best model's test errors), ``neighbour`` / ``neighbour_distance`` (each
    error's nearest training image by backbone features) and ``values``.
    """
    from dlbook.facemask import features

    ds, best = chapter.images, evaluation["best"]
    run = models["runs"][best]
    source = best if best in cv["probs"] else _best_cv_model(cv)
    oof = cv["probs"][source]
    issues = audit.label_issues(ds.labels, oof)
    flagged = np.zeros(len(ds), dtype=bool)
    flagged[issues] = True
    test = ds.split == "test"
    wrong = (run.probs >= 0.5) != ds.labels
    errors = np.flatnonzero(test & wrong)
    mixed = _mixed_label_groups(ds.labels, ds.groups)
    keep = ~flagged
    fold_table = metrics.fold_metrics(ds.labels[keep], oof[keep], cv["folds"][keep])
    audited = metrics.summarise_folds(fold_table)["accuracy"]
    values = {
        "label_issues_suspected": int(len(issues)),
        "label_issues_model": source,
        "label_issues_labelled_with_mask": int(ds.labels[issues].sum()),
        "label_issues_labelled_without_mask": int(len(issues) - ds.labels[issues].sum()),
        "label_issues_in_test": int(flagged[test].sum()),
        f"{best}_accuracy_as_labelled": float((~wrong[test]).mean()),
        f"{best}_accuracy_audited": float((~wrong[test & keep]).mean()),
        f"{best}_test_errors_suspected": int(flagged[errors].sum()),
        f"{source}_cv_accuracy_as_labelled": float(cv["summary"][source]["accuracy"]["value"]),
        f"{source}_cv_accuracy_audited": audited["value"],
        f"{source}_cv_accuracy_audited_ci_low": audited["ci_low"],
        f"{source}_cv_accuracy_audited_ci_high": audited["ci_high"],
        "mixed_label_groups": int(len(np.unique(ds.groups[mixed]))),
        "test_errors": int(len(errors)),
        "test_error_groups": int(len(np.unique(ds.groups[errors]))),
        "test_errors_largest_group": int(np.bincount(ds.groups[errors]).max()) if len(errors) else 0,
        "test_errors_in_mixed_label_groups": int(mixed[errors].sum()),
    }  # fmt: skip
    feats = features.extract(run.backbone, ds.images, progress=False)
    train = np.flatnonzero(ds.split == "train")
    nearest, distance = (np.zeros(0, np.int64), np.zeros(0))
    if len(errors):
        nearest, distance = audit.nearest_neighbours(feats[errors], feats[train])
        nearest = train[nearest]
    chapter.save(values)
    return {
        "issues": issues,
        "flagged": flagged,
        "source": source,
        "oof": oof,
        "best": best,
        "probs": run.probs,
        "errors": errors,
        "neighbour": nearest,
        "neighbour_distance": distance,
        "values": values,
    }


def _best_cv_model(cv: dict) -> str:
    return max(cv["summary"], key=lambda name: cv["summary"][name]["accuracy"]["value"])


def _mixed_label_groups(labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Items whose near-duplicate group holds both labels, shape (N,), bool."""
    per_group = np.bincount(groups, weights=labels, minlength=groups.max() + 1)
    sizes = np.bincount(groups, minlength=groups.max() + 1)
    mixed = (per_group > 0) & (per_group < sizes)
    return mixed[groups]


def story_label_audit(audit_result: dict) -> str:
    v, best, source = audit_result["values"], audit_result["best"], audit_result["source"]
    n_errors = v["test_errors"]
    text = (
        f"cleanlab's `find_label_issues`, run on the out-of-fold probabilities of "
        f"{display_name(source)} "
        f"(each image scored by a model that never trained on it), flags "
        f"**{v['label_issues_suspected']}** of the images as suspected label issues "
        f"({v['label_issues_labelled_without_mask']} labelled without_mask, "
        f"{v['label_issues_labelled_with_mask']} labelled with_mask); "
        f"{v['label_issues_in_test']} of them are in the test split."
    )
    if n_errors == 0:
        return text + f" {display_name(best)} makes no error on the test split."
    mixed = v["test_errors_in_mixed_label_groups"]
    text += (
        f" Of the {n_errors} test errors of {display_name(best)}, "
        f"**{v[f'{best}_test_errors_suspected']}** are suspected label issues. They come from "
        f"{_count(v['test_error_groups'], 'near-duplicate group')} (the largest holds "
        f"{v['test_errors_largest_group']} of them); "
        + (
            "none sits in a group whose near-identical members carry both labels. "
            if mixed == 0
            else f"{mixed} sit in a group whose near-identical members carry both labels, so "
            "the data set itself disagrees on them. "
        )
    )
    text += (
        f"Test accuracy is {present.percent(v[f'{best}_accuracy_as_labelled'], 2)} as labelled "
        f"and {present.percent(v[f'{best}_accuracy_audited'], 2)} with the suspected issues "
        f"set aside; the cross-validated accuracy of {display_name(source)} moves from "
        f"{present.percent(v[f'{source}_cv_accuracy_as_labelled'], 2)} to "
        f"{present.percent(v[f'{source}_cv_accuracy_audited'], 2)}. The accuracies with the "
        "issues set aside are upper bounds, not measurements of the model: the audit flags "
        "exactly the images on which the models and the labels disagree, so they are only as "
        "right as the flags. The galleries above are the evidence; the manifest keeps every "
        "label as published."
    )
    return text


def calibrate_best(chapter: Chapter, models: dict, evaluation: dict) -> dict:
    """Temperature scaling of the best model on the calibration split (saved)."""
    ds, best = chapter.images, evaluation["best"]
    found = calibrate(models["runs"][best], ds.labels, ds.split)
    found["model"] = best
    chapter.save(
        {k: found[k] for k in ("ece_before", "ece_after", "temperature")}
        | {"reliability_test_images": int((ds.split == "test").sum())}
    )
    return found


def story_calibration(calibration: dict) -> str:
    return (
        f"A temperature of {present.number(calibration['temperature'])} fitted on the "
        f"calibration split changes {display_name(calibration['model'])}'s expected calibration "
        "error on "
        f"the test split from {present.number(calibration['ece_before'])} to "
        f"{present.number(calibration['ece_after'])}. Bins with fewer than "
        f"{RELIABILITY_MIN_COUNT} test images are left out of the diagram (their accuracy "
        "would be noise); the bars under it count the images in each bin."
    )


RELIABILITY_MIN_COUNT = 10


def ship_best(chapter: Chapter, models: dict, evaluation: dict, calibration: dict) -> dict:
    """Save the best model as one Keras file, check it reloads, classify a few files (saved).

    Also writes ``mask_probs.npz`` (every model's P(with_mask) for every image, for chapter 6).
    """
    from dlbook.facemask import predict

    ds, best, runs = chapter.images, evaluation["best"], models["runs"]
    provenance = {
        "profile": chapter.profile,
        "seed": chapter.seed,
        "trained_on": "train split, head strength chosen on val",
        "temperature_fitted_on": "calib split",
    }
    path = ship_model(
        runs[best], calibration["temperature"], chapter.settings["image_size"],
        chapter.results_dir, provenance,
    )  # fmt: skip
    gap = check_shipped_model(path, runs[best], calibration["probs_calibrated"], ds)
    save_mask_probs(chapter.results_dir / "mask_probs.npz", runs, ds)
    model, metadata = classify.load_shipped_model(path)
    sample = [chapter.data_dir / p for p in ds.paths[:: max(1, len(ds) // 6)][:6]]
    predictions, _ = predict.predict_files(
        model, int(metadata["image_size"]), sample, progress=False
    )
    example = pd.DataFrame(
        {
            "file": [str(Path(p.path).relative_to(chapter.data_dir)) for p in predictions],
            "predicted": [p.label for p in predictions],
            "P(with_mask)": [p.prob_with_mask for p in predictions],
        }
    )
    values = {"shipped_reload_max_diff": gap, "shipped_model_mb": path.stat().st_size / 1e6}
    chapter.save(values)
    return {"path": path, "example": example, "values": values, "model": best}


def story_ship(shipped: dict) -> str:
    v = shipped["values"]
    return (
        f"The shipped file (`models/mask_classifier.keras` in the results folder, "
        f"{present.number(v['shipped_model_mb'])} MB) holds {display_name(shipped['model'])} with its "
        "preprocessing, head and temperature; reloaded, it reproduces the in-memory calibrated "
        f"probabilities to within {present.number(v['shipped_reload_max_diff'])}. "
        "The `predict` command on six of the data set's files:"
    )


def look_inside(chapter: Chapter, models: dict, evaluation: dict) -> dict:
    """Occlusion saliency of the best model on correct and wrong test images (saved)."""
    ds, best = chapter.images, evaluation["best"]
    run = models["runs"][best]
    classify = classifier(run, chapter.settings["image_size"])
    found = saliency_examples(
        classify, ds, run.probs, chapter.settings["saliency_per_kind"], chapter.seed
    )
    found["model"] = best
    correct = np.array([kind.startswith("correct") for kind in found["kind"]])
    share = found["lower_half_share"][correct]
    found["values"] = {
        "saliency_lower_half_share_correct": float(np.nanmedian(share)) if share.size else None
    }
    chapter.save(found["values"])
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


def stress_test(chapter: Chapter, models: dict, evaluation: dict) -> dict:
    """Accuracy of the best model and the custom CNN under corruptions (saved)."""
    s, ds, best = chapter.settings, chapter.images, evaluation["best"]
    runs = models["runs"]
    pick = stratified_pick(ds.labels, ds.split == "test", s["robustness_limit"], chapter.seed)
    tables = {
        best: robustness(
            classifier(runs[best], s["image_size"]), ds.images[pick], ds.labels[pick],
            s["severities"], chapter.seed,
        ),
        "custom_cnn": robustness(
            classifier(runs["custom_cnn"]), chapter.small.images[pick], ds.labels[pick],
            s["severities"], chapter.seed,
        ),
    }  # fmt: skip
    worst = tables[best].sort_values("accuracy").iloc[0]
    values = {
        f"robustness_{best}_worst_accuracy": float(worst.accuracy),
        "robustness_worst_corruption": str(worst.corruption),
        "robustness_worst_severity": int(worst.severity),
        "robustness_test_images": int(len(pick)),
    }
    chapter.save(values)
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


def export_tflite(chapter: Chapter, shipped: dict) -> dict:
    """TFLite fp32 / fp16 / int8 exports of the shipped model: size, latency, accuracy (saved)."""
    import contextlib
    import io

    from dlbook.core import logs

    # The converter and the benchmark narrate on stdout and stderr; the table says it all.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        with logs.quiet_native_stderr():
            table, values = tflite_benchmark(
                shipped["path"], chapter, chapter.results_dir, chapter.settings, chapter.seed
            )
    chapter.save(values)
    shown = table.rename(
        columns={
            "bytes": "bytes",
            "latency_ms": "latency (ms)",
            "accuracy": "accuracy",
            "max_prob_diff_vs_keras": "largest |ΔP| vs Keras",
        }
    )
    return {"table": shown, "values": values}


def tflite_table(found: dict) -> pd.DataFrame:
    table = found["table"].copy()
    table["MB"] = table.pop("bytes") / 1e6
    return present.table(table.rename_axis("precision"), index=True, percent_columns=["accuracy"])


def run(
    settings: dict,
    data_dir=None,
    seed: int = 0,
    results_dir=None,
    profile="smoke",
    detection_settings: dict | None = None,
) -> dict:
    """Every section of the chapter in order; returns the chapter's saved results.

    The face-detector sections (``experiments.detection``) run last when ``detection_settings``
    is given: the real-time pipeline times the int8 export of section 11.
    """
    chapter = load(settings, data_dir, seed, results_dir, profile)
    found = audit_data(chapter)
    models = train_models(chapter)
    evaluation = evaluate_test_split(chapter, found, models)
    cv = cross_validate(chapter, models, evaluation)
    measure_leakage(chapter, models, evaluation)
    audit_labels(chapter, models, evaluation, cv)
    calibration = calibrate_best(chapter, models, evaluation)
    shipped = ship_best(chapter, models, evaluation, calibration)
    look_inside(chapter, models, evaluation)
    stress_test(chapter, models, evaluation)
    export_tflite(chapter, shipped)
    if detection_settings is not None:
        from dlbook.experiments import detection

        detection.run(detection_settings, chapter.data_dir, seed, chapter.results_dir)
    return results.load(chapter.results_dir, CHAPTER)


# ---------------------------------------------------------------------------------------------
# The steps the sections are made of: data and audit


def quiet_tensorflow() -> None:
    """Keep TensorFlow's informational logging (retracing notes, export paths) out of the book."""
    import logging

    from dlbook.core import logs

    tf = logs.import_tensorflow()
    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)


def run_audit(chapter: Chapter, out_dir: Path, seed: int = 0) -> dict:
    """Duplicates, split leakage, splits.csv and the shortcut model.

    Returns
    -------
    dict with ``duplicates`` (table by hash method), ``pairs`` (by method), ``split_table``,
    ``by_class`` (metadata per class), ``shortcut`` (accuracies of the shortcut models),
    ``shortcut_free`` (bool mask over the images), ``leaked_test`` (bool mask: test images with
    a near-duplicate in another split under any hash), and ``values`` (results keys).
    """
    ds = chapter.images
    gray = data.load_face_mask(
        chapter.data_dir,
        image_size=32,
        color_mode="grayscale",
        seed=seed,
        progress=False,
    )
    keep = {p: i for i, p in enumerate(gray.paths)}
    gray_images = gray.images[[keep[p] for p in ds.paths]]
    duplicates, pairs = audit.duplicate_summary(
        gray_images, ds.labels, ds.split, chapter.data_dir, ds.paths
    )
    audit.write_splits_csv(out_dir / "splits.csv", ds.paths, ds.labels, ds.split, ds.groups)
    # The split's definition of near-duplicates (byte-identical, dHash- or pHash-close, mirrors
    # included), recomputed here from the hashes rather than read from the loader's groups.
    split_pairs = pairs["any"]
    crossing = audit.cross_split_pairs(split_pairs, ds.split)
    leakage = len(crossing)
    leaked = np.zeros(len(ds), dtype=bool)
    leaked[crossing.ravel()] = True
    leaked_test = leaked & (ds.split == "test")

    shortcut = shortcut_experiment(chapter, seed)
    free = audit.shortcut_free_mask(chapter.meta, ds.labels)
    values = {
        "duplicate_pairs": int(len(split_pairs)),
        "duplicate_groups": int(len(np.unique(ds.groups)) - (np.bincount(ds.groups) == 1).sum()),
        "duplicate_pairs_any_hash": int(duplicates.loc["any", "pairs"]),
        "phash_pairs": int(duplicates.loc["phash", "pairs"]),
        "split_leakage_pairs": leakage,
        "cross_split_pairs_any_hash": int(len(crossing)),
        "test_images_with_cross_split_duplicate": int(leaked_test.sum()),
        "shortcut_model_accuracy": shortcut["metadata + thumbnail"],
        "shortcut_metadata_accuracy": shortcut["metadata only"],
        "shortcut_thumbnail_accuracy": shortcut["thumbnail only"],
        "shortcut_free_test_images": int((free & (ds.split == "test")).sum()),
    }
    return {
        "duplicates": duplicates,
        "pairs": pairs,
        "split_table": audit.split_table(ds.labels, ds.split, ds.groups),
        "by_class": audit.metadata_by_class(chapter.meta, ds.labels),
        "shortcut": shortcut,
        "shortcut_free": free,
        "leaked_test": leaked_test,
        "values": values,
    }


def shortcut_experiment(chapter: Chapter, seed: int = 0) -> dict[str, float]:
    """Test accuracy of tree models that see only metadata, only a 4x4 thumbnail, or both."""
    ds = chapter.small
    both = audit.shortcut_features(chapter.meta, ds.images, thumbnail=4)
    n_meta = audit.shortcut_features(chapter.meta).shape[1]
    train, test = ds.split == "train", ds.split == "test"
    results = {}
    for name, columns in (
        ("metadata only", slice(0, n_meta)),
        ("thumbnail only", slice(n_meta, None)),
        ("metadata + thumbnail", slice(None)),
    ):
        model = audit.fit_shortcut_model(both[train][:, columns], ds.labels[train], seed)
        results[name] = float((model.predict(both[test][:, columns]) == ds.labels[test]).mean())
    return results


# ---------------------------------------------------------------------------------------------
# Models


def backbone_status(names) -> pd.DataFrame:
    """Which backbones have ImageNet weights here, in words a reader can act on."""
    from dlbook.methods import backbones

    rows = []
    for name in names:
        ok, _ = backbones.available(name)
        note = "ImageNet weights installed" if ok else "weights not available offline"
        rows.append({"backbone": name, "available": ok, "note": note})
    return pd.DataFrame(rows).set_index("backbone")


def train_heads(chapter: Chapter, names, seed: int = 0, progress: bool = False) -> dict:
    """Frozen backbone features + logistic regression, for each backbone in ``names``.

    Returns
    -------
    ``{model_name: ModelRun}`` (model name = backbone name).
    """
    from dlbook.facemask import features

    ds = chapter.images
    runs = {}
    for name in names:
        start = time.perf_counter()
        feats = features.extract(name, ds.images, progress=progress)
        train, val = ds.split == "train", ds.split == "val"
        head, strength = heads.fit_logistic_chosen_on_validation(
            feats[train], ds.labels[train], feats[val], ds.labels[val], seed=seed
        )
        runs[name] = ModelRun(
            name,
            head.predict_proba(feats)[:, 1],
            "head",
            backbone=name,
            head=(head.coef_[0].astype(np.float32), float(head.intercept_[0])),
            info={"C": strength, "seconds": time.perf_counter() - start},
        )
    return runs


def train_cnn(
    small: data.ImageSet, split: np.ndarray, settings: dict, seed: int = 0, name="custom_cnn"
) -> ModelRun:
    """Chapter 3's CNN from scratch: augmentation, batch norm, early stopping on validation loss.

    Parameters
    ----------
    small : the images at the CNN's size.
    split : ndarray, shape (N,), str: trains on "train", stops on "val".
    settings : ``cnn_filters``, ``cnn_epochs`` (the cap), ``cnn_patience``, ``cnn_min_epochs``
        (no stop before).
    seed : initialisation, mini-batch order and augmentation draws.

    Returns
    -------
    ModelRun whose ``info`` holds ``epochs`` (run), ``epoch_cap``, ``stopped_early`` (early
    stopping fired before the cap) and ``seconds``.
    """
    import functools

    import keras

    from dlbook.methods import models, training

    train, val = split == "train", split == "val"
    # Validation loss is noisy in the first epochs: stopping is allowed only after
    # ``cnn_min_epochs``, and the learning rate halves when the loss stalls, so a run stops
    # because it converged rather than because of one unlucky epoch.
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss",
        patience=settings["cnn_patience"],
        restore_best_weights=True,
        start_from_epoch=settings["cnn_min_epochs"],
    )
    slow_down = keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss", factor=0.5, patience=max(1, settings["cnn_patience"] // 2), min_lr=1e-5
    )
    start = time.perf_counter()
    build = functools.partial(
        models.build, "cnn", small.images.shape[1:], 2, filters=tuple(settings["cnn_filters"]),
        augmentation=True, seed=seed,
    )  # fmt: skip
    fitted = training.fit(
        build,
        small.images[train],
        small.labels[train],
        validation_data=(small.images[val], small.labels[val]),
        epochs=settings["cnn_epochs"],
        batch_size=32,
        learning_rate=1e-3,
        seed=seed,
        callbacks=[stop, slow_down],
    )
    probs = training.predict_proba(fitted.model, small.images)[:, 1].astype(np.float64)
    info = {
        "epochs": len(fitted.history["loss"]),
        "epoch_cap": int(settings["cnn_epochs"]),
        "stopped_early": bool(stop.stopped_epoch > 0),
        "seconds": time.perf_counter() - start,
    }
    return ModelRun(name, probs, "cnn", keras_model=fitted.model, info=info)


def refit_transfer(
    chapter: Chapter, run: ModelRun, split: np.ndarray, seed: int = 0, maps=None
) -> np.ndarray:
    """Train ``run``'s recipe again on another split; P(with_mask) of every image, shape (N,).

    A head is refitted on the split's train part (strength chosen on its val part); a
    fine-tuned run is then fine-tuned from that head on ``maps`` (``fine_tune_maps``).
    """
    from dlbook.facemask import features

    ds = chapter.images
    feats = features.extract(run.backbone, ds.images, progress=False)
    train, val = split == "train", split == "val"
    head, _ = heads.fit_logistic_chosen_on_validation(
        feats[train], ds.labels[train], feats[val], ds.labels[val], seed=seed
    )
    if run.kind == "head":
        return head.predict_proba(feats)[:, 1]
    if run.kind != "finetuned" or maps is None:
        raise ValueError(f"run.kind={run.kind!r}: refit needs a head, or a fine-tuned run and maps")
    start = (head.coef_[0].astype(np.float32), float(head.intercept_[0]))
    return fine_tune_top(run.backbone, maps, ds.labels, train, val, start, chapter.settings, seed)[
        "probs"
    ]


def split_backbone(backbone, blocks: int):
    """Split an EfficientNet-Lite feature extractor before its last ``blocks`` blocks.

    Returns
    -------
    (bottom, top, boundary): ``bottom`` maps images to the feature maps entering the first
    of those blocks, ``top`` maps those to the pooled features; they share the backbone's
    layers, so training ``top`` updates ``backbone``. ``boundary`` names the first top layer.
    """
    import keras

    numbers = sorted(
        {
            int(layer.name.split("_")[0][5:])
            for layer in backbone.layers
            if layer.name.startswith("block") and layer.name.split("_")[0][5:].isdigit()
        }
    )
    if not 1 <= blocks < len(numbers):
        raise ValueError(f"blocks={blocks!r} must be between 1 and {len(numbers) - 1}")
    prefix = f"block{numbers[-blocks]}_"
    first = next(layer for layer in backbone.layers if layer.name.startswith(prefix))
    bottom = keras.Model(backbone.input, first.input, name="bottom")
    top = keras.Model(first.input, backbone.output, name="top")
    return bottom, top, first.name


def boundary_maps(name: str, bottom, boundary: str, images: np.ndarray) -> np.ndarray:
    """The bottom part's feature maps of ``images``, float16, cached on disk like features."""
    import hashlib

    from dlbook.core import paths
    from dlbook.facemask import features
    from dlbook.methods import backbones

    key = hashlib.sha256(
        "|".join(
            [
                name,
                backbones.weights_sha256(name),
                f"v{features.CACHE_VERSION}",
                boundary,
                features.array_sha256(images),
            ]
        ).encode()
    ).hexdigest()[:24]
    cache_file = paths.cache_dir() / "boundary_maps" / f"{name}-{boundary}-{key}.npy"
    if cache_file.exists():
        return np.load(cache_file)
    maps = np.concatenate(
        [
            np.asarray(bottom.predict_on_batch(images[i : i + 64].astype(np.float32)), np.float16)
            for i in range(0, len(images), 64)
        ]
    )
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_name(f"{cache_file.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, maps)
    tmp.replace(cache_file)
    return maps


def fine_tune_maps(name: str, images: np.ndarray, settings: dict) -> np.ndarray:
    """Feature maps of ``images`` where fine-tuning starts (cached): the frozen part runs once."""
    from dlbook.methods import backbones

    bottom, _, boundary = split_backbone(backbones.load(name), settings["fine_tune_blocks"])
    return boundary_maps(name, bottom, boundary, images)


def fine_tune_top(
    name: str,
    maps: np.ndarray,
    labels: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    head: tuple[np.ndarray, float],
    settings: dict,
    seed: int = 0,
) -> dict:
    """Fine-tune the last ``settings["fine_tune_blocks"]`` blocks of a fresh ``name`` and a head.

    Parameters
    ----------
    maps : ndarray, shape (N, h, w, c), float16: ``fine_tune_maps`` of the N images.
    labels : ndarray, shape (N,), int.
    train, val : ndarray, shape (N,), bool: trains on ``train``, stops early on ``val`` loss.
    head : (weights (D,), bias): the linear head to start from.

    Returns
    -------
    dict with ``probs`` (N,) float64, ``head`` (trained weights, bias), ``backbone`` (the
    whole backbone, its top blocks trained), ``epochs``, ``stopped_early``, ``seconds``.
    Batch-norm statistics stay frozen (the backbone runs in inference mode); no augmentation.
    """
    import keras

    from dlbook.methods import backbones, training

    keras.utils.set_random_seed(seed)
    backbone = backbones.load(name)
    _, top, _ = split_backbone(backbone, settings["fine_tune_blocks"])
    for layer in top.layers:
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
    inputs = keras.Input(maps.shape[1:])
    dense = keras.layers.Dense(1, name="logit")
    logit = dense(top(inputs, training=False))
    dense.set_weights([np.asarray(head[0]).reshape(-1, 1), np.array([head[1]], np.float32)])
    model = keras.Model(inputs, keras.layers.Activation("sigmoid")(logit))
    model.compile(
        optimizer=keras.optimizers.Adam(settings["fine_tune_learning_rate"]),
        loss="binary_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=training.STEPS_PER_EXECUTION,
    )
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=settings["fine_tune_patience"], restore_best_weights=True
    )
    start = time.perf_counter()
    history = model.fit(
        maps[train].astype(np.float32),
        labels[train].astype(np.float32),
        validation_data=(maps[val].astype(np.float32), labels[val].astype(np.float32)),
        epochs=settings["fine_tune_epochs"],
        batch_size=32,
        callbacks=[stop],
        verbose=0,
    )
    probs = np.concatenate(
        [
            np.asarray(model.predict_on_batch(maps[i : i + 256].astype(np.float32)))
            for i in range(0, len(maps), 256)
        ]
    )
    weights, bias = dense.get_weights()
    return {
        "probs": probs.reshape(-1).astype(np.float64),
        "head": (weights[:, 0], float(bias[0])),
        "backbone": backbone,
        "epochs": len(history.history["loss"]),
        "stopped_early": bool(stop.stopped_epoch > 0),
        "seconds": time.perf_counter() - start,
    }


def fine_tune(
    chapter: Chapter, run: ModelRun | None, settings: dict, seed: int = 0
) -> ModelRun | None:
    """Fine-tune ``run``'s backbone and head on the chapter's split (``fine_tune_top``).

    The frozen lower part runs once (its feature maps are cached on disk) and only the top
    blocks and the head are trained on them, so an epoch costs a fraction of a full pass.
    Returns None when no epochs are asked or ``run`` is None (its backbone is unavailable).
    """
    if settings["fine_tune_epochs"] < 1 or run is None:
        return None
    if run.kind != "head":
        raise ValueError(f"run.kind={run.kind!r}: fine-tuning starts from a frozen-backbone run")
    ds = chapter.images
    start = time.perf_counter()
    maps = fine_tune_maps(run.backbone, ds.images, settings)
    maps_s = time.perf_counter() - start
    found = fine_tune_top(
        run.backbone, maps, ds.labels, ds.split == "train", ds.split == "val", run.head,
        settings, seed,
    )  # fmt: skip
    return ModelRun(
        f"{run.backbone}_finetuned",
        found["probs"],
        "finetuned",
        backbone=run.backbone,
        head=found["head"],
        keras_model=found["backbone"],
        info={
            "epochs": found["epochs"],
            "stopped_early": found["stopped_early"],
            "maps_seconds": maps_s,
            "seconds": maps_s + found["seconds"],
        },
    )


# ---------------------------------------------------------------------------------------------
# Evaluation


def evaluate_models(
    runs: dict,
    labels: np.ndarray,
    split: np.ndarray,
    subsets: dict[str, np.ndarray] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict]:
    """Test-split metrics with bootstrap CIs for each model, and accuracy on test subsets.

    Parameters
    ----------
    runs : ``{name: ModelRun}``
    subsets : ``{subset_name: bool mask over all images}``; accuracy on test ∩ mask is reported
        as column ``<subset_name>_accuracy``.

    Returns
    -------
    (table, values): a DataFrame indexed by model with each metric, its CI and the validation
    accuracy; ``values`` the flat results keys (``<model>_<metric>``, ``..._ci_low/high``).
    """
    test, val = split == "test", split == "val"
    rows, values = [], {}
    for name, run in runs.items():
        report = metrics.classification_report(
            labels[test], run.probs[test], n_boot=n_boot, seed=seed
        )
        row = {"model": name}
        for metric in METRIC_NAMES:
            row[metric] = report[metric]["value"]
            row[f"{metric}_ci_low"] = report[metric]["ci_low"]
            row[f"{metric}_ci_high"] = report[metric]["ci_high"]
            values[f"{name}_{metric}"] = report[metric]["value"]
            values[f"{name}_{metric}_ci_low"] = report[metric]["ci_low"]
            values[f"{name}_{metric}_ci_high"] = report[metric]["ci_high"]
        row["val_accuracy"] = metrics.binary_metrics(labels[val], run.probs[val])["accuracy"]
        row["val_log_loss"] = float(
            -np.mean(
                np.log(
                    np.clip(np.where(labels[val] == 1, run.probs[val], 1 - run.probs[val]), 1e-7, 1)
                )
            )
        )
        row["test_errors"] = int(((run.probs[test] >= 0.5) != labels[test]).sum())
        row["test_images"] = int(test.sum())
        for subset, chosen in (subsets or {}).items():
            pick = test & chosen
            accuracy = (
                float(((run.probs[pick] >= 0.5) == labels[pick]).mean()) if pick.any() else np.nan
            )
            row[f"{subset}_accuracy"] = accuracy
            values[f"{name}_{subset}_accuracy"] = accuracy
        rows.append(row)
    return pd.DataFrame(rows).set_index("model"), values


def choose_best(table: pd.DataFrame, candidates=None) -> str:
    """The model with the highest validation accuracy (ties: lowest validation log-loss)."""
    pool = table if candidates is None else table.loc[[c for c in table.index if c in candidates]]
    ranked = pool.sort_values(["val_accuracy", "val_log_loss"], ascending=[False, True])
    return str(ranked.index[0])


def calibrate(run: ModelRun, labels: np.ndarray, split: np.ndarray, n_bins: int = 10) -> dict:
    """Temperature scaling fitted on the calibration split; ECE on the test split before/after."""
    logits = classify.probs_to_logits(run.probs)
    calib, test = split == "calib", split == "test"
    temperature = classify.fit_temperature(logits[calib], labels[calib])
    scaled = classify.sigmoid(logits / temperature)
    return {
        "temperature": temperature,
        "probs_calibrated": scaled,
        "ece_before": metrics.expected_calibration_error(labels[test], run.probs[test], n_bins),
        "ece_after": metrics.expected_calibration_error(labels[test], scaled[test], n_bins),
        "curve_before": metrics.reliability_curve(labels[test], run.probs[test], n_bins),
        "curve_after": metrics.reliability_curve(labels[test], scaled[test], n_bins),
    }


def save_mask_probs(path: Path, runs: dict, ds: data.ImageSet) -> Path:
    """Write ``paths``, ``labels``, ``split``, ``models`` and ``probs__<model>`` to ``path``."""
    arrays = {
        "paths": np.array(ds.paths, dtype=str),
        "labels": ds.labels.astype(np.int64),
        "split": np.asarray(ds.split, dtype=str),
        "models": np.array(list(runs), dtype=str),
    }
    for name, run in runs.items():
        arrays[f"probs__{name}"] = np.asarray(run.probs, dtype=np.float64)
    np.savez(path, **arrays)
    return path


# ---------------------------------------------------------------------------------------------
# The shipped model


def ship_model(
    run: ModelRun, temperature: float, image_size: int, out_dir: Path, provenance: dict
) -> Path:
    """Save ``run`` (a backbone + head model) as ``out_dir/models/mask_classifier.keras``."""
    from dlbook.methods import backbones

    if run.kind not in ("head", "finetuned"):
        raise ValueError(f"run.kind={run.kind!r}: only backbone models are shipped")
    backbone = run.keras_model if run.kind == "finetuned" else backbones.load(run.backbone)
    model = classify.build_shipped_model(
        backbone, run.head[0], run.head[1], temperature, image_size
    )
    metadata = {
        "image_size": int(image_size),
        "temperature": float(temperature),
        "model": run.name,
        "backbone": run.backbone,
        "input": "RGB, values 0-255, resized (no crop) to image_size with bilinear filtering, "
        "as dlbook.facemask.data.decode_image does",
        "output": "P(with_mask), temperature-scaled",
        **provenance,
    }
    path, _ = classify.save_shipped_model(
        model, out_dir / "models" / "mask_classifier.keras", metadata
    )
    return path


def check_shipped_model(
    path: Path, run: ModelRun, calibrated: np.ndarray, ds, n: int = 32
) -> float:
    """Largest |P| difference between the reloaded shipped model and the in-memory calibrated probs."""
    model, _ = classify.load_shipped_model(path)
    pick = np.flatnonzero(ds.split == "test")[:n]
    return float(np.abs(classify.predict_images(model, ds.images[pick]) - calibrated[pick]).max())


# ---------------------------------------------------------------------------------------------
# Robustness, deployment, detection, saliency


def robustness(
    classify,
    images: np.ndarray,
    labels: np.ndarray,
    severities=(1, 3, 5),
    seed: int = 0,
) -> pd.DataFrame:
    """Accuracy under each corruption of ``dlbook.facemask.corruptions`` at each severity.

    Parameters
    ----------
    classify : function (N, S, S, 3) uint8 -> (N,) P(with_mask).

    Returns
    -------
    DataFrame with columns corruption, severity, accuracy (severity 0 = clean, once per kind).
    """
    from dlbook.facemask import corruptions

    clean = float(((classify(images) >= 0.5) == labels).mean())
    rows = []
    for kind in corruptions.CORRUPTIONS:
        rows.append({"corruption": kind, "severity": 0, "accuracy": clean})
        for severity in severities:
            corrupted = corruptions.corrupt(images, kind, severity, seed)
            accuracy = float(((classify(corrupted) >= 0.5) == labels).mean())
            rows.append({"corruption": kind, "severity": severity, "accuracy": accuracy})
    return pd.DataFrame(rows)


def classifier(run: ModelRun, image_size: int | None = None):
    """A function (N, S, S, 3) uint8 -> (N,) P(with_mask) for ``run``, uncalibrated.

    Frozen-backbone runs go through ``features.extract`` (cached on disk, so repeated
    corruptions of the same images cost nothing the second time); the others through Keras.
    """
    from dlbook.facemask import features

    if run.kind == "head":

        def classify(images):
            feats = features.extract(run.backbone, images, progress=False)
            return classify.sigmoid(feats @ run.head[0] + run.head[1])

        return classify
    if run.kind == "finetuned":
        if image_size is None:
            raise ValueError("image_size is needed for a fine-tuned run")
        model = classify.build_shipped_model(
            run.keras_model, run.head[0], run.head[1], 1.0, image_size
        )
    else:
        model = run.keras_model
    return lambda images: classify.predict_images(model, images, batch_size=64)


def stratified_pick(labels: np.ndarray, chosen: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Indices of at most ``limit`` items of ``chosen`` (bool mask) with label shares kept."""
    index = np.flatnonzero(chosen)
    if len(index) <= limit:
        return index
    return index[data.stratified_subset(labels[index], limit, seed)]


def tflite_benchmark(
    shipped_path: Path, chapter: Chapter, out_dir: Path, settings: dict, seed: int = 0
) -> tuple[pd.DataFrame, dict]:
    """Export the shipped model to TFLite fp32/fp16/int8 and measure size, latency, accuracy."""
    from dlbook.facemask import deploy

    model, _ = classify.load_shipped_model(shipped_path)
    ds = chapter.images
    rng = np.random.default_rng(seed)
    train = np.flatnonzero(ds.split == "train")
    representative = ds.images[rng.choice(train, settings["tflite_representative"], replace=False)]
    limit = settings["tflite_test_limit"] or len(ds)
    test = stratified_pick(ds.labels, ds.split == "test", limit, seed)
    paths = deploy.export_tflite_all(
        model, out_dir / "models", "mask_classifier", deploy.PRECISIONS, representative
    )
    rows = deploy.benchmark_tflite(
        paths, ds.images[test], ds.labels[test], repeats=settings["latency_repeats"]
    )
    keras_probs = classify.predict_images(model, ds.images[test])
    values = {}
    for row in rows:
        probs = row.pop("probs")
        row["max_prob_diff_vs_keras"] = float(np.abs(probs - keras_probs).max())
        for key in ("bytes", "latency_ms", "accuracy"):
            values[f"tflite_{row['precision']}_{key}"] = row[key]
    values["tflite_test_images"] = int(len(test))
    return pd.DataFrame(rows).set_index("precision"), values


def occlusion_saliency(
    classify, images: np.ndarray, labels: np.ndarray, patch_fraction: float = 0.25, steps: int = 7
) -> np.ndarray:
    """Occlusion sensitivity: drop in the log-odds of the true label when a grey patch covers each position.

    Parameters
    ----------
    classify : function (N, S, S, 3) uint8 -> (N,) P(with_mask).
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
        logits = classify.probs_to_logits(classify(batch))
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
    classify, ds: data.ImageSet, probs: np.ndarray, n_each: int = 4, seed: int = 0
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
    maps = occlusion_saliency(classify, ds.images[index], ds.labels[index])
    return {"index": index, "kind": kind, "maps": maps, "lower_half_share": lower_half_share(maps)}
