"""Chapter 6: conformal prediction sets for the face-mask classifiers, and what they guarantee.

Each section of the chapter is one call that computes, saves (through ``run.save``) and returns:
``classifiers``, ``mapie_check``, ``coverage``, ``operating`` and ``shift``. The classifiers are
chosen in ``conformal_models``, the studies run in ``conformal_studies``. The ``*_table``
functions format tables for the page and the ``story_*`` functions word the results.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dlbook.book import claims, present
from dlbook.book.context import Run
from dlbook.core import results
from dlbook.experiments import conformal_models
from dlbook.experiments import conformal_studies as studies
from dlbook.experiments.conformal_models import ModelProbs
from dlbook.methods import conformal


def classifiers(run: Run) -> dict:
    """The two classifiers the chapter conforms (``conformal_models.choose_models``: chapter 4's
    saved probabilities in ``run.results_dir`` when there are some), named in the results."""
    models = conformal_models.choose_models(
        run.settings["features"], run.results_dir, run.data_dir, run.seed
    )
    best, weak = models["best"], models["weak"]
    run.save(
        {
            "best_model": best.name,
            "weak_model": weak.name,
            "best_model_accuracy": best.accuracy,
            "weak_model_accuracy": weak.accuracy,
            "pool_size": len(best.labels),
        }
    )
    return models


def mapie_check(run: Run, models: dict) -> pd.DataFrame:
    """Our LAC thresholds and sets against MAPIE's on the best model's original calib/test split."""
    best = models["best"]
    calib, test = best.split == "calib", best.split == "test"
    table = studies.mapie_comparison(
        best.probs[calib], best.labels[calib], best.probs[test], list(run.settings["alphas"])
    )
    run.save(
        {
            "mapie_max_abs_diff": float(
                max(
                    table["threshold_abs_diff"].max(),
                    table["sets_differing_with_mapie_tolerance"].max(),
                )
            ),
            "mapie_threshold_max_abs_diff": float(table["threshold_abs_diff"].max()),
            "mapie_sets_differing_strict": int(table["sets_differing"].max()),
            "mapie_sets_differing_with_tolerance": int(
                table["sets_differing_with_mapie_tolerance"].max()
            ),
        }
    )
    return table


@dataclass
class Coverage:
    """Both models' re-split studies (``conformal_studies.coverage_study``) and the guarantee
    check."""

    table: pd.DataFrame
    weak_table: pd.DataFrame
    draws: dict
    tolerance: float
    holds: bool
    n_pool: int
    keys: dict = field(default_factory=dict)
    laws: dict = field(default_factory=dict)
    """The law of one re-split's coverage per alpha (``conformal_studies.coverage_laws``)."""


