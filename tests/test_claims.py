import json

import pytest

from dlbook.book import claims
from dlbook.core import results

# ---------------------------------------------------------------------------------------------
# Synthetic results: an adequate experiment per rule, varied one key at a time.


def _fundamentals(gaps: dict[int, tuple[float, float, float]], **extra) -> dict:
    found = {
        "cnn_ann_sizes": ",".join(str(s) for s in gaps),
        "cnn_ann_seeds": 3,
        "cnn_ann_converged_fraction": 1.0,
        "cnn_ann_train_images": 1200,
        "cnn_ann_epoch_cap": 60,
    }
    for size, (gap, low, high) in gaps.items():
        found[f"cnn_minus_ann_points_{size}px"] = gap
        found[f"cnn_minus_ann_points_{size}px_ci_low"] = low
        found[f"cnn_minus_ann_points_{size}px_ci_high"] = high
    return {"fundamentals": {**found, **extra}}


def _optimization(best: str, separated: bool, **extra) -> dict:
    found = {
        "reg_methods": "none,l1,l2,dropout,batchnorm",
        "reg_unregularized_gap": 0.12,
        "reg_seeds": 5,
        "reg_converged_fraction": 1.0,
        "reg_image_size": 32,
        "reg_train_images": 600,
        "reg_epoch_cap": 80,
        "selected_on": "validation",
        "best_regularizer": best,
        "best_regularizer_separated": separated,
        "reg_val_acc_none": 0.80,
        "reg_val_acc_l1": 0.81,
        "reg_val_acc_l2": 0.82,
        "reg_val_acc_dropout": 0.83,
        "reg_val_acc_batchnorm": 0.84,
        "reg_test_acc_batchnorm": 0.85,
        "reg_test_acc_batchnorm_ci_low": 0.83,
        "reg_test_acc_batchnorm_ci_high": 0.87,
        "reg_test_acc_dropout": 0.84,
    }
    return {"optimization": {**found, **extra}}


def _custom_cnn(accuracy, high, **extra) -> dict:
    found = {
        "custom_cnn_accuracy": accuracy,
        "custom_cnn_accuracy_ci_low": accuracy - 0.02,
        "custom_cnn_accuracy_ci_high": high,
        "custom_cnn_precision": 0.96,
        "custom_cnn_recall": 0.97,
        "custom_cnn_accuracy_seeds": 3,
        "custom_cnn_epochs_used": 18,
        "custom_cnn_epoch_cap": 40,
        "custom_cnn_stopped_early_fraction": 1.0,
        "custom_cnn_image_size": 64,
        "custom_cnn_random_split_accuracy": 0.965,
        "custom_cnn_random_split_accuracy_ci_low": 0.95,
        "custom_cnn_random_split_accuracy_ci_high": 0.98,
    }
    return {"mask_detection": {**found, **extra}}


def _transfer(accuracy, high, precision=0.995, recall=1.0, **extra) -> dict:
    best = "efficientnet_lite0_finetuned"
    found = {
        "best_model": best,
        "selected_on": "validation",
        "cv_folds": 5,
        f"{best}_cv_accuracy": accuracy,
        f"{best}_cv_accuracy_ci_low": accuracy - 0.005,
        f"{best}_cv_accuracy_ci_high": high,
        f"{best}_cv_precision": precision,
        f"{best}_cv_recall": recall,
        f"{best}_accuracy": 0.95,
        f"{best}_cv_accuracy_audited": 0.996,
        "label_issues_suspected": 12,
    }
    return {"mask_detection": {**found, **extra}}


def _active(saving, low, high, **extra) -> dict:
    found = {
        "best_strategy": "margin",
        "selected_on": "validation",
        "al_repeats": 5,
        "al_pool_size": 2000,
        "al_budget_labels": 400,
        "label_saving_vs_random_margin": saving,
        "label_saving_vs_random_ci_low_margin": low,
        "label_saving_vs_random_ci_high_margin": high,
    }
    return {"active_learning": {**found, **extra}}


# ---------------------------------------------------------------------------------------------
# Every claim, every rule


def test_nothing_measured_gives_not_measured_everywhere_with_a_reason():
    rows = claims.evaluate({})
    assert {row["verdict"] for row in rows} == {claims.NOT_MEASURED}
    assert all(row["note"] for row in rows)
    assert all(row["adequate"] is None for row in rows)


