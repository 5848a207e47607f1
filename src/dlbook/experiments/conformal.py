"""Chapter 6's experiments: probabilities to conform, re-split studies, MAPIE check, shift.

Each section of the chapter is one function that computes and saves its results
(``classifiers``, ``mapie_check``, ``coverage``, ``operating``, ``shift``); ``run`` runs them all.
The ``*_table`` functions format tables for the page and the ``story_*`` functions word the
results.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dlbook.book import claims, present
from dlbook.core import results
from dlbook.facemask import features
from dlbook.methods import conformal, heads

CHAPTER = "conformal"

# method name -> (score function, Mondrian?)
METHODS = {
    "lac": ("lac", False),
    "aps": ("aps", False),
    "aps_rand": ("aps_rand", False),
    "raps": ("raps", False),
    "mondrian_lac": ("lac", True),
    "mondrian_aps_rand": ("aps_rand", True),
}


@dataclass
class ModelProbs:
    """One classifier's P(with_mask) on the calibration and test splits (the re-split pool)."""

    name: str
    p_with_mask: np.ndarray  # (N,) float64
    labels: np.ndarray  # (N,) int64
    split: np.ndarray  # (N,) str, "calib" or "test"
    source: str
    extra: dict = field(default_factory=dict)

    @property
    def probs(self) -> np.ndarray:
        return conformal.binary_probs(self.p_with_mask)

    @property
    def accuracy(self) -> float:
        return float(((self.p_with_mask >= 0.5) == self.labels).mean())


def _pool(split) -> np.ndarray:
    return np.isin(split, ("calib", "test"))


def own_models(feature_settings: Mapping, data_dir=None, seed: int = 0, c: float = 0.1) -> dict:
    """Two classifiers this chapter fits itself, so it runs without chapter 4's output.

    ``backbone_logreg``: logistic regression on the shared pooled backbone features (strong).
    ``pixel_logreg``: logistic regression on 16 px grayscale pixels (deliberately weak).
    Both are fitted on the train split of the images ``feature_settings`` (a ``profiles.FEATURES`` block)
    selects; returns ``{name: ModelProbs}``, the backbone head and pool paths in ``extra`` for
    the shift study.
    """
    from dlbook.facemask import data

    feats = features.face_mask_features(feature_settings, data_dir, seed, progress=False)
    train = feats.split == "train"
    head = heads.fit_logistic(feats.features[train], feats.labels[train], c=c, seed=seed)
    pool = _pool(feats.split)
    strong = ModelProbs(
        "backbone_logreg",
        head.predict_proba(feats.features[pool])[:, 1],
        feats.labels[pool],
        feats.split[pool],
        f"logistic regression on {feats.backbone} features ({feats.image_size} px)",
        {"head": head, "paths": np.array(feats.paths)[pool]},
    )
    small = data.load_face_mask(
        data_dir,
        image_size=16,
        color_mode="grayscale",
        limit=feature_settings["limit"],
        seed=seed,
        progress=False,
    )
    wanted = set(feats.paths)
    keep = np.array([p in wanted for p in small.paths])
    pixels = small.images[keep].reshape(keep.sum(), -1).astype(np.float64) / 255.0
    labels, split = small.labels[keep], small.split[keep]
    pixel_head = heads.fit_logistic(pixels[split == "train"], labels[split == "train"], c=c)
    weak = ModelProbs(
        "pixel_logreg",
        pixel_head.predict_proba(pixels[_pool(split)])[:, 1],
        labels[_pool(split)],
        split[_pool(split)],
        "logistic regression on 16 px grayscale pixels",
    )
    return {"backbone_logreg": strong, "pixel_logreg": weak}


def chapter4_models(path: Path) -> dict:
    """Chapter 4's saved probabilities (``mask_probs.npz``) as ``{name: ModelProbs}``.

    Adds ``extra["val_accuracy"]`` (accuracy on the validation split, used to pick the best
    model without looking at the calibration or test points).
    """
    with np.load(path, allow_pickle=False) as archive:
        labels = archive["labels"].astype(np.int64)
        split = archive["split"].astype(str)
        names = [str(n) for n in archive["models"]]
        out = {}
        for name in names:
            p = archive[f"probs__{name}"].astype(np.float64)
            val = split == "val"
            val_acc = float(((p[val] >= 0.5) == labels[val]).mean()) if val.any() else np.nan
            pool = _pool(split)
            out[name] = ModelProbs(
                name, p[pool], labels[pool], split[pool], "chapter 4", {"val_accuracy": val_acc}
            )
    return out


