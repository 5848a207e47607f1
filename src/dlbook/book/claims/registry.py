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
    judge_network_claim,
    judge_perfect_recall,
)
from dlbook.book.claims.rules import (
    judge_active_learning,
    judge_batchnorm,
    judge_cnn_beats_ann,
    judge_conformal,
    judge_federated,
    judge_learning_rates,
    judge_mask_fit,
)
from dlbook.book.claims.table import CHECK, EVIDENCE, FOLDS, REPEATS, SEEDS, Evidence, margin_text
from dlbook.book.claims.verdicts import (
    FAILS,
    FINDING,
    FUTURE_WORK,
    KINDS,
    METHOD,
    METHOD_VERDICTS,
    VERDICTS,
    Verdict,
)
from dlbook.core import cache
from dlbook.core import results as results_io


@dataclass(frozen=True)
class Claim:
    """A claim as written, where the book tests it, the judge that reads its numbers, and the
    margin and kind of evidence it is judged with, declared here before any result is read.

    ``margin`` is in the claim's units: a fraction for an accuracy, precision, recall or share
    (``0.01`` is 1 point), points for a gap stated in points (``points=True``).
    ``counted_with`` names the claim whose numbers this one restates (counted once, with it).
    A claim without a margin or with an unknown kind of evidence is refused.
    """

    text: str
    chapter: str
    where: str
    judge: Callable[[dict[str, dict], Claim], Verdict]
    id: str = ""
    kind: str = FINDING
    section: str = ""
    """The chapter page and heading anchor that tests it, e.g. ``01_fundamentals.html#ann-vs-cnn``."""
    margin: float | None = None
    evidence: Evidence | None = None
    points: bool = False
    counted_with: str = ""

    def __post_init__(self):
        name = self.id or self.text
        if self.margin is None:
            raise ValueError(
                f"claim {name!r} declares no margin; declare margin= before judging it"
            )
        if not isinstance(self.margin, int | float) or self.margin < 0:
            raise ValueError(f"claim {name!r} has margin {self.margin!r}; use a number >= 0")
        if self.evidence not in EVIDENCE:
            raise ValueError(
                f"claim {name!r} declares evidence {self.evidence!r}; use one of "
                f"{[e.name for e in EVIDENCE]}"
            )
        if self.kind not in KINDS:
            raise ValueError(f"claim {name!r} has kind {self.kind!r}; use one of {KINDS}")

    @property
    def rule(self) -> str:
        """What the judge reads, in words: the first paragraph of its docstring."""
        doc = (self.judge.__doc__ or "").strip()
        return " ".join(doc.split("\n\n")[0].split())

    @property
    def evidence_words(self) -> str:
        """The kind of evidence as the card shows it: ``"training seeds, at least 10"``."""
        minimum = self.evidence.minimum
        return self.evidence.words + (f", at least {minimum}" if minimum else "")

    @property
    def margin_words(self) -> str:
        """The margin as the card shows it: ``"±1 point"``."""
        return margin_text(self.margin, self.points)


_CH4 = "04_mask_detection.html#evaluation-on-the-test-split"