def test_claim_ids_are_the_agreed_ones_and_each_has_a_rule_and_a_section():
    ids = {c.id for c in claims.CLAIMS}
    assert {
        "custom_cnn_96",
        "inception_v3_995",
        "transfer_995",
        "inception_v3_perfect_recall",
        "mobilenet_v2_991",
        "cnn_beats_ann",
        "batchnorm_best",
        "learning_rate_range",
        "active_learning_30",
        "conformal_coverage",
    } <= ids
    for claim in claims.CLAIMS:
        assert claim.rule and claim.section and claim.kind in claims.KINDS
    kinds = {c.id: c.kind for c in claims.CLAIMS}
    assert kinds["learning_rate_range"] == kinds["conformal_coverage"] == claims.METHOD
    assert kinds["federated_learning"] == kinds["mask_fit"] == claims.FUTURE_WORK


@pytest.mark.parametrize(
    ("gaps", "expected"),
    [
        ({16: (2.0, 0.5, 3.5), 32: (5.0, 3.0, 7.0), 64: (9.5, 7.0, 12.0)}, claims.HOLDS),
        ({16: (2.0, 0.5, 3.5), 32: (3.0, 1.0, 5.0), 64: (4.0, 2.0, 6.0)}, claims.PARTLY),
        ({16: (0.5, -2.0, 3.0), 32: (0.2, -1.0, 1.5), 64: (0.5, -2.0, 3.0)}, claims.FAILS),
        (
            {16: (1.0, -8.0, 10.0), 32: (-3.3, -45.7, 39.0), 64: (2.0, -6.0, 12.0)},
            claims.INCONCLUSIVE,
        ),
    ],
)
def test_cnn_beats_ann_reads_every_size(gaps, expected):
    verdict = claims.judge_cnn_beats_ann(_fundamentals(gaps))
    assert verdict.verdict == expected and verdict.adequate
    assert "at 64 px" in verdict.measured and verdict.budget["seeds"] == 3


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ({"cnn_ann_seeds": 1}, "fewer than 3"),
        ({"cnn_ann_converged_fraction": 0.0}, "epoch cap"),
        ({"cnn_ann_converged_fraction": None}, "converged"),
    ],
)
def test_cnn_beats_ann_inadequate_is_untested_never_fails(extra, why):
    failing = {16: (0.5, -2.0, 3.0), 32: (0.2, -1.0, 1.5), 64: (0.5, -2.0, 3.0)}
    verdict = claims.judge_cnn_beats_ann(_fundamentals(failing, **extra))
    assert verdict.verdict == claims.UNTESTED and verdict.adequate is False
    assert why in verdict.note and "A test needs" in verdict.note


def test_cnn_beats_ann_at_one_size_only_is_untested():
    found = _fundamentals({32: (0.5, -2.0, 3.0)})
    assert claims.judge_cnn_beats_ann(found).verdict == claims.UNTESTED


@pytest.mark.parametrize(
    ("best", "separated", "expected"),
    [
        ("batchnorm", True, claims.HOLDS),
        ("batchnorm", False, claims.PARTLY),
        ("l2", True, claims.FAILS),
        ("l2", False, claims.FAILS),
    ],
)
def test_batchnorm_rule(best, separated, expected):
    # when L2 wins, dropout is the runner-up on validation, BatchNorm third
    leaders = {"reg_val_acc_l2": 0.86, "reg_val_acc_dropout": 0.85} if best == "l2" else {}
    verdict = claims.judge_batchnorm(_optimization(best, separated, **leaders))
    assert verdict.verdict == expected and verdict.adequate
    assert "chosen on validation" in verdict.measured


def test_batchnorm_not_separated_behind_the_winner_is_inconclusive():
    behind = {
        "reg_winner_minus_batchnorm_ci_low": -0.01,
        "reg_winner_minus_batchnorm_ci_high": 0.03,
    }
    found = _optimization("l2", True, reg_val_acc_l2=0.86, reg_val_acc_dropout=0.85, **behind)
    verdict = claims.judge_batchnorm(found)
    assert verdict.verdict == claims.INCONCLUSIVE and "-1.0 to +3.0 points" in verdict.note
    behind["reg_winner_minus_batchnorm_ci_low"] = 0.005
    found = _optimization("l2", True, reg_val_acc_l2=0.86, reg_val_acc_dropout=0.85, **behind)
    assert claims.judge_batchnorm(found).verdict == claims.FAILS


