"""The dissertation's claims, each checked against the book's measured results.

Every verdict is computed from ``results/<profile>/<chapter>.json``; nothing here is typed by
hand but the claims themselves, as the dissertation states them, and the rule that judges each.
Verdicts: "holds", "partly", "fails", "inconclusive", "not measured yet".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

HOLDS, PARTLY, FAILS = "holds", "partly", "fails"
INCONCLUSIVE, NOT_MEASURED = "inconclusive", "not measured yet"
VERDICTS = (HOLDS, PARTLY, FAILS, INCONCLUSIVE, NOT_MEASURED)


# The dissertation's reported test metrics per model: the only place the book types them.
DISSERTATION_MODELS = {
    "custom_cnn": {"accuracy": 0.96, "precision": 0.95, "recall": 0.96},
    "inception_v3": {"accuracy": 0.995, "precision": 0.99, "recall": 1.00},
    "mobilenet_v2": {"accuracy": 0.991, "precision": 0.99, "recall": 0.99},
}


@dataclass(frozen=True)
class Verdict:
    measured: str
    verdict: str
    note: str = ""


@dataclass(frozen=True)
class Claim:
    """A claim as written, where the book tests it, and the rule that judges it."""

    text: str
    chapter: str
    where: str
    judge: Callable[[dict[str, dict]], Verdict]
    id: str = ""


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _interval(results: dict, key: str) -> str:
    low, high = results.get(f"{key}_ci_low"), results.get(f"{key}_ci_high")
    return f" (95% CI {_pct(low)}-{_pct(high)})" if low is not None and high is not None else ""


def _best_model_note(mask: dict) -> str:
    best = mask.get("best_model")
    if not best or f"{best}_accuracy" not in mask:
        return ""
    return (
        f"Measured instead: {best}, accuracy {_pct(mask[f'{best}_accuracy'])}"
        f" (the row on the best backbone available offline)."
    )


def judge_model_claim(
    model: str, accuracy: float, precision: float, recall: float
) -> Callable[[dict], Verdict]:
    """Rule for "``model`` reaches ``accuracy`` with ``precision`` and ``recall``".

    Holds when the measured accuracy's 95% interval reaches the claimed accuracy and precision
    and recall are within 0.01 of the claim or above; partly when only the accuracy does; fails
    when the interval lies below the claim.
    """

    def judge(results: dict[str, dict]) -> Verdict:
        mask = results.get("mask_detection", {})
        measured = mask.get(f"{model}_accuracy")
        if measured is None:
            reason = (
                f"{model} was not trained"
                + (
                    " (its ImageNet weights are unavailable offline)"
                    if mask.get(f"{model}_available") is False
                    else ""
                )
                + ". "
            )
            return Verdict("-", NOT_MEASURED, (reason + _best_model_note(mask)).strip())
        high = mask.get(f"{model}_accuracy_ci_high", measured)
        p, r = mask.get(f"{model}_precision"), mask.get(f"{model}_recall")
        text = f"accuracy {_pct(measured)}{_interval(mask, f'{model}_accuracy')}"
        if p is not None and r is not None:
            text += f", precision {p:.3f}, recall {r:.3f}"
        if high < accuracy:
            return Verdict(text, FAILS, f"the interval lies below the claimed {_pct(accuracy)}")
        pr_ok = p is not None and r is not None and p >= precision - 0.01 and r >= recall - 0.01
        if pr_ok:
            return Verdict(text, HOLDS)
        return Verdict(text, PARTLY, "accuracy reaches the claim; precision or recall does not")

    return judge


def judge_best_transfer_model(results: dict[str, dict]) -> Verdict:
    """The dissertation's best figures (99.5% accuracy, precision 0.99, recall 1.00) against the
    best transfer-learned model the book could train, by the rule of ``judge_model_claim``."""
    best = results.get("mask_detection", {}).get("best_model")
    if best is None:
        return Verdict("-", NOT_MEASURED)
    verdict = judge_model_claim(best, **DISSERTATION_MODELS["inception_v3"])(results)
    return Verdict(f"{best}: {verdict.measured}", verdict.verdict, verdict.note)


def judge_perfect_recall(results: dict[str, dict]) -> Verdict:
    mask = results.get("mask_detection", {})
    recall = mask.get("inception_v3_recall")
    if recall is None:
        return Verdict("-", NOT_MEASURED, _best_model_note(mask) or "InceptionV3 was not trained.")
    verdict = HOLDS if recall >= 1.0 else FAILS
    return Verdict(f"recall {recall:.4f}", verdict)


def judge_cnn_beats_ann(results: dict[str, dict]) -> Verdict:
    """Holds when the CNN-minus-ANN gap's 95% interval contains 9 points and excludes 0; partly
    when the CNN is better but by a different margin; inconclusive when the interval is so wide
    that it contains both 9 and 0; fails when it excludes 9 and the CNN is not clearly better."""
    fundamentals = results.get("fundamentals", {})
    gap = fundamentals.get("cnn_minus_ann_points")
    if gap is None:
        return Verdict("-", NOT_MEASURED)
    low = fundamentals.get("cnn_minus_ann_points_ci_low", gap)
    high = fundamentals.get("cnn_minus_ann_points_ci_high", gap)
    text = f"CNN - ANN = {gap:+.1f} points (95% CI {low:+.1f} to {high:+.1f})"
    digits = fundamentals.get("cnn_minus_ann_points_digits")
    note = f"On scikit-learn's digits: {digits:+.1f} points." if digits is not None else ""
    if low <= 9 <= high and low > 0:
        return Verdict(text, HOLDS, note)
    if low <= 9 <= high:
        return Verdict(
            text, INCONCLUSIVE, ("the interval contains both 9 points and no gap. " + note).strip()
        )
    if low > 0:
        return Verdict(text, PARTLY, ("the CNN is better, by a different margin. " + note).strip())
    return Verdict(text, FAILS, ("the CNN is not clearly better. " + note).strip())


def judge_batchnorm(results: dict[str, dict]) -> Verdict:
    optimization = results.get("optimization", {})
    best = optimization.get("best_regularizer")
    if best is None:
        return Verdict("-", NOT_MEASURED)
    means = {
        key.removeprefix("reg_test_acc_"): value
        for key, value in optimization.items()
        if key.startswith("reg_test_acc_")
        and not key.startswith("reg_test_acc_ci")
        and value is not None
    }
    top = max(means, key=means.get) if means else None
    text = f"best regulariser: {best}" + (
        f"; highest mean: {top} ({_pct(means[top])})" if top else ""
    )
    if best == "batchnorm":
        return Verdict(text, HOLDS)
    if "batchnorm" in best.split("+") or (best == "none-clear" and top == "batchnorm"):
        return Verdict(
            text, PARTLY, "BatchNorm leads, but not alone or not separated by its interval"
        )
    return Verdict(text, FAILS)


def judge_active_learning(results: dict[str, dict]) -> Verdict:
    """Holds when the best strategy's saving reaches 30% (or its interval contains 30% and
    excludes 0); partly when it saves labels but fewer; inconclusive when the interval contains
    both 30% and no saving; fails when the interval excludes 30% and shows no saving."""
    active = results.get("active_learning", {})
    best = active.get("best_strategy")
    saving = active.get(f"label_saving_vs_random_{best}") if best else None
    if saving is None:
        return Verdict("-", NOT_MEASURED)
    low = active.get(f"label_saving_vs_random_ci_low_{best}", saving)
    high = active.get(f"label_saving_vs_random_ci_high_{best}", saving)
    text = f"{best}: {_pct(saving)} fewer labels than random (95% CI {_pct(low)} to {_pct(high)})"
    if low > 0 and (saving >= 0.30 or high >= 0.30):
        return Verdict(text, HOLDS)
    if low > 0:
        return Verdict(text, PARTLY, "saves labels, but fewer than 30%")
    if high >= 0.30:
        return Verdict(text, INCONCLUSIVE, "the interval contains both a 30% saving and none")
    return Verdict(text, FAILS, "no saving over random sampling that the interval supports")


def judge_conformal(results: dict[str, dict]) -> Verdict:
    conformal = results.get("conformal", {})
    holds = conformal.get("coverage_guarantee_holds")
    if holds is None:
        return Verdict("-", NOT_MEASURED)
    gaps = [
        (value - (1 - float(key.rsplit("_a", 1)[1])), key)
        for key, value in conformal.items()
        if key.startswith("coverage_")
        and "_a" in key
        and value is not None
        and key.rsplit("_a", 1)[1].replace(".", "", 1).isdigit()
    ]
    text = f"over {conformal.get('resplits', '?')} re-splits"
    if gaps:
        worst, key = min(gaps)
        text += f"; worst mean coverage minus target: {worst:+.4f} ({key})"
    return Verdict(text, HOLDS if holds else FAILS)


def judge_learning_rates(results: dict[str, dict]) -> Verdict:
    optimization = results.get("optimization", {})
    low, high, count = (optimization.get(k) for k in ("lr_min", "lr_max", "lr_values"))
    if low is None or high is None:
        return Verdict("-", NOT_MEASURED)
    text = f"{count} learning rates from {low:g} to {high:g}"
    if low <= 0.001 * 1.0001 and high >= 0.6 * 0.9999:
        return Verdict(text, HOLDS, "the book sweeps the whole range")
    return Verdict(text, PARTLY, "the book's sweep does not span the whole range")


CLAIMS = (
    Claim(
        "Custom CNN: 96% accuracy, precision 0.95, recall 0.96",
        "mask_detection",
        "Chapter 4",
        judge_model_claim("custom_cnn", **DISSERTATION_MODELS["custom_cnn"]),
        id="custom_cnn_96",
    ),
    Claim(
        "InceptionV3 transfer learning: 99.5% accuracy, precision 0.99, recall 1.00",
        "mask_detection",
        "Chapter 4",
        judge_model_claim("inception_v3", **DISSERTATION_MODELS["inception_v3"]),
        id="inception_v3_995",
    ),
    Claim(
        "Transfer learning from ImageNet reaches 99.5% accuracy, precision 0.99, recall 1.00"
        " (tested with the best backbone available offline)",
        "mask_detection",
        "Chapter 4",
        judge_best_transfer_model,
        id="transfer_995",
    ),
    Claim(
        'InceptionV3 has "perfect recall"',
        "mask_detection",
        "Chapter 4",
        judge_perfect_recall,
        id="inception_v3_perfect_recall",
    ),
    Claim(
        "MobileNetV2 transfer learning: 99.1% accuracy, precision 0.99, recall 0.99",
        "mask_detection",
        "Chapter 4",
        judge_model_claim("mobilenet_v2", **DISSERTATION_MODELS["mobilenet_v2"]),
        id="mobilenet_v2_991",
    ),
    Claim(
        "CNNs beat ANNs by 9 accuracy points",
        "fundamentals",
        "Chapter 1",
        judge_cnn_beats_ann,
        id="cnn_beats_ann",
    ),
    Claim(
        "BatchNorm was the most effective regulariser",
        "optimization",
        "Chapter 2",
        judge_batchnorm,
        id="batchnorm_best",
    ),
    Claim(
        "Learning rates from 0.001 to 0.6 were tested",
        "optimization",
        "Chapter 2",
        judge_learning_rates,
        id="learning_rate_range",
    ),
    Claim(
        "Active learning needs 30% fewer labelled samples",
        "active_learning",
        "Chapter 5",
        judge_active_learning,
        id="active_learning_30",
    ),
    Claim(
        "Conformal prediction gives its coverage guarantee",
        "conformal",
        "Chapter 6",
        judge_conformal,
        id="conformal_coverage",
    ),
)


def evaluate(results: dict[str, dict], claims=CLAIMS) -> list[dict]:
    """Judge every claim against ``results`` (``{chapter: {key: value}}``).

    Returns
    -------
    One dict per claim with keys "claim", "where", "measured", "verdict", "note".
    """
    rows = []
    for claim in claims:
        verdict = claim.judge(results)
        if verdict.verdict not in VERDICTS:
            raise ValueError(f"claim {claim.text!r} gave verdict {verdict.verdict!r}")
        rows.append(
            {
                "claim": claim.text,
                "where": claim.where,
                "measured": verdict.measured,
                "verdict": verdict.verdict,
                "note": verdict.note,
            }
        )
    return rows


def claims_table(results_dir):
    """The claims page's table: a pandas DataFrame read from ``results_dir``."""
    import pandas as pd

    from dlbook import results

    return pd.DataFrame(evaluate(results.load_all(results_dir)))


VERDICT_COLOURS = {
    HOLDS: "#d9f2d9",
    PARTLY: "#fff2cc",
    FAILS: "#f8d7da",
    INCONCLUSIVE: "#dbe9f6",
    NOT_MEASURED: "#e9ecef",
}


def verdict_style(verdict: str) -> str:
    """CSS for a verdict cell of the claims table."""
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
    NOT_MEASURED: "is not measured here",
}
