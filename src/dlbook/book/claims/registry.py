"""The claims as the dissertation states them, where the book tests each, the rule that judges it;
judging them all (``evaluate``) and writing ``results/<profile>/claims.json`` (``write``).

A chapter speaks of a claim only through ``sentence`` (or ``judge``), so the chapter and the
claims page always agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dlbook.book.claims import wording
from dlbook.book.claims.mask_rules import (
    judge_best_transfer_model,
    judge_custom_cnn,
    judge_model_claim,
    judge_perfect_recall,
)
from dlbook.book.claims.rules import (
    DISSERTATION_MODELS,
    judge_active_learning,
    judge_batchnorm,
    judge_cnn_beats_ann,
    judge_conformal,
    judge_federated,
    judge_learning_rates,
    judge_mask_fit,
)
from dlbook.book.claims.verdicts import (
    FAILS,
    FINDING,
    FUTURE_WORK,
    METHOD,
    METHOD_VERDICTS,
    VERDICTS,
    Verdict,
)
from dlbook.core import cache
from dlbook.core import results as results_io


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
    """One sentence a chapter can quote about a claim: the claim, the verdict, the numbers."""
    return wording.quote(claim_by_id(claim_id).text, judge(claim_id, results))


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
    """Judge every claim against ``results`` (``{chapter: {key: value}}``); one record each.

    Each record has the fields of ``claims.json``: id, text, kind, chapter, where, section,
    measured, verdict, rule, budget, adequate, note.
    """
    return [record(claim, results) for claim in claims]


def write(results_dir, results: dict[str, dict] | None = None) -> list[dict]:
    """Judge every claim on the results in ``results_dir`` and write ``claims.json`` there.

    Returns the records written (see :func:`evaluate`).
    """
    results_dir = Path(results_dir)
    rows = evaluate(results_io.load_all(results_dir) if results is None else results)
    cache.write_json(results_dir / "claims.json", rows)
    return rows
