import json

import pytest

from dlbook.book import claims
from dlbook.core import results

# ---------------------------------------------------------------------------------------------
# Synthetic results: an adequate experiment per claim, varied one key at a time.


def _fundamentals(gaps: dict[int, tuple[float, float, float]], **extra) -> dict:
    found = {
        "cnn_ann_sizes": ",".join(str(s) for s in gaps),
        "cnn_ann_seeds": 10,
        "cnn_ann_converged_fraction": 1.0,
        "cnn_ann_train_images": 1200,
        "cnn_ann_epoch_cap": 60,
        "cnn_ann_lr_selected_on": "validation",
        "cnn_ann_learning_rate_CNN": 0.01,
        "cnn_ann_learning_rate_ANN": 0.003,
    }
    for size, (gap, low, high) in gaps.items():
        found[f"cnn_minus_ann_points_{size}px"] = gap
        found[f"cnn_minus_ann_points_{size}px_ci_low"] = low
        found[f"cnn_minus_ann_points_{size}px_ci_high"] = high
    return {"fundamentals": {**found, **extra}}


def _optimization(best: str, low: float, high: float, **extra) -> dict:
    """``best`` chosen on validation; BatchNorm's lead (BatchNorm won) or deficit, as fractions."""
    found = {
        "reg_methods": "none,l1,l2,dropout,batchnorm",
        "reg_unregularized_gap": 0.12,
        "reg_seeds": 10,
        "reg_converged_fraction": 1.0,
        "reg_image_size": 32,
        "reg_train_images": 600,
        "reg_epoch_cap": 80,
        "selected_on": "validation",
        "best_regularizer": best,
        "reg_test_acc_batchnorm": 0.85,
        "reg_test_acc_batchnorm_ci_low": 0.83,
        "reg_test_acc_batchnorm_ci_high": 0.87,
        "reg_test_acc_dropout": 0.84,
        "reg_test_acc_none": 0.82,
    }
    if best == "batchnorm":
        found.update(
            reg_runner_up="dropout",
            reg_winner_margin=(low + high) / 2,
            reg_winner_margin_ci_low=low,
            reg_winner_margin_ci_high=high,
        )
    else:  # the winner minus BatchNorm
        found.update(
            reg_runner_up="batchnorm",
            reg_winner_minus_batchnorm=-(low + high) / 2,
            reg_winner_minus_batchnorm_ci_low=-high,
            reg_winner_minus_batchnorm_ci_high=-low,
        )
    return {"optimization": {**found, **extra}}


def _custom_cnn(low, high, **extra) -> dict:
    found = {
        "custom_cnn_accuracy": (low + high) / 2,
        "custom_cnn_accuracy_ci_low": low,
        "custom_cnn_accuracy_ci_high": high,
        "custom_cnn_precision": 0.96,
        "custom_cnn_precision_ci_low": 0.95,
        "custom_cnn_precision_ci_high": 0.97,
        "custom_cnn_recall": 0.97,
        "custom_cnn_recall_ci_low": 0.96,
        "custom_cnn_recall_ci_high": 0.98,
        "custom_cnn_accuracy_seeds": 10,
        "custom_cnn_epochs_used": 18,
        "custom_cnn_epoch_cap": 40,
        "custom_cnn_stopped_early_fraction": 1.0,
        "custom_cnn_image_size": 64,
        "custom_cnn_random_split_accuracy": 0.965,
        "custom_cnn_random_split_accuracy_ci_low": 0.95,
        "custom_cnn_random_split_accuracy_ci_high": 0.98,
    }
    return {"mask_detection": {**found, **extra}}


