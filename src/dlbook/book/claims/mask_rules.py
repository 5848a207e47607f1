"""The rules that judge chapter 4's model claims: each model's accuracy, precision and recall
against the dissertation's (``rules.DISSERTATION_MODELS``), the custom CNN's at an adequate
budget, the best transfer-learned model's and InceptionV3's "perfect recall"."""

from __future__ import annotations

from collections.abc import Callable

from dlbook.book import present
from dlbook.book.claims.rules import (
    DISSERTATION_MODELS,
    METRIC_TOLERANCE,
    MIN_CUSTOM_CNN_PIXELS,
    MIN_FOLDS,
    MIN_SEEDS,
    PERFECT_RECALL,
    adequacy_gaps,
    budget_of,
    converged,
    untested,
)
from dlbook.book.claims.verdicts import FAILS, HOLDS, NOT_MEASURED, PARTLY, UNTESTED, Verdict
from dlbook.book.claims.wording import fraction, human, interval_of, pct, sentences


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
        f"Measured instead: {human(best)}, accuracy {pct(figures['accuracy'])} on "
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
        elif measured < claimed - METRIC_TOLERANCE:
            short.append(f"{name} {fraction(measured)} is below the claimed {fraction(claimed, 2)}")
    return " and ".join(short)


def _model_verdict(
    figures: dict, mask: dict, accuracy: float, precision: float, recall: float, label: str
) -> Verdict:
    text = (
        f"{label}accuracy {pct(figures['accuracy'])}{interval_of(mask, figures['key'])} "
        f"on {figures['how']}"
    )
    if figures["precision"] is not None and figures["recall"] is not None:
        text += (
            f", precision {fraction(figures['precision'])}, recall {fraction(figures['recall'])}"
        )
    if figures["high"] < accuracy:
        return Verdict(
            text, FAILS, f"the interval lies below the claimed {pct(accuracy)}", adequate=True
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
            return Verdict("-", NOT_MEASURED, sentences([reason, _best_model_note(mask)]))
        budget = budget_of(mask, folds="cv_folds") if figures["cv"] else {}
        verdict = _model_verdict(figures, mask, accuracy, precision, recall, "")
        return Verdict(verdict.measured, verdict.verdict, verdict.note, True, budget)

    judge.__doc__ = (
        f"{human(model)} reaches {pct(accuracy)} accuracy with precision "
        f"{fraction(precision, 2)} and recall {fraction(recall, 2)}, judged on grouped "
        "cross-validation when it ran, else on the grouped test split: holds when the accuracy's "
        "95% interval reaches the claim and precision and recall are within 0.01 of theirs; "
        "partly when only the accuracy does; fails when the interval lies below the claim."
    )
    return judge


def _random_split_note(mask: dict, grouped: float, claimed: float) -> str:
    """The custom CNN on a plain random split, and what near-duplicate leakage adds to it."""
    random_acc = mask.get("custom_cnn_random_split_accuracy")
    if random_acc is None:
        return "The random-split comparison was not run"
    high = mask.get("custom_cnn_random_split_accuracy_ci_high", random_acc)
    reproduced = "reproduced" if high >= claimed else "not reproduced"
    leak = random_acc - grouped
    return (
        f"On a plain stratified random split (the usual practice) the same recipe reaches "
        f"{pct(random_acc)}{interval_of(mask, 'custom_cnn_random_split_accuracy')}: the "
        f"dissertation's {pct(claimed)} is {reproduced} there. "
        + (
            f"Near-duplicates shared between training and test images on that split "
            f"account for {present.points(100 * leak)} (random minus grouped split)"
            if leak > 0
            else "A random split gains nothing over the grouped one here"
        )
    )


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
    budget = budget_of(
        mask,
        pixels="custom_cnn_image_size",
        epochs="custom_cnn_epochs_used",
        epoch_cap="custom_cnn_epoch_cap",
        seeds="custom_cnn_accuracy_seeds",
    )
    label = f"mean of {seeds} seeds: " if seeds and seeds > 1 else ""
    verdict = _model_verdict(figures, mask, **claimed, label=label)
    random_note = _random_split_note(mask, figures["accuracy"], claimed["accuracy"])
    gaps = adequacy_gaps(seeds, MIN_SEEDS, converged(mask.get("custom_cnn_stopped_early_fraction")))
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
        why = untested(verdict.measured, gaps, needed, reading, budget).note
        return Verdict(verdict.measured, UNTESTED, sentences([why, random_note]), False, budget)
    return Verdict(
        verdict.measured, verdict.verdict, sentences([verdict.note, random_note]), True, budget
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
    interval = f" (95% CI {pct(low)}-{pct(high)})" if low is not None and high else ""
    folds = mask.get("cv_folds")
    audited = mask.get(f"{top}_cv_accuracy_audited")
    return (
        text
        + f"; over {folds} grouped folds the best frozen-feature model, {human(top)}, reaches "
        + f"{pct(folded[top])}{interval}"
        + (f", {pct(audited)} with the suspected label issues set aside" if audited else "")
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
    budget = budget_of(mask, folds="cv_folds")
    claimed = DISSERTATION_MODELS["inception_v3"]
    verdict = _model_verdict(figures, mask, **claimed, label=f"{human(best)}: ")
    notes = [verdict.note]
    audited_key = f"{best}_cv_accuracy_audited" if figures["cv"] else f"{best}_accuracy_audited"
    audited = mask.get(audited_key, mask.get(f"{best}_accuracy_audited"))
    issues = mask.get("label_issues_suspected")
    if audited is not None:
        issue_text = f"the {issues} suspected label issues" if issues is not None else "suspected"
        notes.append(
            f"With {issue_text} set aside (never dropped from the data), accuracy is "
            f"{pct(audited)}"
            + (
                ", which reaches the claim"
                if audited >= claimed["accuracy"] and verdict.verdict == FAILS
                else ""
            )
        )
    random_acc = mask.get(f"{best}_random_split_accuracy")
    if random_acc is not None:
        notes.append(f"On a plain random split: {pct(random_acc)}")
    gaps = []
    if mask.get("selected_on") != "validation":
        gaps.append("the best model was not recorded as chosen on validation data")
    if figures["cv"] and (mask.get("cv_folds") or 0) < MIN_FOLDS:
        gaps.append(f"{mask.get('cv_folds')} folds, fewer than {MIN_FOLDS}")
    if not figures["cv"]:
        notes.append(_cv_instead(mask, best))
    if gaps:
        return untested(
            verdict.measured,
            gaps,
            f"the winner chosen on validation and scored by at least {MIN_FOLDS} grouped folds",
            "",
            budget,
        )
    return Verdict(verdict.measured, verdict.verdict, sentences(notes), True, budget)


def judge_perfect_recall(results: dict[str, dict]) -> Verdict:
    """InceptionV3's recall of masked faces is 1.00 (no masked face missed): holds when every
    masked test face is found, fails otherwise."""
    mask = results.get("mask_detection", {})
    figures = _model_figures(mask, "inception_v3")
    if figures is None or figures["recall"] is None:
        return Verdict("-", NOT_MEASURED, _best_model_note(mask) or "InceptionV3 was not trained.")
    recall = figures["recall"]
    verdict = HOLDS if recall >= PERFECT_RECALL else FAILS
    return Verdict(f"recall {fraction(recall)} on {figures['how']}", verdict, adequate=True)
