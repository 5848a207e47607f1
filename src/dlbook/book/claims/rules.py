"""The rules that judge the claims of chapters 1, 2 and 5, the methods and the future work, with
the thresholds every rule shares. Chapter 4's model rules are in ``mask_rules``.

A rule is a pure function ``judge_<claim>(results) -> Verdict`` of the book's saved results
(``{chapter: {key: value}}``). Its docstring's first paragraph is the rule in words, as the claims
page shows it. Each empirical rule first checks, from the results, that the experiment could test
the claim (trained to convergence, enough seeds, the regime in which the claim means something);
when it could not, the verdict is *untested at this budget* and the note says what budget would
test it. *fails* is only ever given by an adequate experiment. Statements of method and the future
work are *reproduced* or *not reproduced*, never counted as findings.
"""

from __future__ import annotations

from dlbook.book import present
from dlbook.book.claims.verdicts import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    NOT_MEASURED,
    NOT_REPRODUCED,
    PARTLY,
    REPRODUCED,
    UNTESTED,
    Verdict,
)
from dlbook.book.claims.wording import (
    coverage_key,
    human,
    interval_of,
    pct,
    points_interval_of,
    sentences,
)

# The adequacy thresholds every empirical rule uses.
MIN_SEEDS = 3
"""Fewest seeds (or repeats, or folds) whose spread an interval can be trusted to show."""
MIN_SEEDS_REGULARISERS = 5
MIN_CONVERGED = 0.5
"""Smallest share of runs that must have converged (early stopping fired, or flat validation)."""
MIN_OVERFIT_GAP = 0.05
"""Train-minus-validation accuracy of the unregularised model below which regularisers cannot
be ranked: a model that does not overfit gives a regulariser nothing to do."""
MIN_CUSTOM_CNN_PIXELS = 64
MIN_SIZES = 3
MIN_FOLDS = 5

# What the rules compare the measurements with.
DISSERTATION_MODELS = {
    "custom_cnn": {"accuracy": 0.96, "precision": 0.95, "recall": 0.96},
    "inception_v3": {"accuracy": 0.995, "precision": 0.99, "recall": 1.00},
    "mobilenet_v2": {"accuracy": 0.991, "precision": 0.99, "recall": 0.99},
}
"""The dissertation's reported test metrics per model: the only place the book types them."""
METRIC_TOLERANCE = 0.01
"""How far a precision or recall may fall below the claimed one and still count as reached."""
PERFECT_RECALL = 0.9995
"""A recall that rounds to 1.000: no masked face missed."""
CNN_MINUS_ANN_CLAIMED = 9.0
"""The dissertation's CNN-over-ANN margin, in accuracy points."""
LABEL_SAVING_CLAIMED = 0.30
LEARNING_RATE_RANGE = (0.001, 0.6)
FEDERATED_GAP = 0.01
"""Largest shortfall of federated averaging (IID clients) below central training, as accuracy."""


# ---------------------------------------------------------------------------------------------
# Helpers every rule uses


def budget_of(results: dict, **keys) -> dict:
    """``{label: results[key]}`` for the budget keys present in ``results``."""
    return {label: results[key] for label, key in keys.items() if results.get(key) is not None}


def untested(measured: str, why: list[str], needed: str, reading: str, budget: dict) -> Verdict:
    """*untested at this budget*, with why, what this budget would read and what a test needs."""
    note = sentences(
        [
            "The experiment cannot test this claim: " + "; ".join(why),
            f"At this budget {reading}" if reading else "",
            f"A test needs {needed}",
        ]
    )
    return Verdict(measured, UNTESTED, note, adequate=False, budget=budget)


def converged(share) -> bool | None:
    """Whether training converged: the recorded share of converged runs reaches the minimum."""
    return None if share is None else share >= MIN_CONVERGED