def _row(model: str, low: float, high: float, precision=0.995, recall=0.999) -> dict:
    """A cross-validated row of ``model`` under chapter 4's key pattern."""
    row = {
        f"{model}_cv_accuracy": (low + high) / 2,
        f"{model}_cv_accuracy_ci_low": low,
        f"{model}_cv_accuracy_ci_high": high,
    }
    for metric, value in (("precision", precision), ("recall", recall)):
        row[f"{model}_cv_{metric}"] = value
        row[f"{model}_cv_{metric}_ci_low"] = value - 0.004
        row[f"{model}_cv_{metric}_ci_high"] = min(value + 0.004, 1.0)
    return row


def _transfer(low, high, precision=0.995, recall=0.999, **extra) -> dict:
    best = "efficientnet_lite0_finetuned"
    found = {
        "best_model": best,
        "selected_on": "validation",
        "cv_folds": 5,
        **_row(best, low, high, precision, recall),
        f"{best}_accuracy": 0.989,
        f"{best}_accuracy_ci_low": 0.980,
        f"{best}_accuracy_ci_high": 0.997,
        f"{best}_cv_accuracy_audited": 0.998,
        "label_issues_suspected": 12,
    }
    return {"mask_detection": {**found, **extra}}


def _networks(**extra) -> dict:
    """Chapter 4 with the three ports, frozen and fine-tuned, as the full profile saves them."""
    mask = _transfer(0.991, 1.0)["mask_detection"]
    mask.update(_row("inception_v3_fid", 0.975, 0.985, recall=0.99))
    mask.update(_row("inception_v3_fid_finetuned", 0.988, 0.998, recall=0.9995))
    mask.update(_row("mobilenet_v2_torchvision", 0.978, 0.99))
    mask.update(_row("vgg16_torchvision_finetuned", 0.96, 0.975))
    mask["transfer_networks_compared"] = (
        "inception_v3_fid_finetuned,mobilenet_v2_torchvision,vgg16_torchvision_finetuned,"
        "efficientnet_lite0_finetuned"
    )
    for port in ("inception_v3_fid", "mobilenet_v2_torchvision", "vgg16_torchvision"):
        mask[f"{port}_available"] = True
    return {"mask_detection": {**mask, **extra}}


def _active(saving, low, high, **extra) -> dict:
    found = {
        "best_strategy": "margin",
        "selected_on": "validation",
        "al_repeats": 30,
        "al_selection_repeat_count": 10,
        "al_reported_repeat_count": 20,
        "al_pool_size": 3000,
        "al_budget_labels": 1000,
        "label_saving_vs_random_margin": saving,
        "label_saving_vs_random_ci_low_margin": low,
        "label_saving_vs_random_ci_high_margin": high,
    }
    return {"active_learning": {**found, **extra}}


EXTERNAL = {
    "real_photos": {
        "external_test_accuracy": 0.912,
        "external_test_accuracy_ci_low": 0.88,
        "external_test_accuracy_ci_high": 0.94,
        "external_test_n": 321,
        "external_test_min_width": 32,
    }
}


def _verdict(claim_id, found):
    return claims.judge(claim_id, found)


# ---------------------------------------------------------------------------------------------
# Every claim, every judge through the one rule table


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
        # judged at the largest size: +6 is the claim (9) less its margin (3)
        ({16: (2.0, 0.5, 3.5), 64: (9.5, 7.0, 12.0)}, claims.HOLDS),
        ({16: (9.5, 7.0, 12.0), 64: (4.0, 2.0, 5.9)}, claims.FAILS),
        ({16: (1.4, 1.1, 1.6), 32: (2.6, -2.6, 7.7), 64: (4.1, -1.7, 10.0)}, claims.INCONCLUSIVE),
        ({128: (7.0, 6.2, 7.8)}, claims.HOLDS),
    ],
)
def test_cnn_beats_ann_is_read_at_the_largest_size(gaps, expected):
    verdict = _verdict("cnn_beats_ann", _fundamentals(gaps))
    assert verdict.verdict == expected and verdict.adequate
    largest = max(gaps)
    assert f"at {largest} px" in verdict.read and verdict.budget["seeds"] == 10
    assert "Learning rates chosen on validation: CNN 0.01, ANN 0.003" in verdict.note