CLAIMS = (
    Claim(
        "Custom CNN: 96% accuracy, precision 0.95, recall 0.96",
        "mask_detection",
        "Chapter 4",
        judge_custom_cnn,
        id="custom_cnn_96",
        section=_CH4,
        margin=0.01,
        evidence=SEEDS,
    ),
    Claim(
        "InceptionV3 transfer learning: 99.5% accuracy, precision 0.99, recall 1.00",
        "mask_detection",
        "Chapter 4",
        judge_network_claim("inception_v3"),
        id="inception_v3_995",
        section=_CH4,
        margin=0.01,
        evidence=FOLDS,
    ),
    Claim(
        'InceptionV3 has "perfect recall"',
        "mask_detection",
        "Chapter 4",
        judge_perfect_recall,
        id="inception_v3_perfect_recall",
        section=_CH4,
        margin=0.005,
        evidence=FOLDS,
        counted_with="inception_v3_995",
    ),
    Claim(
        "MobileNetV2 transfer learning: 99.1% accuracy, precision 0.99, recall 0.99",
        "mask_detection",
        "Chapter 4",
        judge_network_claim("mobilenet_v2"),
        id="mobilenet_v2_991",
        section=_CH4,
        margin=0.01,
        evidence=FOLDS,
    ),
    Claim(
        "Transfer learning with the ImageNet models ResNet50, VGG16, InceptionV3 and "
        "MobileNetV2: the best reaches 99.5% accuracy, precision 0.99, recall 1.00",
        "mask_detection",
        "Chapter 4",
        judge_best_transfer_model,
        id="transfer_995",
        section=_CH4,
        margin=0.01,
        evidence=FOLDS,
        counted_with="inception_v3_995",
    ),
    Claim(
        "CNNs beat ANNs by 9 accuracy points",
        "fundamentals",
        "Chapter 1",
        judge_cnn_beats_ann,
        id="cnn_beats_ann",
        section="01_fundamentals.html#ann-vs-cnn",
        margin=3.0,
        points=True,
        evidence=SEEDS,
    ),
    Claim(
        "BatchNorm was the most effective regulariser",
        "optimization",
        "Chapter 2",
        judge_batchnorm,
        id="batchnorm_best",
        section="02_optimization.html#regularisation-which-one-wins",
        margin=1.0,
        points=True,
        evidence=SEEDS,
    ),
    Claim(
        "Active learning needs 30% fewer labelled samples",
        "active_learning",
        "Chapter 5",
        judge_active_learning,
        id="active_learning_30",
        section="05_active_learning.html#seven-strategies-and-a-variant-against-random-sampling",
        margin=0.03,
        evidence=REPEATS,
    ),
    Claim(
        "Learning rates from 0.001 to 0.6 were tested",
        "optimization",
        "Chapter 2",
        judge_learning_rates,
        id="learning_rate_range",
        kind=METHOD,
        section="02_optimization.html#learning-rate-sweep",
        margin=0.0,
        evidence=CHECK,
    ),
    Claim(
        "Conformal prediction gives its coverage guarantee",
        "conformal",
        "Chapter 6",
        judge_conformal,
        id="conformal_coverage",
        kind=METHOD,
        section="06_conformal.html#coverage-over-many-re-splits",
        margin=0.0,
        evidence=CHECK,
    ),
    Claim(
        "Future work: federated learning trains the classifier without pooling the images",
        "future_work",
        "Chapter 7",
        judge_federated,
        id="federated_learning",
        kind=FUTURE_WORK,
        section="07_future_work.html#clients-that-differ-by-image-source",
        margin=1.0,
        points=True,
        evidence=SEEDS,
    ),
    Claim(
        "Future work: detecting whether a mask is worn correctly (nose and mouth covered)",
        "future_work",
        "Chapter 7",
        judge_mask_fit,
        id="mask_fit",
        kind=FUTURE_WORK,
        section="07_future_work.html",
        margin=0.0,
        evidence=CHECK,
    ),
)


def check_registry(claims) -> None:
    """Refuse a registry whose ids repeat or whose ``counted_with`` names no claim in it."""
    ids = [claim.id for claim in claims]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated or "" in ids:
        raise ValueError(f"claim ids must be unique and non-empty; repeated: {repeated}")
    for claim in claims:
        if claim.counted_with and claim.counted_with not in ids:
            raise ValueError(
                f"claim {claim.id!r} is counted with {claim.counted_with!r}, which is not a claim"
            )


check_registry(CLAIMS)


def claim_by_id(claim_id: str) -> Claim:
    """The claim named ``claim_id``; a ValueError lists the known ids otherwise."""
    for claim in CLAIMS:
        if claim.id == claim_id:
            return claim
    raise ValueError(f"unknown claim {claim_id!r}; known: {[c.id for c in CLAIMS]}")


def judge(claim_id: str, results: dict[str, dict]) -> Verdict:
    """The verdict on one claim, from ``results`` (``{chapter: {key: value}}``)."""
    claim = claim_by_id(claim_id)
    return claim.judge(results, claim)


def sentence(claim_id: str, results: dict[str, dict]) -> str:
    """One sentence a chapter can quote about a claim: the claim, the verdict, the numbers."""
    return wording.quote(claim_by_id(claim_id).text, judge(claim_id, results))


# ---------------------------------------------------------------------------------------------
# Judging them all


def record(claim: Claim, results: dict[str, dict]) -> dict:
    """One claim judged, as the row ``claims.json`` stores for it."""
    verdict = claim.judge(results, claim)
    # a claim judged on seeds, repeats or folds gets the rule table's verdicts, wherever listed
    allowed = VERDICTS if claim.kind == FINDING or claim.evidence.minimum else METHOD_VERDICTS
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
        "margin": claim.margin_words,
        "evidence": claim.evidence_words,
        "read": verdict.read,
        "external": verdict.external,
        "counted_with": claim.counted_with,
        "rule": claim.rule,
        "budget": dict(verdict.budget),
        "adequate": verdict.adequate,
        "note": verdict.note,
    }


def evaluate(results: dict[str, dict], claims=CLAIMS) -> list[dict]:
    """Judge every claim against ``results`` (``{chapter: {key: value}}``); one record each.

    Each record has the fields of ``claims.json``: id, text, kind, chapter, where, section,
    measured, verdict, margin, evidence, read, external, counted_with, rule, budget, adequate,
    note.
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
