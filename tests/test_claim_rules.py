"""The one rule table every finding is judged by, on synthetic intervals, and the registry's
refusal of a claim that declares no margin."""

import pytest

from dlbook.book import claims
from dlbook.book.claims import table

# ---------------------------------------------------------------------------------------------
# One interval: claim 0.96, margin 0.01, so the line the interval is read against is 0.95.


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (0.955, 0.965, claims.HOLDS),  # within the claim ± its margin
        (0.97, 0.99, claims.HOLDS),  # wholly above the claim
        (0.95, 0.99, claims.HOLDS),  # lower end exactly on the claim less its margin
        (0.90, 0.94, claims.FAILS),  # wholly below the claim less its margin
        (0.94, 0.97, claims.INCONCLUSIVE),  # straddles the claim less its margin
        (0.90, 0.99, claims.INCONCLUSIVE),  # wide: straddles it too
        (None, 0.97, claims.NOT_MEASURED),
        (0.95, float("nan"), claims.NOT_MEASURED),
    ],
)
def test_read_interval_gives_the_declared_verdicts(low, high, expected):
    assert claims.read_interval(low, high, 0.96, 0.01) == expected


def test_read_interval_in_points_and_with_no_margin():
    # "CNNs beat ANNs by 9 points", margin 3: read against +6
    assert claims.read_interval(6.5, 12.0, 9.0, 3.0) == claims.HOLDS
    assert claims.read_interval(-1.7, 10.0, 9.0, 3.0) == claims.INCONCLUSIVE
    assert claims.read_interval(1.1, 5.9, 9.0, 3.0) == claims.FAILS
    assert claims.read_interval(0.9, 0.95, 0.96, 0.0) == claims.FAILS


def test_read_interval_refuses_a_reversed_interval_or_a_negative_margin():
    with pytest.raises(ValueError, match="lower end above"):
        claims.read_interval(0.99, 0.95, 0.96, 0.01)
    with pytest.raises(ValueError, match="margin"):
        claims.read_interval(0.95, 0.99, 0.96, -0.01)


def test_combine_holds_only_when_every_number_holds():
    assert claims.combine([claims.HOLDS, claims.HOLDS]) == claims.HOLDS
    assert claims.combine([claims.HOLDS, claims.INCONCLUSIVE]) == claims.INCONCLUSIVE
    assert claims.combine([claims.INCONCLUSIVE, claims.FAILS]) == claims.FAILS
    assert claims.combine([]) == claims.NOT_MEASURED


# ---------------------------------------------------------------------------------------------
# A whole claim: the budget rows first, then each part's interval.


def _claim(margin=0.01, evidence=claims.FOLDS):
    return claims.Claim(
        "x", "mask_detection", "Ch 4", _judge, id="x", margin=margin, evidence=evidence
    )


def _accuracy(low, high, value=None):
    value = (low + high) / 2 if value is None else value
    return table.Part("accuracy", 0.96, value, low, high)


@pytest.mark.parametrize(
    ("evidence", "count", "expected"),
    [
        (claims.SEEDS, 10, claims.HOLDS),
        (claims.SEEDS, 30, claims.HOLDS),  # more seeds are accepted without change
        (claims.SEEDS, 9, claims.UNTESTED),
        (claims.SEEDS, 3, claims.UNTESTED),
        (claims.SEEDS, None, claims.UNTESTED),
        (claims.REPEATS, 9, claims.UNTESTED),
        (claims.FOLDS, 5, claims.HOLDS),
        (claims.FOLDS, 4, claims.UNTESTED),
    ],
)
def test_too_few_seeds_or_folds_is_untested_at_this_budget(evidence, count, expected):
    verdict = claims.decide(_claim(0.01, evidence), [_accuracy(0.955, 0.975)], count, "measured")
    assert verdict.verdict == expected
    assert verdict.adequate is (expected != claims.UNTESTED)
    if expected == claims.UNTESTED:
        assert "would read “holds”" in verdict.note


def test_untested_never_fails_and_says_what_would_test_it():
    verdict = claims.decide(
        _claim(0.01, claims.SEEDS), [_accuracy(0.80, 0.85)], 3, "m", needed="ten seeds at 64 px"
    )
    assert verdict.verdict == claims.UNTESTED and verdict.adequate is False
    assert "3 training seeds, fewer than 10" in verdict.note
    assert (
        "would read “fails”" in verdict.note and "A test needs ten seeds at 64 px" in verdict.note
    )


