"""The dissertation's claims, each checked against the book's measured results.

Every verdict is computed from ``results/<profile>/<chapter>.json``; nothing here is typed by
hand but the claims themselves and the dissertation's numbers (``dissertation``), and the margin
and kind of evidence each claim is judged with (``registry``), declared before any result is read.

- ``verdicts``: the five verdicts of a finding (*holds*, *fails*, *inconclusive*, *untested at
  this budget*, *not measured*), those of a method or future-work item and the ``Verdict``;
- ``table``: the one rule table every finding is judged by (``RULE_TABLE``, ``decide``);
- ``dissertation``: the dissertation's numbers and words, and the book's stand-in networks;
- ``rules`` and ``mask_rules``: the judges, which pick the numbers each claim is about;
- ``registry``: the claims, judging them all and writing ``claims.json``;
- ``wording``: names, numbers and the sentences chapters quote.

Chapters use the names re-exported here: ``claims.sentence(claim_id, results)``,
``claims.write(results_dir)``, ``claims.summary(rows)``, ``claims.FINDING``...
"""

from dlbook.book.claims.dissertation import (
    CNN_MINUS_ANN_CLAIMED,
    DISSERTATION_MODELS,
    LABEL_SAVING_CLAIMED,
    LEARNING_RATE_RANGE,
    PERFECT_RECALL,
    PORTS,
)
from dlbook.book.claims.mask_rules import (
    MIN_CUSTOM_CNN_PIXELS,
    external_test,
    judge_best_transfer_model,
    judge_custom_cnn,
    judge_network_claim,
    judge_perfect_recall,
    network_row,
)
from dlbook.book.claims.registry import (
    CLAIMS,
    Claim,
    check_registry,
    claim_by_id,
    evaluate,
    judge,
    record,
    sentence,
    write,
)
from dlbook.book.claims.rules import (
    MIN_ACTIVE_LEARNING_LABELS,
    MIN_CONVERGED,
    MIN_OVERFIT_GAP,
    judge_active_learning,
    judge_batchnorm,
    judge_cnn_beats_ann,
    judge_conformal,
    judge_federated,
    judge_learning_rates,
    judge_mask_fit,
)
from dlbook.book.claims.table import (
    CHECK,
    EVIDENCE,
    FOLDS,
    INTERVAL_LEVEL,
    METHOD_TABLE,
    MIN_FOLDS,
    MIN_SEEDS,
    REPEATS,
    RULE_NOTES,
    RULE_TABLE,
    SEEDS,
    Evidence,
    Part,
    combine,
    decide,
    read_interval,
)
from dlbook.book.claims.verdicts import (
    FAILS,
    FINDING,
    FUTURE_WORK,
    HOLDS,
    INCONCLUSIVE,
    KINDS,
    METHOD,
    METHOD_VERDICTS,
    NOT_MEASURED,
    NOT_REPRODUCED,
    REPRODUCED,
    UNTESTED,
    VERDICTS,
    Verdict,
)
from dlbook.book.claims.wording import human, summary

__all__ = [
    "CHECK",
    "CLAIMS",
    "CNN_MINUS_ANN_CLAIMED",
    "DISSERTATION_MODELS",
    "EVIDENCE",
    "FAILS",
    "FINDING",
    "FOLDS",
    "FUTURE_WORK",
    "HOLDS",
    "INCONCLUSIVE",
    "INTERVAL_LEVEL",
    "KINDS",
    "LABEL_SAVING_CLAIMED",
    "LEARNING_RATE_RANGE",
    "METHOD",
    "METHOD_TABLE",
    "METHOD_VERDICTS",
    "MIN_ACTIVE_LEARNING_LABELS",
    "MIN_CONVERGED",
    "MIN_CUSTOM_CNN_PIXELS",
    "MIN_FOLDS",
    "MIN_OVERFIT_GAP",
    "MIN_SEEDS",
    "NOT_MEASURED",
    "NOT_REPRODUCED",
    "PERFECT_RECALL",
    "PORTS",
    "REPEATS",
    "REPRODUCED",
    "RULE_NOTES",
    "RULE_TABLE",
    "SEEDS",
    "UNTESTED",
    "VERDICTS",
    "Claim",
    "Evidence",
    "Part",
    "Verdict",
    "check_registry",
    "claim_by_id",
    "combine",
    "decide",
    "evaluate",
    "external_test",
    "human",
    "judge",
    "judge_active_learning",
    "judge_batchnorm",
    "judge_best_transfer_model",
    "judge_cnn_beats_ann",
    "judge_conformal",
    "judge_custom_cnn",
    "judge_federated",
    "judge_learning_rates",
    "judge_mask_fit",
    "judge_network_claim",
    "judge_perfect_recall",
    "network_row",
    "read_interval",
    "record",
    "sentence",
    "summary",
    "write",
]
