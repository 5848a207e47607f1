"""The words a rule may answer with, the kinds of claim, and the ``Verdict`` a rule returns."""

from __future__ import annotations

from dataclasses import dataclass, field

HOLDS, PARTLY, FAILS = "holds", "partly", "fails"
INCONCLUSIVE, UNTESTED, NOT_MEASURED = "inconclusive", "untested at this budget", "not measured"
VERDICTS = (HOLDS, PARTLY, FAILS, INCONCLUSIVE, UNTESTED, NOT_MEASURED)
"""What a finding may get."""
REPRODUCED, NOT_REPRODUCED = "reproduced", "not reproduced"
METHOD_VERDICTS = (REPRODUCED, NOT_REPRODUCED, NOT_MEASURED)
"""What a statement of method or an item of future work may get."""

FINDING, METHOD, FUTURE_WORK = "finding", "method", "future work"
KINDS = (FINDING, METHOD, FUTURE_WORK)


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