def test_cnn_beats_ann_prefers_the_saved_largest_size_gap_and_its_seeds():
    found = _fundamentals({16: (1.4, 1.1, 1.6), 64: (4.1, -1.7, 10.0)}, cnn_ann_seeds=3)
    found["fundamentals"].update(
        cnn_ann_gap_largest_px=128,
        cnn_ann_gap_largest_points=8.0,
        cnn_ann_gap_largest_ci_low=6.5,
        cnn_ann_gap_largest_ci_high=9.5,
        cnn_ann_gap_largest_seeds=12,
    )
    verdict = _verdict("cnn_beats_ann", found)
    assert verdict.verdict == claims.HOLDS and "CNN minus ANN at 128 px +6.5 points" in verdict.read
    found["fundamentals"]["cnn_ann_gap_largest_seeds"] = 4
    assert _verdict("cnn_beats_ann", found).verdict == claims.UNTESTED


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ({"cnn_ann_seeds": 3}, "3 training seeds, fewer than 10"),
        ({"cnn_ann_converged_fraction": 0.0}, "epoch cap"),
        ({"cnn_ann_converged_fraction": None}, "converged"),
        ({"cnn_ann_lr_selected_on": None}, "share one learning rate"),
    ],
)
def test_cnn_beats_ann_inadequate_is_untested_never_fails(extra, why):
    failing = {16: (0.5, -2.0, 3.0), 64: (0.5, -2.0, 3.0)}
    verdict = _verdict("cnn_beats_ann", _fundamentals(failing, **extra))
    assert verdict.verdict == claims.UNTESTED and verdict.adequate is False
    assert why in verdict.note and "A test needs" in verdict.note
    assert "would read “fails”" in verdict.note


@pytest.mark.parametrize(
    ("best", "low", "high", "expected"),
    [
        ("batchnorm", 0.005, 0.03, claims.HOLDS),  # BatchNorm separated ahead
        ("batchnorm", -0.005, 0.02, claims.HOLDS),  # ahead, within the 1-point margin
        ("dropout", -0.008, 0.004, claims.HOLDS),  # behind by less than the margin
        ("dropout", -0.053, 0.02, claims.INCONCLUSIVE),  # straddles -1 point
        ("l2", -0.05, -0.02, claims.FAILS),  # wholly more than 1 point behind
    ],
)
def test_batchnorm_is_read_as_its_lead_over_the_best_other(best, low, high, expected):
    sizes = {"reg_train_sizes": "128,512", "reg_n128_best_regularizer": "dropout",
             "reg_n512_best_regularizer": "batchnorm"}  # fmt: skip
    verdict = _verdict("batchnorm_best", _optimization(best, low, high, **sizes))
    assert "by training-set size: 128 images: dropout; 512 images: BatchNorm" in verdict.note
    assert verdict.verdict == expected and verdict.adequate
    assert "chosen on validation" in verdict.measured
    assert "BatchNorm minus" in verdict.read and "points" in verdict.read


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ({"reg_unregularized_gap": 0.001}, "does not overfit"),
        ({"reg_unregularized_gap": None}, "not recorded"),
        ({"reg_seeds": 5}, "fewer than 10"),
        ({"selected_on": "test"}, "test data"),
        ({"reg_converged_fraction": 0.2}, "epoch cap"),
        ({"reg_test_acc_none": 0.845}, "the best, BatchNorm, by +0.5 points"),
    ],
)
def test_batchnorm_without_overfitting_or_seeds_is_untested_never_fails(extra, why):
    verdict = _verdict("batchnorm_best", _optimization("l2", -0.05, -0.02, **extra))
    assert verdict.verdict == claims.UNTESTED and not verdict.adequate
    assert why in verdict.note and "A test needs" in verdict.note


