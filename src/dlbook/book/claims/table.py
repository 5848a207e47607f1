"""The one rule every finding is judged by, written once: ``RULE_TABLE``, read top to bottom.

Each claim declares in the registry, before any result is read, its margin and its kind of
evidence (``Evidence``: seeds, repeats or grouped folds, with the fewest that can test it). A
judge only picks the numbers a claim is about from the results; what verdict they earn is decided
here, by :func:`read_interval` (one interval) and :func:`decide` (a whole claim), for every claim
alike. The claims page prints the table; each card shows its margin and the interval the rule read.

Intervals are the 95% ones the chapters save (Student t over seeds, repeats or folds). The
chapters do not save the per-seed values a 90% interval would be computed from, and a 95%
interval is the wider of the two, so reading it makes *holds* and *fails* only harder to reach:
any verdict given here would be given on the 90% interval too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dlbook.book import present
from dlbook.book.claims.verdicts import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    NOT_MEASURED,
    NOT_REPRODUCED,
    REPRODUCED,
    UNTESTED,
    Verdict,
)
from dlbook.book.claims.wording import sentences

INTERVAL_LEVEL = 0.95
"""The coverage of the intervals the rule reads (what the chapters save)."""
MIN_SEEDS = 10
"""Fewest seeds, or repeats, behind an interval that can test a claim."""
MIN_FOLDS = 5
"""Fewest grouped cross-validation folds behind an interval that can test a claim."""
_TOLERANCE = 1e-9
"""Floating-point slack when an interval's end sits exactly on the claim less its margin."""


@dataclass(frozen=True)
class Evidence:
    """The kind of evidence a claim is judged on, and the fewest units that can test it."""

    name: str
    words: str
    minimum: int


SEEDS = Evidence("seeds", "training seeds", MIN_SEEDS)
REPEATS = Evidence("repeats", "repeats", MIN_SEEDS)
FOLDS = Evidence("folds", "grouped cross-validation folds", MIN_FOLDS)
CHECK = Evidence("check", "a check of the method as stated", 0)
EVIDENCE = (SEEDS, REPEATS, FOLDS, CHECK)

RULE_TABLE = (
    (NOT_MEASURED, "No number was saved for the claim; the card says why."),
    (
        UNTESTED,
        f"The experiment cannot test the claim: fewer than {MIN_SEEDS} seeds or repeats, or "
        f"fewer than {MIN_FOLDS} grouped folds, behind the interval, or a regime that cannot "
        "show the effect. The card says what would test it and what this budget reads.",
    ),
    (
        HOLDS,
        "The interval lies within the claim ± its margin, or above it: its lower end is at "
        "least the claim less the margin.",
    ),
    (FAILS, "The interval lies wholly below the claim less its margin."),
    (INCONCLUSIVE, "The interval straddles the claim less its margin."),
)
"""Every finding's verdict: the first row, from the top, whose condition is met."""

RULE_NOTES = (
    "Each claim's margin and kind of evidence are declared with the claim, before any result "
    "is read; a claim without them is refused.",
    f"Intervals are the {INTERVAL_LEVEL:.0%} ones the chapters save: wider than 90% ones, so "
    "holds and fails are only harder to reach.",
    "A claim of several numbers (accuracy, precision and recall) holds when each of them "
    "holds, fails when any fails, and is inconclusive otherwise; a number not saved counts "
    "as inconclusive.",
    "Claims are read as the dissertation states them, as at least the claimed value: an "
    "interval above the claim's margin supports it.",
)

METHOD_TABLE = (
    (NOT_MEASURED, "The chapter saved no record of the method."),
    (
        UNTESTED,
        "The check holds by construction, so it cannot tell whether the statement is true; "
        "the card names what would test it.",
    ),
    (REPRODUCED, "The book's run does what the statement says, within the declared margin."),
    (NOT_REPRODUCED, "The book's run does not."),
)
"""Statements of method and future-work items: listed apart, never counted as findings."""


UNITS = ("percent", "fraction", "points")


