"""The words a rule may answer with, the kinds of claim, and the ``Verdict`` a rule returns."""

from __future__ import annotations

from dataclasses import dataclass, field

HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"
UNTESTED, NOT_MEASURED = "untested at this budget", "not measured"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, UNTESTED, NOT_MEASURED)
"""What a finding may get: the same five for every finding."""
REPRODUCED, NOT_REPRODUCED = "reproduced", "not reproduced"
METHOD_VERDICTS = (REPRODUCED, NOT_REPRODUCED, UNTESTED, NOT_MEASURED)
"""What a statement of method or an item of future work may get."""

FINDING, METHOD, FUTURE_WORK = "finding", "method", "future work"
KINDS = (FINDING, METHOD, FUTURE_WORK)


@dataclass(frozen=True)
class Verdict:
    """A rule's answer: the measured value in words, the verdict and a note.

    ``adequate`` says whether the experiment could test the claim (None when nothing was
    measured); ``budget`` what it ran with (images, pixels, epochs, seeds...); ``read`` the
    interval(s) the rule read, against the claim less its margin; ``external`` the external
    test's figure for a claim of accuracy ("" for other claims).
    """

    measured: str
    verdict: str
    note: str = ""
    adequate: bool | None = None
    budget: dict = field(default_factory=dict)
    read: str = ""
    external: str = ""
