"""Chapter 6's studies: coverage over many calibration/test re-splits, the operating curve,
the check against MAPIE, and coverage under distribution shift.

Every study works on a ``conformal_models.ModelProbs`` and returns a table; ``result_keys``,
``shift_keys`` and ``worst_gap`` flatten the tables into the chapter's keys.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from dlbook.core import results
from dlbook.experiments.conformal_models import ModelProbs
from dlbook.methods import conformal

# method name -> (score function, Mondrian?)
METHODS = {
    "lac": ("lac", False),
    "aps": ("aps", False),
    "aps_rand": ("aps_rand", False),
    "raps": ("raps", False),
    "mondrian_lac": ("lac", True),
    "mondrian_aps_rand": ("aps_rand", True),
}


def valid_alphas(alphas, n_cal_per_class: int) -> list[float]:
    """The alphas every method, Mondrian included, can calibrate with this many points a class."""
    return [a for a in alphas if a >= 1.0 / (n_cal_per_class + 1)]


def coverage_study(model: ModelProbs, alphas, n_resplits: int, seed: int = 0, raps=None):
    """Every method at every alpha over ``n_resplits`` calibration/test re-splits of the pool.

    Returns ``(table, draws)``: a DataFrame with one row per (method, alpha) of the means over
    re-splits (coverage, its standard error, set size, singleton, empty, min class coverage,
    auto-accept accuracy), and ``{(method, alpha): per-re-split coverage (R,)}``.
    """
    raps = raps or {}
    probs, labels = model.probs, model.labels
    # A re-split with no singleton has no auto-accept accuracy (NaN); means skip those.
    warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
    rows, draws = [], {}
    for method, (score, mondrian) in METHODS.items():
        for alpha in alphas:
            out = conformal.resplit_evaluate(
                probs,
                labels,
                alpha,
                score,
                mondrian=mondrian,
                n_resplits=n_resplits,
                seed=seed,
                lam=raps.get("lam", 0.01),
                k_reg=raps.get("k_reg", 1),
            )
            draws[(method, alpha)] = out["coverage"]
            rows.append(
                {
                    "method": method,
                    "alpha": alpha,
                    "target": 1 - alpha,
                    "coverage": out["coverage"].mean(),
                    "coverage_se": out["coverage"].std(ddof=1) / np.sqrt(n_resplits),
                    "set_size": out["set_size"].mean(),
                    "singleton_rate": out["singleton_rate"].mean(),
                    "empty_rate": out["empty_rate"].mean(),
                    # The worst class's mean coverage: what the Mondrian guarantee is about.
                    "class_coverage_min": np.nanmean(out["class_coverage"], axis=0).min(),
                    "coverage_without_mask": np.nanmean(out["class_coverage"][:, 0]),
                    "coverage_with_mask": np.nanmean(out["class_coverage"][:, 1]),
                    "review_rate": 1 - out["singleton_rate"].mean(),
                    "auto_accuracy": np.nanmean(out["auto_accuracy"]),
                }
            )
    return pd.DataFrame(rows), draws


def coverage_laws(alphas, n_cal: int, n_test: int) -> dict:
    """What the coverage-distribution figure draws against the re-splits, per alpha: the
    Beta-Binomial law of coverage (``conformal.coverage_law``) on its 0.05%-99.95% range.

    Returns
    -------
    ``{alpha: {"coverage": (G,), "density": (G,), "band": (1% quantile, 99% quantile)}}``, as
    fractions of the ``n_test`` test points.
    """
    laws = {}
    for alpha in alphas:
        law = conformal.coverage_law(n_cal, n_test, alpha)
        grid = np.arange(law.ppf(0.0005), law.ppf(0.9995) + 1)
        laws[alpha] = {
            "coverage": grid / n_test,
            "density": law.pmf(grid) * n_test,
            "band": (law.ppf(0.01) / n_test, law.ppf(0.99) / n_test),
        }
    return laws


def guarantee_check(table: pd.DataFrame, z: float = 3.0) -> tuple[float, bool]:
    """Monte-Carlo tolerance ``z * max standard error`` and whether every mean coverage clears
    ``1 - alpha - tolerance``.

    Re-splits of one fixed pool are exchangeable, so each method's expected coverage over them is
    at least ``1 - alpha`` exactly; the only slack needed is the Monte-Carlo error of the mean.
    """
    tolerance = float(z * table["coverage_se"].max())
    holds = bool((table["coverage"] >= table["target"] - tolerance).all())
    return tolerance, holds


def operating_curve(model: ModelProbs, alphas, n_resplits: int, seed: int = 0) -> pd.DataFrame:
    """LAC review rate (non-singleton sets) and auto-accept accuracy against alpha."""
    warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
    rows = []
    for alpha in alphas:
        out = conformal.resplit_evaluate(
            model.probs, model.labels, alpha, "lac", n_resplits=n_resplits, seed=seed
        )
        rows.append(
            {
                "alpha": alpha,
                "coverage": out["coverage"].mean(),
                "review_rate": 1 - out["singleton_rate"].mean(),
                "empty_rate": out["empty_rate"].mean(),
                "auto_accuracy": np.nanmean(out["auto_accuracy"]),
            }
        )
    return pd.DataFrame(rows)


class _FixedProbabilities:
    """A prefit scikit-learn-style classifier whose input *is* its probabilities (for MAPIE)."""

    _estimator_type = "classifier"

    def __init__(self, n_classes: int):
        self.classes_ = np.arange(n_classes)
        self.n_features_in_ = n_classes

    def fit(self, x, y):
        return self

    def predict_proba(self, x):
        return np.asarray(x, dtype=np.float64)

    def predict(self, x):
        return np.argmax(x, axis=1)

    def get_params(self, deep=True):
        return {"n_classes": len(self.classes_)}

    def __sklearn_tags__(self):
        from sklearn.utils import ClassifierTags, Tags, TargetTags

        return Tags(
            estimator_type="classifier",
            target_tags=TargetTags(required=True),
            classifier_tags=ClassifierTags(),
        )


def mapie_sets(probs_cal, y_cal, probs_test, alphas, method="lac", random_state=0):
    """MAPIE's thresholds and sets on the same probabilities.

    Returns ``(thresholds (len(alphas),), sets (N_test, K, len(alphas)) bool, cal scores (n,))``.
    """
    from mapie.classification import SplitConformalClassifier

    estimator = _FixedProbabilities(probs_cal.shape[1])
    model = SplitConformalClassifier(
        estimator,
        confidence_level=[1 - a for a in alphas],
        conformity_score=method,
        prefit=True,
        random_state=random_state,
    )
    model.conformalize(probs_cal, y_cal)
    params = {"include_last_label": True} if method == "aps" else None
    _, sets = model.predict_set(probs_test, conformity_score_params=params)
    inner = model._mapie_classifier
    thresholds = np.asarray(inner.conformity_score_function_.quantiles_, dtype=np.float64)
    return thresholds.ravel(), sets, np.asarray(inner.conformity_scores_).ravel()


MAPIE_SET_TOLERANCE = 1e-8
"""MAPIE's LAC sets keep a label when ``score - threshold <= 1e-8`` (its ``EPSILON``), not ``<= 0``."""