def adequacy_gaps(
    seeds, min_seeds: int, has_converged: bool | None, selected_on=None, needs_selection=False
) -> list[str]:
    """What keeps an experiment from testing a claim, in words (empty when nothing does)."""
    gaps = []
    if seeds is None:
        gaps.append("the number of seeds is not recorded")
    elif seeds < min_seeds:
        gaps.append(f"{seeds} seed{'s' if seeds != 1 else ''}, fewer than {min_seeds}")
    if has_converged is None:
        gaps.append("the results do not record whether training converged")
    elif not has_converged:
        gaps.append("training stopped at the epoch cap before it converged")
    if needs_selection and selected_on != "validation":
        gaps.append(
            "the winner was not recorded as chosen on validation data"
            if selected_on is None
            else f"the winner was chosen on {selected_on} data, not validation data"
        )
    return gaps


# ---------------------------------------------------------------------------------------------
# Findings of chapters 1, 2 and 5


def _gap_reading(low: float, high: float, claimed: float) -> str:
    """One size's reading of a CNN-minus-ANN interval."""
    if low > 0 and low <= claimed <= high:
        return HOLDS
    if low > 0:
        return PARTLY
    if low <= claimed <= high:
        return INCONCLUSIVE
    return FAILS


def judge_cnn_beats_ann(results: dict[str, dict]) -> Verdict:
    """CNN minus ANN accuracy, per input size, both nets trained to early stopping with at least
    3 seeds at 3 sizes or more.

    Holds when at some size the interval contains 9 points and excludes 0 (and no size shows the
    CNN worse); partly when the CNN is clearly better but by another margin; inconclusive when
    the intervals contain both 9 points and no gap; fails when no size shows the CNN better and
    the largest size's interval excludes 9 points.
    """
    fundamentals = results.get("fundamentals", {})
    sizes = [
        int(s) for s in str(fundamentals.get("cnn_ann_sizes", "")).split(",") if s.strip().isdigit()
    ]
    per_size = {
        s: fundamentals[f"cnn_minus_ann_points_{s}px"]
        for s in sizes
        if fundamentals.get(f"cnn_minus_ann_points_{s}px") is not None
    }
    if not per_size:
        return Verdict("-", NOT_MEASURED, "chapter 1 recorded no CNN-minus-ANN gap")
    readings, texts = {}, []
    for size, gap in per_size.items():
        key = f"cnn_minus_ann_points_{size}px"
        low = fundamentals.get(f"{key}_ci_low", gap)
        high = fundamentals.get(f"{key}_ci_high", gap)
        readings[size] = (_gap_reading(low, high, CNN_MINUS_ANN_CLAIMED), low, high)
        texts.append(f"at {size} px: {present.points(gap)}{points_interval_of(fundamentals, key)}")
    measured = "CNN minus ANN " + "; ".join(texts)
    budget = budget_of(
        fundamentals,
        images="cnn_ann_train_images",
        pixels="cnn_ann_sizes",
        epoch_cap="cnn_ann_epoch_cap",
        seeds="cnn_ann_seeds",
    )
    digits = fundamentals.get("cnn_minus_ann_points_digits")
    digits_note = (
        f"On scikit-learn's digits: {present.points(digits)}" if digits is not None else ""
    )
    largest = max(per_size)
    kinds = [r[0] for r in readings.values()]
    worse = [s for s, r in readings.items() if r[2] < 0]
    better = [s for s, r in readings.items() if r[1] > 0]
    if HOLDS in kinds and not worse:
        at = [f"{s} px" for s, r in readings.items() if r[0] == HOLDS]
        verdict, note = HOLDS, "a gap of 9 points fits at " + ", ".join(at)
    elif better:
        at = ", ".join(f"{s} px" for s in better)
        verdict, note = PARTLY, f"the CNN is clearly better at {at}, but by a different margin"
        open_at = [s for s, r in readings.items() if r[1] <= CNN_MINUS_ANN_CLAIMED <= r[2]]
        if open_at:
            note += (
                "; at " + ", ".join(f"{s} px" for s in open_at) + " the interval is too wide to "
                f"rule out {CNN_MINUS_ANN_CLAIMED:g} points or no gap (more seeds would tell)"
            )
    elif readings[largest][0] == FAILS:
        verdict, note = FAILS, "the CNN is not clearly better, and a 9-point gap is excluded"
    else:
        verdict, note = INCONCLUSIVE, "the intervals contain both a 9-point gap and no gap"
    seeds = fundamentals.get("cnn_ann_seeds")
    gaps = adequacy_gaps(
        seeds, MIN_SEEDS, converged(fundamentals.get("cnn_ann_converged_fraction"))
    )
    n_sizes = len(per_size)
    if n_sizes < MIN_SIZES:
        gaps.append(
            f"the gap is measured at {n_sizes} input sizes, fewer than {MIN_SIZES}"
            if n_sizes > 1
            else "the gap is measured at one input size only"
        )
    if gaps:
        reading = f"the reading would be “{verdict}” ({note})" if note else ""
        needed = (
            f"at least {MIN_SEEDS} seeds at {MIN_SIZES} input sizes or more (e.g. 16, 32 and "
            f"64 px), both nets trained to early stopping"
        )
        why = untested(measured, gaps, needed, reading, budget).note
        return Verdict(measured, UNTESTED, sentences([why, digits_note]), False, budget)
    return Verdict(measured, verdict, sentences([note, digits_note]), True, budget)


