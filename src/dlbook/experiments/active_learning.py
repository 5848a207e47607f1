"""Chapter 5's experiments: every strategy over many repeats, chosen on validation, scored on test.

The pool is every image outside the val and test splits; its labels are revealed only when a
strategy asks for them. After every round the learner is scored on the val split (which chooses
the best strategy and sets the target accuracy) and on the test split (which scores the chosen
strategy). A repeat fixes the initial labelled set, the model seed and the order of the pool; all
strategies of one repeat share them, so comparisons with random sampling are paired.

Each section of the chapter is one function that computes and saves its results
(``setup``, ``compare_strategies``, ``savings_by_target``, ``crosscheck``, ``sensitivity_study``,
``weak_features``); ``run`` runs them all. The ``story_*`` functions word the results.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from dlbook.book import claims, present
from dlbook.core import results
from dlbook.facemask import features
from dlbook.methods import active, metrics

CHAPTER = "active_learning"
MAIN_STRATEGIES = ("random", "least_confidence", "margin", "entropy", "bald", "coreset", "badge")
BATCH_AWARE_VARIANT = "margin_diverse"
SPLITS = ("val", "test")
CLASS_NAMES = ("without_mask", "with_mask")


@dataclass
class Pool:
    """An unlabelled pool with a validation and a test set, for simulated labelling.

    Attributes
    ----------
    X_pool : ndarray, shape (N, D), float64; y_pool : int64 (N,)
    X_val : ndarray, shape (V, D), float64; y_val : int64 (V,)
    X_test : ndarray, shape (M, D), float64; y_test : int64 (M,)
    paths : list of N image paths (relative to the data folder) of the pool items
    name : what the features are
    """

    X_pool: np.ndarray
    y_pool: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    paths: list
    name: str

    def eval_sets(self) -> dict:
        """``{"val": (X_val, y_val), "test": (X_test, y_test)}``."""
        return {"val": (self.X_val, self.y_val), "test": (self.X_test, self.y_test)}


def _split_pool(features, labels, split, paths, name) -> Pool:
    split = np.asarray(split)
    in_pool = ~np.isin(split, SPLITS)
    labels = np.asarray(labels).astype(np.int64)
    return Pool(
        features[in_pool],
        labels[in_pool],
        features[split == "val"],
        labels[split == "val"],
        features[split == "test"],
        labels[split == "test"],
        [p for p, keep in zip(paths, in_pool) if keep],
        name,
    )


def reduce_features(features: np.ndarray, fit_rows: np.ndarray, n_components: int) -> np.ndarray:
    """Project onto the top ``n_components`` principal axes of ``features[fit_rows]``.

    Centred and divided by one overall scale (not whitened, so the geometry is kept). Uses only the
    pool's unlabelled features, which an active learner has anyway. Returns float64 (N, k).
    """
    from sklearn.decomposition import PCA

    if not 1 <= n_components <= features.shape[1]:
        raise ValueError(f"n_components={n_components!r} must lie in [1, {features.shape[1]}]")
    pca = PCA(n_components, random_state=0).fit(features[fit_rows])
    z = pca.transform(features).astype(np.float64)
    return z / z[fit_rows].std()


def backbone_pool(
    feature_settings: Mapping, data_dir=None, seed: int = 0, n_components: int = 64
) -> Pool:
    """The chapter's main pool: the shared backbone features (a ``profiles.FEATURES`` block),
    PCA-reduced for speed."""
    fs = features.face_mask_features(feature_settings, data_dir, seed, progress=False)
    z = reduce_features(fs.features, ~np.isin(fs.split, SPLITS), n_components)
    name = f"{fs.backbone} {fs.image_size}px, PCA-{n_components}"
    return _split_pool(z, fs.labels, fs.split, fs.paths, name)


def _load_images(feature_settings: Mapping, data_dir, seed: int, **options):
    from dlbook.facemask import data

    return data.load_face_mask(
        data_dir, limit=feature_settings["limit"], seed=seed, progress=False, **options
    )


def pixel_pool(
    feature_settings: Mapping,
    data_dir=None,
    seed: int = 0,
    image_size: int = 16,
    n_components: int = 32,
) -> Pool:
    """Weak features: raw grayscale pixels of ``image_size``-pixel images, PCA-reduced; the same
    images as ``feature_settings`` (a ``profiles.FEATURES`` block) selects."""
    images = _load_images(
        feature_settings, data_dir, seed, image_size=image_size, color_mode="grayscale"
    )
    x = images.images.reshape(len(images.labels), -1).astype(np.float64) / 255.0
    z = reduce_features(x, ~np.isin(images.split, SPLITS), n_components)
    name = f"{image_size}px grayscale pixels, PCA-{n_components}"
    return _split_pool(z, images.labels, images.split, list(images.paths), name)


def synthetic_pool(n: int = 1200, n_features: int = 20, seed: int = 0) -> Pool:
    """A two-class scikit-learn ``make_classification`` pool (half), validation and test sets."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n, n_features, n_informative=5, class_sep=1.0, flip_y=0.02, random_state=seed
    )
    split = np.array(["train", "train", "val", "test"])[np.arange(n) % 4]
    return _split_pool(x, y, split, [f"item{i}" for i in range(n)], "synthetic")


