"""Chapter 5: every active-learning strategy over many repeats, chosen on validation, scored
on test.

Each section of the chapter is one call that computes, saves (through ``run.save``) and returns:
``setup``, ``compare_strategies``, ``savings_by_target``, ``crosscheck``, ``sensitivity_study``,
``first_queries`` and ``weak_features``. The pools are made in ``active_learning_pools``, the
learning curves and their summaries in ``active_learning_curves``. The ``*_table`` functions
format tables for the page and the ``story_*`` functions word the results.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dlbook.book import claims, present
from dlbook.book.context import Run
from dlbook.experiments import active_learning_curves as learning_curves
from dlbook.experiments import active_learning_pools as pools

CHAPTER = "active_learning"


@dataclass
class Setup:
    """The main pool, the learner's full-pool accuracy (``ceiling``: {"val", "test"}) and the
    target accuracy derived from the validation ceiling."""

    pool: pools.Pool
    ceiling: dict
    target: float
    keys: dict = field(default_factory=dict)


@dataclass
class Comparison:
    """Every strategy's curves on one pool: the selection repeats' validation curves choose
    ``best`` (``val_summary``); the disjoint reported repeats' test curves score it
    (``test_summary``). ``curves`` holds the reported repeats, ``selection_curves`` the others."""

    curves: dict
    val_summary: pd.DataFrame
    test_summary: pd.DataFrame
    best: str
    target: float
    keys: dict = field(default_factory=dict)
    selection_curves: dict = field(default_factory=dict)

    @property
    def bands(self) -> dict:
        """The learning curves' means and 95% bands (``active_learning_curves.curve_bands``)."""
        return learning_curves.curve_bands(self.curves)

    @property
    def class_balance(self) -> dict:
        """The with-mask share of the labels bought (``active_learning_curves.class_balance``)."""
        return learning_curves.class_balance(self.curves)


def setup(run: Run) -> Setup:
    """The pool of backbone features, the full-pool accuracy and the target accuracy.

    The target is ``settings["target_fraction"]`` of the full-pool learner's *validation*
    accuracy; the test accuracy is recorded but chooses nothing.
    """
    settings = run.settings
    pool = pools.backbone_pool(
        settings["features"], run.data_dir, run.seed, settings["n_components"]
    )
    ceiling = pools.full_pool_accuracy(pool)
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
        "target_declared_in": "profile",
    }
    run.save(keys)
    return Setup(pool, ceiling, target, keys)


def compare(
    pool: pools.Pool,
    target: float,
    strategies,
    repeats: int,
    initial_size: int,
    batch_size: int,
    budget: int,
    seed: int = 0,
    n_boot: int = 1000,
    prefix: str = "",
    selection_repeats: int = 1,
) -> Comparison:
    """Run every strategy on ``pool`` over ``repeats`` repeats; the first ``selection_repeats``
    choose the best on validation, the other repeats score every strategy on test
    (``repeat_partition``: no repeat does both)."""
    curves = learning_curves.run_curves(
        pool, strategies, repeats, initial_size, batch_size, budget, seed
    )
    choose, report = learning_curves.repeat_partition(repeats, selection_repeats)
    chosen_on = learning_curves.select_repeats(curves, choose)
    reported = learning_curves.select_repeats(curves, report)
    val_summary = learning_curves.summarise(chosen_on, target, "val", n_boot=n_boot, seed=seed)
    test_summary = learning_curves.summarise(reported, target, "test", n_boot=n_boot, seed=seed)
    keys = learning_curves.result_keys(val_summary, test_summary, target, repeats, prefix)
    keys[f"{prefix}selection_repeats"] = _span(choose)
    keys[f"{prefix}reported_repeats"] = _span(report)
    for strategy, share in reported["positive_fraction"].items():
        keys[f"{prefix}with_mask_share_at_budget_{strategy}"] = float(np.nanmean(share[:, -1]))
    return Comparison(
        reported, val_summary, test_summary, keys[f"{prefix}best_strategy"], target, keys, chosen_on
    )


def _span(rows: np.ndarray) -> str:
    """``"0-9"`` for the repeats 0 to 9."""
    return f"{int(rows[0])}-{int(rows[-1])}"


def compare_strategies(run: Run, setup: Setup) -> Comparison:
    """The seven strategies and the batch-aware variant against random sampling on the main
    pool; the best is chosen on validation, the test set scores it."""
    settings, seed = run.settings, run.seed
    comparison = compare(
        setup.pool,
        setup.target,
        learning_curves.MAIN_STRATEGIES + (learning_curves.BATCH_AWARE_VARIANT,),
        settings["repeats"],
        settings["initial_size"],
        settings["batch_size"],
        settings["budget"],
        seed,
        settings["n_boot"],
        selection_repeats=settings["selection_repeats"],
    )
    comparison.keys.update(
        setup.keys,
        selected_on="validation",
        al_repeats=settings["repeats"],
        al_selection_repeat_count=settings["selection_repeats"],
        al_reported_repeat_count=settings["repeats"] - settings["selection_repeats"],
        al_budget_labels=settings["budget"],
        al_initial_labels=settings["initial_size"],
        al_batch_size=settings["batch_size"],
        binary_uncertainty_agreement=learning_curves.binary_uncertainty_agreement(setup.pool, seed),
    )
    run.save(comparison.keys)
    return comparison