def test_batchnorm_runner_up_not_separated_is_inconclusive():
    found = _optimization("dropout", False, reg_val_acc_dropout=0.85)
    verdict = claims.judge_batchnorm(found)
    assert verdict.verdict == claims.INCONCLUSIVE
    assert "dropout" in verdict.measured and "BatchNorm 85.0%" in verdict.measured


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ({"reg_unregularized_gap": 0.001}, "does not overfit"),
        ({"reg_unregularized_gap": None}, "not recorded"),
        ({"reg_seeds": 3}, "fewer than 5"),
        ({"selected_on": "test"}, "test data"),
        ({"reg_converged_fraction": 0.2}, "epoch cap"),
    ],
)
def test_batchnorm_without_overfitting_or_seeds_is_untested_never_fails(extra, why):
    verdict = claims.judge_batchnorm(_optimization("l2", True, **extra))
    assert verdict.verdict == claims.UNTESTED and not verdict.adequate
    assert why in verdict.note and "A test needs" in verdict.note


def test_custom_cnn_rule_and_the_random_split():
    holds = claims.judge_custom_cnn(_custom_cnn(0.962, 0.975))
    assert holds.verdict == claims.HOLDS and holds.adequate
    fails = claims.judge_custom_cnn(_custom_cnn(0.90, 0.925))
    assert fails.verdict == claims.FAILS
    assert "reproduced there" in fails.note and "not reproduced" not in fails.note
    assert "+6.5 points" in fails.note  # 96.5% random minus 90.0% grouped
    partly = claims.judge_custom_cnn(_custom_cnn(0.962, 0.975, custom_cnn_recall=0.90))
    assert (
        partly.verdict == claims.PARTLY and "recall 0.900 is below the claimed 0.96" in partly.note
    )
    assert partly.budget == {"pixels": 64, "epochs": 18, "epoch_cap": 40, "seeds": 3}


@pytest.mark.parametrize(
    "extra",
    [
        {"custom_cnn_accuracy_seeds": 1},
        {"custom_cnn_stopped_early_fraction": 0.0},
        {"custom_cnn_image_size": 32},
    ],
)
def test_custom_cnn_inadequate_is_untested_never_fails(extra):
    verdict = claims.judge_custom_cnn(_custom_cnn(0.90, 0.925, **extra))
    assert verdict.verdict == claims.UNTESTED and not verdict.adequate
    assert "lies below the claim" in verdict.note and "random split" in verdict.note


def test_custom_cnn_without_random_split_says_so():
    found = _custom_cnn(0.90, 0.925)
    del found["mask_detection"]["custom_cnn_random_split_accuracy"]
    assert "not run" in claims.judge_custom_cnn(found).note


def test_best_transfer_model_uses_cross_validation_and_mentions_the_audit():
    holds = claims.judge_best_transfer_model(_transfer(0.996, 0.998))
    assert holds.verdict == claims.HOLDS and "5-fold cross-validation" in holds.measured
    assert "12 suspected label issues" in holds.note and holds.budget == {"folds": 5}
    partly = claims.judge_best_transfer_model(_transfer(0.996, 0.998, precision=0.97))
    assert (
        partly.verdict == claims.PARTLY
        and "precision 0.970 is below the claimed 0.99" in partly.note
    )
    fails = claims.judge_best_transfer_model(_transfer(0.989, 0.992))
    assert fails.verdict == claims.FAILS and "reaches the claim" in fails.note
    assert claims.judge_best_transfer_model({}).verdict == claims.NOT_MEASURED


def test_best_transfer_model_picked_on_test_is_untested():
    verdict = claims.judge_best_transfer_model(_transfer(0.989, 0.992, selected_on="test"))
    assert verdict.verdict == claims.UNTESTED


def test_best_transfer_model_falls_back_to_the_single_split():
    found = {
        "mask_detection": {
            "best_model": "efficientnet_lite0",
            "selected_on": "validation",
            "efficientnet_lite0_accuracy": 0.982,
            "efficientnet_lite0_accuracy_ci_high": 0.992,
            "efficientnet_lite0_precision": 0.973,
            "efficientnet_lite0_recall": 0.994,
        }
    }
    verdict = claims.judge_best_transfer_model(found)
    assert verdict.verdict == claims.FAILS
    assert verdict.measured.startswith("EfficientNet-Lite0: accuracy 98.2%")
    assert "cross-validation was not run" in verdict.note