def full_pool_accuracy(pool: Pool, C: float = 1.0) -> dict:
    """``{"val": accuracy, "test": accuracy}`` of the learner trained on every pool label: the
    ceiling."""
    with threadpool_limits(1):
        model = active.LogisticModel(C=C).fit(pool.X_pool, pool.y_pool)
        return {name: model.score(x, y) for name, (x, y) in pool.eval_sets().items()}


def pool_order(n: int, seed: int, repeat: int) -> np.ndarray:
    """The order of the pool in one repeat: a permutation of ``range(n)`` from (seed, repeat)."""
    return np.random.default_rng([seed, repeat, 2]).permutation(n)


def run_curves(
    pool: Pool,
    strategies=MAIN_STRATEGIES,
    repeats: int = 10,
    initial_size: int = 10,
    batch_size: int = 10,
    budget: int = 100,
    seed: int = 0,
    C: float = 1.0,
) -> dict:
    """Learning curves of each strategy over ``repeats`` repeats, on validation and test.

    Repeat ``r`` draws its own initial labelled set, model seed (``seed + r``) and pool order
    (``pool_order``); every strategy of the repeat shares them.

    Returns
    -------
    dict with
        ``n_labels`` int64 (T,); ``accuracy`` {split: {strategy: float64 (R, T)}} for the splits
        "val" and "test"; ``positive_fraction`` {strategy: float64 (R, T)}, share of label 1 among
        the labels bought; ``query_order`` {strategy: int64 (R, budget)}, pool indices;
        ``seconds`` {strategy: float}.
    """
    unknown = [s for s in strategies if s not in active.STRATEGIES]
    if unknown:
        raise ValueError(
            f"strategies {unknown} are unknown; use names from {tuple(active.STRATEGIES)}"
        )
    if repeats < 1:
        raise ValueError(f"repeats={repeats!r} must be a positive integer")
    out = {
        "accuracy": {split: {} for split in SPLITS},
        "positive_fraction": {},
        "query_order": {},
        "seconds": {},
    }
    orders = [pool_order(len(pool.y_pool), seed, r) for r in range(repeats)]
    # One BLAS thread: the fits are tiny, and threads only contend.
    with threadpool_limits(1):
        for strategy in strategies:
            start = time.perf_counter()
            scores = {split: [] for split in SPLITS}
            positive, queried = [], []
            for r, order in enumerate(orders):
                learner = active.ActiveLearner(
                    strategy,
                    model=active.default_model(strategy, C=C, seed=seed + r),
                    initial_size=initial_size,
                    batch_size=batch_size,
                    budget=budget,
                    random_state=seed + r,
                ).fit(pool.X_pool[order], pool.y_pool[order], eval_sets=pool.eval_sets())
                for split in SPLITS:
                    scores[split].append(learner.scores_[split])
                picked = order[learner.query_order_]
                bought = pool.y_pool[picked]
                positive.append([bought[:n].mean() if n else np.nan for n in learner.n_labels_])
                queried.append(picked)
            out["n_labels"] = learner.n_labels_
            for split in SPLITS:
                out["accuracy"][split][strategy] = np.array(scores[split])
            out["positive_fraction"][strategy] = np.array(positive, dtype=np.float64)
            out["query_order"][strategy] = np.array(queried)
            out["seconds"][strategy] = time.perf_counter() - start
    return out


def labels_to_target(n_labels: np.ndarray, curves: np.ndarray, target: float) -> np.ndarray:
    """Labels at which each curve first reaches ``target``, linearly interpolated between rounds.

    Parameters
    ----------
    n_labels : int (T,), increasing.
    curves : float (..., T), accuracies.
    target : accuracy to reach.

    Returns
    -------
    float64 (...,); NaN where a curve never reaches the target within the budget.
    """
    curves = np.asarray(curves, dtype=np.float64)
    n = np.asarray(n_labels, dtype=np.float64)
    reached = curves >= target
    first = reached.argmax(axis=-1)
    prev = np.maximum(first - 1, 0)
    a_prev = np.take_along_axis(curves, prev[..., None], -1)[..., 0]
    a_first = np.take_along_axis(curves, first[..., None], -1)[..., 0]
    step = np.where(
        a_first > a_prev, (target - a_prev) / np.where(a_first > a_prev, a_first - a_prev, 1), 1.0
    )
    value = np.where(first == 0, n[0], n[prev] + np.clip(step, 0, 1) * (n[first] - n[prev]))
    return np.where(reached.any(axis=-1), value, np.nan)