@dataclass(frozen=True)
class Part:
    """One number a claim states, and what was measured for it (an interval in the same units).

    ``unit`` says how the card writes it: ``"percent"`` for a fraction shown as a percentage
    (``0.96``), ``"fraction"`` for a precision or recall (``0.950``), ``"points"`` for a
    difference already in percentage points (``9.0``).
    """

    name: str
    claimed: float
    value: float | None = None
    low: float | None = None
    high: float | None = None
    unit: str = "percent"

    def __post_init__(self):
        if self.unit not in UNITS:
            raise ValueError(f"part {self.name!r} has unit {self.unit!r}; use one of {UNITS}")


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def read_interval(low, high, claimed: float, margin: float) -> str:
    """The rule table's verdict on one interval ``[low, high]`` against ``claimed`` ± ``margin``.

    ``NOT_MEASURED`` when either end is missing; otherwise *holds*, *fails* or *inconclusive*
    as ``RULE_TABLE`` states (the budget rows are :func:`decide`'s).
    """
    if _missing(low) or _missing(high):
        return NOT_MEASURED
    if margin < 0:
        raise ValueError(f"margin={margin!r} must be zero or positive")
    if low > high + _TOLERANCE:
        raise ValueError(f"interval [{low!r}, {high!r}] has its lower end above its upper end")
    floor = claimed - margin
    if low >= floor - _TOLERANCE:
        return HOLDS
    if high < floor - _TOLERANCE:
        return FAILS
    return INCONCLUSIVE


def combine(readings: list[str]) -> str:
    """The verdict of a claim of several numbers from each number's (``RULE_NOTES``)."""
    if not readings:
        return NOT_MEASURED
    if FAILS in readings:
        return FAILS
    return HOLDS if all(r == HOLDS for r in readings) else INCONCLUSIVE


def margin_text(margin: float, points: bool = False) -> str:
    """A margin in words: ``0.01 -> "±1 point"``, ``(3.0, points=True) -> "±3 points"``,
    ``0 -> "none"``."""
    if margin == 0:
        return "none"
    text = present.number(margin if points else 100 * margin)
    return f"±{text} point" + ("" if text == "1" else "s")


def _amount(value: float, unit: str) -> str:
    if unit == "points":
        return f"{value:+.1f} points"
    return f"{value:.3f}" if unit == "fraction" else present.percent(value)


def reading_text(part: Part, margin: float) -> str:
    """What the rule read for one part, in words:
    ``accuracy 99.2% to 100.0%, against 99.5% less its margin (98.5%): holds``."""
    verdict = read_interval(part.low, part.high, part.claimed, margin)
    if verdict == NOT_MEASURED:
        return f"{part.name}: no interval saved"
    interval = f"{_amount(part.low, part.unit)} to {_amount(part.high, part.unit)}"
    floor = _amount(part.claimed - margin, part.unit)
    return (
        f"{part.name} {interval}, against {_amount(part.claimed, part.unit)} less its margin "
        f"({floor}): {verdict}"
    )


def budget_gaps(evidence: Evidence, count) -> list[str]:
    """What keeps ``count`` units of ``evidence`` from testing a claim, in words (empty if none)."""
    if evidence.minimum == 0:
        return []
    if count is None:
        return [f"the number of {evidence.words} is not recorded"]
    if count < evidence.minimum:
        return [f"{present.number(count)} {evidence.words}, fewer than {evidence.minimum}"]
    return []


def decide(
    claim,
    parts: list[Part],
    count,
    measured: str,
    *,
    regime_gaps: tuple[str, ...] | list[str] = (),
    needed: str = "",
    notes: tuple[str, ...] | list[str] = (),
    budget: dict | None = None,
    external: str = "",
) -> Verdict:
    """A finding's verdict by ``RULE_TABLE``: the budget rows first, then each part's interval.

    Parameters
    ----------
    claim : the claim as the registry declares it: its ``margin`` (in the parts' units) and
        its kind of ``evidence`` are the only ones the rule uses.
    parts : the numbers the claim states with what was measured; none measured gives
        *not measured*.
    count : how many units of the claim's evidence (seeds, repeats, folds) stand behind the
        intervals.
    measured : the measurement in words, for the card.
    regime_gaps : why the regime cannot show the effect, in words (any makes it *untested*).
    needed : what experiment would test the claim (said when it is *untested*).
    notes : more sentences for the card.
    budget : what the experiment ran with.
    external : the external test's figure, for a claim of accuracy.
    """
    margin, evidence = claim.margin, claim.evidence
    budget = dict(budget or {})
    measured_parts = [p for p in parts if not _missing(p.value)]
    if not measured_parts:
        return Verdict("-", NOT_MEASURED, sentences(notes), None, budget, external=external)
    readings = [read_interval(p.low, p.high, p.claimed, margin) for p in parts]
    reading = combine([INCONCLUSIVE if r == NOT_MEASURED else r for r in readings])
    read = "; ".join(reading_text(p, margin) for p in parts)
    gaps = budget_gaps(evidence, count) + list(regime_gaps)
    if gaps:
        note = sentences(
            [
                "The experiment cannot test this claim: " + "; ".join(gaps),
                f"At this budget the rule would read “{reading}”",
                f"A test needs {needed}" if needed else "",
                *notes,
            ]
        )
        return Verdict(measured, UNTESTED, note, False, budget, read, external)
    return Verdict(measured, reading, sentences(notes), True, budget, read, external)
