"""Chapter 5's experiments: every strategy over many seed sets, label savings with intervals.

The pool is the train and val splits, the evaluation set the test split. All strategies of one
repeat start from the same random seed set, so comparisons with random sampling are paired.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from dlbook import active, metrics

MAIN_STRATEGIES = ("random", "least_confidence", "margin", "entropy", "bald", "coreset", "badge")
BATCH_AWARE_VARIANT = "margin_diverse"


@dataclass
class Pool:
    """A labelled pool and test set for simulated labelling.

    Attributes
    ----------
    X_pool : ndarray, shape (N, D), float64; y_pool : int64 (N,)
    X_test : ndarray, shape (M, D), float64; y_test : int64 (M,)
    paths : list of N image paths (relative to the data folder) of the pool items
    name : what the features are
    """

    X_pool: np.ndarray
    y_pool: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    paths: list
    name: str


def _split_pool(features, labels, split, paths, name) -> Pool:
    in_pool = np.isin(split, ["train", "val"])
    in_test = split == "test"
    return Pool(
        features[in_pool],
        labels[in_pool].astype(np.int64),
        features[in_test],
        labels[in_test].astype(np.int64),
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


def backbone_pool(profile: str, data_dir=None, seed: int = 0, n_components: int = 64) -> Pool:
    """The chapter's main pool: the shared backbone features, PCA-reduced for speed."""
    from dlbook import features, profiles

    settings = profiles.get(profile, "features")
    fs = features.face_mask_features(settings, data_dir=data_dir, seed=seed, progress=False)
    in_pool = np.isin(fs.split, ["train", "val"])
    z = reduce_features(fs.features, in_pool, n_components)
    name = f"{fs.backbone} {fs.image_size}px, PCA-{n_components}"
    return _split_pool(z, fs.labels, fs.split, fs.paths, name)


def pixel_pool(
    profile: str, data_dir=None, seed: int = 0, image_size: int = 16, n_components: int = 32
) -> Pool:
    """Weak features: raw grayscale pixels of ``image_size``-pixel images, PCA-reduced."""
    from dlbook import data, profiles

    limit = profiles.get(profile, "features")["limit"]
    images = data.load_face_mask(
        data_dir,
        image_size=image_size,
        color_mode="grayscale",
        limit=limit,
        seed=seed,
        progress=False,
    )
    x = images.images.reshape(len(images.labels), -1).astype(np.float64) / 255.0
    in_pool = np.isin(images.split, ["train", "val"])
    z = reduce_features(x, in_pool, n_components)
    name = f"{image_size}px grayscale pixels, PCA-{n_components}"
    return _split_pool(z, images.labels, images.split, list(images.paths), name)


def synthetic_pool(n: int = 1200, n_features: int = 20, seed: int = 0) -> Pool:
    """A two-class scikit-learn ``make_classification`` pool (two thirds) and test set."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n, n_features, n_informative=5, class_sep=1.0, flip_y=0.02, random_state=seed
    )
    split = np.where(np.arange(n) % 3 == 2, "test", "train")
    return _split_pool(x, y, split, [f"item{i}" for i in range(n)], "synthetic")


def full_pool_accuracy(pool: Pool, C: float = 1.0) -> float:
    """Test accuracy of the learner trained on every pool label: the ceiling."""
    with threadpool_limits(1):
        model = active.LogisticModel(C=C).fit(pool.X_pool, pool.y_pool)
        return model.score(pool.X_test, pool.y_test)


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
    """Learning curves of each strategy over ``repeats`` seed sets.

    Returns
    -------
    dict with
        ``n_labels`` int64 (T,); ``accuracy`` {strategy: float64 (R, T)};
        ``positive_fraction`` {strategy: float64 (R, T)}, share of label 1 among the labels bought;
        ``query_order`` {strategy: int64 (R, budget)}; ``seconds`` {strategy: float}.
    """
    unknown = [s for s in strategies if s not in active.STRATEGIES]
    if unknown:
        raise ValueError(
            f"strategies {unknown} are unknown; use names from {tuple(active.STRATEGIES)}"
        )
    if repeats < 1:
        raise ValueError(f"repeats={repeats!r} must be a positive integer")
    out = {"accuracy": {}, "positive_fraction": {}, "query_order": {}, "seconds": {}}
    # One BLAS thread: the fits are tiny, and threads only contend.
    with threadpool_limits(1):
        for strategy in strategies:
            start = time.perf_counter()
            accuracy, positive, order = [], [], []
            for r in range(repeats):
                learner = active.ActiveLearner(
                    strategy,
                    model=active.default_model(strategy, C=C, seed=seed + r),
                    initial_size=initial_size,
                    batch_size=batch_size,
                    budget=budget,
                    random_state=seed + r,
                ).fit(pool.X_pool, pool.y_pool, pool.X_test, pool.y_test)
                accuracy.append(learner.accuracy_)
                bought = pool.y_pool[learner.query_order_]
                positive.append([bought[:n].mean() if n else np.nan for n in learner.n_labels_])
                order.append(learner.query_order_)
            out["n_labels"] = learner.n_labels_
            out["accuracy"][strategy] = np.array(accuracy)
            out["positive_fraction"][strategy] = np.array(positive, dtype=np.float64)
            out["query_order"][strategy] = np.array(order)
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


def summarise(curves: dict, target: float, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per strategy: AULC (mean, 95% t-interval over repeats), labels to reach ``target`` on the
    mean curve, and the saving vs random, ``1 - labels / labels_random``, with a 95% percentile
    bootstrap over repeats (resampled jointly for all strategies, since repeats are paired).

    Returns
    -------
    DataFrame indexed by strategy.
    """
    if "random" not in curves["accuracy"]:
        raise ValueError("curves must include the 'random' strategy, the baseline")
    n_labels = curves["n_labels"]
    acc = curves["accuracy"]
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
    return pd.DataFrame(rows).T


