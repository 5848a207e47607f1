"""Chapter 5's learning curves: every strategy over many repeats, and what they add up to.

A repeat fixes the initial labelled set, the model seed and the order of the pool; all
strategies of one repeat share them, so comparisons with random sampling are paired. After every
round the learner is scored on the val split (which chooses the best strategy and sets the
target accuracy) and on the test split (which scores the chosen strategy). ``summarise`` turns
curves into AULC and label savings, ``best_strategy`` chooses on validation, ``result_keys``
flattens a comparison into the chapter's keys.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from scipy import stats
from threadpoolctl import threadpool_limits

from dlbook.experiments.active_learning_pools import SPLITS, Pool
from dlbook.methods import active, metrics

MAIN_STRATEGIES = ("random", "least_confidence", "margin", "entropy", "bald", "coreset", "badge")
BATCH_AWARE_VARIANT = "margin_diverse"


def pool_order(n: int, seed: int, repeat: int) -> np.ndarray:
    """The order of the pool in one repeat: a permutation of ``range(n)`` from (seed, repeat)."""
    return np.random.default_rng([seed, repeat, 2]).permutation(n)


@dataclass(frozen=True)
class CurveTask:
    """One learning curve: ``strategy`` in repeat ``repeat`` (which fixes the seed set, the model
    seed and the pool order), with the loop's sizes."""

    strategy: str
    repeat: int
    initial_size: int
    batch_size: int
    budget: int
    seed: int
    C: float = 1.0


def curve_task(pool: Pool, task: CurveTask) -> dict:
    """Run one active-learning loop (``task``) on ``pool``; a pure function of its arguments, so
    the curves of a study can run in any order or in parallel.

    Returns
    -------
    dict with ``n_labels`` int64 (T,), ``scores`` {split: float64 (T,)}, ``positive`` float64
    (T,) (share of label 1 among the labels bought), ``queried`` int64 (budget,) pool indices,
    ``seconds``.
    """
    start = time.perf_counter()
    order = pool_order(len(pool.y_pool), task.seed, task.repeat)
    # One BLAS thread: the fits are tiny, and threads only contend.
    with threadpool_limits(1):
        learner = active.ActiveLearner(
            task.strategy,
            model=active.default_model(task.strategy, C=task.C, seed=task.seed + task.repeat),
            initial_size=task.initial_size,
            batch_size=task.batch_size,
            budget=task.budget,
            random_state=task.seed + task.repeat,
        ).fit(pool.X_pool[order], pool.y_pool[order], eval_sets=pool.eval_sets())
    picked = order[learner.query_order_]
    bought = pool.y_pool[picked]
    return {
        "n_labels": np.asarray(learner.n_labels_),
        "scores": {split: np.asarray(learner.scores_[split]) for split in SPLITS},
        "positive": np.array([bought[:n].mean() if n else np.nan for n in learner.n_labels_]),
        "queried": picked,
        "seconds": time.perf_counter() - start,
    }


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
    """Learning curves of each strategy over ``repeats`` repeats, on validation and test: one
    ``curve_task`` per (strategy, repeat).

    Repeat ``r`` draws its own initial labelled set, model seed (``seed + r``) and pool order
    (``pool_order``); every strategy of the repeat shares them.

    Returns
    -------
    dict with
        ``n_labels`` int64 (T,); ``accuracy`` {split: {strategy: float64 (R, T)}} for the splits
        "val" and "test"; ``positive_fraction`` {strategy: float64 (R, T)}, share of label 1 among
        the labels bought; ``query_order`` {strategy: int64 (R, budget)}, pool indices;
        ``seconds`` {strategy: float}; ``repeats`` int64 (R,), the repeat numbers.
    """
    unknown = [s for s in strategies if s not in active.STRATEGIES]
    if unknown:
        raise ValueError(
            f"strategies {unknown} are unknown; use names from {tuple(active.STRATEGIES)}"
        )
    if repeats < 1:
        raise ValueError(f"repeats={repeats!r} must be a positive integer")
    tasks = [CurveTask(s, r, initial_size, batch_size, budget, seed, C)
             for s in strategies for r in range(repeats)]  # fmt: skip
    done = list(map(partial(curve_task, pool), tasks))
    out = {"accuracy": {split: {} for split in SPLITS}, "positive_fraction": {},
           "query_order": {}, "seconds": {}, "n_labels": done[0]["n_labels"],
           "repeats": np.arange(repeats)}  # fmt: skip
    for strategy in strategies:
        mine = [d for t, d in zip(tasks, done, strict=True) if t.strategy == strategy]
        for split in SPLITS:
            out["accuracy"][split][strategy] = np.array([d["scores"][split] for d in mine])
        out["positive_fraction"][strategy] = np.array([d["positive"] for d in mine])
        out["query_order"][strategy] = np.array([d["queried"] for d in mine])
        out["seconds"][strategy] = float(sum(d["seconds"] for d in mine))
    return out