def test_custom_cnn_reads_accuracy_precision_and_recall_and_the_random_split():
    holds = _verdict("custom_cnn_96", _custom_cnn(0.955, 0.975))
    assert holds.verdict == claims.HOLDS and holds.adequate
    fails = _verdict("custom_cnn_96", _custom_cnn(0.89, 0.93))
    assert fails.verdict == claims.FAILS
    assert "+5.5 points" in fails.note  # 96.5% random minus 91.0% grouped
    short_recall = _custom_cnn(
        0.955, 0.975, custom_cnn_recall_ci_low=0.90, custom_cnn_recall_ci_high=0.97
    )
    verdict = _verdict("custom_cnn_96", short_recall)
    assert verdict.verdict == claims.INCONCLUSIVE
    assert "recall 0.900 to 0.970, against 0.960 less its margin (0.950): inconclusive" in (
        verdict.read
    )
    assert verdict.budget == {"pixels": 64, "epochs": 18, "epoch_cap": 40, "seeds": 10}


@pytest.mark.parametrize(
    "extra",
    [
        {"custom_cnn_accuracy_seeds": 3},
        {"custom_cnn_stopped_early_fraction": 0.0},
        {"custom_cnn_image_size": 32},
    ],
)
def test_custom_cnn_inadequate_is_untested_never_fails(extra):
    verdict = _verdict("custom_cnn_96", _custom_cnn(0.89, 0.93, **extra))
    assert verdict.verdict == claims.UNTESTED and not verdict.adequate
    assert "would read “fails”" in verdict.note and "random split" in verdict.note


def test_custom_cnn_without_random_split_says_so():
    found = _custom_cnn(0.89, 0.93)
    del found["mask_detection"]["custom_cnn_random_split_accuracy"]
    assert "not run" in _verdict("custom_cnn_96", found).note


def test_best_transfer_model_reads_the_folds_and_the_audit_is_not_evidence():
    holds = _verdict("transfer_995", _transfer(0.991, 1.0))
    assert holds.verdict == claims.HOLDS and "5-fold cross-validation" in holds.measured
    assert "Not evidence: with the 12 suspected label issues set aside" in holds.note
    assert "by construction" in holds.note and holds.budget == {"folds": 5}
    assert "single grouped test split declared in advance: 98.9%" in holds.note
    short = _verdict("transfer_995", _transfer(0.991, 1.0, precision=0.97))
    assert short.verdict == claims.FAILS and "precision 0.966 to 0.974" in short.read
    below = _verdict("transfer_995", _transfer(0.975, 0.984))
    assert below.verdict == claims.FAILS
    # a failing interval stays failing, whatever the audited accuracy says
    assert "reaches the claim" not in below.note
    assert _verdict("transfer_995", {}).verdict == claims.NOT_MEASURED


def test_best_transfer_model_picked_on_test_or_on_one_split_is_untested():
    picked = _verdict("transfer_995", _transfer(0.975, 0.984, selected_on="test"))
    assert picked.verdict == claims.UNTESTED and "test data" in picked.note
    found = {
        "mask_detection": {
            "best_model": "efficientnet_lite0",
            "selected_on": "validation",
            "efficientnet_lite0_accuracy": 0.982,
            "efficientnet_lite0_accuracy_ci_low": 0.97,
            "efficientnet_lite0_accuracy_ci_high": 0.992,
        }
    }
    single = _verdict("transfer_995", found)
    assert single.verdict == claims.UNTESTED and "one test split" in single.note
    assert single.measured.startswith("EfficientNet-Lite0: accuracy 98.2%")


