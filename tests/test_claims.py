import pytest

from dlbook import claims, results


def _verdicts(found):
    return {row["claim"]: row["verdict"] for row in claims.evaluate(found)}


def test_nothing_measured_gives_not_measured_everywhere():
    assert set(_verdicts({}).values()) == {claims.NOT_MEASURED}


@pytest.mark.parametrize(
    ("gap", "low", "high", "expected"),
    [
        (9.5, 7.0, 12.0, claims.HOLDS),
        (3.0, 1.0, 5.0, claims.PARTLY),
        (0.5, -2.0, 3.0, claims.FAILS),
        (-3.3, -45.7, 39.0, claims.INCONCLUSIVE),
    ],
)
def test_cnn_beats_ann_rule(gap, low, high, expected):
    found = {
        "fundamentals": {
            "cnn_minus_ann_points": gap,
            "cnn_minus_ann_points_ci_low": low,
            "cnn_minus_ann_points_ci_high": high,
        }
    }
    assert claims.judge_cnn_beats_ann(found).verdict == expected


def test_model_claim_uses_the_interval_and_precision_recall():
    judge = claims.judge_model_claim("custom_cnn", 0.96, 0.95, 0.96)
    base = {"custom_cnn_accuracy": 0.95, "custom_cnn_accuracy_ci_low": 0.93}
    ok = {
        **base,
        "custom_cnn_accuracy_ci_high": 0.97,
        "custom_cnn_precision": 0.96,
        "custom_cnn_recall": 0.955,
    }
    assert judge({"mask_detection": ok}).verdict == claims.HOLDS
    low_recall = {**ok, "custom_cnn_recall": 0.90}
    assert judge({"mask_detection": low_recall}).verdict == claims.PARTLY
    below = {**ok, "custom_cnn_accuracy_ci_high": 0.955}
    assert judge({"mask_detection": below}).verdict == claims.FAILS


def test_unavailable_model_points_at_the_best_measured_one():
    found = {
        "mask_detection": {
            "inception_v3_available": False,
            "best_model": "efficientnet_lite0",
            "efficientnet_lite0_accuracy": 0.991,
            "efficientnet_lite0_precision": 0.99,
            "efficientnet_lite0_recall": 0.992,
        }
    }
    verdict = claims.judge_model_claim("inception_v3", 0.995, 0.99, 1.0)(found)
    assert verdict.verdict == claims.NOT_MEASURED
    assert "unavailable offline" in verdict.note and "efficientnet_lite0" in verdict.note


def test_batchnorm_and_learning_rate_and_active_learning_rules():
    assert (
        claims.judge_batchnorm({"optimization": {"best_regularizer": "batchnorm"}}).verdict
        == claims.HOLDS
    )
    unclear = {
        "best_regularizer": "none-clear",
        "reg_test_acc_batchnorm": 0.8,
        "reg_test_acc_l2": 0.7,
    }
    assert claims.judge_batchnorm({"optimization": unclear}).verdict == claims.PARTLY
    assert (
        claims.judge_batchnorm({"optimization": {"best_regularizer": "l2"}}).verdict == claims.FAILS
    )
    lrs = {"lr_min": 0.001, "lr_max": 0.6, "lr_values": 8}
    assert claims.judge_learning_rates({"optimization": lrs}).verdict == claims.HOLDS
    narrow = {**lrs, "lr_max": 0.1}
    assert claims.judge_learning_rates({"optimization": narrow}).verdict == claims.PARTLY
    active = {
        "best_strategy": "margin",
        "label_saving_vs_random_margin": 0.12,
        "label_saving_vs_random_ci_low_margin": -0.05,
        "label_saving_vs_random_ci_high_margin": 0.25,
    }
    assert claims.judge_active_learning({"active_learning": active}).verdict == claims.FAILS
    wide = {**active, "label_saving_vs_random_ci_high_margin": 0.7}
    assert claims.judge_active_learning({"active_learning": wide}).verdict == claims.INCONCLUSIVE


def test_conformal_rule_reports_the_worst_gap():
    found = {
        "conformal": {
            "coverage_guarantee_holds": True,
            "resplits": 200,
            "coverage_lac_a0.1": 0.905,
            "coverage_aps_a0.05": 0.949,
        }
    }
    verdict = claims.judge_conformal(found)
    assert verdict.verdict == claims.HOLDS
    assert "-0.0010" in verdict.measured and "coverage_aps_a0.05" in verdict.measured


def test_claims_table_reads_results_files(tmp_path):
    results.save(tmp_path, "optimization", {"best_regularizer": "dropout"})
    table = claims.claims_table(tmp_path)
    row = table[table["claim"].str.startswith("BatchNorm")].iloc[0]
    assert row["verdict"] == claims.FAILS and "dropout" in row["measured"]


def test_results_save_rejects_nested_values(tmp_path):
    with pytest.raises(ValueError, match="'bad'"):
        results.save(tmp_path, "x", {"bad": [1, 2]})
    results.save(tmp_path, "x", {"a": 1})
    results.save(tmp_path, "x", {"b": float("nan")})
    assert results.load(tmp_path, "x") == {"a": 1, "b": None}


def test_best_transfer_model_is_judged_against_the_dissertations_best_figures():
    found = {
        "mask_detection": {
            "best_model": "efficientnet_lite0_finetuned",
            "efficientnet_lite0_finetuned_accuracy": 0.982,
            "efficientnet_lite0_finetuned_accuracy_ci_high": 0.992,
            "efficientnet_lite0_finetuned_precision": 0.973,
            "efficientnet_lite0_finetuned_recall": 0.994,
        }
    }
    verdict = claims.judge_best_transfer_model(found)
    assert verdict.verdict == claims.FAILS
    assert verdict.measured.startswith("efficientnet_lite0_finetuned: accuracy 98.2%")
    found["mask_detection"]["efficientnet_lite0_finetuned_accuracy_ci_high"] = 0.997
    assert claims.judge_best_transfer_model(found).verdict == claims.PARTLY
    assert claims.judge_best_transfer_model({}).verdict == claims.NOT_MEASURED
