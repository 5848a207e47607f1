"""The dissertation's claims, each checked against the book's measured results.

Every verdict is computed from ``results/<profile>/<chapter>.json``; nothing here is typed by
hand but the claims themselves, as the dissertation states them, and the rule that judges each.

Findings get one of six verdicts: *holds*, *partly*, *fails*, *inconclusive*, *untested at this
budget* and *not measured*. Each empirical rule first checks, from the results, that the
experiment could test the claim (trained to convergence, enough seeds, the regime in which the
claim means something); when it could not, the verdict is *untested at this budget* and the note
says what budget would test it. *fails* is only ever given by an adequate experiment.

Statements of method (a swept range, a guarantee that is a theorem) and the dissertation's future
work are listed apart: they are *reproduced* or *not reproduced*, never counted as findings.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dlbook.book import present

HOLDS, PARTLY, FAILS = "holds", "partly", "fails"
INCONCLUSIVE, UNTESTED, NOT_MEASURED = "inconclusive", "untested at this budget", "not measured"
VERDICTS = (HOLDS, PARTLY, FAILS, INCONCLUSIVE, UNTESTED, NOT_MEASURED)
REPRODUCED, NOT_REPRODUCED = "reproduced", "not reproduced"
METHOD_VERDICTS = (REPRODUCED, NOT_REPRODUCED, NOT_MEASURED)

FINDING, METHOD, FUTURE_WORK = "finding", "method", "future work"
KINDS = (FINDING, METHOD, FUTURE_WORK)

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

# The dissertation's reported test metrics per model: the only place the book types them.
DISSERTATION_MODELS = {
    "custom_cnn": {"accuracy": 0.96, "precision": 0.95, "recall": 0.96},
    "inception_v3": {"accuracy": 0.995, "precision": 0.99, "recall": 1.00},
    "mobilenet_v2": {"accuracy": 0.991, "precision": 0.99, "recall": 0.99},
}
CNN_MINUS_ANN_CLAIMED = 9.0
"""The dissertation's CNN-over-ANN margin, in accuracy points."""
LABEL_SAVING_CLAIMED = 0.30
LEARNING_RATE_RANGE = (0.001, 0.6)

MODEL_NAMES = {
    "custom_cnn": "the custom CNN",
    "inception_v3": "InceptionV3",
    "mobilenet_v2": "MobileNetV2",
    "resnet50": "ResNet50",
    "vgg16": "VGG16",
    "efficientnet_lite0": "EfficientNet-Lite0",
    "efficientnet_lite0_finetuned": "EfficientNet-Lite0, fine-tuned",
    "efficientnet_lite1": "EfficientNet-Lite1",
    "efficientnet_lite2": "EfficientNet-Lite2",
}
METHOD_NAMES = {
    "none": "no regularisation",
    "l1": "L1",
    "l2": "L2",
    "dropout": "dropout",
    "batchnorm": "BatchNorm",
    "lac": "LAC",
    "aps": "APS",
    "raps": "RAPS",
    "mondrian": "Mondrian LAC",
    "margin": "margin sampling",
    "entropy": "entropy sampling",
    "least_confident": "least-confident sampling",
    "random": "random sampling",
    "badge": "BADGE",
    "bald": "BALD",
    "coreset": "core-set",
    "density": "density-weighted sampling",
}


def human(token) -> str:
    """A reader's name for an internal token: ``human("efficientnet_lite0") == "EfficientNet-Lite0"``.

    Tokens the book does not know are shown with underscores as spaces.
    """
    token = str(token)
    for table in (MODEL_NAMES, METHOD_NAMES):
        if token in table:
            return table[token]
    for suffix, words in (("_finetuned", ", fine-tuned"), ("_frozen", ", frozen features")):
        if token.endswith(suffix) and token.removesuffix(suffix) in MODEL_NAMES:
            return MODEL_NAMES[token.removesuffix(suffix)] + words
    if token.startswith("coverage_") and "_a" in token:
        method, alpha = token.removeprefix("coverage_").rsplit("_a", 1)
        return f"{human(method)} at α = {alpha}"
    return token.replace("_", " ")