def test_a_regime_that_cannot_show_the_effect_is_untested_whatever_the_seeds():
    verdict = claims.decide(
        _claim(0.01, claims.SEEDS), [_accuracy(0.97, 0.99)], 20, "m", regime_gaps=["no overfitting"]
    )
    assert verdict.verdict == claims.UNTESTED and "no overfitting" in verdict.note


def test_no_number_is_not_measured_and_a_missing_part_is_inconclusive():
    nothing = table.Part("accuracy", 0.96)
    assert claims.decide(_claim(), [nothing], 5, "-").verdict == claims.NOT_MEASURED
    no_interval = table.Part("recall", 0.96, 0.97)  # value saved, interval not: cannot hold
    verdict = claims.decide(_claim(), [_accuracy(0.96, 0.98), no_interval], 5, "m")
    assert verdict.verdict == claims.INCONCLUSIVE and "recall: no interval saved" in verdict.read
    no_value = table.Part("recall", 0.96)
    both = claims.decide(_claim(), [_accuracy(0.96, 0.98), no_value], 5, "m")
    assert both.verdict == claims.INCONCLUSIVE


def test_the_card_gets_the_interval_the_rule_read():
    verdict = claims.decide(_claim(), [_accuracy(0.955, 0.975)], 5, "m")
    assert verdict.read == "accuracy 95.5% to 97.5%, against 96.0% less its margin (95.0%): holds"
    points = table.Part("gap", 9.0, 4.1, -1.7, 10.0, unit="points")
    read = claims.decide(_claim(3.0, claims.SEEDS), [points], 10, "m").read
    assert (
        read
        == "gap -1.7 points to +10.0 points, against +9.0 points less its margin (+6.0 points): inconclusive"
    )


def test_the_rule_table_lists_each_finding_verdict_once():
    assert [verdict for verdict, _ in claims.RULE_TABLE] == [
        claims.NOT_MEASURED,
        claims.UNTESTED,
        claims.HOLDS,
        claims.FAILS,
        claims.INCONCLUSIVE,
    ]
    assert {verdict for verdict, _ in claims.RULE_TABLE} == set(claims.VERDICTS)
    assert {verdict for verdict, _ in claims.METHOD_TABLE} == set(claims.METHOD_VERDICTS)
    assert "10 seeds" in claims.RULE_TABLE[1][1] and "5 grouped folds" in claims.RULE_TABLE[1][1]


# ---------------------------------------------------------------------------------------------
# Declared before the numbers: the registry refuses a claim without a margin.


def _judge(results, claim):
    return claims.Verdict("-", claims.NOT_MEASURED)


def test_a_claim_without_a_declared_margin_is_refused_naming_it():
    with pytest.raises(ValueError, match="'no_margin' declares no margin"):
        claims.Claim(
            "x", "fundamentals", "Chapter 1", _judge, id="no_margin", evidence=claims.SEEDS
        )


def test_a_claim_without_a_kind_of_evidence_or_with_a_negative_margin_is_refused():
    with pytest.raises(ValueError, match="'no_evidence' declares evidence None"):
        claims.Claim("x", "fundamentals", "Chapter 1", _judge, id="no_evidence", margin=0.01)
    with pytest.raises(ValueError, match="'negative'"):
        claims.Claim(
            "x", "fundamentals", "Ch 1", _judge, id="negative", margin=-1, evidence=claims.SEEDS
        )


def test_the_registry_refuses_repeated_ids_and_unknown_counted_with():
    one = claims.Claim("x", "f", "Ch", _judge, id="a", margin=0.01, evidence=claims.SEEDS)
    with pytest.raises(ValueError, match="repeated: \\['a'\\]"):
        claims.check_registry([one, one])
    orphan = claims.Claim(
        "y", "f", "Ch", _judge, id="b", margin=0.01, evidence=claims.SEEDS, counted_with="zz"
    )
    with pytest.raises(ValueError, match="'zz', which is not a claim"):
        claims.check_registry([one, orphan])


def test_every_claim_in_the_registry_declares_margin_and_evidence():
    for claim in claims.CLAIMS:
        assert claim.margin is not None and claim.evidence in claims.EVIDENCE, claim.id
        if claim.kind == claims.FINDING:
            assert claim.evidence.minimum >= 5, claim.id
    margins = {c.id: c.margin_words for c in claims.CLAIMS}
    assert margins["custom_cnn_96"] == "±1 point" and margins["cnn_beats_ann"] == "±3 points"
    assert margins["active_learning_30"] == "±3 points"