def aulc(n_labels: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """Area under the learning curve divided by its label range: the mean accuracy over the budget."""
    n = np.asarray(n_labels, dtype=np.float64)
    return np.trapezoid(curves, n, axis=-1) / (n[-1] - n[0])


def summarise(
    curves: dict, target: float, split: str = "test", n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Per strategy, on the learning curves of ``split``: AULC (mean, 95% t-interval over
    repeats), labels to reach ``target`` on the mean curve, and the saving vs random,
    ``1 - labels / labels_random``, with a 95% percentile bootstrap over repeats (resampled
    jointly for all strategies, since repeats are paired).

    Returns
    -------
    DataFrame indexed by strategy; ``attrs["split"]`` names the split it was measured on.
    """
    if split not in curves["accuracy"]:
        raise ValueError(f"split={split!r} has no curves; use one of {tuple(curves['accuracy'])}")
    acc = curves["accuracy"][split]
    if "random" not in acc:
        raise ValueError("curves must include the 'random' strategy, the baseline")
    n_labels = curves["n_labels"]
    repeats = len(acc["random"])
    rng = np.random.default_rng(seed)
    boot = rng.integers(0, repeats, size=(n_boot, repeats))
    budget = float(n_labels[-1])

    def censored(labels):
        # A mean curve that never reaches the target needs more than the budget; counting it as
        # the budget makes the saving a bound (see ``reached_target_share``), not a value.
        return np.where(np.isnan(labels), budget, labels)

    random_labels = censored(labels_to_target(n_labels, acc["random"].mean(0), target))
    random_boot = censored(labels_to_target(n_labels, acc["random"][boot].mean(1), target))
    rows = {}
    for strategy, a in acc.items():
        mean, low, high = metrics.mean_confidence_interval(aulc(n_labels, a))
        labels = labels_to_target(n_labels, a.mean(0), target)
        labels_boot = censored(labels_to_target(n_labels, a[boot].mean(1), target))
        saving_boot = 1.0 - labels_boot / random_boot
        ci = np.percentile(saving_boot, [2.5, 97.5])
        rows[strategy] = {
            "aulc": mean,
            "aulc_ci_low": low,
            "aulc_ci_high": high,
            "labels_to_target": float(labels),
            "label_saving_vs_random": float(1.0 - censored(labels) / random_labels),
            "mean_curve_reaches_target": bool(not np.isnan(labels)),
            "label_saving_ci_low": ci[0],
            "label_saving_ci_high": ci[1],
            "reached_target_share": float(
                np.mean(~np.isnan(labels_to_target(n_labels, a, target)))
            ),
            "seconds": curves["seconds"][strategy],
        }
    summary = pd.DataFrame(rows).T
    summary.attrs["split"] = split
    return summary


def best_strategy(summary: pd.DataFrame) -> str:
    """The non-random strategy with the largest label saving among those whose mean curve reaches
    the target; ties, or none reaching it, are decided by AULC.

    Only a summary of validation curves may choose: a ValueError refuses one of test curves.
    """
    if summary.attrs.get("split") != "val":
        raise ValueError(
            f"best_strategy chooses on validation curves; this summary is of the "
            f"{summary.attrs.get('split')!r} split (use summarise(..., split='val'))"
        )
    others = summary.drop(index="random")
    reaches = others["mean_curve_reaches_target"].astype(bool)
    saving = others["label_saving_vs_random"].astype(float).where(reaches, -np.inf)
    ranked = others.assign(_s=saving).sort_values(["_s", "aulc"], ascending=False)
    return str(ranked.index[0])


def result_keys(
    val_summary: pd.DataFrame,
    test_summary: pd.DataFrame,
    target: float,
    repeats: int,
    prefix: str = "",
) -> dict:
    """The flat result keys of one comparison (``prefix`` for secondary pools).

    The best strategy is chosen on ``val_summary``; ``label_saving_vs_random_<s>`` and the other
    unprefixed-by-split keys are the test set's, ``val_label_saving_vs_random_<s>`` the
    validation set's.
    """
    best = best_strategy(val_summary)
    keys = {
        f"{prefix}repeats": repeats,
        f"{prefix}target_accuracy": target,
        f"{prefix}best_strategy": best,
    }
    for strategy, row in test_summary.iterrows():
        keys[f"{prefix}aulc_{strategy}"] = row["aulc"]
        keys[f"{prefix}labels_to_target_{strategy}"] = row["labels_to_target"]
        keys[f"{prefix}label_saving_vs_random_{strategy}"] = row["label_saving_vs_random"]
        keys[f"{prefix}label_saving_vs_random_ci_low_{strategy}"] = row["label_saving_ci_low"]
        keys[f"{prefix}label_saving_vs_random_ci_high_{strategy}"] = row["label_saving_ci_high"]
        keys[f"{prefix}reaches_target_{strategy}"] = bool(row["mean_curve_reaches_target"])
    for strategy, row in val_summary.iterrows():
        keys[f"{prefix}val_aulc_{strategy}"] = row["aulc"]
        keys[f"{prefix}val_labels_to_target_{strategy}"] = row["labels_to_target"]
        keys[f"{prefix}val_label_saving_vs_random_{strategy}"] = row["label_saving_vs_random"]
    return keys


def sensitivity(
    pool: Pool,
    target: float,
    strategies=("random", "margin", "margin_diverse", "badge"),
    initial_sizes=(2, 10, 40),
    batch_sizes=(5, 20),
    repeats: int = 10,
    budget: int = 100,
    seed: int = 0,
    n_boot: int = 500,
) -> pd.DataFrame:
    """Validation AULC and label saving as the seed-set size and the query batch size change.

    Initial sizes vary at the smallest batch size, batch sizes at the middle initial size. An
    initial set of 2 random images is a cold start: it often holds one class only, and then the
    model is constant and uncertainty sampling has nothing to go on.
    """
    grid = [(i, batch_sizes[0]) for i in initial_sizes]
    grid += [(initial_sizes[len(initial_sizes) // 2], b) for b in batch_sizes[1:]]
    rows = []
    for initial_size, batch_size in grid:
        curves = run_curves(pool, strategies, repeats, initial_size, batch_size, budget, seed)
        summary = summarise(curves, target, "val", n_boot=n_boot, seed=seed)
        for strategy, row in summary.iterrows():
            rows.append(
                {
                    "initial_size": initial_size,
                    "batch_size": batch_size,
                    "strategy": strategy,
                    "aulc": row["aulc"],
                    "labels_to_target": row["labels_to_target"],
                    "label_saving_vs_random": row["label_saving_vs_random"],
                    "label_saving_ci_low": row["label_saving_ci_low"],
                    "label_saving_ci_high": row["label_saving_ci_high"],
                }
            )
    return pd.DataFrame(rows)


def crosscheck_skactiveml(n_trials: int = 5, batch_size: int = 10, seed: int = 0) -> pd.DataFrame:
    """Compare our strategies with scikit-activeml's on synthetic pools.

    Each trial draws a pool and a labelled set, fits the same logistic regression, and asks both
    implementations for a batch. Least confidence, margin and entropy are compared with
    ``UncertaintySampling``, core-set with ``CoreSet`` (both deterministic); the table gives the
    mean overlap of the two batches (1 = the same items).
    """
    from skactiveml.classifier import SklearnClassifier
    from skactiveml.pool import CoreSet, UncertaintySampling
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    library = {
        "least_confidence": "least_confident",
        "margin": "margin_sampling",
        "entropy": "entropy",
    }
    overlap = {name: [] for name in (*library, "coreset")}
    with threadpool_limits(1):
        for trial in range(n_trials):
            x, y = make_classification(400, 10, n_informative=4, random_state=seed + trial)
            rng = np.random.default_rng([seed, trial])
            labelled = np.zeros(len(y), dtype=bool)
            labelled[rng.choice(len(y), 20, replace=False)] = True
            y_missing = np.where(labelled, y, np.nan)
            model = active.LogisticModel(C=1.0).fit(x[labelled], y[labelled])
            clf = SklearnClassifier(LogisticRegression(C=1.0), classes=[0, 1])
            for ours, theirs in library.items():
                picked = UncertaintySampling(method=theirs, random_state=0).query(
                    x, y_missing, clf, batch_size=batch_size
                )
                mine = active.STRATEGIES[ours](model, x, labelled, batch_size, rng)
                overlap[ours].append(len(set(picked) & set(mine)) / batch_size)
            picked = CoreSet(random_state=0).query(x, y_missing, batch_size=batch_size)
            mine = active.coreset(model, x, labelled, batch_size, rng)
            overlap["coreset"].append(len(set(picked) & set(mine)) / batch_size)
    return pd.DataFrame(
        {
            "strategy": list(overlap),
            "scikit-activeml": [
                *(f"UncertaintySampling({m!r})" for m in library.values()),
                "CoreSet",
            ],
            "mean overlap": [float(np.mean(v)) for v in overlap.values()],
            "trials": n_trials,
        }
    )


def binary_uncertainty_agreement(pool: Pool, seed: int = 0, batch_size: int = 10) -> float:
    """Share of trials in which least confidence, margin and entropy pick the same batch.

    With two classes all three are monotone in |p - 1/2|, so they must agree; this measures it.
    """
    agree = []
    with threadpool_limits(1):
        for trial in range(5):
            rng = np.random.default_rng([seed, trial])
            labelled = np.zeros(len(pool.y_pool), dtype=bool)
            labelled[rng.choice(len(pool.y_pool), 20, replace=False)] = True
            model = active.LogisticModel().fit(pool.X_pool[labelled], pool.y_pool[labelled])
            batches = [
                set(
                    active.STRATEGIES[s](
                        model, pool.X_pool, labelled, batch_size, np.random.default_rng(0)
                    )
                )
                for s in ("least_confidence", "margin", "entropy")
            ]
            agree.append(batches[0] == batches[1] == batches[2])
    return float(np.mean(agree))


def first_queries(
    pool: Pool,
    curves: dict,
    feature_settings: Mapping,
    data_dir=None,
    seed: int = 0,
    n: int = 8,
    repeat: int = 0,
    image_size: int = 64,
) -> tuple[dict, dict]:
    """The first ``n`` images each strategy bought after the seed set, in one repeat.

    ``feature_settings`` is the ``profiles.FEATURES`` block the pool was built from (it fixes the images).

    Returns
    -------
    (images, labels): strategy -> uint8 (n, image_size, image_size, 3) and strategy -> int64 (n,).
    """
    images = _load_images(feature_settings, data_dir, seed, image_size=image_size)
    row_of = {path: i for i, path in enumerate(images.paths)}
    initial = len(curves["query_order"]["random"][repeat]) - (
        curves["n_labels"][-1] - curves["n_labels"][0]
    )
    out_images, out_labels = {}, {}
    for strategy, orders in curves["query_order"].items():
        picked = orders[repeat][initial : initial + n]
        rows = [row_of[pool.paths[i]] for i in picked]
        out_images[strategy] = images.images[rows]
        out_labels[strategy] = pool.y_pool[picked]
    return out_images, out_labels


def describe_labels(labels, budget: int) -> str:
    """``"37"`` for a reached target, ``"more than 100"`` for a mean curve that never reached it
    (NaN, or None once saved)."""
    if labels is None or np.isnan(labels):
        return f"more than {budget}"
    return f"{labels:.0f}"


def saving_by_target(
    curves: dict,
    ceiling: float,
    fractions=(0.97, 0.98, 0.99),
    split: str = "test",
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Label saving vs random for each strategy at several targets (fractions of ``ceiling``,
    the validation accuracy of the full-pool learner), read on the curves of ``split``.

    The saving depends on where the target sits on random sampling's curve; this shows how much.
    Returns a DataFrame with one row per (target fraction, strategy).
    """
    rows = []
    for fraction in fractions:
        summary = summarise(curves, fraction * ceiling, split, n_boot=n_boot, seed=seed)
        for strategy, row in summary.drop(index="random").iterrows():
            rows.append(
                {
                    "target_fraction": fraction,
                    "target_accuracy": fraction * ceiling,
                    "strategy": strategy,
                    "labels_to_target": row["labels_to_target"],
                    "random_labels_to_target": summary.loc["random", "labels_to_target"],
                    "label_saving_vs_random": row["label_saving_vs_random"],
                    "label_saving_ci_low": row["label_saving_ci_low"],
                    "label_saving_ci_high": row["label_saving_ci_high"],
                }
            )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# The chapter's sections: each computes, saves (when given a results folder) and returns.


def _save(results_dir, keys: dict) -> None:
    if results_dir is not None:
        results.save(results_dir, CHAPTER, keys)


@dataclass
class Setup:
    """The main pool, the learner's full-pool accuracy (``ceiling``: {"val", "test"}) and the
    target accuracy derived from the validation ceiling."""

    pool: Pool
    ceiling: dict
    target: float
    keys: dict = field(default_factory=dict)


@dataclass
class Comparison:
    """Every strategy's curves on one pool, summarised on validation (which chooses ``best``)
    and on test (which scores it)."""

    curves: dict
    val_summary: pd.DataFrame
    test_summary: pd.DataFrame
    best: str
    target: float
    keys: dict = field(default_factory=dict)


def setup(settings: Mapping, data_dir=None, seed: int = 0, results_dir=None) -> Setup:
    """The pool of backbone features, the full-pool accuracy and the target accuracy.

    The target is ``settings["target_fraction"]`` of the full-pool learner's *validation*
    accuracy; the test accuracy is recorded but chooses nothing.
    """
    pool = backbone_pool(settings["features"], data_dir, seed, settings["n_components"])
    ceiling = full_pool_accuracy(pool)
    target = settings["target_fraction"] * ceiling["val"]
    keys = {
        "al_pool_size": len(pool.y_pool),
        "al_pool_with_mask_share": float(pool.y_pool.mean()),
        "al_val_size": len(pool.y_val),
        "al_test_size": len(pool.y_test),
        "al_features": pool.name,
        "full_pool_val_accuracy": ceiling["val"],
        "full_pool_accuracy": ceiling["test"],
        "target_fraction": settings["target_fraction"],
        "target_accuracy": target,
        "target_from": "validation",
    }
    _save(results_dir, keys)
    return Setup(pool, ceiling, target, keys)


def compare(
    pool: Pool,
    target: float,
    strategies,
    repeats: int,
    initial_size: int,
    batch_size: int,
    budget: int,
    seed: int = 0,
    n_boot: int = 1000,
    prefix: str = "",
) -> Comparison:
    """Run every strategy on ``pool``, choose the best on validation, score all on test."""
    curves = run_curves(pool, strategies, repeats, initial_size, batch_size, budget, seed)
    val_summary = summarise(curves, target, "val", n_boot=n_boot, seed=seed)
    test_summary = summarise(curves, target, "test", n_boot=n_boot, seed=seed)
    keys = result_keys(val_summary, test_summary, target, repeats, prefix)
    for strategy, share in curves["positive_fraction"].items():
        keys[f"{prefix}with_mask_share_at_budget_{strategy}"] = float(np.nanmean(share[:, -1]))
    return Comparison(
        curves, val_summary, test_summary, keys[f"{prefix}best_strategy"], target, keys
    )


def compare_strategies(
    setup: Setup, settings: Mapping, seed: int = 0, results_dir=None
) -> Comparison:
    """The seven strategies and the batch-aware variant against random sampling on the main
    pool; the best is chosen on validation, the test set scores it."""
    comparison = compare(
        setup.pool,
        setup.target,
        MAIN_STRATEGIES + (BATCH_AWARE_VARIANT,),
        settings["repeats"],
        settings["initial_size"],
        settings["batch_size"],
        settings["budget"],
        seed,
        settings["n_boot"],
    )
    comparison.keys.update(
        setup.keys,
        selected_on="validation",
        al_repeats=settings["repeats"],
        al_budget_labels=settings["budget"],
        al_initial_labels=settings["initial_size"],
        al_batch_size=settings["batch_size"],
        binary_uncertainty_agreement=binary_uncertainty_agreement(setup.pool, seed),
    )
    _save(results_dir, comparison.keys)
    return comparison


def savings_by_target(
    setup: Setup, comparison: Comparison, settings: Mapping, seed: int = 0, results_dir=None
) -> pd.DataFrame:
    """The test-set saving of every strategy at several fractions of the validation ceiling;
    saves the chosen strategy's as ``label_saving_vs_random_<best>_at_<fraction>``."""
    table = saving_by_target(
        comparison.curves,
        setup.ceiling["val"],
        settings["target_fractions"],
        "test",
        n_boot=settings["n_boot"],
        seed=seed,
    )
    best = comparison.best
    _save(
        results_dir,
        {
            f"label_saving_vs_random_{best}_at_{r.target_fraction:.2f}": r.label_saving_vs_random
            for r in table[table.strategy == best].itertuples()
        },
    )
    return table


def crosscheck(settings: Mapping, seed: int = 0, results_dir=None) -> pd.DataFrame:
    """Our strategies' batches against scikit-activeml's (``crosscheck_skactiveml``)."""
    table = crosscheck_skactiveml(n_trials=settings["crosscheck_trials"], seed=seed)
    _save(
        results_dir,
        {
            "crosscheck_min_overlap": float(table["mean overlap"].min()),
            "crosscheck_trials": settings["crosscheck_trials"],
        },
    )
    return table


def sensitivity_study(
    setup: Setup, settings: Mapping, seed: int = 0, results_dir=None
) -> pd.DataFrame:
    """Validation AULC and saving as the seed-set and batch sizes change (``sensitivity``)."""
    table = sensitivity(
        setup.pool,
        setup.target,
        initial_sizes=settings["sensitivity_initial_sizes"],
        batch_sizes=settings["sensitivity_batch_sizes"],
        repeats=settings["sensitivity_repeats"],
        budget=settings["budget"],
        seed=seed,
        n_boot=settings["n_boot"],
    )
    _save(
        results_dir,
        {
            f"sensitivity_val_aulc_{r.strategy}_seed{r.initial_size}_batch{r.batch_size}": r.aulc
            for r in table.itertuples()
        },
    )
    return table


@dataclass
class Weak:
    """The contrast on weak features: its pool, setup and comparison."""

    setup: Setup
    comparison: Comparison


def weak_features(settings: Mapping, data_dir=None, seed: int = 0, results_dir=None) -> Weak:
    """The same loop on raw grayscale pixels, a learner far from separating the classes; its
    target is ``weak_target_fraction`` of its own validation ceiling. Keys are prefixed
    ``weak_``."""
    pool = pixel_pool(settings["features"], data_dir, seed, settings["weak_image_size"])
    ceiling = full_pool_accuracy(pool)
    target = settings["weak_target_fraction"] * ceiling["val"]
    comparison = compare(
        pool,
        target,
        settings["weak_strategies"],
        settings["weak_repeats"],
        settings["initial_size"],
        settings["weak_batch_size"],
        settings["weak_budget"],
        seed,
        settings["n_boot"],
        prefix="weak_",
    )
    keys = {
        "weak_features": pool.name,
        "weak_full_pool_val_accuracy": ceiling["val"],
        "weak_full_pool_accuracy": ceiling["test"],
        "weak_target_fraction": settings["weak_target_fraction"],
        "weak_budget_labels": settings["weak_budget"],
    }
    comparison.keys.update(keys)
    _save(results_dir, comparison.keys)
    return Weak(Setup(pool, ceiling, target, keys), comparison)


def run(settings: Mapping, data_dir=None, seed: int = 0, results_dir=None) -> dict:
    """Every section of chapter 5; returns (and saves) all its result keys."""
    main = setup(settings, data_dir, seed, results_dir)
    comparison = compare_strategies(main, settings, seed, results_dir)
    savings_by_target(main, comparison, settings, seed, results_dir)
    crosscheck(settings, seed, results_dir)
    sensitivity_study(main, settings, seed, results_dir)
    weak_features(settings, data_dir, seed, results_dir)
    if results_dir is not None:
        return results.load(results_dir, CHAPTER)
    return {**main.keys, **comparison.keys}


# ---------------------------------------------------------------------------------------------
# Tables for the page (through ``dlbook.book.present``).


def comparison_table(comparison: Comparison):
    """One row per strategy: validation AULC and saving (which choose), test labels and saving
    with its interval (which score)."""
    val, test = comparison.val_summary, comparison.test_summary
    budget = int(comparison.curves["n_labels"][-1])
    frame = pd.DataFrame(
        {
            "strategy": [f"{s} (chosen)" if s == comparison.best else s for s in test.index],
            "AULC, validation": val["aulc"].astype(float).to_numpy(),
            "saving, validation": val["label_saving_vs_random"].astype(float).to_numpy(),
            "labels to target, test": test["labels_to_target"].astype(float).to_numpy(),
            "saving, test": test["label_saving_vs_random"].astype(float).to_numpy(),
            "95% CI, test": [
                present.interval(lo, hi).removeprefix("95% CI ")
                for lo, hi in zip(test["label_saving_ci_low"], test["label_saving_ci_high"])
            ],
        }
    )
    return present.show(
        frame,
        percent_columns=["saving, validation", "saving, test"],
        missing={"labels to target, test": f"more than {budget}"},
    )


def by_target_table(table: pd.DataFrame):
    """Test saving per strategy (rows) and target fraction of the validation ceiling (columns)."""
    wide = table.pivot(index="strategy", columns="target_fraction", values="label_saving_vs_random")
    wide.columns = [f"target {present.percent(f, 0)}" for f in wide.columns]
    return present.show(wide.astype(float), percent_columns=list(wide.columns), index=True)


def crosscheck_table(table: pd.DataFrame):
    """The scikit-activeml cross-check, overlap as a percentage."""
    return present.show(table, percent_columns=["mean overlap"])


# ---------------------------------------------------------------------------------------------
# Stories: the chapter's sentences, built from its results.


def _saving_text(keys: Mapping, strategy: str, prefix: str = "") -> str:
    """``"a saving of 23.1% (95% CI 10.0%-35.2%)"`` for a strategy's test saving."""
    saving = keys.get(f"{prefix}label_saving_vs_random_{strategy}")
    low = keys.get(f"{prefix}label_saving_vs_random_ci_low_{strategy}")
    high = keys.get(f"{prefix}label_saving_vs_random_ci_high_{strategy}")
    span = present.interval(low, high)
    return f"a saving of {present.percent(saving)}" + (f" ({span})" if span else "")


def story_setup(keys: Mapping) -> str:
    """The pool, the ceiling and the target, in two sentences."""
    return (
        f"The pool holds {keys['al_pool_size']} images "
        f"({present.percent(keys['al_pool_with_mask_share'], 0)} with a mask), seen through "
        f"{keys['al_features']}; the validation set holds {keys['al_val_size']} images and the "
        f"test set {keys['al_test_size']}. With every pool label the learner reaches "
        f"{present.percent(keys['full_pool_val_accuracy'], 2)} accuracy on validation "
        f"({present.percent(keys['full_pool_accuracy'], 2)} on test), so the target, "
        f"{present.percent(keys['target_fraction'], 0)} of the validation figure, is "
        f"**{present.percent(keys['target_accuracy'], 2)}**."
    )


def _comparison_sentences(keys: Mapping, budget: int, prefix: str = "") -> str:
    best = keys[f"{prefix}best_strategy"]

    def labels(name, split=""):
        return describe_labels(keys.get(f"{prefix}{split}labels_to_target_{name}"), budget)

    text = (
        f"Chosen on validation, the best strategy is **{best}**: its mean validation curve "
        f"reaches the target after {labels(best, 'val_')} labels, random sampling's after "
        f"{labels('random', 'val_')}. Scored once on the test set, {best} needs {labels(best)} "
        f"labels against {labels('random')} for random sampling"
    )
    if not keys.get(f"{prefix}reaches_target_{best}", True):
        return text + ": its mean test curve does not reach the target, so no saving is stated."
    text += f", {_saving_text(keys, best, prefix)}"
    if not keys.get(f"{prefix}reaches_target_random", True):
        text += (
            f", a lower bound, since random sampling's mean test curve does not reach the "
            f"target within {budget} labels"
        )
    return text + "."


def story_comparison(keys: Mapping) -> str:
    """The strategy chosen on validation, its test saving, and the uncertainty agreement."""
    text = _comparison_sentences(keys, keys["al_budget_labels"])
    agreement = keys.get("binary_uncertainty_agreement")
    if agreement is not None:
        text += (
            f" Least confidence, margin and entropy chose identical batches in "
            f"{present.percent(agreement, 0)} of the checks."
        )
    return text


def story_by_target(table: pd.DataFrame, best: str) -> str:
    """How the chosen strategy's test saving moves with the target (``savings_by_target``)."""
    rows = table[table["strategy"] == best].sort_values("target_fraction")
    if rows.empty:
        return "No target fraction was run."
    values = list(zip(rows["target_fraction"], rows["label_saving_vs_random"].astype(float)))
    parts = [f"{present.percent(v)} at {present.percent(f, 0)}" for f, v in values]
    text = f"On the test set, {best}'s saving is " + ", ".join(parts) + " of the validation ceiling"
    if len(values) > 1 and values[-1][1] != values[0][1]:
        trend = "grows" if values[-1][1] > values[0][1] else "shrinks"
        text += f": it {trend} as the target rises"
    return text + "."


def story_crosscheck(table: pd.DataFrame) -> str:
    """Which strategies give the same batches as scikit-activeml."""
    same = table.loc[table["mean overlap"] == 1.0, "strategy"].tolist()
    worst = table.sort_values("mean overlap").iloc[0]
    trials = int(table["trials"].iloc[0])
    if len(same) == len(table):
        return f"Over {trials} trials, every batch of {', '.join(same)} equals scikit-activeml's."
    text = f"Over {trials} trials, the lowest mean overlap is {present.percent(worst['mean overlap'], 0)} ({worst['strategy']})"
    if same:
        text += f"; {', '.join(same)} give exactly scikit-activeml's batches"
    return text + "."


def story_sensitivity(table: pd.DataFrame) -> str:
    """Per setting, the strategy with the highest validation AULC against random sampling."""
    parts = []
    for (initial, batch), rows in table.groupby(["initial_size", "batch_size"], sort=False):
        rows = rows.set_index("strategy")
        top = rows.drop(index="random")["aulc"].astype(float).idxmax()
        parts.append(
            f"seed set {initial}, batch {batch}: {top} {present.number(rows.loc[top, 'aulc'])} "
            f"against {present.number(rows.loc['random', 'aulc'])}"
        )
    return "Highest validation AULC beside random sampling's: " + "; ".join(parts) + "."


def story_class_balance(keys: Mapping) -> str:
    """The with-mask share of the labels bought, at the end of the budget."""
    shares = {
        k.removeprefix("with_mask_share_at_budget_"): v
        for k, v in keys.items()
        if k.startswith("with_mask_share_at_budget_") and v is not None
    }
    low, high = min(shares, key=shares.get), max(shares, key=shares.get)
    return (
        f"The pool is {present.percent(keys['al_pool_with_mask_share'], 0)} with_mask. After "
        f"{keys['al_budget_labels']} labels, the with_mask share of the labelled set ranges from "
        f"{present.percent(shares[low], 0)} ({low}) to {present.percent(shares[high], 0)} ({high})."
    )


def story_weak(keys: Mapping) -> str:
    """The contrast on weak features, worded like the main comparison."""
    return (
        f"With {keys['weak_features']} the learner reaches "
        f"{present.percent(keys['weak_full_pool_val_accuracy'])} on validation with every pool "
        f"label ({present.percent(keys['weak_full_pool_accuracy'])} on test), so its target, "
        f"{present.percent(keys['weak_target_fraction'], 0)} of the validation figure, is "
        f"{present.percent(keys['weak_target_accuracy'])}. "
        + _comparison_sentences(keys, keys["weak_budget_labels"], prefix="weak_")
    )


def story_verdict(results_by_chapter: Mapping) -> str:
    """The claim's verdict (through ``dlbook.book.claims``), with the scale of the saving."""
    keys = results_by_chapter.get(CHAPTER, {})
    text = claims.sentence("active_learning_30", results_by_chapter)
    best = keys.get("best_strategy")
    random_labels = keys.get("labels_to_target_random")
    best_labels = keys.get(f"labels_to_target_{best}")
    if best and random_labels is not None and best_labels is not None:
        text += (
            f" For scale: the pool holds {keys['al_pool_size']} images, random sampling's mean "
            f"test curve reaches the target after {random_labels:.0f} labels and {best}'s after "
            f"{best_labels:.0f}, a difference of {random_labels - best_labels:.0f} labels."
        )
    return text