def _regulariser_ranking(optimization: dict) -> list[tuple[str, float]]:
    """``(method, validation accuracy)`` of every regulariser, best first."""
    methods = [m for m in str(optimization.get("reg_methods", "")).split(",") if m]
    scored = [(m, optimization.get(f"reg_val_acc_{m}")) for m in methods]
    return sorted(((m, v) for m, v in scored if v is not None), key=lambda mv: -mv[1])


def judge_batchnorm(results: dict[str, dict]) -> Verdict:
    """BatchNorm is the regulariser chosen on validation, in a regime where the unregularised
    net overfits (train minus validation accuracy at least 5 points), with each strength picked
    on validation, at least 5 seeds, trained to convergence.

    Holds when BatchNorm wins and its validation interval excludes the runner-up; partly when
    it wins without that separation; inconclusive when another method wins but its lead over
    BatchNorm (paired by seed, on validation) is not separated from zero; fails when another
    method wins and BatchNorm is separated behind it.
    """
    optimization = results.get("optimization", {})
    best = optimization.get("best_regularizer")
    if best is None:
        return Verdict("-", NOT_MEASURED, "chapter 2 recorded no best regulariser")
    ranking = _regulariser_ranking(optimization)
    separated = optimization.get("best_regularizer_separated")
    runner_up = next((m for m, _ in ranking if m != best), None)
    test_key = f"reg_test_acc_{best}"
    chosen = "chosen on validation" if optimization.get("selected_on") == "validation" else "winner"
    measured = f"{chosen}: {human(best)}"
    if optimization.get(test_key) is not None:
        measured += (
            f", test accuracy {pct(optimization[test_key])}{interval_of(optimization, test_key)}"
        )
    if best != "batchnorm" and optimization.get("reg_test_acc_batchnorm") is not None:
        measured += (
            f"; BatchNorm {pct(optimization['reg_test_acc_batchnorm'])}"
            f"{interval_of(optimization, 'reg_test_acc_batchnorm')}"
        )
    budget = budget_of(
        optimization,
        images="reg_train_images",
        pixels="reg_image_size",
        epoch_cap="reg_epoch_cap",
        seeds="reg_seeds",
    )
    if best == "batchnorm":
        verdict, note = (
            (HOLDS, "")
            if separated
            else (
                PARTLY,
                f"BatchNorm leads on validation, but its interval does not exclude "
                f"{human(runner_up) if runner_up else 'the runner-up'}",
            )
        )
    elif not separated and runner_up == "batchnorm":
        verdict, note = INCONCLUSIVE, f"{human(best)} leads, not separated from BatchNorm"
    elif optimization.get("reg_winner_minus_batchnorm_ci_low") is not None and not (
        optimization["reg_winner_minus_batchnorm_ci_low"] > 0
    ):
        low = 100 * optimization["reg_winner_minus_batchnorm_ci_low"]
        high = 100 * optimization["reg_winner_minus_batchnorm_ci_high"]
        verdict, note = (
            INCONCLUSIVE,
            f"{human(best)} is chosen on validation, but its lead over BatchNorm, paired by seed, "
            f"has an interval from {low:+.1f} to {high:+.1f} points that includes no difference",
        )
    else:
        verdict, note = FAILS, f"{human(best)} is the regulariser chosen on validation"
    gap = optimization.get("reg_unregularized_gap")
    seeds = optimization.get("reg_seeds")
    gaps = adequacy_gaps(
        seeds,
        MIN_SEEDS_REGULARISERS,
        converged(optimization.get("reg_converged_fraction")),
        optimization.get("selected_on"),
        needs_selection=True,
    )
    if gap is None:
        gaps.append("the unregularised model's train-minus-validation gap is not recorded")
    elif gap < MIN_OVERFIT_GAP:
        gaps.append(
            f"the unregularised model does not overfit (train minus validation accuracy "
            f"{present.points(100 * gap)}, below {present.points(100 * MIN_OVERFIT_GAP, 0)})"
        )
    if gaps:
        needed = (
            f"a net that overfits (a train-minus-validation gap of at least "
            f"{present.points(100 * MIN_OVERFIT_GAP, 0)}), each strength picked on validation, "
            f"at least {MIN_SEEDS_REGULARISERS} seeds trained to convergence"
        )
        return untested(measured, gaps, needed, f"the reading would be “{verdict}”", budget)
    return Verdict(measured, verdict, note, True, budget)


