"""The dissertation's claims, each checked against the book's measured results.

Every verdict is computed from ``results/<profile>/<chapter>.json``; nothing here is typed by
hand but the claims themselves, as the dissertation states them, and the rule that judges each.

- ``verdicts``: the six verdicts of a finding (*holds*, *partly*, *fails*, *inconclusive*,
  *untested at this budget*, *not measured*), the two of a method or future-work item
  (*reproduced*, *not reproduced*) and the ``Verdict`` a rule returns;
- ``rules`` and ``mask_rules``: the pure rule functions and their thresholds;
- ``registry``: the claims, judging them all and writing ``claims.json``;
- ``wording``: names, numbers and the sentences chapters quote.

Chapters use the names re-exported here: ``claims.sentence(claim_id, results)``,
``claims.write(results_dir)``, ``claims.summary(rows)``, ``claims.FINDING``...
"""

from dlbook.book.claims.mask_rules import (
    judge_best_transfer_model,
    judge_custom_cnn,
    judge_model_claim,
    judge_perfect_recall,
)
from dlbook.book.claims.registry import (
    CLAIMS,
    Claim,
    claim_by_id,
    evaluate,
    judge,
    record,
    sentence,
    write,
)
from dlbook.book.claims.rules import (
    CNN_MINUS_ANN_CLAIMED,
    DISSERTATION_MODELS,
    FEDERATED_GAP,
    LABEL_SAVING_CLAIMED,
    LEARNING_RATE_RANGE,
    METRIC_TOLERANCE,
    MIN_CONVERGED,
    MIN_CUSTOM_CNN_PIXELS,
    MIN_FOLDS,
    MIN_OVERFIT_GAP,
    MIN_SEEDS,
    MIN_SEEDS_REGULARISERS,
    MIN_SIZES,
    PERFECT_RECALL,
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
    HOLDS,
    INCONCLUSIVE,
    KINDS,
    METHOD,
    METHOD_VERDICTS,
    NOT_MEASURED,
    NOT_REPRODUCED,
    PARTLY,
    REPRODUCED,
    UNTESTED,
    VERDICTS,
    Verdict,
)
from dlbook.book.claims.wording import human, summary

__all__ = [
    "CLAIMS",
    "CNN_MINUS_ANN_CLAIMED",
    "DISSERTATION_MODELS",
    "FAILS",
    "FEDERATED_GAP",
    "FINDING",
    "FUTURE_WORK",
    "HOLDS",
    "INCONCLUSIVE",
    "KINDS",
    "LABEL_SAVING_CLAIMED",
    "LEARNING_RATE_RANGE",
    "METHOD",
    "METHOD_VERDICTS",
    "METRIC_TOLERANCE",
    "MIN_CONVERGED",
    "MIN_CUSTOM_CNN_PIXELS",
    "MIN_FOLDS",
    "MIN_OVERFIT_GAP",
    "MIN_SEEDS",
    "MIN_SEEDS_REGULARISERS",
    "MIN_SIZES",
    "NOT_MEASURED",
    "NOT_REPRODUCED",
    "PARTLY",
    "PERFECT_RECALL",
    "REPRODUCED",
    "UNTESTED",
    "VERDICTS",
    "Claim",
    "Verdict",
    "claim_by_id",
    "evaluate",
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
    "judge_model_claim",
    "judge_perfect_recall",
    "record",
    "sentence",
    "summary",
    "write",
]