def test_the_dissertation_networks_are_read_on_their_ports_fine_tuned_first():
    found = _networks()
    inception = _verdict("inception_v3_995", found)
    # fine-tuned row 98.8-99.8%: above 99.5% less 1 point
    assert inception.verdict == claims.HOLDS
    assert inception.measured.startswith("InceptionV3 (Google's 2015 weights), fine-tuned:")
    mobilenet = _verdict("mobilenet_v2_991", found)  # frozen head only: 97.8-99.0%
    assert mobilenet.verdict == claims.INCONCLUSIVE
    assert mobilenet.measured.startswith("MobileNetV2 (torchvision's weights): accuracy 98.4%")
    recall = _verdict("inception_v3_perfect_recall", found)
    assert recall.verdict == claims.HOLDS and "recall 0.996 to 1.000" in recall.read
    found["mask_detection"]["inception_v3_fid_finetuned_cv_recall_ci_low"] = 0.98
    assert _verdict("inception_v3_perfect_recall", found).verdict == claims.INCONCLUSIVE


def test_the_transfer_card_names_the_networks_compared_the_winner_and_the_stand_ins():
    note = _verdict("transfer_995", _networks()).note
    assert "Networks compared over the grouped folds: InceptionV3 (Google's 2015 weights), " in note
    assert "VGG16 (torchvision's weights), fine-tuned 96.8%" in note
    assert "ResNet50: not measured, no ImageNet weights reachable offline" in note
    assert "Chosen on validation: EfficientNet-Lite0, fine-tuned" in note
    assert "EfficientNet-Lite0, added by the book" in note


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ({}, "saved no cross-validated row for InceptionV3 (Google's 2015 weights)"),
        ({"inception_v3_fid_available": False}, "weights (InceptionV3 (Google's 2015"),
    ],
)
def test_absent_network_keys_say_not_measured_and_why(extra, why):
    found = {"mask_detection": {"best_model": "efficientnet_lite0", **extra}}
    for claim_id in ("inception_v3_995", "inception_v3_perfect_recall"):
        verdict = _verdict(claim_id, found)
        assert verdict.verdict == claims.NOT_MEASURED and why in verdict.note


@pytest.mark.parametrize(
    ("saving", "low", "high", "expected"),
    [
        (0.35, 0.28, 0.45, claims.HOLDS),  # 27% is the claim less its margin
        (0.32, 0.20, 0.45, claims.INCONCLUSIVE),
        (0.12, 0.05, 0.2, claims.FAILS),
    ],
)
def test_active_learning_rule(saving, low, high, expected):
    verdict = _verdict("active_learning_30", _active(saving, low, high))
    assert verdict.verdict == expected and verdict.adequate
    assert verdict.measured.startswith("margin sampling")


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ({"al_reported_repeat_count": 5}, "5 repeats, fewer than 10"),
        ({"al_reported_repeat_count": None}, "same repeats that report its saving"),
        ({"selected_on": None}, "not recorded as chosen on validation"),
        ({"al_budget_labels": 100, "labels_to_target_random": 42.3}, "with 42 labels"),
    ],
)
def test_active_learning_inadequate_is_untested(extra, why):
    verdict = _verdict("active_learning_30", _active(0.02, -0.05, 0.1, **extra))
    assert verdict.verdict == claims.UNTESTED and why in verdict.note


def test_active_learning_accepts_more_repeats_and_reports_the_saving_by_target():
    found = _active(0.35, 0.28, 0.45, al_repeats=50, al_reported_repeat_count=40)
    found["active_learning"]["label_saving_vs_random_margin_at_0.97"] = 0.1
    found["active_learning"]["label_saving_vs_random_margin_at_0.99"] = 0.6
    verdict = _verdict("active_learning_30", found)
    assert verdict.verdict == claims.HOLDS
    assert "10.0% at a target of 0.97, 60.0% at a target of 0.99" in verdict.note
    assert verdict.budget["repeats"] == 40 and verdict.budget["selection_repeats"] == 10