def judge_active_learning(results: dict[str, dict]) -> Verdict:
    """The strategy chosen on validation reaches the target accuracy with at least 30% fewer
    labels than random sampling, over at least 3 repeats.

    Holds when the saving's interval excludes 0 and reaches 30%; partly when it saves labels but
    fewer; inconclusive when the interval contains both 30% and no saving; fails when the
    interval excludes 30% and shows no saving.
    """
    active = results.get("active_learning", {})
    best = active.get("best_strategy")
    saving = active.get(f"label_saving_vs_random_{best}") if best else None
    if saving is None:
        return Verdict("-", NOT_MEASURED, "chapter 5 recorded no label saving")
    low = active.get(f"label_saving_vs_random_ci_low_{best}", saving)
    high = active.get(f"label_saving_vs_random_ci_high_{best}", saving)
    measured = (
        f"{human(best)}: {pct(saving)} fewer labels than random ({present.interval(low, high)})"
    )
    budget = budget_of(active, images="al_pool_size", labels="al_budget_labels", seeds="al_repeats")
    claimed = LABEL_SAVING_CLAIMED
    if low > 0 and (saving >= claimed or high >= claimed):
        verdict, note = HOLDS, ""
    elif low > 0:
        verdict, note = PARTLY, f"saves labels, but fewer than {pct(claimed)}"
    elif high >= claimed:
        verdict, note = INCONCLUSIVE, "the interval contains both a 30% saving and none"
    else:
        verdict, note = FAILS, "no saving over random sampling that the interval supports"
    gaps = adequacy_gaps(active.get("al_repeats"), MIN_SEEDS, True, active.get("selected_on"), True)
    if gaps:
        needed = f"at least {MIN_SEEDS} repeats, the strategy and target chosen on validation"
        return untested(measured, gaps, needed, f"the reading would be “{verdict}”", budget)
    return Verdict(measured, verdict, note, True, budget)


# ---------------------------------------------------------------------------------------------
# Methods and future work: reproduced or not, never counted as findings


def judge_conformal(results: dict[str, dict]) -> Verdict:
    """Reproduced when, over many re-splits, every method's mean coverage reaches 1 - α within
    the guarantee's slack (a theorem; the book checks its code reproduces it)."""
    conformal = results.get("conformal", {})
    holds = conformal.get("coverage_guarantee_holds")
    if holds is None:
        return Verdict("-", NOT_MEASURED, "chapter 6 recorded no coverage check")
    gaps = [
        (value - (1 - float(coverage_key(key)[1])), key)
        for key, value in conformal.items()
        if coverage_key(key) and value is not None
    ]
    text = f"over {conformal.get('resplits', 'several')} re-splits"
    if gaps:
        worst, key = min(gaps)
        text += (
            f"; the worst mean coverage is {present.points(100 * worst, 2)} from its target "
            f"({human(key)})"
        )
    budget = budget_of(conformal, resplits="resplits")
    return Verdict(text, REPRODUCED if holds else NOT_REPRODUCED, adequate=True, budget=budget)