def repeat_partition(repeats: int, selection_repeats: int) -> tuple[np.ndarray, np.ndarray]:
    """The repeats that choose the strategy (``0 .. selection_repeats - 1``) and the disjoint
    rest, which report it. Both must be non-empty."""
    if not 1 <= selection_repeats < repeats:
        raise ValueError(
            f"selection_repeats={selection_repeats!r} must lie in [1, repeats={repeats}) so that "
            f"some repeats choose and others report"
        )
    every = np.arange(repeats)
    return every[:selection_repeats], every[selection_repeats:]


def select_repeats(curves: dict, rows: np.ndarray) -> dict:
    """The curves of the repeats ``rows`` only (same layout as ``run_curves``)."""
    rows = np.asarray(rows)
    return {
        "n_labels": curves["n_labels"],
        "accuracy": {split: {s: a[rows] for s, a in by.items()}
                     for split, by in curves["accuracy"].items()},
        "positive_fraction": {s: v[rows] for s, v in curves["positive_fraction"].items()},
        "query_order": {s: v[rows] for s, v in curves["query_order"].items()},
        "seconds": curves["seconds"],
        "repeats": np.asarray(curves["repeats"])[rows],
    }  # fmt: skip


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


SAVING_COLUMNS = (
    "labels_to_target",
    "label_saving_vs_random",
    "label_saving_ci_low",
    "label_saving_ci_high",
)
"""A strategy's labels to the target and its saving against random sampling, with interval."""


def _saving(row: pd.Series) -> dict:
    return {column: row[column] for column in SAVING_COLUMNS}


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
            setting = {"initial_size": initial_size, "batch_size": batch_size}
            rows.append({**setting, "strategy": strategy, "aulc": row["aulc"], **_saving(row)})
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
                    "random_labels_to_target": summary.loc["random", "labels_to_target"],
                    **_saving(row),
                }
            )
    return pd.DataFrame(rows)


def curve_bands(curves: dict, level: float = 0.95) -> dict:
    """What the learning-curve figure draws: each strategy's mean curve and its t-interval over
    repeats, clipped to [0, 1], per split.

    Returns
    -------
    dict with ``n_labels`` int (T,), ``repeats`` int and ``bands`` {split: {strategy:
    (mean, low, high)}}, each float64 (T,); with one repeat the band is the mean.
    """
    bands = {}
    for split, by_strategy in curves["accuracy"].items():
        bands[split] = {}
        for strategy, values in by_strategy.items():
            mean = values.mean(0)
            half = np.zeros_like(mean)
            if len(values) >= 2:
                half = stats.t.ppf((1 + level) / 2, len(values) - 1) * stats.sem(values, axis=0)
            bands[split][strategy] = (mean, np.clip(mean - half, 0, 1), np.clip(mean + half, 0, 1))
    first = next(iter(curves["accuracy"].values()))
    return {
        "n_labels": curves["n_labels"],
        "repeats": len(next(iter(first.values()))),
        "bands": bands,
    }


def class_balance(curves: dict) -> dict:
    """Share of ``with_mask`` (label 1) among the labels bought, per strategy: ``n_labels`` int
    (T,) and ``share`` {strategy: float64 (T,), mean over repeats}."""
    return {
        "n_labels": curves["n_labels"],
        "share": {s: np.nanmean(v, axis=0) for s, v in curves["positive_fraction"].items()},
    }