def test_methods_are_reproduced_not_held():
    lrs = {"optimization": {"lr_min": 0.001, "lr_max": 0.6, "lr_values": 8}}
    assert _verdict("learning_rate_range", lrs).verdict == claims.REPRODUCED
    lrs["optimization"]["lr_max"] = 0.1
    assert _verdict("learning_rate_range", lrs).verdict == claims.NOT_REPRODUCED
    found = {
        "conformal": {
            "coverage_guarantee_holds": True,
            "resplits": 200,
            "coverage_lac_a0.1": 0.905,
            "coverage_aps_a0.05": 0.949,
        }
    }
    verdict = _verdict("conformal_coverage", found)
    assert verdict.verdict == claims.REPRODUCED
    assert "-0.10 points" in verdict.measured and "APS at α = 0.05" in verdict.measured
    assert "coverage_" not in verdict.measured


FUTURE = {
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


def test_checks_that_hold_by_construction_are_untested_not_evidence():
    found = {"future_work": dict(FUTURE)}
    fl = _verdict("federated_learning", found)
    assert fl.verdict == claims.UNTESTED and fl.adequate is False
    assert "Method check, not evidence: FedAvg over IID clients comes within 1 point" in fl.note
    assert "FedProx 92.0%" in fl.note and "image source or camera" in fl.note
    found["future_work"]["fedavg_accuracy_iid"] = 0.9
    worse = _verdict("federated_learning", found)
    assert worse.verdict == claims.UNTESTED and "does not come within 1 point" in worse.note
    fit = _verdict("mask_fit", found)
    assert fit.verdict == claims.UNTESTED and "nose exposed" in fit.note
    assert "generator it was trained on" in fit.note and "real faces" in fit.note


def test_mask_fit_is_judged_on_real_faces_when_the_real_photo_chapter_saved_them():
    real = {"fit_real_accuracy": 0.7, "fit_real_accuracy_ci_low": 0.62,
            "fit_real_accuracy_ci_high": 0.78, "fit_real_n": 120}  # fmt: skip
    found = {"future_work": dict(FUTURE), "real_photos": real}
    verdict = _verdict("mask_fit", found)
    assert verdict.verdict == claims.REPRODUCED and "on 120 real faces" in verdict.measured
    real["fit_real_accuracy_ci_low"] = 0.45
    assert _verdict("mask_fit", found).verdict == claims.NOT_REPRODUCED


def test_every_accuracy_card_shows_the_external_test_beside_the_in_domain_figure():
    found = {**_custom_cnn(0.955, 0.975), **EXTERNAL}
    found["mask_detection"].update(_networks()["mask_detection"])
    rows = {row["id"]: row for row in claims.evaluate(found)}
    for claim_id in ("custom_cnn_96", "inception_v3_995", "mobilenet_v2_991", "transfer_995"):
        external = rows[claim_id]["external"]
        assert external.startswith("91.2% (95% CI 88.0%-94.0%) on 321 face crops"), claim_id
        assert "at least 32 px wide" in external
        assert "shipped classifier (EfficientNet-Lite0, fine-tuned)" in external
    assert rows["cnn_beats_ann"]["external"] == ""
    # the external test is shown beside, never judged: the verdict is the in-domain one
    assert rows["custom_cnn_96"]["verdict"] == claims.HOLDS


def test_absent_external_test_says_not_measured_on_every_accuracy_card():
    rows = {row["id"]: row for row in claims.evaluate(_custom_cnn(0.955, 0.975))}
    for claim_id in ("custom_cnn_96", "inception_v3_995", "mobilenet_v2_991", "transfer_995"):
        assert rows[claim_id]["external"].startswith("not measured"), claim_id


def test_summary_counts_each_claim_once_and_lists_methods_apart():
    found = {**_networks(), "conformal": {"coverage_guarantee_holds": True}}
    rows = claims.evaluate(found)
    text = claims.summary(rows)
    # inception_v3_995, mobilenet, custom CNN, CNN vs ANN, BatchNorm, active learning: 6 claims;
    # the transfer card and perfect recall restate InceptionV3's numbers
    assert text.startswith(
        "Of 6 empirical claims, 1 hold, 1 are inconclusive and 4 are not measured."
    )
    assert "2 more cards restate" in text and "1 of them reproduced" in text


def test_no_rule_fails_without_an_adequate_experiment():
    found = {
        **_fundamentals({32: (0.5, -2.0, 3.0)}, cnn_ann_seeds=1),
        **_optimization("l2", -0.05, -0.02, reg_unregularized_gap=0.0),
        **_custom_cnn(0.5, 0.6, custom_cnn_accuracy_seeds=1),
        **_active(0.0, -0.1, 0.05, al_reported_repeat_count=1),
    }
    for row in claims.evaluate(found):
        assert not (row["verdict"] == claims.FAILS and not row["adequate"]), row["id"]


def test_write_puts_every_field_in_claims_json(tmp_path):
    results.save(tmp_path, "optimization", _optimization("l2", -0.05, -0.02)["optimization"])
    rows = claims.write(tmp_path)
    stored = json.loads((tmp_path / "claims.json").read_text())
    assert stored == json.loads(json.dumps(rows))
    fields = {"id", "text", "chapter", "measured", "verdict", "margin", "evidence", "read",
              "external", "counted_with", "rule", "budget", "adequate", "note"}  # fmt: skip
    assert all(fields <= set(row) for row in stored)
    bn = next(row for row in stored if row["id"] == "batchnorm_best")
    assert bn["verdict"] == claims.FAILS and bn["adequate"] is True
    assert bn["margin"] == "±1 point" and bn["evidence"] == "training seeds, at least 10"
    assert bn["budget"] == {"images": 600, "pixels": 32, "epoch_cap": 80, "seeds": 10}


def test_sentence_and_human_wording():
    text = claims.sentence("batchnorm_best", _optimization("batchnorm", 0.005, 0.03))
    assert text.startswith("The dissertation's claim \"BatchNorm was the most effective")
    assert "holds here" in text
    assert claims.human("coverage_lac_a0.1") == "LAC at α = 0.1"
    assert claims.human("efficientnet_lite0_finetuned") == "EfficientNet-Lite0, fine-tuned"
    assert (
        claims.human("vgg16_torchvision_finetuned") == "VGG16 (torchvision's weights), fine-tuned"
    )
    assert claims.human("something_new") == "something new"


def test_results_save_rejects_nested_values(tmp_path):
    with pytest.raises(ValueError, match="'bad'"):
        results.save(tmp_path, "x", {"bad": [1, 2]})
    results.save(tmp_path, "x", {"a": 1})
    results.save(tmp_path, "x", {"b": float("nan")})
    assert results.load(tmp_path, "x") == {"a": 1, "b": None}


def test_cards_show_the_declared_margin_the_interval_read_and_the_external_test():
    from dlbook.plots import book

    found = {**_custom_cnn(0.955, 0.975), **EXTERNAL}
    rows = claims.evaluate(found)
    html = book.claim_cards(rows, kinds=[claims.FINDING]).data
    assert (
        "<dt>Declared</dt><dd>margin ±1 point; evidence: training seeds, at least 10</dd>" in html
    )
    assert "<dt>Rule read</dt><dd>accuracy 95.5% to 97.5%, against 96.0% less its margin" in html
    assert html.count("<dt>External test</dt><dd>91.2% (95% CI 88.0%-94.0%)") == 4
    assert html.count("<dt>External test</dt><dd>not measured") == 0
    assert "Counted once, with the claim “InceptionV3 transfer learning: 99.5%" in html
    bare = book.claim_cards(claims.evaluate({}), kinds=[claims.FINDING]).data
    assert bare.count("<dt>External test</dt><dd>not measured: the real-photo chapter") == 4


def test_the_page_prints_the_rule_table_once_in_the_house_format():
    from dlbook.plots import book

    html = book.rule_table(claims.RULE_TABLE).to_html()
    for verdict, when in claims.RULE_TABLE:
        assert f">{verdict}</td>" in html and when in html