def judge_learning_rates(results: dict[str, dict]) -> Verdict:
    """Reproduced when the book's learning-rate sweep spans 0.001 to 0.6."""
    optimization = results.get("optimization", {})
    low, high, count = (optimization.get(k) for k in ("lr_min", "lr_max", "lr_values"))
    if low is None or high is None:
        return Verdict("-", NOT_MEASURED, "chapter 2 recorded no learning-rate sweep")
    text = f"{count} learning rates from {present.number(low)} to {present.number(high)}"
    budget = budget_of(optimization, learning_rates="lr_values")
    wanted_low, wanted_high = LEARNING_RATE_RANGE
    if low <= wanted_low * 1.0001 and high >= wanted_high * 0.9999:
        return Verdict(text, REPRODUCED, "the book sweeps the whole range", True, budget)
    return Verdict(
        text, NOT_REPRODUCED, "the book's sweep does not span the whole range", True, budget
    )


def judge_federated(results: dict[str, dict]) -> Verdict:
    """Reproduced when federated averaging over IID clients comes within 1 point of central
    training on the same data."""
    future = results.get("future_work", {})
    fedavg, central = future.get("fedavg_accuracy_iid"), future.get("central_accuracy")
    if fedavg is None or central is None:
        return Verdict("-", NOT_MEASURED, "chapter 7 recorded no federated training")
    measured = f"FedAvg, IID clients: {pct(fedavg)}; central training: {pct(central)}"
    noniid = sorted(k for k in future if k.startswith("fedavg_accuracy_noniid_"))
    extra = [
        f"non-IID (α = {k.rsplit('_', 1)[1]}): FedAvg {pct(future[k])}"
        + (
            f", FedProx {pct(future[k.replace('fedavg', 'fedprox')])}"
            if future.get(k.replace("fedavg", "fedprox")) is not None
            else ""
        )
        for k in noniid
        if future[k] is not None
    ]
    if future.get("local_only_accuracy_mean") is not None:
        extra.append(f"each client alone: {pct(future['local_only_accuracy_mean'])} on average")
    budget = budget_of(future, clients="fl_clients", rounds="fl_rounds")
    verdict = REPRODUCED if central - fedavg <= FEDERATED_GAP else NOT_REPRODUCED
    return Verdict(measured, verdict, sentences(["; ".join(extra)]), True, budget)


def judge_mask_fit(results: dict[str, dict]) -> Verdict:
    """Reproduced when a classifier tells the mask-fit classes apart on synthetic masks better
    than chance (its interval's lower end above 1 / number of classes)."""
    future = results.get("future_work", {})
    accuracy = future.get("mask_fit_synthetic_accuracy")
    if accuracy is None:
        return Verdict("-", NOT_MEASURED, "chapter 7 recorded no mask-fit classifier")
    classes = [c for c in str(future.get("mask_fit_classes", "")).split(",") if c]
    measured = (
        f"accuracy {pct(accuracy)}{interval_of(future, 'mask_fit_synthetic_accuracy')} on "
        f"synthetic masks"
    )
    if classes:
        measured += f" ({', '.join(human(c) for c in classes)})"
    chance = 1 / len(classes) if classes else 0.5
    low = future.get("mask_fit_synthetic_accuracy_ci_low", accuracy)
    flagged = future.get("mask_fit_flagged_real_with_mask")
    note = (
        f"On real masked test faces, {flagged} are flagged as badly worn (no labels to check them)"
        if flagged is not None
        else ""
    )
    verdict = REPRODUCED if low > chance else NOT_REPRODUCED
    return Verdict(measured, verdict, sentences([note]), True)