def mapie_comparison(probs_cal, y_cal, probs_test, alphas) -> pd.DataFrame:
    """LAC thresholds and sets, ours against MAPIE's, per alpha (binary data: MAPIE allows LAC).

    ``sets_differing`` compares our sets as defined (``score <= threshold``) with MAPIE's;
    ``sets_differing_with_mapie_tolerance`` first adds MAPIE's 1e-8 tolerance to our threshold,
    so it counts the differences that are not explained by that tolerance. With a very confident
    model the thresholds themselves are of order 1e-8 and the tolerance changes sets.
    """
    theirs_q, theirs_sets, _ = mapie_sets(probs_cal, y_cal, probs_test, alphas, "lac")
    scores = conformal.true_label_scores(probs_cal, y_cal, "lac")
    rows = []
    for j, alpha in enumerate(alphas):
        q = conformal.calibrate(scores, alpha)
        ours = conformal.predict_sets(probs_test, q, "lac")
        ours_tolerant = conformal.predict_sets(probs_test, q + MAPIE_SET_TOLERANCE, "lac")
        theirs = theirs_sets[:, :, j]
        rows.append(
            {
                "alpha": alpha,
                "threshold_ours": q,
                "threshold_mapie": theirs_q[j],
                "threshold_abs_diff": abs(q - theirs_q[j]),
                "sets_differing": int((ours != theirs).any(axis=1).sum()),
                "sets_differing_with_mapie_tolerance": int(
                    (ours_tolerant != theirs).any(axis=1).sum()
                ),
                "test_points": len(probs_test),
            }
        )
    return pd.DataFrame(rows)


