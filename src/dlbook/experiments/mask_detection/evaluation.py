"""Chapter 4, sections 3, 4 and 7: every model on the test split, grouped cross-validation, and
the best model's calibration.

The best transfer model is chosen on validation accuracy (``choose_best``), never on the test
split; cross-validation holds every image out once with near-duplicate groups kept whole.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from dlbook.book import present
from dlbook.experiments.mask_detection.classifiers import (
    ModelRun,
    display_name,
    fine_tune_maps,
    fine_tune_top,
)
from dlbook.experiments.mask_detection.dataset import Chapter, images_for
from dlbook.facemask import classify, data, features
from dlbook.methods import metrics

METRIC_NAMES = ("accuracy", "precision", "recall", "f1", "roc_auc")
CV_METRICS = ("accuracy", "precision", "recall", "roc_auc")
RELIABILITY_MIN_COUNT = 10
"""Reliability bins with fewer test images are left out of the diagram: their accuracy is noise."""


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
        runs, ds.labels, ds.split, subsets, chapter.run.settings["n_boot"], chapter.run.seed
    )
    best = choose_best(table, [name for name, run in runs.items() if run.kind != "cnn"])
    ports = chapter.run.settings.get("fine_tune_cuts", {})
    ported = [name for name, run in runs.items() if run.backbone in ports]
    kept = {k: v for k, v in values.items() if not k.startswith("custom_cnn_")}
    kept.update(
        {
            f"{best}_test_errors": int(table.loc[best, "test_errors"]),
            "best_model": best,
            "best_model_val_accuracy": float(table.loc[best, "val_accuracy"]),
            "selected_on": "validation",
            "transfer_network_won_validation": runs[best].backbone,
            "ported_model_won_validation": choose_best(table, ported) if ported else None,
        }
    )
    chapter.run.save(kept)
    curves = test_curves(runs, ds.labels, ds.split)
    return {"table": table, "best": best, "values": values, "curves": curves}


def test_curves(runs: dict, labels: np.ndarray, split: np.ndarray) -> dict[str, dict]:
    """Each model's ROC curve, its AUC and its confusion counts on the test split.

    Returns
    -------
    ``{model: {"fpr": (K,), "tpr": (K,), "auc": float, "confusion": (2, 2) int}}``; confusion
    rows are the true class, columns the predicted one (0 = without mask).
    """
    test = split == "test"
    curves = {}
    for name, run in runs.items():
        fpr, tpr, _ = roc_curve(labels[test], run.probs[test])
        curves[name] = {
            "fpr": fpr,
            "tpr": tpr,
            "auc": metrics.roc_auc(labels[test], run.probs[test]),
            "confusion": metrics.confusion_counts(labels[test], run.probs[test]),
        }
    return curves


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


def interval_keys(key: str, found: dict) -> dict[str, float]:
    """``{key: value, key_ci_low: ..., key_ci_high: ...}`` from ``{"value", "ci_low", "ci_high"}``."""
    return {
        key: found["value"],
        f"{key}_ci_low": found["ci_low"],
        f"{key}_ci_high": found["ci_high"],
    }


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
            row.update(interval_keys(metric, report[metric]))
            values.update(interval_keys(f"{name}_{metric}", report[metric]))
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
    s, ds = chapter.run.settings, chapter.images
    folds = data.grouped_folds(ds.labels, ds.groups, s["cv_folds"], chapter.run.seed)
    probs, heads = {}, {}
    best_tuned = models["runs"][evaluation["best"]].kind == "finetuned"
    for name, run in models["runs"].items():
        if run.kind != "head":
            continue
        feats = features.extract(
            run.backbone, images_for(chapter, run.backbone).images, progress=False
        )
        fitted = classify.cross_validate_head(feats, ds.labels, ds.groups, folds, chapter.run.seed)
        probs[name], heads[name] = fitted["probs"], fitted
    seconds = {}
    for run in cv_fine_tuned(models["runs"], evaluation["table"], s):
        if run.backbone in heads:
            start = time.perf_counter()
            probs[run.name] = fine_tune_folds(chapter, run, heads[run.backbone], folds)
            seconds[run.name] = time.perf_counter() - start
    per_fold = {name: metrics.fold_metrics(ds.labels, p, folds) for name, p in probs.items()}
    summary = {name: metrics.summarise_folds(table) for name, table in per_fold.items()}
    values = {
        "cv_folds": int(s["cv_folds"]),
        "cv_images": int(len(ds)),
        "cv_fine_tuned_models": ",".join(name for name in probs if name.endswith("_finetuned")),
    }
    for name, metric_summary in summary.items():
        for metric in CV_METRICS:
            values.update(interval_keys(f"{name}_cv_{metric}", metric_summary[metric]))
    best = evaluation["best"]
    values["cv_best_model_included"] = best in probs
    chapter.run.save(values)
    return {
        "folds": folds,
        "probs": probs,
        "per_fold": per_fold,
        "summary": summary,
        "values": values,
        "best": best,
        "fine_tune_seconds": models["runs"][best].info.get("seconds") if best_tuned else None,
        "fine_tune_cv_seconds": seconds,
    }


def cv_fine_tuned(runs: dict, table: pd.DataFrame, settings: dict) -> list[ModelRun]:
    """The fine-tuned runs cross-validated fold by fold (none unless ``cv_fine_tune``).

    ``fine_tune_backbone``'s when ``cv_fine_tune_backbone``, and of the ``fine_tune_ports``
    runs all of them (``cv_fine_tune_ports == "all"``) or the one with the best validation
    accuracy on the chapter's split (``"winner"``): fine-tuning costs minutes a fold.
    """
    tuned = {name: run for name, run in runs.items() if run.kind == "finetuned"}
    if not settings["cv_fine_tune"] or not tuned:
        return []
    ports = [
        name for name, run in tuned.items() if run.backbone in settings.get("fine_tune_ports", ())
    ]
    which = settings.get("cv_fine_tune_ports", "all")
    if which not in ("all", "winner", "none"):
        raise ValueError(f"cv_fine_tune_ports={which!r}; use 'all', 'winner' or 'none'")
    if which == "none":
        ports = []
    if ports and which == "winner":
        ports = [choose_best(table, ports)]
    chosen = [
        name
        for name, run in tuned.items()
        if settings["cv_fine_tune_backbone"] and run.backbone == settings["fine_tune_backbone"]
    ]
    return [tuned[name] for name in chosen + ports]


def fine_tune_folds(chapter: Chapter, run: ModelRun, fitted: dict, folds: np.ndarray) -> np.ndarray:
    """Out-of-fold P(with_mask) of ``run``'s recipe fine-tuned again on each fold, shape (N,).

    Each fold starts from that fold's head (``fitted``, from ``classify.cross_validate_head``)
    and stops early on the fold's own grouped validation part.
    """
    s, ds = chapter.run.settings, chapter.images
    maps = fine_tune_maps(run.backbone, images_for(chapter, run.backbone).images, s)
    oof = np.full(len(ds), np.nan)
    # the folds' fine-tunings are independent: they run as tasks, side by side
    tasks = [
        (run.backbone, maps, ds.labels, ~(folds == fold) & ~fitted["val"][k], fitted["val"][k],
         fitted["heads"][k], s, chapter.run.seed + k)
        for k, fold in enumerate(np.unique(folds))
    ]  # fmt: skip
    for fold, probs in zip(np.unique(folds), chapter.run.map(fine_tune_task, tasks), strict=True):
        oof[folds == fold] = probs[folds == fold]
    return oof


def fine_tune_task(task: tuple) -> np.ndarray:
    """``fine_tune_top(*task)``'s P(with_mask) of every image, shape (N,): a ``run.map`` task."""
    return fine_tune_top(*task)["probs"]


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
    heads = f" the best of the models cross-validated, **{display_name(best_cv_model(cv))}**,"
    if f"{best}_cv_accuracy" not in v:
        cost = cv.get("fine_tune_seconds")
        text = (
            f"The best model on validation, {display_name(best)}, is not cross-validated at "
            f"this budget: fine-tuning once per fold would cost {v['cv_folds']} more "
            "fine-tunings"
            + (f" of about {present.number(cost, 2)} s each" if cost else "")
            + ", so its figures are the single test split's above; the transfer claim is "
            "judged by the nested cross-validation below. " + text
        )
        best = best_cv_model(cv)
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


def best_cv_model(cv: dict) -> str:
    return max(cv["summary"], key=lambda name: cv["summary"][name]["accuracy"]["value"])


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


def calibrate_best(chapter: Chapter, models: dict, evaluation: dict) -> dict:
    """Temperature scaling of the best model on the calibration split (saved)."""
    ds, best = chapter.images, evaluation["best"]
    found = calibrate(models["runs"][best], ds.labels, ds.split)
    found["model"] = best
    chapter.run.save(
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