def best_strategy(summary: pd.DataFrame) -> str:
    """The non-random strategy with the largest label saving among those whose mean curve reaches
    the target; ties, or none reaching it, are decided by AULC."""
    others = summary.drop(index="random")
    reaches = others["mean_curve_reaches_target"].astype(bool)
    saving = others["label_saving_vs_random"].astype(float).where(reaches, -np.inf)
    ranked = others.assign(_s=saving).sort_values(["_s", "aulc"], ascending=False)
    return str(ranked.index[0])


def result_keys(summary: pd.DataFrame, target: float, repeats: int, prefix: str = "") -> dict:
    """The chapter's flat result keys for one summary (``prefix`` for secondary pools)."""
    keys = {
        f"{prefix}repeats": repeats,
        f"{prefix}target_accuracy": target,
        f"{prefix}best_strategy": best_strategy(summary),
    }
    for strategy, row in summary.iterrows():
        keys[f"{prefix}aulc_{strategy}"] = row["aulc"]
        keys[f"{prefix}labels_to_target_{strategy}"] = row["labels_to_target"]
        keys[f"{prefix}label_saving_vs_random_{strategy}"] = row["label_saving_vs_random"]
        keys[f"{prefix}label_saving_vs_random_ci_low_{strategy}"] = row["label_saving_ci_low"]
        keys[f"{prefix}label_saving_vs_random_ci_high_{strategy}"] = row["label_saving_ci_high"]
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
    """AULC and label saving as the seed-set size and the query batch size change.

    Initial sizes vary at the smallest batch size, batch sizes at the middle initial size. An
    initial set of 2 random images is a cold start: it often holds one class only, and then the
    model is constant and uncertainty sampling has nothing to go on.
    """
    settings = [(i, batch_sizes[0]) for i in initial_sizes]
    settings += [(initial_sizes[len(initial_sizes) // 2], b) for b in batch_sizes[1:]]
    rows = []
    for initial_size, batch_size in settings:
        curves = run_curves(pool, strategies, repeats, initial_size, batch_size, budget, seed)
        summary = summarise(curves, target, n_boot=n_boot, seed=seed)
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
    profile: str,
    data_dir=None,
    seed: int = 0,
    n: int = 8,
    repeat: int = 0,
    image_size: int = 64,
) -> tuple[dict, dict]:
    """The first ``n`` images each strategy bought after the seed set, in one repeat.

    Returns
    -------
    (images, labels): strategy -> uint8 (n, image_size, image_size, 3) and strategy -> int64 (n,).
    """
    from dlbook import data, profiles

    limit = profiles.get(profile, "features")["limit"]
    images = data.load_face_mask(
        data_dir, image_size=image_size, limit=limit, seed=seed, progress=False
    )
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


def verdict(summary: pd.DataFrame, claimed: float = 0.30) -> str:
    """One sentence on the claim, from the best strategy's saving and its interval."""
    best = best_strategy(summary)
    row = summary.loc[best]
    saving, low, high = (
        float(row["label_saving_vs_random"]),
        float(row["label_saving_ci_low"]),
        float(row["label_saving_ci_high"]),
    )
    if not row["mean_curve_reaches_target"]:
        return "No strategy's mean curve reached the target, so no saving can be stated."
    span = f"{saving:.0%} (95% CI {low:.0%} to {high:.0%})"
    if not summary.loc["random", "mean_curve_reaches_target"]:
        span += " or more, since random sampling's mean curve never reached the target"
    if low > 0 and (saving >= claimed or high >= claimed):
        return f"The claim holds: {best} needs {span} fewer labels than random sampling."
    if low > 0:
        return f"Partly: {best} saves {span} of the labels, less than the claimed {claimed:.0%}."
    return f"The claim is not supported: the best strategy, {best}, saves {span}."


def describe_labels(labels: float, budget: int) -> str:
    """``"37"`` for a reached target, ``"more than 100"`` for a mean curve that never reached it."""
    return f"more than {budget}" if np.isnan(labels) else f"{labels:.0f}"


def saving_by_target(
    curves: dict, ceiling: float, fractions=(0.97, 0.98, 0.99), n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Label saving vs random for each strategy at several targets (fractions of ``ceiling``).

    The saving depends on where the target sits on random sampling's curve; this shows how much.
    Returns a DataFrame with one row per (target fraction, strategy).
    """
    rows = []
    for fraction in fractions:
        summary = summarise(curves, fraction * ceiling, n_boot=n_boot, seed=seed)
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
