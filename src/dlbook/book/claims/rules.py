"""The judges of chapters 1, 2 and 5's findings, of the methods and of the future work. Chapter
4's model judges are in ``mask_rules``.

A judge is a pure function ``judge_<claim>(results, claim) -> Verdict`` of the book's saved
results (``{chapter: {key: value}}``) and of the claim as the registry declares it (its margin and
kind of evidence). A finding's judge only picks the interval the claim is about, how many seeds
or folds stand behind it and whether the regime can show the effect; the verdict is
``table.decide``'s, the same rule for every claim. Its docstring's first paragraph says which
numbers it reads, as the claims page shows it. Statements of method and future work are
*reproduced*, *not reproduced* or, when their check holds by construction, *untested*; never
counted as findings.
"""

from __future__ import annotations

from dlbook.book import present
from dlbook.book.claims.dissertation import (
    CNN_MINUS_ANN_CLAIMED,
    LABEL_SAVING_CLAIMED,
    LEARNING_RATE_RANGE,
)
from dlbook.book.claims.table import REPEATS, SEEDS, Part, decide, margin_text
from dlbook.book.claims.verdicts import (
    NOT_MEASURED,
    NOT_REPRODUCED,
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

# What a regime must show before it can test a claim.
MIN_CONVERGED = 0.5
"""Smallest share of runs that must have converged (early stopping fired, or flat validation)."""
MIN_OVERFIT_GAP = 0.05
"""Train-minus-validation accuracy of the unregularised model below which regularisers cannot
be ranked: a model that does not overfit gives a regulariser nothing to do."""
MIN_ACTIVE_LEARNING_LABELS = 500
"""Smallest label budget of an active-learning run that can test a saving in labels: below it
random sampling reaches any target worth stating within a few batches."""


# ---------------------------------------------------------------------------------------------
# Helpers the judges share


def budget_of(results: dict, **keys) -> dict:
    """``{label: results[key]}`` for the budget keys present in ``results``."""
    return {label: results[key] for label, key in keys.items() if results.get(key) is not None}


def convergence_gaps(share) -> list[str]:
    """Why training was not run to convergence, in words (empty when it was)."""
    if share is None:
        return ["the results do not record whether training converged"]
    if share < MIN_CONVERGED:
        return ["training stopped at the epoch cap before it converged"]
    return []


def selection_gaps(selected_on) -> list[str]:
    """Why a winner's choice may have seen test data, in words (empty when it was validation)."""
    if selected_on == "validation":
        return []
    if selected_on is None:
        return ["the winner was not recorded as chosen on validation data"]
    return [f"the winner was chosen on {selected_on} data, not validation data"]


# ---------------------------------------------------------------------------------------------
# Findings of chapters 1, 2 and 5


def _gap_sizes(fundamentals: dict) -> list[int]:
    """The input sizes with a saved CNN-minus-ANN gap, smallest first."""
    sizes = [
        int(s) for s in str(fundamentals.get("cnn_ann_sizes", "")).split(",") if s.strip().isdigit()
    ]
    return sorted(s for s in sizes if fundamentals.get(f"cnn_minus_ann_points_{s}px") is not None)


def _largest_gap(fundamentals: dict, largest: int) -> tuple[Part, int | None]:
    """The gap at the largest size, and the seeds behind it: ``cnn_ann_gap_largest_*`` when
    chapter 1 saved it, else ``cnn_minus_ann_points_<largest>px`` over ``cnn_ann_seeds``."""
    if fundamentals.get("cnn_ann_gap_largest_points") is not None:
        size = fundamentals.get("cnn_ann_gap_largest_px", largest)
        found = [
            fundamentals.get(f"cnn_ann_gap_largest_{k}") for k in ("points", "ci_low", "ci_high")
        ]
        seeds = fundamentals.get("cnn_ann_gap_largest_seeds", fundamentals.get("cnn_ann_seeds"))
    else:
        size, key = largest, f"cnn_minus_ann_points_{largest}px"
        found = [
            fundamentals.get(key),
            fundamentals.get(f"{key}_ci_low"),
            fundamentals.get(f"{key}_ci_high"),
        ]
        seeds = fundamentals.get("cnn_ann_seeds")
    part = Part(f"CNN minus ANN at {size} px", CNN_MINUS_ANN_CLAIMED, *found, unit="points")
    return part, seeds


def _tuning_gaps(fundamentals: dict) -> list[str]:
    """Why the two families may not each be at their best: no learning rate chosen on
    validation per family (``cnn_ann_lr_selected_on``)."""
    selected_on = fundamentals.get("cnn_ann_lr_selected_on")
    if selected_on == "validation":
        return []
    return [
        "the two nets share one learning rate, not each its own chosen on validation"
        if selected_on is None
        else f"the learning rates were chosen on {selected_on} data, not validation data"
    ]


def _tuned_rates(fundamentals: dict) -> str:
    """Each family's learning rate chosen on validation, in words ("" when not saved)."""
    rates = [
        f"{family} {present.number(fundamentals[f'cnn_ann_learning_rate_{family}'])}"
        for family in ("CNN", "ANN")
        if fundamentals.get(f"cnn_ann_learning_rate_{family}") is not None
    ]
    return "Learning rates chosen on validation: " + ", ".join(rates) if rates else ""


def judge_cnn_beats_ann(results: dict[str, dict], claim) -> Verdict:
    """The CNN-minus-ANN accuracy gap, in points, at the largest input size measured (the one
    at which the claim matters), with its interval over seeds; each net at its own learning rate
    chosen on validation, both trained to early stopping."""
    fundamentals = results.get("fundamentals", {})
    sizes = _gap_sizes(fundamentals)
    if not sizes:
        return Verdict("-", NOT_MEASURED, "chapter 1 recorded no CNN-minus-ANN gap")
    texts = []
    for size in sizes:
        key = f"cnn_minus_ann_points_{size}px"
        texts.append(
            f"at {size} px: {present.points(fundamentals[key])}"
            f"{points_interval_of(fundamentals, key)}"
        )
    part, seeds = _largest_gap(fundamentals, sizes[-1])
    digits = fundamentals.get("cnn_minus_ann_points_digits")
    return decide(
        claim,
        [part],
        seeds,
        "CNN minus ANN " + "; ".join(texts),
        regime_gaps=convergence_gaps(fundamentals.get("cnn_ann_converged_fraction"))
        + _tuning_gaps(fundamentals),
        needed=(
            f"at least {SEEDS.minimum} seeds, each drawing its own split, at the largest input "
            "size, each family at its own learning rate chosen on validation, trained to early "
            "stopping"
        ),
        notes=[
            _tuned_rates(fundamentals),
            f"On scikit-learn's digits: {present.points(digits)}" if digits is not None else "",
        ],
        budget=budget_of(
            fundamentals,
            images="cnn_ann_train_images",
            pixels="cnn_ann_sizes",
            epoch_cap="cnn_ann_epoch_cap",
            seeds="cnn_ann_seeds",
        ),
    )


def _batchnorm_lead(optimization: dict, best: str) -> tuple[float, float, float] | None:
    """BatchNorm minus the best other regulariser on validation, paired by seed, in points:
    (mean, low, high), from the winner's lead over the runner-up (BatchNorm won) or over
    BatchNorm (another won)."""
    if best == "batchnorm":
        keys = ("reg_winner_margin", "reg_winner_margin_ci_low", "reg_winner_margin_ci_high")
        found = [optimization.get(k) for k in keys]
        return None if None in found else tuple(100 * v for v in found)
    keys = (
        "reg_winner_minus_batchnorm",
        "reg_winner_minus_batchnorm_ci_high",
        "reg_winner_minus_batchnorm_ci_low",
    )
    found = [optimization.get(k) for k in keys]
    return None if None in found else tuple(-100 * v for v in found)


def _no_effect(optimization: dict, margin_points: float) -> list[str]:
    """Why the regime cannot rank regularisers because none helps: every one's test accuracy
    within the margin of no regularisation's (empty when one does better, or it is unknown)."""
    none = optimization.get("reg_test_acc_none")
    methods = [m for m in str(optimization.get("reg_methods", "")).split(",") if m and m != "none"]
    scored = {m: optimization.get(f"reg_test_acc_{m}") for m in methods}
    scored = {m: v for m, v in scored.items() if v is not None}
    if none is None or not scored:
        return []
    best = max(scored, key=scored.get)
    lead = 100 * (scored[best] - none)
    if lead >= margin_points:
        return []
    return [
        f"no regulariser beats none by the margin on test (the best, {human(best)}, by "
        f"{present.points(lead)}): the regime shows no effect to rank"
    ]


def _winners_by_size(optimization: dict) -> str:
    """The regulariser chosen on validation at each training-set size (``reg_n<size>_*``)."""
    sizes = [n for n in str(optimization.get("reg_train_sizes", "")).split(",") if n.strip()]
    found = [
        f"{present.number(int(n))} images: {human(optimization[f'reg_n{n}_best_regularizer'])}"
        for n in sizes
        if optimization.get(f"reg_n{n}_best_regularizer") is not None
    ]
    return "Chosen on validation by training-set size: " + "; ".join(found) if found else ""


def judge_batchnorm(results: dict[str, dict], claim) -> Verdict:
    """BatchNorm's validation accuracy minus the best other regulariser's, paired by seed (each
    strength picked on validation), in a regime where the unregularised net overfits (train
    minus validation accuracy at least 5 points) and some regulariser beats none on test by the
    margin, trained to convergence."""
    optimization = results.get("optimization", {})
    best = optimization.get("best_regularizer")
    if best is None:
        return Verdict("-", NOT_MEASURED, "chapter 2 recorded no best regulariser")
    chosen = "chosen on validation" if optimization.get("selected_on") == "validation" else "winner"
    measured = f"{chosen}: {human(best)}"
    test_key = f"reg_test_acc_{best}"
    if optimization.get(test_key) is not None:
        measured += (
            f", test accuracy {pct(optimization[test_key])}{interval_of(optimization, test_key)}"
        )
    if best != "batchnorm" and optimization.get("reg_test_acc_batchnorm") is not None:
        measured += (
            f"; BatchNorm {pct(optimization['reg_test_acc_batchnorm'])}"
            f"{interval_of(optimization, 'reg_test_acc_batchnorm')}"
        )
    lead = _batchnorm_lead(optimization, best)
    other = optimization.get("reg_runner_up") if best == "batchnorm" else best
    part = Part(
        f"BatchNorm minus {human(other) if other else 'the best other regulariser'}",
        0.0,
        *(lead or (None, None, None)),
        unit="points",
    )
    regime = convergence_gaps(optimization.get("reg_converged_fraction"))
    regime += selection_gaps(optimization.get("selected_on"))
    regime += _no_effect(optimization, claim.margin)
    gap = optimization.get("reg_unregularized_gap")
    if gap is None:
        regime.append("the unregularised model's train-minus-validation gap is not recorded")
    elif gap < MIN_OVERFIT_GAP:
        regime.append(
            f"the unregularised model does not overfit (train minus validation accuracy "
            f"{present.points(100 * gap)}, below {present.points(100 * MIN_OVERFIT_GAP, 0)})"
        )
    return decide(
        claim,
        [part],
        optimization.get("reg_seeds"),
        measured,
        regime_gaps=regime,
        needed=(
            f"a net that overfits (a train-minus-validation gap of at least "
            f"{present.points(100 * MIN_OVERFIT_GAP, 0)}) at several training-set sizes, where "
            f"some regulariser helps by more than the margin, each strength picked on validation, at least {SEEDS.minimum} seeds trained to "
            "convergence"
        ),
        notes=[
            "" if lead else "the lead over BatchNorm, paired by seed, was not saved",
            _winners_by_size(optimization),
        ],
        budget=budget_of(
            optimization,
            images="reg_train_images",
            pixels="reg_image_size",
            epoch_cap="reg_epoch_cap",
            seeds="reg_seeds",
        ),
    )


def _saving_by_target(active: dict, best: str) -> str:
    """How the saving moves with the accuracy target, from ``label_saving_vs_random_<s>_at_<t>``."""
    prefix = f"label_saving_vs_random_{best}_at_"
    found = sorted(
        (float(k.removeprefix(prefix)), v)
        for k, v in active.items()
        if k.startswith(prefix) and v is not None
    )
    if len(found) < 2:
        return ""
    return "The saving moves with the target: " + ", ".join(
        f"{pct(v)} at a target of {present.number(t)}" for t, v in found
    )


def judge_active_learning(results: dict[str, dict], claim) -> Verdict:
    """The label saving over random sampling of the strategy chosen on validation, at the
    target declared in advance, with its interval over the repeats that did not choose the
    strategy, in a run whose label budget can show a saving."""
    active = results.get("active_learning", {})
    best = active.get("best_strategy")
    saving = active.get(f"label_saving_vs_random_{best}") if best else None
    if saving is None:
        return Verdict("-", NOT_MEASURED, "chapter 5 recorded no label saving")
    low = active.get(f"label_saving_vs_random_ci_low_{best}")
    high = active.get(f"label_saving_vs_random_ci_high_{best}")
    target = active.get("target_accuracy")
    measured = (
        f"{human(best)}: {pct(saving)} fewer labels than random"
        + (f" to reach an accuracy of {pct(target)}" if target is not None else "")
        + (f" ({present.interval(low, high)})" if low is not None and high is not None else "")
    )
    regime = selection_gaps(active.get("selected_on"))
    reported = active.get("al_reported_repeat_count")
    if reported is None:
        regime.append(
            "the strategy was chosen on the validation curves of the same repeats that report "
            "its saving, so the best-of-many choice carries its luck to test"
        )
    labels = active.get("al_budget_labels")
    if labels is None:
        regime.append("the label budget is not recorded")
    elif labels < MIN_ACTIVE_LEARNING_LABELS:
        random_labels = active.get("labels_to_target_random")
        regime.append(
            f"the run stops at {present.number(labels)} labels, fewer than "
            f"{MIN_ACTIVE_LEARNING_LABELS}"
            + (
                f", and random sampling reaches the target with {present.number(random_labels, 2)}"
                " labels: a saving there is a few samples on a plateau"
                if random_labels is not None
                else ""
            )
        )
    return decide(
        claim,
        [Part(f"saving of {human(best)}", LABEL_SAVING_CLAIMED, saving, low, high)],
        active.get("al_repeats") if reported is None else reported,
        measured,
        regime_gaps=regime,
        needed=(
            f"at least {REPEATS.minimum} repeats kept apart from the strategy's selection, up to "
            "about 1,000 labels on the full feature vectors, the target fixed in advance"
        ),
        notes=[_saving_by_target(active, best)],
        budget=budget_of(
            active,
            images="al_pool_size",
            labels="al_budget_labels",
            repeats="al_repeats" if reported is None else "al_reported_repeat_count",
            selection_repeats="al_selection_repeat_count",
        ),
    )


# ---------------------------------------------------------------------------------------------
# Methods and future work: reproduced or not (untested when the check holds by construction)


def judge_conformal(results: dict[str, dict], claim) -> Verdict:
    """Over many re-splits, every method's mean coverage reaches 1 - α within the guarantee's
    finite-sample slack (a theorem; the book checks its code reproduces it)."""
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


def judge_learning_rates(results: dict[str, dict], claim) -> Verdict:
    """The book's learning-rate sweep spans 0.001 to 0.6 (its ends within the margin, relative)."""
    optimization = results.get("optimization", {})
    low, high, count = (optimization.get(k) for k in ("lr_min", "lr_max", "lr_values"))
    if low is None or high is None:
        return Verdict("-", NOT_MEASURED, "chapter 2 recorded no learning-rate sweep")
    text = f"{count} learning rates from {present.number(low)} to {present.number(high)}"
    budget = budget_of(optimization, learning_rates="lr_values")
    wanted_low, wanted_high = LEARNING_RATE_RANGE
    slack = max(claim.margin, 1e-4)  # the saved values are rounded floats
    if low <= wanted_low * (1 + slack) and high >= wanted_high * (1 - slack):
        return Verdict(text, REPRODUCED, "the book sweeps the whole range", True, budget)
    return Verdict(
        text, NOT_REPRODUCED, "the book's sweep does not span the whole range", True, budget
    )


def federated_iid_check(future: dict, margin_points: float) -> str:
    """The IID method check in words: FedAvg over IID clients against central training within
    ``margin_points`` ("" when chapter 7 saved no IID run)."""
    fedavg, central = future.get("fedavg_accuracy_iid"), future.get("central_accuracy")
    if fedavg is None or central is None:
        return ""
    check = "comes" if 100 * (central - fedavg) <= margin_points + 1e-9 else "does not come"
    return (
        f"Method check, not evidence: FedAvg over IID clients {check} within "
        f"{margin_text(margin_points, points=True).removeprefix('±')} of central training "
        f"({pct(fedavg)} against {pct(central)}); averaging a linear head over IID clients must "
        "match central training, so it shows the code averages correctly, not that federated "
        "training works across real clients"
    )


def _label_skew_runs(future: dict) -> str:
    """The Dirichlet label-skew runs and the clients alone, in words ("" when none)."""
    extra = [
        f"non-IID (α = {k.rsplit('_', 1)[1]}): FedAvg {pct(future[k])}"
        + (
            f", FedProx {pct(future[k.replace('fedavg', 'fedprox')])}"
            if future.get(k.replace("fedavg", "fedprox")) is not None
            else ""
        )
        for k in sorted(k for k in future if k.startswith("fedavg_accuracy_noniid_"))
        if future[k] is not None
    ]
    if future.get("local_only_accuracy_mean") is not None:
        extra.append(f"each client alone: {pct(future['local_only_accuracy_mean'])} on average")
    others = "; ".join(extra)
    return others[:1].upper() + others[1:]


def _negated(name: str, future: dict, key: str) -> Part:
    """FedAvg minus central from the saved central-minus-FedAvg ``key`` (points): the claim is
    that federated training loses nothing, so the interval is read against 0 less the margin."""
    found = [future.get(key), future.get(f"{key}_ci_high"), future.get(f"{key}_ci_low")]
    return Part(name, 0.0, *(None if v is None else -v for v in found), unit="points")


def judge_federated(results: dict[str, dict], claim) -> Verdict:
    """FedAvg minus central training, in points, on clients that differ by image source (one
    client per source, each scored on its own held-out crops), for the mean of the clients and
    for the worst client, with intervals over seeds; the model is the backbone's last
    convolution, pooling and a softmax head. Without those runs, only the IID check (a linear
    head, which must match) exists, and the claim is untested.

    Reads ``fl_src_gap_mean_points`` and ``fl_src_gap_worst_points`` (central minus FedAvg,
    ``_ci_low``, ``_ci_high``) and ``fl_src_seeds`` from ``future_work``.
    """
    future = results.get("future_work", {})
    margin_points = claim.margin if claim.points else 100 * claim.margin
    iid = federated_iid_check(future, margin_points)
    if future.get("fl_src_gap_mean_points") is None:
        if not iid:
            return Verdict("-", NOT_MEASURED, "chapter 7 recorded no federated training")
        measured = (
            f"FedAvg, IID clients: {pct(future['fedavg_accuracy_iid'])}; central training: "
            f"{pct(future['central_accuracy'])}"
        )
        note = sentences(
            [
                iid,
                _label_skew_runs(future),
                "A test needs clients that differ by image source or camera (not only by label "
                "share), fine-tuning top blocks rather than a linear head, with the worst "
                "client's accuracy reported",
            ]
        )
        budget = budget_of(future, clients="fl_clients", rounds="fl_rounds")
        return Verdict(measured, UNTESTED, note, False, budget)
    sources = [s for s in str(future.get("fl_src_sources", "")).split(",") if s]
    measured = (
        f"{len(sources)} clients by image source ({', '.join(human(s) for s in sources)}); "
        f"worst client: FedAvg {pct(future.get('fl_src_worst_fedavg'))}, central "
        f"{pct(future.get('fl_src_worst_central'))}, alone "
        f"{pct(future.get('fl_src_worst_alone'))}; FedAvg minus central "
        f"{present.points(-future['fl_src_gap_mean_points'])} on the mean of the clients"
    )
    if future.get("fl_src_worst_fedprox") is not None:
        measured += f"; FedProx's worst client {pct(future['fl_src_worst_fedprox'])}"
    return decide(
        claim,
        [
            _negated("FedAvg minus central, mean of the clients", future, "fl_src_gap_mean_points"),
            _negated("FedAvg minus central, worst client", future, "fl_src_gap_worst_points"),
        ],
        future.get("fl_src_seeds"),
        measured,
        needed=(
            f"at least {SEEDS.minimum} seeds, each with its own initial head and minibatch order"
        ),
        notes=[iid],
        budget=budget_of(
            future,
            seeds="fl_src_seeds",
            rounds="fl_src_rounds",
            local_epochs="fl_src_local_epochs",
            pixels="fl_src_image_size",
        ),
    )


def _real_fit(results: dict[str, dict]) -> tuple[dict, str] | None:
    """The chapter that saved the mask-fit model's scores on real faces (``fit_real_*``)."""
    for chapter in ("real_photos", "future_work"):
        found = results.get(chapter, {})
        if found.get("fit_real_accuracy") is not None:
            return found, chapter
    return None


def judge_mask_fit(results: dict[str, dict], claim) -> Verdict:
    """The mask-fit classifier's accuracy, with its interval, on real faces (correctly and
    incorrectly worn masks of the scene photos, saved by the real-photo chapter): reproduced when
    the interval's lower end is above chance plus the margin. Its score on its own synthetic
    generator is a method check, not evidence: untested until judged on real faces.

    Reads ``fit_real_accuracy`` (+ ``_ci_low``, ``_ci_high``), ``fit_real_n`` and, when saved,
    ``fit_real_chance`` (else 0.5) from ``real_photos`` (or ``future_work``).
    """
    future = results.get("future_work", {})
    synthetic = future.get("mask_fit_synthetic_accuracy")
    real = _real_fit(results)
    if synthetic is None and real is None:
        return Verdict("-", NOT_MEASURED, "chapter 7 recorded no mask-fit classifier")
    classes = [c for c in str(future.get("mask_fit_classes", "")).split(",") if c]
    notes = []
    if synthetic is not None:
        notes.append(
            f"Method check, not evidence: accuracy {pct(synthetic)}"
            f"{interval_of(future, 'mask_fit_synthetic_accuracy')} on synthetic masks from the "
            "generator it was trained on"
            + (f" ({', '.join(human(c) for c in classes)})" if classes else "")
        )
    flagged = future.get("mask_fit_flagged_real_with_mask")
    if flagged is not None:
        notes.append(f"On real masked test faces, {flagged} are flagged as badly worn")
    if real is None:
        notes.append(
            "A test needs the classifier judged on real faces: the incorrectly worn "
            "(mask_weared_incorrect) and correctly worn masks of the scene photos"
        )
        return Verdict(f"synthetic masks only: {pct(synthetic)}", UNTESTED, sentences(notes), False)
    found, chapter = real
    accuracy = found["fit_real_accuracy"]
    low = found.get("fit_real_accuracy_ci_low", accuracy)
    chance = found.get("fit_real_chance", 0.5)
    count = found.get("fit_real_n")
    measured = (
        f"accuracy {pct(accuracy)}{interval_of(found, 'fit_real_accuracy')} on "
        + (f"{count} " if count is not None else "")
        + f"real faces (chance {pct(chance)})"
    )
    verdict = REPRODUCED if low > chance + claim.margin else NOT_REPRODUCED
    return Verdict(measured, verdict, sentences(notes), True, budget_of(found, faces="fit_real_n"))