@dataclass(frozen=True)
class Verdict:
    """A rule's answer: the measured value in words, the verdict and a note.

    ``adequate`` says whether the experiment could test the claim (None when nothing was
    measured); ``budget`` what it ran with (images, pixels, epochs, seeds...).
    """

    measured: str
    verdict: str
    note: str = ""
    adequate: bool | None = None
    budget: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    """A claim as written, where the book tests it, and the rule that judges it."""

    text: str
    chapter: str
    where: str
    judge: Callable[[dict[str, dict]], Verdict]
    id: str = ""
    kind: str = FINDING
    section: str = ""
    """The chapter page and heading anchor that tests it, e.g. ``01_fundamentals.html#ann-vs-cnn``."""

    @property
    def rule(self) -> str:
        """The rule in words: the first paragraph of the judging function's docstring."""
        doc = (self.judge.__doc__ or "").strip()
        return " ".join(doc.split("\n\n")[0].split())


# ---------------------------------------------------------------------------------------------
# Small helpers


def _pct(value: float) -> str:
    return present.percent(value)


def _fraction(value: float, decimals: int = 3) -> str:
    """A precision or recall as the dissertation writes them: ``0.979``, ``1.000``."""
    return f"{value:.{decimals}f}"


def _interval(results: dict, key: str) -> str:
    text = present.interval(results.get(f"{key}_ci_low"), results.get(f"{key}_ci_high"))
    return f" ({text})" if text else ""


def _points_interval(results: dict, key: str) -> str:
    text = present.points_interval(results.get(f"{key}_ci_low"), results.get(f"{key}_ci_high"))
    return f" ({text})" if text else ""


def _budget(results: dict, **keys) -> dict:
    """``{label: value}`` for the budget keys present in ``results``."""
    return {label: results[key] for label, key in keys.items() if results.get(key) is not None}


def _join(parts) -> str:
    parts = [p.strip() for p in parts if p and p.strip()]
    return " ".join(p if p.endswith(".") else p + "." for p in parts)


def _untested(measured: str, why: list[str], needed: str, reading: str, budget: dict) -> Verdict:
    note = _join(
        [
            "The experiment cannot test this claim: " + "; ".join(why),
            f"At this budget {reading}" if reading else "",
            f"A test needs {needed}",
        ]
    )
    return Verdict(measured, UNTESTED, note, adequate=False, budget=budget)


def _converged(fraction, epochs_used=None, epoch_cap=None) -> bool | None:
    """Whether training converged: the recorded share of converged runs, else epochs below cap."""
    if fraction is not None:
        return fraction >= MIN_CONVERGED
    if epochs_used is not None and epoch_cap is not None:
        return epochs_used < epoch_cap
    return None


def _adequacy_gaps(
    seeds, min_seeds: int, converged: bool | None, selected_on=None, needs_selection=False
) -> list[str]:
    gaps = []
    if seeds is None:
        gaps.append("the number of seeds is not recorded")
    elif seeds < min_seeds:
        gaps.append(f"{seeds} seed{'s' if seeds != 1 else ''}, fewer than {min_seeds}")
    if converged is None:
        gaps.append("the results do not record whether training converged")
    elif not converged:
        gaps.append("training stopped at the epoch cap before it converged")
    if needs_selection and selected_on != "validation":
        gaps.append(
            "the winner was not recorded as chosen on validation data"
            if selected_on is None
            else f"the winner was chosen on {selected_on} data, not validation data"
        )
    return gaps


# ---------------------------------------------------------------------------------------------
# Model claims (chapter 4)


def _model_figures(mask: dict, model: str, prefer_cv: bool = True) -> dict | None:
    """Accuracy (+interval), precision and recall of ``model``: grouped CV when present."""
    if prefer_cv and mask.get(f"{model}_cv_accuracy") is not None:
        key = f"{model}_cv_accuracy"
        how = f"grouped {mask.get('cv_folds', '?')}-fold cross-validation"
        metric = f"{model}_cv_"
    elif mask.get(f"{model}_accuracy") is not None:
        key, how, metric = f"{model}_accuracy", "the grouped test split", f"{model}_"
    else:
        return None
    return {
        "key": key,
        "how": how,
        "accuracy": mask[key],
        "high": mask.get(f"{key}_ci_high", mask[key]),
        "precision": mask.get(f"{metric}precision"),
        "recall": mask.get(f"{metric}recall"),
        "cv": key.endswith("_cv_accuracy"),
    }


def _best_model_note(mask: dict) -> str:
    best = mask.get("best_model")
    figures = _model_figures(mask, best) if best else None
    if figures is None:
        return ""
    return (
        f"Measured instead: {human(best)}, accuracy {_pct(figures['accuracy'])} on "
        f"{figures['how']} (the best backbone available offline)."
    )