def savings_by_target(run: Run, setup: Setup, comparison: Comparison) -> pd.DataFrame:
    """The test-set saving of every strategy at several fractions of the validation ceiling;
    saves the chosen strategy's as ``label_saving_vs_random_<best>_at_<fraction>``."""
    table = learning_curves.saving_by_target(
        comparison.curves,
        setup.ceiling["val"],
        run.settings["target_fractions"],
        "test",
        n_boot=run.settings["n_boot"],
        seed=run.seed,
    )
    best, values = comparison.best, {}
    for r in table[table.strategy == best].itertuples():
        at = f"{r.target_fraction:g}"
        values[f"label_saving_vs_random_{best}_at_{at}"] = r.label_saving_vs_random
        values[f"label_saving_vs_random_ci_low_{best}_at_{at}"] = r.label_saving_ci_low
        values[f"label_saving_vs_random_ci_high_{best}_at_{at}"] = r.label_saving_ci_high
    values["al_target_fractions"] = ",".join(f"{f:g}" for f in run.settings["target_fractions"])
    run.save(values)
    return table


def crosscheck(run: Run) -> pd.DataFrame:
    """Our strategies' batches against scikit-activeml's (``crosscheck_skactiveml``)."""
    trials = run.settings["crosscheck_trials"]
    table = learning_curves.crosscheck_skactiveml(n_trials=trials, seed=run.seed)
    run.save(
        {
            "crosscheck_min_overlap": float(table["mean overlap"].min()),
            "crosscheck_trials": trials,
        }
    )
    return table


def sensitivity_study(run: Run, setup: Setup) -> pd.DataFrame:
    """Validation AULC and saving as the seed-set and batch sizes change (``sensitivity``)."""
    settings, seed = run.settings, run.seed
    table = learning_curves.sensitivity(
        setup.pool,
        setup.target,
        initial_sizes=settings["sensitivity_initial_sizes"],
        batch_sizes=settings["sensitivity_batch_sizes"],
        repeats=settings["sensitivity_repeats"],
        budget=settings["sensitivity_budget"],
        seed=seed,
        n_boot=settings["n_boot"],
    )
    run.save(
        {
            f"sensitivity_val_aulc_{r.strategy}_seed{r.initial_size}_batch{r.batch_size}": r.aulc
            for r in table.itertuples()
        }
    )
    return table


@dataclass
class Weak:
    """The contrast on weak features: its pool, setup and comparison."""

    setup: Setup
    comparison: Comparison


def weak_features(run: Run) -> Weak:
    """The same loop on raw grayscale pixels, a learner far from separating the classes; its
    target is ``weak_target_fraction`` of its own validation ceiling. Keys are prefixed
    ``weak_``."""
    settings, seed = run.settings, run.seed
    pool = pools.pixel_pool(settings["features"], run.data_dir, seed, settings["weak_image_size"])
    ceiling = pools.full_pool_accuracy(pool)
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
        selection_repeats=settings["weak_selection_repeats"],
    )
    keys = {
        "weak_features": pool.name,
        "weak_full_pool_val_accuracy": ceiling["val"],
        "weak_full_pool_accuracy": ceiling["test"],
        "weak_target_fraction": settings["weak_target_fraction"],
        "weak_budget_labels": settings["weak_budget"],
    }
    comparison.keys.update(keys)
    run.save(comparison.keys)
    return Weak(Setup(pool, ceiling, target, keys), comparison)


def first_queries(run: Run, setup: Setup, comparison: Comparison, n: int = 8) -> tuple[dict, dict]:
    """The first ``n`` images each strategy bought after the seed set, in the first repeat
    (``active_learning_pools.queried_images``)."""
    return pools.queried_images(
        setup.pool, comparison.curves, run.settings["features"], run.data_dir, run.seed, n
    )


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
    # as many decimals as the fraction has: 0.98 and 0.985 must not both read "98%"
    wide.columns = [f"target {round(100 * f, 2):g}%" for f in wide.columns]
    return present.show(wide.astype(float), percent_columns=list(wide.columns), index=True)


def crosscheck_table(table: pd.DataFrame):
    """The scikit-activeml cross-check, overlap as a percentage."""
    return present.show(table, percent_columns=["mean overlap"])


# ---------------------------------------------------------------------------------------------
# Stories: the chapter's sentences, built from its results.


def describe_labels(labels, budget: int) -> str:
    """``"37"`` for a reached target, ``"more than 100"`` for a mean curve that never reached it
    (NaN, or None once saved)."""
    if labels is None or np.isnan(labels):
        return f"more than {budget}"
    return f"{labels:.0f}"


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
        f"{present.percent(keys['target_fraction'], 1)} of the validation figure (declared in "
        f"the profile before any run), is **{present.percent(keys['target_accuracy'], 2)}**."
    )


def _comparison_sentences(keys: Mapping, budget: int, prefix: str = "") -> str:
    best = keys[f"{prefix}best_strategy"]

    def labels(name, split=""):
        return describe_labels(keys.get(f"{prefix}{split}labels_to_target_{name}"), budget)

    text = (
        f"Chosen on the validation curves of repeats {keys[f'{prefix}selection_repeats']}, the "
        f"best strategy is **{best}**: its mean validation curve reaches the target after "
        f"{labels(best, 'val_')} labels, random sampling's after {labels('random', 'val_')}. "
        f"Scored on the test curves of the other repeats, "
        f"{keys[f'{prefix}reported_repeats']}, which chose nothing, {best} needs "
        f"{labels(best)} labels against {labels('random')} for random sampling"
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
    parts = [f"{present.percent(v)} at {present.percent(f, 1)}" for f, v in values]
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