def choose_models(feature_settings: Mapping, out_dir=None, data_dir=None, seed: int = 0) -> dict:
    """The chapter's two subjects: ``{"best": ModelProbs, "weak": ModelProbs, "own": {...}}``.

    Chapter 4's best model (by validation accuracy) and its custom CNN when
    ``<out_dir>/mask_probs.npz`` exists; otherwise this chapter's own backbone and pixel heads.
    The own heads are always returned too: the shift study needs a model it can re-run.
    """
    own = own_models(feature_settings, data_dir, seed)
    path = Path(out_dir) / "mask_probs.npz" if out_dir is not None else None
    if path is not None and path.exists():
        found = chapter4_models(path)
        if found:
            best = max(found.values(), key=lambda m: np.nan_to_num(m.extra["val_accuracy"]))
            weak = found.get("custom_cnn") or min(
                found.values(), key=lambda m: np.nan_to_num(m.extra["val_accuracy"])
            )
            if weak.name != best.name:
                return {"best": best, "weak": weak, "own": own}
            return {"best": best, "weak": own["pixel_logreg"], "own": own}
    return {"best": own["backbone_logreg"], "weak": own["pixel_logreg"], "own": own}


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


def shifted_probabilities(
    model: ModelProbs,
    kind: str,
    severity: int,
    feature_settings: Mapping,
    data_dir=None,
    seed: int = 0,
    limit: int | None = None,
) -> ModelProbs:
    """The backbone head's probabilities on corrupted copies of the pool's images.

    ``feature_settings`` is the ``profiles.FEATURES`` block the head was fitted under; ``limit`` keeps a
    random subset of the pool (the features of corrupted images are computed afresh, which is the
    slow part).
    """
    from dlbook.facemask import corruptions, data

    images = data.load_face_mask(
        data_dir,
        image_size=feature_settings["image_size"],
        limit=feature_settings["limit"],
        seed=seed,
        progress=False,
    )
    index = {p: i for i, p in enumerate(images.paths)}
    rows = np.array([index[p] for p in model.extra["paths"]])
    keep = np.arange(len(rows))
    if limit is not None and limit < len(rows):
        keep = np.sort(np.random.default_rng([seed, 6]).choice(len(rows), limit, replace=False))
    corrupted = corruptions.corrupt(images.images[rows[keep]], kind, severity, seed=seed)
    feats = features.extract(feature_settings["backbone"], corrupted, progress=False)
    return ModelProbs(
        f"{model.name}@{kind}{severity}",
        model.extra["head"].predict_proba(feats)[:, 1],
        model.labels[keep],
        model.split[keep],
        f"{model.source}, {kind} severity {severity}",
        {"keep": keep},
    )


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
            out[f"{prefix}{metric}_{row['method']}_a{row['alpha']:g}"] = float(row[metric])
    return out


def shift_keys(table: pd.DataFrame) -> dict:
    """``shift_coverage_<corruption>_<clean|shifted>_a<alpha>`` keys of a shift-study table."""
    return {
        f"shift_coverage_{row['corruption']}_{row['calibration'].split()[0]}_a{row['alpha']:g}": float(
            row["coverage"]
        )
        for _, row in table.iterrows()
    }


def worst_gap(table: pd.DataFrame) -> dict:
    """The (method, alpha) whose mean coverage falls furthest below (or least above) 1 - alpha:
    ``{"gap": float, "method": str, "alpha": float}``."""
    gaps = table["coverage"] - table["target"]
    row = table.loc[gaps.idxmin()]
    return {"gap": float(gaps.min()), "method": str(row["method"]), "alpha": float(row["alpha"])}


# ---------------------------------------------------------------------------------------------
# The chapter's sections: each computes, saves (when given a results folder) and returns.


def _save(results_dir, keys: dict) -> None:
    if results_dir is not None:
        results.save(results_dir, CHAPTER, keys)


def classifiers(settings: Mapping, data_dir=None, seed: int = 0, results_dir=None) -> dict:
    """The two classifiers the chapter conforms (``choose_models``), named in the results."""
    models = choose_models(settings["features"], results_dir, data_dir, seed)
    best, weak = models["best"], models["weak"]
    _save(
        results_dir,
        {
            "best_model": best.name,
            "weak_model": weak.name,
            "best_model_accuracy": best.accuracy,
            "weak_model_accuracy": weak.accuracy,
            "pool_size": len(best.labels),
        },
    )
    return models