def _precision_recall_shortfall(figures: dict, precision: float, recall: float) -> str:
    """Which of precision and recall falls more than 0.01 short of the claim, in words."""
    short = []
    for name, measured, claimed in (
        ("precision", figures["precision"], precision),
        ("recall", figures["recall"], recall),
    ):
        if measured is None:
            short.append(f"{name} was not measured")
        elif measured < claimed - 0.01:
            short.append(
                f"{name} {_fraction(measured)} is below the claimed {_fraction(claimed, 2)}"
            )
    return " and ".join(short)


def _model_verdict(
    figures: dict, mask: dict, accuracy: float, precision: float, recall: float, label: str
) -> Verdict:
    text = (
        f"{label}accuracy {_pct(figures['accuracy'])}{_interval(mask, figures['key'])} "
        f"on {figures['how']}"
    )
    if figures["precision"] is not None and figures["recall"] is not None:
        text += (
            f", precision {_fraction(figures['precision'])}, recall {_fraction(figures['recall'])}"
        )
    if figures["high"] < accuracy:
        return Verdict(
            text, FAILS, f"the interval lies below the claimed {_pct(accuracy)}", adequate=True
        )
    shortfall = _precision_recall_shortfall(figures, precision, recall)
    if not shortfall:
        return Verdict(text, HOLDS, adequate=True)
    return Verdict(
        text, PARTLY, f"the accuracy interval reaches the claim; {shortfall}", adequate=True
    )


def judge_model_claim(
    model: str, accuracy: float, precision: float, recall: float
) -> Callable[[dict], Verdict]:
    """Rule for "``model`` reaches ``accuracy`` with ``precision`` and ``recall``".

    Judged on grouped cross-validation when it ran, else on the grouped test split. Holds when
    the accuracy's 95% interval reaches the claim and precision and recall are within 0.01 of
    theirs; partly when only the accuracy does; fails when the interval lies below the claim.
    """

    def judge(results: dict[str, dict]) -> Verdict:
        mask = results.get("mask_detection", {})
        figures = _model_figures(mask, model)
        if figures is None:
            reason = f"{human(model)} was not trained" + (
                " (its ImageNet weights are unavailable offline)"
                if mask.get(f"{model}_available") is False
                else ""
            )
            return Verdict("-", NOT_MEASURED, _join([reason, _best_model_note(mask)]))
        budget = _budget(mask, folds="cv_folds") if figures["cv"] else {}
        verdict = _model_verdict(figures, mask, accuracy, precision, recall, "")
        return Verdict(verdict.measured, verdict.verdict, verdict.note, True, budget)

    judge.__doc__ = (
        f"{human(model)} reaches {_pct(accuracy)} accuracy with precision "
        f"{_fraction(precision, 2)} and recall {_fraction(recall, 2)}, judged on grouped "
        "cross-validation when it ran, else on the grouped test split: holds when the accuracy's "
        "95% interval reaches the claim and precision and recall are within 0.01 of theirs; "
        "partly when only the accuracy does; fails when the interval lies below the claim."
    )
    return judge


