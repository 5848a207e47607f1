"""Chapter 4, section 4: nested grouped cross-validation of the transfer headline.

Plain cross-validation scores every network on the same folds, and the headline's winner is
chosen on a validation split whose images also sit in those folds. Nested cross-validation keeps
the choice inside: for each outer grouped fold (the same folds as ``evaluation.cross_validate``),
inner grouped folds of the outer training part choose the backbone among the frozen-feature
candidates and the head's strength ``C`` (``choose_configuration``); the chosen configuration is
refitted on the whole outer training part and scores the outer test fold once. The selection
step is handed only the rows of the outer training part, so no outer test image reaches it.

Fine-tuned variants are not candidates: fine-tuning costs minutes a fold, the logistic heads
here seconds on cached features.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pandas as pd

from dlbook.book import present
from dlbook.experiments.mask_detection.classifiers import display_name
from dlbook.experiments.mask_detection.dataset import Chapter, images_for
from dlbook.experiments.mask_detection.evaluation import CV_METRICS, interval_keys
from dlbook.facemask import data, features
from dlbook.methods import heads, metrics

STRENGTHS = (0.01, 0.1, 1.0, 10.0)
"""Candidate values of the head's ``C``, the same as ``heads.fit_logistic_chosen_on_validation``."""
INNER_FOLDS = 3
"""Inner grouped folds of each outer training part that choose the configuration, unless the
profile's ``nested_inner_folds`` says otherwise."""


def _log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    probs = np.clip(probs, 1e-7, 1 - 1e-7)
    return float(-np.mean(np.where(labels == 1, np.log(probs), np.log1p(-probs))))