def test_model_claim_uses_the_interval_and_names_the_short_metric():
    judge = claims.judge_model_claim("mobilenet_v2", 0.991, 0.99, 0.99)
    ok = {
        "mobilenet_v2_accuracy": 0.99,
        "mobilenet_v2_accuracy_ci_high": 0.995,
        "mobilenet_v2_precision": 0.99,
        "mobilenet_v2_recall": 0.985,
    }
    assert judge({"mask_detection": ok}).verdict == claims.HOLDS
    low_recall = {**ok, "mobilenet_v2_recall": 0.90}
    verdict = judge({"mask_detection": low_recall})
    assert verdict.verdict == claims.PARTLY and "recall" in verdict.note
    assert "precision" not in verdict.note
    below = {**ok, "mobilenet_v2_accuracy_ci_high": 0.985}
    assert judge({"mask_detection": below}).verdict == claims.FAILS


def test_unavailable_model_points_at_the_best_measured_one():
    found = {
        "mask_detection": {
            "inception_v3_available": False,
            "best_model": "efficientnet_lite0",
            "efficientnet_lite0_accuracy": 0.991,
        }
    }
    verdict = claims.judge_model_claim("inception_v3", 0.995, 0.99, 1.0)(found)
    assert verdict.verdict == claims.NOT_MEASURED
    assert "unavailable offline" in verdict.note and "EfficientNet-Lite0" in verdict.note
    assert claims.judge_perfect_recall(found).verdict == claims.NOT_MEASURED
    recall = {"mask_detection": {"inception_v3_accuracy": 0.99, "inception_v3_recall": 1.0}}
    assert claims.judge_perfect_recall(recall).verdict == claims.HOLDS
    recall["mask_detection"]["inception_v3_recall"] = 0.98
    assert claims.judge_perfect_recall(recall).verdict == claims.FAILS


@pytest.mark.parametrize(
    ("saving", "low", "high", "expected"),
    [
        (0.35, 0.2, 0.5, claims.HOLDS),
        (0.12, 0.05, 0.2, claims.PARTLY),
        (0.12, -0.05, 0.7, claims.INCONCLUSIVE),
        (0.02, -0.05, 0.1, claims.FAILS),
    ],
)
def test_active_learning_rule(saving, low, high, expected):
    verdict = claims.judge_active_learning(_active(saving, low, high))
    assert verdict.verdict == expected and verdict.adequate
    assert verdict.measured.startswith("margin sampling")


@pytest.mark.parametrize("extra", [{"al_repeats": 1}, {"selected_on": None}])
def test_active_learning_inadequate_is_untested(extra):
    verdict = claims.judge_active_learning(_active(0.02, -0.05, 0.1, **extra))
    assert verdict.verdict == claims.UNTESTED


def test_methods_are_reproduced_not_held():
    lrs = {"optimization": {"lr_min": 0.001, "lr_max": 0.6, "lr_values": 8}}
    assert claims.judge_learning_rates(lrs).verdict == claims.REPRODUCED
    lrs["optimization"]["lr_max"] = 0.1
    assert claims.judge_learning_rates(lrs).verdict == claims.NOT_REPRODUCED
    found = {
        "conformal": {
            "coverage_guarantee_holds": True,
            "resplits": 200,
            "coverage_lac_a0.1": 0.905,
            "coverage_aps_a0.05": 0.949,
        }
    }
    verdict = claims.judge_conformal(found)
    assert verdict.verdict == claims.REPRODUCED
    assert "-0.10 points" in verdict.measured and "APS at α = 0.05" in verdict.measured
    assert "coverage_" not in verdict.measured


def test_future_work_items():
    future = {
        "future_work": {
            "fl_clients": 10,
            "fl_rounds": 20,
            "central_accuracy": 0.97,
            "fedavg_accuracy_iid": 0.965,
            "fedavg_accuracy_noniid_0.1": 0.90,
            "fedprox_accuracy_noniid_0.1": 0.92,
            "mask_fit_classes": "correct,nose_exposed,chin",
            "mask_fit_synthetic_accuracy": 0.9,
            "mask_fit_synthetic_accuracy_ci_low": 0.85,
            "mask_fit_synthetic_accuracy_ci_high": 0.94,
            "mask_fit_flagged_real_with_mask": 7,
        }
    }
    fl = claims.judge_federated(future)
    assert fl.verdict == claims.REPRODUCED and "FedProx 92.0%" in fl.note
    fit = claims.judge_mask_fit(future)
    assert fit.verdict == claims.REPRODUCED and "nose exposed" in fit.measured
    future["future_work"]["fedavg_accuracy_iid"] = 0.9
    assert claims.judge_federated(future).verdict == claims.NOT_REPRODUCED