def judge_custom_cnn(results: dict[str, dict]) -> Verdict:
    """Judged on the grouped split: the custom CNN, at least 3 seeds trained to early stopping at
    64 px or more, reaches 96% accuracy (interval) with precision 0.95 and recall 0.96.

    The note says whether the 96% is reproduced on a plain stratified random split of the same
    data, and how many points of it near-duplicate leakage across that split explains.
    """
    mask = results.get("mask_detection", {})
    claimed = DISSERTATION_MODELS["custom_cnn"]
    figures = _model_figures(mask, "custom_cnn", prefer_cv=False)
    if figures is None:
        return Verdict("-", NOT_MEASURED, "the custom CNN was not trained in chapter 4")
    seeds = mask.get("custom_cnn_accuracy_seeds")
    budget = _budget(
        mask,
        pixels="custom_cnn_image_size",
        epochs="custom_cnn_epochs_used",
        epoch_cap="custom_cnn_epoch_cap",
        seeds="custom_cnn_accuracy_seeds",
    )
    label = f"mean of {seeds} seeds: " if seeds and seeds > 1 else ""
    verdict = _model_verdict(figures, mask, **claimed, label=label)
    random_acc = mask.get("custom_cnn_random_split_accuracy")
    random_note = ""
    if random_acc is not None:
        high = mask.get("custom_cnn_random_split_accuracy_ci_high", random_acc)
        reproduced = "reproduced" if high >= claimed["accuracy"] else "not reproduced"
        leak = random_acc - figures["accuracy"]
        random_note = (
            f"On a plain stratified random split (the usual practice) the same recipe reaches "
            f"{_pct(random_acc)}{_interval(mask, 'custom_cnn_random_split_accuracy')}: the "
            f"dissertation's {_pct(claimed['accuracy'])} is {reproduced} there. "
            + (
                f"Near-duplicates shared between training and test images on that split "
                f"account for {present.points(100 * leak)} (random minus grouped split)"
                if leak > 0
                else "A random split gains nothing over the grouped one here"
            )
        )
    else:
        random_note = "The random-split comparison was not run"
    converged = _converged(
        mask.get("custom_cnn_stopped_early_fraction"),
        mask.get("custom_cnn_epochs_used"),
        mask.get("custom_cnn_epoch_cap"),
    )
    gaps = _adequacy_gaps(seeds, MIN_SEEDS, converged)
    pixels = mask.get("custom_cnn_image_size")
    if pixels is None:
        gaps.append("the image size is not recorded")
    elif pixels < MIN_CUSTOM_CNN_PIXELS:
        gaps.append(f"images of {pixels} px, below {MIN_CUSTOM_CNN_PIXELS} px")
    if gaps:
        reading = {
            HOLDS: "the measurement would support it",
            PARTLY: "it would hold in part",
            FAILS: "the interval lies below the claim",
        }[verdict.verdict]
        needed = (
            f"at least {MIN_SEEDS} seeds trained to early stopping on validation at "
            f"{MIN_CUSTOM_CNN_PIXELS} px or more"
        )
        untested = _untested(verdict.measured, gaps, needed, reading, budget)
        return Verdict(
            untested.measured, UNTESTED, _join([untested.note, random_note]), False, budget
        )
    return Verdict(
        verdict.measured, verdict.verdict, _join([verdict.note, random_note]), True, budget
    )


def _cv_instead(mask: dict, best: str) -> str:
    """What grouped cross-validation says when the chosen model itself was not cross-validated."""
    folded = {
        key.removesuffix("_cv_accuracy"): value
        for key, value in mask.items()
        if key.endswith("_cv_accuracy") and value is not None
    }
    text = (
        f"Judged on one test split, since the chosen model ({human(best)}) was not cross-validated"
    )
    if not folded:
        return text + " and grouped cross-validation was not run"
    top = max(folded, key=folded.get)
    low, high = mask.get(f"{top}_cv_accuracy_ci_low"), mask.get(f"{top}_cv_accuracy_ci_high")
    interval = f" (95% CI {_pct(low)}-{_pct(high)})" if low is not None and high else ""
    folds = mask.get("cv_folds")
    audited = mask.get(f"{top}_cv_accuracy_audited")
    return (
        text
        + f"; over {folds} grouped folds the best frozen-feature model, {human(top)}, reaches "
        + f"{_pct(folded[top])}{interval}"
        + (f", {_pct(audited)} with the suspected label issues set aside" if audited else "")
    )


def judge_best_transfer_model(results: dict[str, dict]) -> Verdict:
    """The best transfer-learned model (chosen on validation) reaches 99.5% accuracy with
    precision 0.99 and recall 1.00, judged on grouped cross-validation when it ran.

    Holds when the accuracy's interval reaches 99.5% and precision and recall are within 0.01;
    partly when only the accuracy does; fails when the interval lies below 99.5%. The note gives
    the accuracy with the suspected label issues set aside, and on a random split.
    """
    mask = results.get("mask_detection", {})
    best = mask.get("best_model")
    figures = _model_figures(mask, best) if best else None
    if figures is None:
        return Verdict("-", NOT_MEASURED, "no transfer-learned model was evaluated in chapter 4")
    budget = _budget(mask, folds="cv_folds")
    verdict = _model_verdict(
        figures, mask, **DISSERTATION_MODELS["inception_v3"], label=f"{human(best)}: "
    )
    notes = [verdict.note]
    audited_key = f"{best}_cv_accuracy_audited" if figures["cv"] else f"{best}_accuracy_audited"
    audited = mask.get(audited_key, mask.get(f"{best}_accuracy_audited"))
    issues = mask.get("label_issues_suspected")
    if audited is not None:
        issue_text = f"the {issues} suspected label issues" if issues is not None else "suspected"
        notes.append(
            f"With {issue_text} set aside (never dropped from the data), accuracy is "
            f"{_pct(audited)}"
            + (", which reaches the claim" if audited >= 0.995 and verdict.verdict == FAILS else "")
        )
    random_acc = mask.get(f"{best}_random_split_accuracy")
    if random_acc is not None:
        notes.append(f"On a plain random split: {_pct(random_acc)}")
    gaps = []
    if mask.get("selected_on") != "validation":
        gaps.append("the best model was not recorded as chosen on validation data")
    if figures["cv"] and (mask.get("cv_folds") or 0) < MIN_FOLDS:
        gaps.append(f"{mask.get('cv_folds')} folds, fewer than {MIN_FOLDS}")
    if not figures["cv"]:
        notes.append(_cv_instead(mask, best))
    if gaps:
        return _untested(
            verdict.measured,
            gaps,
            f"the winner chosen on validation and scored by at least {MIN_FOLDS} grouped folds",
            "",
            budget,
        )
    return Verdict(verdict.measured, verdict.verdict, _join(notes), True, budget)