def inner_losses(
    candidates: dict[str, np.ndarray],
    labels: np.ndarray,
    groups: np.ndarray,
    strengths=STRENGTHS,
    inner_folds: int = INNER_FOLDS,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean validation log-loss over inner grouped folds of every (backbone, ``C``).

    Parameters
    ----------
    candidates : ``{backbone: ndarray, shape (N, D_b), float32}``, rows of one training part.
    labels, groups : ndarray, shape (N,), int.

    Returns
    -------
    DataFrame with columns ``backbone``, ``strength``, ``log_loss``, ``accuracy`` (means over
    the inner folds), one row per pair, in candidate then strength order.
    """
    from threadpoolctl import threadpool_limits

    folds = data.grouped_folds(labels, groups, inner_folds, seed)
    rows = []
    # One BLAS thread: small fits on a shared machine lose more to threads than they gain.
    with threadpool_limits(limits=1):
        for name, feats in candidates.items():
            if len(feats) != len(labels):
                raise ValueError(f"{name}: {len(feats)} feature rows for {len(labels)} labels")
            for strength in strengths:
                losses, hits = [], []
                for fold in np.unique(folds):
                    val = folds == fold
                    model = heads.fit_logistic(
                        feats[~val], labels[~val], strength, seed, standardise=False
                    )
                    probs = model.predict_proba(feats[val])[:, 1]
                    losses.append(_log_loss(labels[val], probs))
                    hits.append(np.mean((probs >= 0.5) == labels[val]))
                rows.append(
                    {"backbone": name, "strength": float(strength),
                     "log_loss": float(np.mean(losses)), "accuracy": float(np.mean(hits))}
                )  # fmt: skip
    return pd.DataFrame(rows)


def choose_configuration(
    candidates: dict[str, np.ndarray],
    labels: np.ndarray,
    groups: np.ndarray,
    seed: int = 0,
    inner_folds: int = INNER_FOLDS,
) -> tuple[str, float]:
    """The (backbone, ``C``) with the lowest mean inner log-loss (``inner_losses``).

    Sees only what it is given: the rows of one outer training part.
    """
    table = inner_losses(candidates, labels, groups, inner_folds=inner_folds, seed=seed)
    best = table.sort_values(["log_loss", "accuracy"], ascending=[True, False]).iloc[0]
    return str(best.backbone), float(best.strength)


def nested_cross_validate_heads(
    candidates: dict[str, np.ndarray],
    labels: np.ndarray,
    groups: np.ndarray,
    folds: np.ndarray,
    seed: int = 0,
    select: Callable = choose_configuration,
) -> dict:
    """Out-of-fold P(with_mask) of the configuration chosen inside each outer fold.

    Parameters
    ----------
    candidates : ``{backbone: ndarray, shape (N, D_b), float32}``, every image's features.
    labels, groups, folds : ndarray, shape (N,), int; ``folds`` the outer fold of each image.
    select : ``select(candidates, labels, groups, seed) -> (backbone, C)``, called with the rows
        of the outer training part only.

    Returns
    -------
    dict with ``probs`` (N,) float64 out-of-fold and, in fold order, ``choices`` (backbones)
    and ``strengths`` (``C``).
    """
    labels, groups, folds = np.asarray(labels), np.asarray(groups), np.asarray(folds)
    if not candidates:
        raise ValueError("candidates is empty; give at least one backbone's features")
    probs = np.full(len(labels), np.nan)
    choices, strengths = [], []
    for fold in np.unique(folds):
        train = np.flatnonzero(folds != fold)
        part = {name: feats[train] for name, feats in candidates.items()}
        backbone, strength = select(part, labels[train], groups[train], seed + int(fold))
        model = heads.fit_logistic(part[backbone], labels[train], strength, seed, standardise=False)
        held_out = folds == fold
        probs[held_out] = model.predict_proba(candidates[backbone][held_out])[:, 1]
        choices.append(backbone)
        strengths.append(strength)
    return {"probs": probs, "choices": choices, "strengths": strengths}


def nested_cross_validate(chapter: Chapter, models: dict, cv: dict) -> dict:
    """Nested grouped cross-validation over the frozen-feature heads, on ``cv``'s folds (saved).

    Saves ``nested_cv_<metric>`` with intervals over folds (as ``<model>_cv_<metric>``),
    ``nested_cv_choices`` and ``nested_cv_strengths`` (comma strings, one entry a fold),
    ``nested_cv_candidates``, ``nested_cv_folds``, ``nested_cv_inner_folds`` and ``cv_nested``.

    Returns
    -------
    dict with ``probs``, ``choices``, ``strengths``, ``per_fold`` (DataFrame), ``values`` and
    ``plain`` (the best plain cross-validated model, for comparison).
    """
    ds, seed = chapter.images, chapter.run.seed
    backbones = [run.backbone for run in models["runs"].values() if run.kind == "head"]
    candidates = {
        name: features.extract(name, images_for(chapter, name).images, progress=False)
        for name in backbones
    }
    inner = int(chapter.run.settings.get("nested_inner_folds", INNER_FOLDS))
    select = functools.partial(choose_configuration, inner_folds=inner)
    found = nested_cross_validate_heads(candidates, ds.labels, ds.groups, cv["folds"], seed, select)
    per_fold = metrics.fold_metrics(ds.labels, found["probs"], cv["folds"])
    summary = metrics.summarise_folds(per_fold)
    values = {
        "cv_nested": True,
        "nested_cv_folds": int(len(np.unique(cv["folds"]))),
        "nested_cv_inner_folds": inner,
        "nested_cv_candidates": ",".join(backbones),
        "nested_cv_choices": ",".join(found["choices"]),
        "nested_cv_strengths": ",".join(f"{c:g}" for c in found["strengths"]),
    }
    for metric in CV_METRICS:
        values.update(interval_keys(f"nested_cv_{metric}", summary[metric]))
    chapter.run.save(values)
    plain = max(cv["summary"], key=lambda name: cv["summary"][name]["accuracy"]["value"])
    return {**found, "per_fold": per_fold, "values": values, "plain": plain, "cv": cv}


def nested_table(nested: dict) -> pd.DataFrame:
    """Nested against plain cross-validation: one row each, accuracy with its interval."""
    v, cv, plain = nested["values"], nested["cv"], nested["plain"]
    rows = [
        {
            "protocol": f"plain: best of {len(cv['summary'])} on the same folds "
            f"({display_name(plain)})",
            "accuracy": cv["summary"][plain]["accuracy"]["value"],
            "CI low": cv["summary"][plain]["accuracy"]["ci_low"],
            "CI high": cv["summary"][plain]["accuracy"]["ci_high"],
            "ROC-AUC": cv["summary"][plain]["roc_auc"]["value"],
        },
        {
            "protocol": "nested: backbone and C chosen inside each outer fold",
            "accuracy": v["nested_cv_accuracy"],
            "CI low": v["nested_cv_accuracy_ci_low"],
            "CI high": v["nested_cv_accuracy_ci_high"],
            "ROC-AUC": v["nested_cv_roc_auc"],
        },
    ]
    return present.table(pd.DataFrame(rows), percent_columns=["accuracy", "CI low", "CI high"])


def story_nested(nested: dict) -> str:
    v, cv, plain = nested["values"], nested["cv"], nested["plain"]
    picks = ", ".join(
        f"{display_name(name)} (C = {present.number(c)})"
        for name, c in zip(nested["choices"], nested["strengths"])
    )
    plain_accuracy = cv["summary"][plain]["accuracy"]["value"]
    gap = 100 * (v["nested_cv_accuracy"] - plain_accuracy)
    return (
        f"Nested: inside each of the {v['nested_cv_folds']} outer folds, "
        f"{v['nested_cv_inner_folds']} inner grouped folds of its training part chose the "
        "backbone among the frozen-feature heads and the head's strength; the choice was refitted "
        "on the outer training part and scored once on the outer test fold. Per fold it picked "
        f"{picks}. The nested accuracy is **{present.percent(v['nested_cv_accuracy'], 2)}** "
        f"({present.interval(v['nested_cv_accuracy_ci_low'], v['nested_cv_accuracy_ci_high'])}), "
        f"against {present.percent(plain_accuracy, 2)} for the best plain cross-validated model "
        f"({display_name(plain)}): {present.points(gap, 2)}. No choice behind the nested figure "
        "saw the images that score it, so it is the one the claims page judges."
    )
