"""How the claims are worded: names for the book's tokens, numbers in a claim's words, and the
sentences a chapter or the claims page quotes."""

from __future__ import annotations

from dlbook.book import present
from dlbook.book.claims.verdicts import (
    FAILS,
    FINDING,
    HOLDS,
    INCONCLUSIVE,
    NOT_MEASURED,
    NOT_REPRODUCED,
    REPRODUCED,
    UNTESTED,
    VERDICTS,
    Verdict,
)
from dlbook.core import results

MODEL_NAMES = {
    "custom_cnn": "the custom CNN",
    "inception_v3": "InceptionV3",
    "mobilenet_v2": "MobileNetV2",
    "resnet50": "ResNet50",
    "vgg16": "VGG16",
    "inception_v3_fid": "InceptionV3 (Google's 2015 weights)",
    "mobilenet_v2_torchvision": "MobileNetV2 (torchvision's weights)",
    "vgg16_torchvision": "VGG16 (torchvision's weights)",
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


def coverage_key(key: str) -> tuple[str, str] | None:
    """``(method, alpha)`` of a coverage key ``coverage_<method>_a<alpha>``, else None.

    ``coverage_key("coverage_aps_rand_a0.05") == ("aps_rand", "0.05")``; keys such as
    ``coverage_worst_gap_alpha`` (no number after ``_a``) are not coverage keys.
    """
    found = results.key_alpha(key)
    if found is None or not found[0].startswith("coverage_"):
        return None
    return found[0].removeprefix("coverage_"), key.rpartition("_a")[2]


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
    coverage = coverage_key(token)
    if coverage:
        return f"{human(coverage[0])} at α = {coverage[1]}"
    return token.replace("_", " ")


# ---------------------------------------------------------------------------------------------
# Numbers as a claim states them


def pct(value: float) -> str:
    """An accuracy or a share as a percentage: ``0.962 -> "96.2%"``."""
    return present.percent(value)


def fraction(value: float, decimals: int = 3) -> str:
    """A precision or recall as the dissertation writes them: ``0.979``, ``1.000``."""
    return f"{value:.{decimals}f}"


def interval_of(results: dict, key: str) -> str:
    """`` (95% CI a%-b%)`` from ``<key>_ci_low`` and ``<key>_ci_high``, or "" without them."""
    text = present.interval(results.get(f"{key}_ci_low"), results.get(f"{key}_ci_high"))
    return f" ({text})" if text else ""


def points_interval_of(results: dict, key: str) -> str:
    """:func:`interval_of` for a difference in points."""
    text = present.points_interval(results.get(f"{key}_ci_low"), results.get(f"{key}_ci_high"))
    return f" ({text})" if text else ""


def sentences(parts) -> str:
    """The non-empty ``parts`` joined into sentences, each ending with a full stop."""
    parts = [p.strip() for p in parts if p and p.strip()]
    return " ".join(p if p.endswith(".") else p + "." for p in parts)


def and_list(parts: list[str]) -> str:
    """``["a", "b", "c"] -> "a, b and c"``."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


# ---------------------------------------------------------------------------------------------
# Sentences about verdicts

VERDICT_PHRASES = {
    HOLDS: "holds here",
    FAILS: "fails here",
    INCONCLUSIVE: "is left open by this experiment",
    UNTESTED: "is untested at this budget",
    NOT_MEASURED: "is not measured here",
    REPRODUCED: "is reproduced here",
    NOT_REPRODUCED: "is not reproduced here",
}
"""How a sentence about a claim says its verdict."""

COUNT_WORDS = {
    HOLDS: "hold",
    FAILS: "fail",
    INCONCLUSIVE: "are inconclusive",
    UNTESTED: "are untested at this budget",
    NOT_MEASURED: "are not measured",
}
"""How the summary counts findings of each verdict."""


def quote(claim_text: str, verdict: Verdict) -> str:
    """One sentence about a claim: the claim as written, the verdict, the numbers, the note."""
    text = f'The dissertation\'s claim "{claim_text}" {VERDICT_PHRASES[verdict.verdict]}'
    if verdict.measured and verdict.measured != "-":
        text += f": {verdict.measured}"
    text += "."
    if verdict.note:
        text += f" {verdict.note[0].upper()}{verdict.note[1:]}"
        text += "" if verdict.note.endswith(".") else "."
    return text


def summary(rows: list[dict]) -> str:
    """Sentences counting the findings by verdict, each claim once, the methods apart.

    A card whose ``counted_with`` names another claim restates that claim's numbers (judged on
    another model, or one number of it) and is counted with it, not again.
    """
    findings = [r for r in rows if r["kind"] == FINDING]
    counted = [r for r in findings if not r.get("counted_with")]
    others = [r for r in rows if r["kind"] != FINDING]
    counts = {v: sum(r["verdict"] == v for r in counted) for v in VERDICTS}
    parts = [f"{counts[v]} {COUNT_WORDS[v]}" for v in VERDICTS if counts[v]]
    text = f"Of {len(counted)} empirical claims, " + and_list(parts) + "."
    restated = len(findings) - len(counted)
    if restated:
        text += (
            f" {restated} more card{'s' if restated != 1 else ''} restate{'' if restated != 1 else 's'}"
            " a claim's numbers on another model or one number of it, and "
            f"{'are' if restated != 1 else 'is'} counted with that claim."
        )
    if others:
        reproduced = sum(r["verdict"] == REPRODUCED for r in others)
        text += (
            f" Listed apart, not counted as findings: {len(others)} statements of method and "
            f"future-work items, {reproduced} of them reproduced."
        )
    return text