def shift_study(clean: ModelProbs, shifted: ModelProbs, alphas, n_resplits: int, seed: int = 0):
    """LAC coverage on shifted test points, calibrated on clean vs on shifted points.

    Each re-split draws disjoint calibration and test indices from the shifted subset's pool;
    "clean calibration" uses the clean images' scores at the calibration indices, "shifted
    calibration" the corrupted ones'. Test points are always corrupted.
    """
    keep = shifted.extra["keep"]
    clean_probs, shift_probs = clean.probs[keep], shifted.probs
    labels = shifted.labels
    n = len(labels)
    n_cal = n // 2
    perm = conformal.resplit_indices(n, n_cal, n_resplits, seed)
    clean_scores = conformal.true_label_scores(clean_probs, labels, "lac")
    shift_scores = conformal.true_label_scores(shift_probs, labels, "lac")
    test_label_scores = conformal.label_scores(shift_probs, "lac")
    rows = []
    for alpha in alphas:
        rank = conformal.conformal_rank(n_cal, alpha)
        for name, scores in (
            ("clean calibration", clean_scores),
            ("shifted calibration", shift_scores),
        ):
            q = np.partition(scores[perm[:, :n_cal]], rank - 1, axis=1)[:, rank - 1]
            test = perm[:, n_cal:]
            sets = test_label_scores[test] <= q[:, None, None]
            covered = np.take_along_axis(sets, labels[test][..., None], axis=2)[..., 0]
            rows.append(
                {
                    "corruption": shifted.name.split("@")[1],
                    "calibration": name,
                    "alpha": alpha,
                    "target": 1 - alpha,
                    "coverage": covered.mean(),
                    "set_size": sets.sum(axis=2).mean(),
                }
            )
    return pd.DataFrame(rows)


def result_keys(table: pd.DataFrame, prefix: str = "") -> dict:
    """Flatten a coverage-study table into ``<prefix><metric>_<method>_a<alpha>`` keys."""
    out = {}
    for _, row in table.iterrows():
        for metric in (
            "coverage",
            "set_size",
            "singleton_rate",
            "empty_rate",
            "class_coverage_min",
        ):
            key = results.alpha_key(f"{prefix}{metric}_{row['method']}", row["alpha"])
            out[key] = float(row[metric])
    return out


def shift_keys(table: pd.DataFrame) -> dict:
    """``shift_coverage_<corruption>_<clean|shifted>_a<alpha>`` keys of a shift-study table."""
    return {
        results.alpha_key(
            f"shift_coverage_{row['corruption']}_{row['calibration'].split()[0]}", row["alpha"]
        ): float(row["coverage"])
        for _, row in table.iterrows()
    }


def worst_gap(table: pd.DataFrame) -> dict:
    """The (method, alpha) whose mean coverage falls furthest below (or least above) 1 - alpha:
    ``{"gap": float, "method": str, "alpha": float}``."""
    gaps = table["coverage"] - table["target"]
    row = table.loc[gaps.idxmin()]
    return {"gap": float(gaps.min()), "method": str(row["method"]), "alpha": float(row["alpha"])}