def test_summary_counts_findings_and_lists_methods_apart():
    found = {
        **_optimization("batchnorm", True),
        "conformal": {"coverage_guarantee_holds": True},
    }
    rows = claims.evaluate(found)
    text = claims.summary(rows)
    assert text.startswith("Of 8 empirical claims, 1 hold and 7 are not measured.")
    assert "1 of them reproduced" in text


def test_no_rule_fails_without_an_adequate_experiment():
    found = {
        **_fundamentals({32: (0.5, -2.0, 3.0)}, cnn_ann_seeds=1),
        **_optimization("l2", True, reg_unregularized_gap=0.0),
        **_custom_cnn(0.5, 0.6, custom_cnn_accuracy_seeds=1),
        **_active(0.0, -0.1, 0.05, al_repeats=1),
    }
    for row in claims.evaluate(found):
        assert not (row["verdict"] == claims.FAILS and not row["adequate"]), row["id"]


def test_write_puts_every_field_in_claims_json(tmp_path):
    results.save(tmp_path, "optimization", _optimization("dropout", True)["optimization"])
    rows = claims.write(tmp_path)
    stored = json.loads((tmp_path / "claims.json").read_text())
    assert stored == json.loads(json.dumps(rows))
    fields = {"id", "text", "chapter", "measured", "verdict", "rule", "budget", "adequate", "note"}
    assert all(fields <= set(row) for row in stored)
    bn = next(row for row in stored if row["id"] == "batchnorm_best")
    assert bn["verdict"] == claims.FAILS and bn["adequate"] is True
    assert bn["budget"] == {"images": 600, "pixels": 32, "epoch_cap": 80, "seeds": 5}


def test_sentence_and_human_wording():
    text = claims.sentence("batchnorm_best", _optimization("batchnorm", True))
    assert text.startswith("The dissertation's claim \"BatchNorm was the most effective")
    assert "holds here" in text
    assert claims.human("coverage_lac_a0.1") == "LAC at α = 0.1"
    assert claims.human("efficientnet_lite0_finetuned") == "EfficientNet-Lite0, fine-tuned"
    assert claims.human("something_new") == "something new"


def test_results_save_rejects_nested_values(tmp_path):
    with pytest.raises(ValueError, match="'bad'"):
        results.save(tmp_path, "x", {"bad": [1, 2]})
    results.save(tmp_path, "x", {"a": 1})
    results.save(tmp_path, "x", {"b": float("nan")})
    assert results.load(tmp_path, "x") == {"a": 1, "b": None}


def test_cnn_beats_ann_partly_names_the_sizes_too_wide_to_judge():
    found = _fundamentals({16: (1.4, 1.1, 1.6), 32: (2.6, -2.6, 7.7), 64: (4.1, -1.7, 10.0)})
    verdict = claims.judge_cnn_beats_ann(found)
    assert verdict.verdict == claims.PARTLY
    assert "at 64 px the interval is too wide" in verdict.note and "32 px the" not in verdict.note


def test_transfer_claim_quotes_the_cross_validated_heads_when_the_winner_was_not_folded():
    mask = {
        "best_model": "efficientnet_lite0_finetuned",
        "selected_on": "validation",
        "efficientnet_lite0_finetuned_accuracy": 0.989,
        "efficientnet_lite0_finetuned_accuracy_ci_low": 0.980,
        "efficientnet_lite0_finetuned_accuracy_ci_high": 0.997,
        "efficientnet_lite0_finetuned_precision": 0.979,
        "efficientnet_lite0_finetuned_recall": 1.0,
        "cv_folds": 5,
        "efficientnet_lite1_cv_accuracy": 0.992,
        "efficientnet_lite2_cv_accuracy": 0.994,
        "efficientnet_lite2_cv_accuracy_ci_low": 0.987,
        "efficientnet_lite2_cv_accuracy_ci_high": 1.0,
    }
    note = claims.judge_best_transfer_model({"mask_detection": mask}).note
    assert "was not cross-validated" in note
    assert "EfficientNet-Lite2, reaches 99.4% (95% CI 98.7%-100.0%)" in note