def mapie_check(models: dict, settings: Mapping, results_dir=None) -> pd.DataFrame:
    """Our LAC thresholds and sets against MAPIE's on the best model's original calib/test split."""
    best = models["best"]
    calib, test = best.split == "calib", best.split == "test"
    table = mapie_comparison(
        best.probs[calib], best.labels[calib], best.probs[test], list(settings["alphas"])
    )
    _save(
        results_dir,
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
        },
    )
    return table


@dataclass
class Coverage:
    """Both models' re-split studies (``coverage_study``) and the guarantee check."""

    table: pd.DataFrame
    weak_table: pd.DataFrame
    draws: dict
    tolerance: float
    holds: bool
    n_pool: int
    keys: dict = field(default_factory=dict)


def coverage(models: dict, settings: Mapping, seed: int = 0, results_dir=None) -> Coverage:
    """Every method at every alpha over many calibration/test re-splits, for both models."""
    best, weak = models["best"], models["weak"]
    n_pool = len(best.labels)
    alphas = valid_alphas(settings["alphas"], int(np.bincount(best.labels).min() * 0.4))
    table, draws = coverage_study(best, alphas, settings["resplits"], seed, settings["raps"])
    weak_table, _ = coverage_study(weak, alphas, settings["resplits"], seed, settings["raps"])
    tolerance, holds = guarantee_check(pd.concat([table, weak_table]))
    worst, weak_worst = worst_gap(table), worst_gap(weak_table)
    keys = {
        **result_keys(table),
        **result_keys(weak_table, prefix="weak_"),
        "resplits": settings["resplits"],
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
    _save(results_dir, keys)
    return Coverage(table, weak_table, draws, tolerance, holds, n_pool, keys)


def operating(models: dict, settings: Mapping, seed: int = 0, results_dir=None) -> dict:
    """LAC's operating curve (review rate, auto-accept accuracy per alpha) for both models;
    saves the best model's point at ``settings["operating_alpha"]``."""
    n_half = len(models["best"].labels) // 2
    alphas = valid_alphas(settings["operating_alphas"], n_half)
    curves = {
        m.name: operating_curve(m, alphas, settings["resplits"], seed)
        for m in (models["best"], models["weak"])
    }
    point = curves[models["best"].name].set_index("alpha").loc[settings["operating_alpha"]]
    _save(
        results_dir,
        {
            "review_rate": float(point["review_rate"]),
            "auto_accuracy": float(point["auto_accuracy"]),
            "operating_alpha": settings["operating_alpha"],
        },
    )
    return curves


def shift(models: dict, settings: Mapping, data_dir=None, seed: int = 0, results_dir=None):
    """LAC under each corruption of ``settings["shift"]``: calibrated on clean vs on corrupted
    images (``shift_study``) of this chapter's own backbone head."""
    own = models["own"]["backbone_logreg"]
    tables = [
        shift_study(
            own,
            shifted_probabilities(
                own, kind, severity, settings["features"], data_dir, seed, settings["shift_limit"]
            ),
            settings["shift_alphas"],
            settings["resplits"],
            seed,
        )
        for kind, severity in settings["shift"]
    ]
    table = pd.concat(tables, ignore_index=True)
    _save(results_dir, {**shift_keys(table), "shift_model": own.name})
    return table


def run(settings: Mapping, data_dir=None, seed: int = 0, results_dir=None) -> dict:
    """Every section of chapter 6; returns (and saves) all its result keys."""
    models = classifiers(settings, data_dir, seed, results_dir)
    mapie_check(models, settings, results_dir)
    found = coverage(models, settings, seed, results_dir)
    operating(models, settings, seed, results_dir)
    shift(models, settings, data_dir, seed, results_dir)
    if results_dir is not None:
        return results.load(results_dir, CHAPTER)
    return found.keys


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
    shift_clean = [v for k, v in keys.items() if k.startswith("shift_coverage_") and "_clean_" in k]
    shift_alpha = [
        1 - float(k.rsplit("_a", 1)[1])
        for k in keys
        if k.startswith("shift_coverage_") and "_clean_" in k
    ]
    below = sum(v < t for v, t in zip(shift_clean, shift_alpha))
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