def coverage(run: Run, models: dict) -> Coverage:
    """Every method at every alpha over many calibration/test re-splits, for both models."""
    settings, seed = run.settings, run.seed
    best, weak = models["best"], models["weak"]
    n_pool = len(best.labels)
    alphas = studies.valid_alphas(settings["alphas"], int(np.bincount(best.labels).min() * 0.4))
    resplits, raps = settings["resplits"], settings["raps"]
    table, draws = studies.coverage_study(best, alphas, resplits, seed, raps)
    weak_table, _ = studies.coverage_study(weak, alphas, resplits, seed, raps)
    tolerance, holds = studies.guarantee_check(pd.concat([table, weak_table]))
    worst, weak_worst = studies.worst_gap(table), studies.worst_gap(weak_table)
    keys = {
        **studies.result_keys(table),
        **studies.result_keys(weak_table, prefix="weak_"),
        "resplits": resplits,
        "coverage_mc_tolerance": tolerance,
        "coverage_guarantee_holds": holds,
        "pool_size": n_pool,
        "coverage_worst_gap": worst["gap"],
        "coverage_worst_gap_method": worst["method"],
        "coverage_worst_gap_alpha": worst["alpha"],
        "weak_coverage_worst_gap": weak_worst["gap"],
        "weak_coverage_worst_gap_method": weak_worst["method"],
        "weak_coverage_worst_gap_alpha": weak_worst["alpha"],
        "best_model": best.name,
        "weak_model": weak.name,
    }
    run.save(keys)
    laws = studies.coverage_laws(alphas, n_pool // 2, n_pool - n_pool // 2)
    return Coverage(table, weak_table, draws, tolerance, holds, n_pool, keys, laws)


def operating(run: Run, models: dict) -> dict:
    """LAC's operating curve (review rate, auto-accept accuracy per alpha) for both models;
    saves the best model's point at ``settings["operating_alpha"]``."""
    settings = run.settings
    n_half = len(models["best"].labels) // 2
    alphas = studies.valid_alphas(settings["operating_alphas"], n_half)
    curves = {
        m.name: studies.operating_curve(m, alphas, settings["resplits"], run.seed)
        for m in (models["best"], models["weak"])
    }
    point = curves[models["best"].name].set_index("alpha").loc[settings["operating_alpha"]]
    run.save(
        {
            "review_rate": float(point["review_rate"]),
            "auto_accuracy": float(point["auto_accuracy"]),
            "operating_alpha": settings["operating_alpha"],
        }
    )
    return curves


def shift(run: Run, models: dict) -> pd.DataFrame:
    """LAC under each corruption of ``settings["shift"]``: calibrated on clean vs on corrupted
    images (``conformal_studies.shift_study``) of this chapter's own backbone head."""
    settings, seed = run.settings, run.seed
    own = models["own"]["backbone_logreg"]
    # The corrupted images' features are the slow part, one corruption per task.
    shifted = run.map(
        functools.partial(
            _shifted,
            model=own,
            feature_settings=settings["features"],
            data_dir=run.data_dir,
            seed=seed,
            limit=settings["shift_limit"],
        ),
        [tuple(corruption) for corruption in settings["shift"]],
    )
    tables = [
        studies.shift_study(own, probs, settings["shift_alphas"], settings["resplits"], seed)
        for probs in shifted
    ]
    table = pd.concat(tables, ignore_index=True)
    run.save({**studies.shift_keys(table), "shift_model": own.name})
    return table


def _shifted(corruption: tuple[str, int], **options) -> ModelProbs:
    """``conformal_models.shifted_probabilities`` of one (kind, severity): a ``run.map`` task."""
    kind, severity = corruption
    model = options.pop("model")
    return conformal_models.shifted_probabilities(model, kind, severity, **options)


# ---------------------------------------------------------------------------------------------
# Tables for the page (through ``dlbook.book.present``).


def models_table(models: dict):
    """The two classifiers: role, name, where their probabilities come from, pool size, accuracy."""
    frame = pd.DataFrame(
        [
            {
                "role": role,
                "model": m.name,
                "source": m.source,
                "pool size": len(m.labels),
                "pool accuracy": m.accuracy,
            }
            for role, m in (("best", models["best"]), ("weak", models["weak"]))
        ]
    )
    return present.show(frame, percent_columns=["pool accuracy"])


def mapie_table(table: pd.DataFrame):
    """The MAPIE comparison with readable column names."""
    frame = table.rename(
        columns={
            "threshold_ours": "threshold, ours",
            "threshold_mapie": "threshold, MAPIE",
            "threshold_abs_diff": "threshold difference",
            "sets_differing": "sets differing",
            "sets_differing_with_mapie_tolerance": "sets differing, MAPIE tolerance",
            "test_points": "test points",
        }
    )
    return present.show(frame)


def coverage_table(table: pd.DataFrame):
    """Mean coverage over re-splits (to 0.01 points, so a shortfall shows), one row per method
    and one column per target 1 - alpha."""
    wide = table.pivot(index="method", columns="alpha", values="coverage")
    wide = wide.loc[list(dict.fromkeys(table["method"]))]
    wide.columns = [
        f"target {present.percent(1 - a, 0 if abs(a * 100 - round(a * 100)) < 1e-9 else 1)}"
        for a in wide.columns
    ]
    return present.show(wide.map(lambda v: present.percent(v, 2)), index=True)


def class_coverage_summary(found: Coverage, names: tuple[str, str]) -> pd.DataFrame:
    """One row per model and method: the worst class's mean coverage minus its target over the
    alphas, where it happens, and the mean set size there."""
    rows = []
    for name, table in zip(names, (found.table, found.weak_table), strict=True):
        for method, group in table.groupby("method", sort=False):
            gaps = group["class_coverage_min"] - group["target"]
            worst = group.loc[gaps.idxmin()]
            rows.append(
                {
                    "model": name,
                    "method": method,
                    "worst class: coverage minus target": 100 * float(gaps.min()),
                    "at alpha": float(worst["alpha"]),
                    "coverage without_mask": float(worst["coverage_without_mask"]),
                    "coverage with_mask": float(worst["coverage_with_mask"]),
                    "mean set size": float(worst["set_size"]),
                }
            )
    return pd.DataFrame(rows)


def class_coverage_table(found: Coverage, names: tuple[str, str]):
    """``class_coverage_summary`` for the page; the gap in percentage points."""
    frame = class_coverage_summary(found, names)
    frame["worst class: coverage minus target"] = [
        present.points(v, 2) for v in frame["worst class: coverage minus target"]
    ]
    return present.show(
        frame,
        percent_columns=["coverage without_mask", "coverage with_mask"],
        missing="no test point of this class",
    )


def operating_table(curve: pd.DataFrame):
    """One model's operating curve: alpha, coverage, review rate, empty sets, auto-accept accuracy."""
    frame = curve.rename(
        columns={
            "review_rate": "review rate",
            "empty_rate": "empty sets",
            "auto_accuracy": "auto-accept accuracy",
        }
    )
    return present.show(
        frame,
        percent_columns=["coverage", "review rate", "empty sets", "auto-accept accuracy"],
        missing={"auto-accept accuracy": "no singleton"},
    )


def shift_table(table: pd.DataFrame):
    """The shift study: corruption, calibration, alpha, target, coverage, set size."""
    return present.show(
        table.rename(columns={"set_size": "mean set size"}),
        percent_columns=["target", "coverage"],
    )


# ---------------------------------------------------------------------------------------------
# Stories: the chapter's sentences, built from its results.


def quantile_example(alpha: float = 0.2) -> dict:
    """The hand-checkable case: ten scores 0.0, 0.1, ..., 0.9 at ``alpha``; ``calibrate`` against
    ``np.quantile`` with the exact (inverted CDF) and the often-quoted ("higher") methods."""
    scores = np.round(np.arange(10) * 0.1, 1)
    level = np.ceil(11 * (1 - alpha)) / 10
    return {
        "calibrate": float(conformal.calibrate(scores, alpha)),
        "inverted_cdf": float(np.quantile(scores, level, method="inverted_cdf")),
        "higher": float(np.quantile(scores, level, method="higher")),
    }


def story_quantile_example(example: Mapping) -> str:
    """The hand example's three thresholds, and whether they agree."""
    same = example["calibrate"] == example["inverted_cdf"]
    text = (
        f"`calibrate` returns {present.number(example['calibrate'])}; "
        f'`np.quantile(scores, level, method="inverted_cdf")` returns '
        f"{present.number(example['inverted_cdf'])}"
        + (" (the same order statistic)" if same else "")
        + f', and `method="higher"` returns {present.number(example["higher"])}'
    )
    if example["higher"] > example["calibrate"]:
        text += ", the next order statistic"
    return text + "."


def story_mapie(table: pd.DataFrame) -> str:
    """How far our thresholds and sets are from MAPIE's: "identical" when they do not differ."""
    diff = float(table["threshold_abs_diff"].max())
    tolerant = int(table["sets_differing_with_mapie_tolerance"].max())
    strict = int(table["sets_differing"].max())
    n = int(table["test_points"].iloc[0])
    thresholds = (
        "The thresholds are identical"
        if diff == 0
        else f"The thresholds differ by at most {present.number(diff)}"
    )
    if tolerant == 0 and strict == 0:
        return f"{thresholds}, and so are all {n} test sets at every alpha."
    return (
        f"{thresholds}; with MAPIE's tolerance added, at most **{tolerant}** of {n} test sets "
        f"differ, without it at most {strict}."
    )


def story_coverage(keys: Mapping, results_by_chapter: Mapping) -> str:
    """The guarantee check over both models, and the claim's sentence from ``dlbook.book.claims``."""
    holds = keys["coverage_guarantee_holds"]
    text = (
        f"Over **{keys['resplits']}** re-splits of {keys['pool_size']} points, every method at "
        f"every alpha, for both models, "
        + (
            "keeps its mean coverage above its target minus the Monte-Carlo tolerance"
            if holds
            else "does **not** keep its mean coverage above its target minus the Monte-Carlo "
            "tolerance"
        )
        + f" ({present.number(keys['coverage_mc_tolerance'])}). The weak model's worst mean "
        f"coverage minus target is {present.points(100 * keys['weak_coverage_worst_gap'], 2)} "
        f"({keys['weak_coverage_worst_gap_method']}, alpha = "
        f"{present.number(keys['weak_coverage_worst_gap_alpha'])})."
    )
    return text + " " + claims.sentence("conformal_coverage", results_by_chapter)


def story_efficiency(table: pd.DataFrame, name: str, alpha: float) -> str:
    """Set sizes at ``alpha`` (the nearest studied one): smallest and largest mean set."""
    alphas = table["alpha"].unique()
    alpha = float(alphas[np.argmin(np.abs(alphas - alpha))])
    rows = table[table["alpha"] == alpha].set_index("method")
    small, large = rows["set_size"].idxmin(), rows["set_size"].idxmax()
    return (
        f"For {name} at alpha = {present.number(alpha)}, the mean set size ranges from "
        f"{present.number(rows.loc[small, 'set_size'])} ({small}, "
        f"{present.percent(rows.loc[small, 'singleton_rate'])} singletons) to "
        f"{present.number(rows.loc[large, 'set_size'])} ({large}, "
        f"{present.percent(rows.loc[large, 'singleton_rate'])} singletons)."
    )


def story_class_coverage(found: Coverage, names: tuple[str, str]) -> str:
    """The worst class's coverage, marginal methods against Mondrian ones."""
    summary = class_coverage_summary(found, names)
    gap = "worst class: coverage minus target"
    mondrian = summary["method"].str.startswith("mondrian")
    marginal = summary[~mondrian].sort_values(gap).iloc[0]
    text = (
        f"Measured as the worst class's mean coverage minus its target, the marginal methods reach "
        f"**{present.points(marginal[gap], 2)}** ({marginal['model']}, {marginal['method']}, "
        f"alpha = {present.number(marginal['at alpha'])})"
    )
    if mondrian.any():
        worst = summary[mondrian].sort_values(gap).iloc[0]
        text += (
            f"; with Mondrian calibration the worst is **{present.points(worst[gap], 2)}** "
            f"({worst['model']}, {worst['method']}, alpha = {present.number(worst['at alpha'])})"
        )
    return (
        text + f", against a Monte-Carlo tolerance of "
        f"{present.points(100 * found.tolerance, 2)} on overall coverage (a single class has fewer "
        f"test points, so its own error is larger)."
    )


def story_operating(curves: dict, best: ModelProbs, alpha: float) -> str:
    """The best model's review rate and auto-accept accuracy at the operating alpha."""
    point = curves[best.name].set_index("alpha").loc[alpha]
    return (
        f"At alpha = {present.number(alpha)}, LAC sends **{present.percent(point['review_rate'])}** "
        f"of {best.name}'s images to review and the automatically accepted singletons are "
        f"**{present.percent(point['auto_accuracy'], 2)}** accurate (the model alone: "
        f"{present.percent(best.accuracy, 2)} on the pool)."
    )


def story_shift(table: pd.DataFrame) -> str:
    """Coverage on corrupted images, calibrated on clean against on corrupted images."""
    clean = table[table["calibration"] == "clean calibration"]
    shifted = table[table["calibration"] == "shifted calibration"]
    clean_gap = float((clean["coverage"] - clean["target"]).min())
    shifted_gap = float((shifted["coverage"] - shifted["target"]).abs().max())
    return (
        f"Calibrated on clean images, coverage on corrupted images ranges from "
        f"{present.percent(clean['coverage'].min())} to {present.percent(clean['coverage'].max())} "
        f"(the worst {present.points(100 * clean_gap)} from its target); recalibrated on corrupted "
        f"images it is within {present.points(100 * shifted_gap).lstrip('+')} of its target, with "
        f"mean set size {present.number(shifted['set_size'].mean())} against "
        f"{present.number(clean['set_size'].mean())}."
    )


def story_summary(keys: Mapping) -> str:
    """What the chapter found, from its results."""
    holds = keys.get("coverage_guarantee_holds")
    mapie = keys.get("mapie_sets_differing_with_tolerance", keys.get("mapie_max_abs_diff"))
    # ``shift_coverage_<corruption>_clean_a<alpha>``: coverage calibrated on clean images.
    shift_clean = {
        k: v for k, v in keys.items() if k.startswith("shift_coverage_") and "_clean_" in k
    }
    below = sum(v < 1 - results.key_alpha(k)[1] for k, v in shift_clean.items())
    parts = [
        f"Over {keys['resplits']} re-splits the coverage guarantee "
        + ("held" if holds else "did not hold")
        + " for both classifiers, within Monte-Carlo error",
        "our sets "
        + (
            "equal MAPIE's"
            if not mapie
            else f"differ from MAPIE's in at most {present.number(mapie)} test sets"
        )
        + " once its tolerance is added",
    ]
    if shift_clean:
        parts.append(
            f"under corruption, clean calibration fell short of its target in {below} of "
            f"{len(shift_clean)} settings"
        )
    return "; ".join(parts) + ". The guarantee is marginal and rests on exchangeability."