def judge_perfect_recall(results: dict[str, dict]) -> Verdict:
    """InceptionV3's recall of masked faces is 1.00 (no masked face missed): holds when every
    masked test face is found, fails otherwise."""
    mask = results.get("mask_detection", {})
    figures = _model_figures(mask, "inception_v3")
    if figures is None or figures["recall"] is None:
        return Verdict("-", NOT_MEASURED, _best_model_note(mask) or "InceptionV3 was not trained.")
    recall = figures["recall"]
    verdict = HOLDS if recall >= 0.9995 else FAILS
    return Verdict(f"recall {_fraction(recall)} on {figures['how']}", verdict, adequate=True)


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
    keys = {s: f"cnn_minus_ann_points_{s}px" for s in per_size}
    if not per_size and fundamentals.get("cnn_minus_ann_points") is not None:
        per_size, keys = {0: fundamentals["cnn_minus_ann_points"]}, {0: "cnn_minus_ann_points"}
    if not per_size:
        return Verdict("-", NOT_MEASURED, "chapter 1 recorded no CNN-minus-ANN gap")
    readings, texts = {}, []
    for size, gap in per_size.items():
        low = fundamentals.get(f"{keys[size]}_ci_low", gap)
        high = fundamentals.get(f"{keys[size]}_ci_high", gap)
        readings[size] = (_gap_reading(low, high, CNN_MINUS_ANN_CLAIMED), low, high)
        where = f"at {size} px: " if size else ""
        texts.append(f"{where}{present.points(gap)}{_points_interval(fundamentals, keys[size])}")
    measured = "CNN minus ANN " + "; ".join(texts)
    budget = _budget(
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
        at = [f"{s} px" for s, r in readings.items() if r[0] == HOLDS and s]
        verdict, note = HOLDS, ("a gap of 9 points fits at " + ", ".join(at)) if at else ""
    elif better:
        at = ", ".join(f"{s} px" for s in better if s)
        verdict, note = PARTLY, "the CNN is clearly better" + (f" at {at}" if at else "")
        note += ", but by a different margin"
        open_at = [s for s, r in readings.items() if s and r[1] <= CNN_MINUS_ANN_CLAIMED <= r[2]]
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
    converged = _converged(fundamentals.get("cnn_ann_converged_fraction"))
    gaps = _adequacy_gaps(seeds, MIN_SEEDS, converged)
    n_sizes = len([s for s in per_size if s])
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
        untested = _untested(measured, gaps, needed, reading, budget)
        return Verdict(measured, UNTESTED, _join([untested.note, digits_note]), False, budget)
    return Verdict(measured, verdict, _join([note, digits_note]), True, budget)


def _regulariser_ranking(optimization: dict) -> list[tuple[str, float]]:
    methods = [m for m in str(optimization.get("reg_methods", "")).split(",") if m]
    if not methods:
        methods = [
            k.removeprefix("reg_val_acc_") for k in optimization if k.startswith("reg_val_acc_")
        ]
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
    if best == "none-clear":  # results written before the winner was always named
        best, separated = (ranking[0][0] if ranking else "none"), False
    runner_up = next((m for m, _ in ranking if m != best), None)
    test_key = f"reg_test_acc_{best}"
    chosen = "chosen on validation" if optimization.get("selected_on") == "validation" else "winner"
    measured = f"{chosen}: {human(best)}"
    if optimization.get(test_key) is not None:
        measured += (
            f", test accuracy {_pct(optimization[test_key])}{_interval(optimization, test_key)}"
        )
    if best != "batchnorm" and optimization.get("reg_test_acc_batchnorm") is not None:
        measured += (
            f"; BatchNorm {_pct(optimization['reg_test_acc_batchnorm'])}"
            f"{_interval(optimization, 'reg_test_acc_batchnorm')}"
        )
    budget = _budget(
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
    gaps = _adequacy_gaps(
        seeds,
        MIN_SEEDS_REGULARISERS,
        _converged(optimization.get("reg_converged_fraction")),
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
        return _untested(measured, gaps, needed, f"the reading would be “{verdict}”", budget)
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
        f"{human(best)}: {_pct(saving)} fewer labels than random ({present.interval(low, high)})"
    )
    budget = _budget(active, images="al_pool_size", labels="al_budget_labels", seeds="al_repeats")
    claimed = LABEL_SAVING_CLAIMED
    if low > 0 and (saving >= claimed or high >= claimed):
        verdict, note = HOLDS, ""
    elif low > 0:
        verdict, note = PARTLY, f"saves labels, but fewer than {_pct(claimed)}"
    elif high >= claimed:
        verdict, note = INCONCLUSIVE, "the interval contains both a 30% saving and none"
    else:
        verdict, note = FAILS, "no saving over random sampling that the interval supports"
    gaps = _adequacy_gaps(
        active.get("al_repeats"), MIN_SEEDS, True, active.get("selected_on"), True
    )
    if gaps:
        needed = f"at least {MIN_SEEDS} repeats, the strategy and target chosen on validation"
        return _untested(measured, gaps, needed, f"the reading would be “{verdict}”", budget)
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
        (value - (1 - float(key.rsplit("_a", 1)[1])), key)
        for key, value in conformal.items()
        if key.startswith("coverage_")
        and "_a" in key
        and value is not None
        and key.rsplit("_a", 1)[1].replace(".", "", 1).isdigit()
    ]
    text = f"over {conformal.get('resplits', 'several')} re-splits"
    if gaps:
        worst, key = min(gaps)
        text += (
            f"; the worst mean coverage is {present.points(100 * worst, 2)} from its target "
            f"({human(key)})"
        )
    budget = _budget(conformal, resplits="resplits")
    return Verdict(text, REPRODUCED if holds else NOT_REPRODUCED, adequate=True, budget=budget)


def judge_learning_rates(results: dict[str, dict]) -> Verdict:
    """Reproduced when the book's learning-rate sweep spans 0.001 to 0.6."""
    optimization = results.get("optimization", {})
    low, high, count = (optimization.get(k) for k in ("lr_min", "lr_max", "lr_values"))
    if low is None or high is None:
        return Verdict("-", NOT_MEASURED, "chapter 2 recorded no learning-rate sweep")
    text = f"{count} learning rates from {present.number(low)} to {present.number(high)}"
    budget = _budget(optimization, learning_rates="lr_values")
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
    measured = f"FedAvg, IID clients: {_pct(fedavg)}; central training: {_pct(central)}"
    noniid = sorted(k for k in future if k.startswith("fedavg_accuracy_noniid_"))
    extra = [
        f"non-IID (α = {k.rsplit('_', 1)[1]}): FedAvg {_pct(future[k])}"
        + (
            f", FedProx {_pct(future[k.replace('fedavg', 'fedprox')])}"
            if future.get(k.replace("fedavg", "fedprox")) is not None
            else ""
        )
        for k in noniid
        if future[k] is not None
    ]
    if future.get("local_only_accuracy_mean") is not None:
        extra.append(f"each client alone: {_pct(future['local_only_accuracy_mean'])} on average")
    budget = _budget(future, clients="fl_clients", rounds="fl_rounds")
    verdict = REPRODUCED if central - fedavg <= 0.01 else NOT_REPRODUCED
    return Verdict(measured, verdict, _join(["; ".join(extra)]), True, budget)


def judge_mask_fit(results: dict[str, dict]) -> Verdict:
    """Reproduced when a classifier tells the mask-fit classes apart on synthetic masks better
    than chance (its interval's lower end above 1 / number of classes)."""
    future = results.get("future_work", {})
    accuracy = future.get("mask_fit_synthetic_accuracy")
    if accuracy is None:
        return Verdict("-", NOT_MEASURED, "chapter 7 recorded no mask-fit classifier")
    classes = [c for c in str(future.get("mask_fit_classes", "")).split(",") if c]
    measured = (
        f"accuracy {_pct(accuracy)}{_interval(future, 'mask_fit_synthetic_accuracy')} on "
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
    return Verdict(measured, verdict, _join([note]), True)


CLAIMS = (
    Claim(
        "Custom CNN: 96% accuracy, precision 0.95, recall 0.96",
        "mask_detection",
        "Chapter 4",
        judge_custom_cnn,
        id="custom_cnn_96",
        section="04_mask_detection.html#evaluation-on-the-test-split",
    ),
    Claim(
        "InceptionV3 transfer learning: 99.5% accuracy, precision 0.99, recall 1.00",
        "mask_detection",
        "Chapter 4",
        judge_model_claim("inception_v3", **DISSERTATION_MODELS["inception_v3"]),
        id="inception_v3_995",
        section="04_mask_detection.html#evaluation-on-the-test-split",
    ),
    Claim(
        "Transfer learning from ImageNet reaches 99.5% accuracy, precision 0.99, recall 1.00"
        " (tested with the best backbone available offline)",
        "mask_detection",
        "Chapter 4",
        judge_best_transfer_model,
        id="transfer_995",
        section="04_mask_detection.html#evaluation-on-the-test-split",
    ),
    Claim(
        'InceptionV3 has "perfect recall"',
        "mask_detection",
        "Chapter 4",
        judge_perfect_recall,
        id="inception_v3_perfect_recall",
        section="04_mask_detection.html#evaluation-on-the-test-split",
    ),
    Claim(
        "MobileNetV2 transfer learning: 99.1% accuracy, precision 0.99, recall 0.99",
        "mask_detection",
        "Chapter 4",
        judge_model_claim("mobilenet_v2", **DISSERTATION_MODELS["mobilenet_v2"]),
        id="mobilenet_v2_991",
        section="04_mask_detection.html#evaluation-on-the-test-split",
    ),
    Claim(
        "CNNs beat ANNs by 9 accuracy points",
        "fundamentals",
        "Chapter 1",
        judge_cnn_beats_ann,
        id="cnn_beats_ann",
        section="01_fundamentals.html#ann-vs-cnn",
    ),
    Claim(
        "BatchNorm was the most effective regulariser",
        "optimization",
        "Chapter 2",
        judge_batchnorm,
        id="batchnorm_best",
        section="02_optimization.html#regularisation-which-one-wins",
    ),
    Claim(
        "Active learning needs 30% fewer labelled samples",
        "active_learning",
        "Chapter 5",
        judge_active_learning,
        id="active_learning_30",
        section="05_active_learning.html#seven-strategies-and-a-variant-against-random-sampling",
    ),
    Claim(
        "Learning rates from 0.001 to 0.6 were tested",
        "optimization",
        "Chapter 2",
        judge_learning_rates,
        id="learning_rate_range",
        kind=METHOD,
        section="02_optimization.html#learning-rate-sweep",
    ),
    Claim(
        "Conformal prediction gives its coverage guarantee",
        "conformal",
        "Chapter 6",
        judge_conformal,
        id="conformal_coverage",
        kind=METHOD,
        section="06_conformal.html#coverage-over-many-re-splits",
    ),
    Claim(
        "Future work: federated learning trains the classifier without pooling the images",
        "future_work",
        "Chapter 7",
        judge_federated,
        id="federated_learning",
        kind=FUTURE_WORK,
        section="07_future_work.html",
    ),
    Claim(
        "Future work: detecting whether a mask is worn correctly (nose and mouth covered)",
        "future_work",
        "Chapter 7",
        judge_mask_fit,
        id="mask_fit",
        kind=FUTURE_WORK,
        section="07_future_work.html",
    ),
)


# ---------------------------------------------------------------------------------------------
# Judging them all


def record(claim: Claim, results: dict[str, dict]) -> dict:
    """One claim judged, as the row ``claims.json`` stores for it."""
    verdict = claim.judge(results)
    allowed = VERDICTS if claim.kind == FINDING else METHOD_VERDICTS
    if verdict.verdict not in allowed:
        raise ValueError(f"claim {claim.id!r} gave verdict {verdict.verdict!r}; use {allowed}")
    if verdict.verdict == FAILS and not verdict.adequate:
        raise ValueError(f"claim {claim.id!r} fails without an adequate experiment")
    return {
        "id": claim.id,
        "text": claim.text,
        "kind": claim.kind,
        "chapter": claim.chapter,
        "where": claim.where,
        "section": claim.section,
        "measured": verdict.measured,
        "verdict": verdict.verdict,
        "rule": claim.rule,
        "budget": dict(verdict.budget),
        "adequate": verdict.adequate,
        "note": verdict.note,
    }


def evaluate(results: dict[str, dict], claims=CLAIMS) -> list[dict]:
    """Judge every claim against ``results`` (``{chapter: {key: value}}``); one dict each.

    Each dict has the fields of ``claims.json``: id, text, kind, chapter, where, section,
    measured, verdict, rule, budget, adequate, note; and "claim" (= text) for older readers.
    """
    rows = []
    for claim in claims:
        row = record(claim, results)
        rows.append({**row, "claim": row["text"]})
    return rows


def write(results_dir, results: dict[str, dict] | None = None) -> list[dict]:
    """Judge every claim on the results in ``results_dir`` and write ``claims.json`` there.

    Returns the records written (see :func:`evaluate`).
    """
    from dlbook.core import results as results_module

    results_dir = Path(results_dir)
    found = results_module.load_all(results_dir) if results is None else results
    rows = [{k: v for k, v in row.items() if k != "claim"} for row in evaluate(found)]
    results_dir.mkdir(parents=True, exist_ok=True)
    target = results_dir / "claims.json"
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(rows, indent=1, default=str) + "\n")
    tmp.replace(target)
    return rows


def summary(rows: list[dict]) -> str:
    """One sentence counting the findings by verdict, the methods apart."""
    findings = [r for r in rows if r["kind"] == FINDING]
    others = [r for r in rows if r["kind"] != FINDING]
    counts = {v: sum(r["verdict"] == v for r in findings) for v in VERDICTS}
    parts = [f"{counts[v]} {_COUNT_WORDS[v]}" for v in VERDICTS if counts[v]]
    text = f"Of {len(findings)} empirical claims, " + _and(parts) + "."
    if others:
        reproduced = sum(r["verdict"] == REPRODUCED for r in others)
        text += (
            f" Listed apart, not counted as findings: {len(others)} statements of method and "
            f"future-work items, {reproduced} of them reproduced."
        )
    return text


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


_COUNT_WORDS = {
    HOLDS: "hold",
    PARTLY: "hold in part",
    FAILS: "fail",
    INCONCLUSIVE: "are inconclusive",
    UNTESTED: "are untested at this budget",
    NOT_MEASURED: "are not measured",
}


def claims_table(results_dir):
    """The claims as a pandas DataFrame read from ``results_dir`` (one row per claim)."""
    import pandas as pd

    from dlbook.core import results

    return pd.DataFrame(evaluate(results.load_all(results_dir)))


VERDICT_COLOURS = {
    HOLDS: "#d9f2d9",
    PARTLY: "#fff2cc",
    FAILS: "#f8d7da",
    INCONCLUSIVE: "#dbe9f6",
    UNTESTED: "#ece3f7",
    NOT_MEASURED: "#e9ecef",
    REPRODUCED: "#d9f2d9",
    NOT_REPRODUCED: "#f8d7da",
}


def verdict_style(verdict: str) -> str:
    """CSS for a verdict cell."""
    return f"background-color: {VERDICT_COLOURS.get(verdict, 'white')}; font-weight: bold"


def claim_by_id(claim_id: str) -> Claim:
    """The claim named ``claim_id``; a ValueError lists the known ids otherwise."""
    for claim in CLAIMS:
        if claim.id == claim_id:
            return claim
    raise ValueError(f"unknown claim {claim_id!r}; known: {[c.id for c in CLAIMS]}")


def judge(claim_id: str, results: dict[str, dict]) -> Verdict:
    """The verdict on one claim, from ``results`` (``{chapter: {key: value}}``)."""
    return claim_by_id(claim_id).judge(results)


def sentence(claim_id: str, results: dict[str, dict]) -> str:
    """One sentence a chapter can quote about a claim: the claim, the verdict, the numbers.

    Chapters speak of a claim only through this function, so the chapter and the claims page
    always agree.
    """
    claim = claim_by_id(claim_id)
    verdict = claim.judge(results)
    text = f'The dissertation\'s claim "{claim.text}" {_VERDICT_PHRASES[verdict.verdict]}'
    if verdict.measured and verdict.measured != "-":
        text += f": {verdict.measured}"
    text += "."
    if verdict.note:
        text += f" {verdict.note[0].upper()}{verdict.note[1:]}"
        text += "" if verdict.note.endswith(".") else "."
    return text


_VERDICT_PHRASES = {
    HOLDS: "holds here",
    PARTLY: "holds only in part here",
    FAILS: "fails here",
    INCONCLUSIVE: "is left open by this experiment",
    UNTESTED: "is untested at this budget",
    NOT_MEASURED: "is not measured here",
    REPRODUCED: "is reproduced here",
    NOT_REPRODUCED: "is not reproduced here",
}
