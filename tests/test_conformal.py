"""Split conformal classification: quantile, scores, sets, coverage, Mondrian, MAPIE agreement."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dlbook.core import results
from dlbook.methods import conformal


def exchangeable_data(n, n_classes=3, seed=0):
    """Probabilities from a Dirichlet and labels drawn from them: calibrated and exchangeable."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(n_classes) * 0.7, size=n)
    labels = (rng.random(n)[:, None] > np.cumsum(probs, axis=1)).sum(axis=1)
    return probs, np.minimum(labels, n_classes - 1)


@pytest.mark.parametrize(
    ("n", "alpha", "rank"),
    [(9, 0.1, 9), (10, 0.1, 10), (19, 0.1, 18), (99, 0.05, 95), (4, 0.2, 4), (100, 0.5, 51)],
)
def test_conformal_rank_hand_computed(n, alpha, rank):
    assert conformal.conformal_rank(n, alpha) == rank


def test_quantile_is_the_rank_th_smallest_score():
    scores = np.array([0.7, 0.1, 0.4, 0.9, 0.2, 0.3, 0.8, 0.5, 0.6, 0.0])  # 0.0 .. 0.9
    # n = 10, alpha = 0.2: ceil(11 * 0.8) = ceil(8.8) = 9 -> the 9th smallest is 0.8.
    assert conformal.calibrate(scores, 0.2) == 0.8
    # alpha = 0.5: ceil(5.5) = 6 -> 0.5.
    assert conformal.calibrate(scores, 0.5) == 0.5
    level = np.ceil(11 * 0.5) / 10
    assert conformal.calibrate(scores, 0.5) == np.quantile(scores, level, method="inverted_cdf")
    # numpy's "higher" at the same level picks the next order statistic (more conservative).
    assert np.quantile(scores, level, method="higher") == 0.6


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5])
def test_alpha_outside_unit_interval_raises(alpha):
    with pytest.raises(ValueError, match="between 0 and 1"):
        conformal.calibrate(np.arange(50.0), alpha)


def test_alpha_too_small_for_calibration_size_raises():
    with pytest.raises(ValueError, match="too small for 19 calibration scores"):
        conformal.calibrate(np.arange(19.0), 0.04)  # needs alpha >= 1/20
    assert conformal.calibrate(np.arange(19.0), 0.05) == 18.0


def test_mondrian_alpha_too_small_for_a_class_raises():
    labels = np.array([0] * 50 + [1] * 5)
    with pytest.raises(ValueError, match="class 1"):
        conformal.calibrate(np.linspace(0, 1, 55), 0.1, labels=labels)


def test_lac_and_aps_scores_by_hand():
    probs = np.array([[0.5, 0.3, 0.2]])
    np.testing.assert_allclose(conformal.label_scores(probs, "lac"), [[0.5, 0.7, 0.8]])
    np.testing.assert_allclose(conformal.label_scores(probs, "aps"), [[0.5, 0.8, 1.0]])
    np.testing.assert_allclose(
        conformal.label_scores(probs, "aps_rand", u=np.array([0.5])), [[0.25, 0.65, 0.9]]
    )
    # RAPS with k_reg = 1 charges lam per label beyond the first.
    np.testing.assert_allclose(
        conformal.label_scores(probs, "raps", lam=0.1, k_reg=1), [[0.5, 0.9, 1.2]]
    )


@pytest.mark.parametrize(
    ("method", "mondrian"),
    [("lac", False), ("aps", False), ("aps_rand", False), ("raps", False), ("lac", True)],
)
@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.2])
def test_coverage_at_least_target_over_many_resplits(method, mondrian, alpha):
    # Fresh exchangeable data for every re-split would be the textbook setting; re-splits of one
    # pool are exchangeable too, so the expected coverage over them is >= 1 - alpha exactly.
    probs, labels = exchangeable_data(1000, seed=3)
    out = conformal.resplit_evaluate(
        probs, labels, alpha, method, mondrian=mondrian, n_cal=400, n_resplits=400, seed=1
    )
    se = out["coverage"].std(ddof=1) / np.sqrt(400)
    assert out["coverage"].mean() >= 1 - alpha - 3 * se
    # ... and for continuous scores not far above it: at most 1 - alpha + 1/(n+1) in expectation.
    if method in ("lac", "aps_rand"):
        assert out["coverage"].mean() <= 1 - alpha + 1 / 401 + 3 * se + 0.002


def test_resplit_matches_calibrate_and_predict_sets():
    probs, labels = exchangeable_data(300, seed=5)
    out = conformal.resplit_evaluate(probs, labels, 0.1, "raps", n_cal=120, n_resplits=3, seed=2)
    perm = conformal.resplit_indices(300, 120, 3, seed=2)
    for r in range(3):
        cal, test = perm[r, :120], perm[r, 120:]
        q = conformal.calibrate(conformal.true_label_scores(probs[cal], labels[cal], "raps"), 0.1)
        sets = conformal.predict_sets(probs[test], q, "raps")
        covered = sets[np.arange(len(test)), labels[test]]
        assert covered.mean() == pytest.approx(out["coverage"][r])
        assert sets.sum(axis=1).mean() == pytest.approx(out["set_size"][r])


def test_aps_sets_nested_in_alpha():
    probs, labels = exchangeable_data(600, seed=7)
    u = np.random.default_rng(0).random(300)
    for method, kwargs in (("aps", {}), ("aps_rand", {"u": u[:150]})):
        cal_kwargs = {"u": u[150:]} if method == "aps_rand" else {}
        scores = conformal.true_label_scores(probs[:150], labels[:150], method, **cal_kwargs)
        previous = None
        for alpha in (0.3, 0.2, 0.1, 0.05, 0.02):
            sets = conformal.predict_sets(
                probs[450:], conformal.calibrate(scores, alpha), method, **kwargs
            )
            if previous is not None:
                assert np.all(sets >= previous), f"{method}: alpha={alpha} set lost a label"
            previous = sets


def test_deterministic_aps_sets_are_never_empty_with_last_label():
    probs, labels = exchangeable_data(400, seed=8)
    q = conformal.calibrate(conformal.true_label_scores(probs[:200], labels[:200], "aps"), 0.3)
    assert conformal.predict_sets(probs[200:], q, "aps").sum(axis=1).min() >= 1


def test_mondrian_fixes_the_under_covered_class():
    # Class 1 is rarer and harder: its true-label probabilities are lower, so a single threshold
    # fitted mostly on class 0 under-covers it; per-class thresholds cover both.
    rng = np.random.default_rng(4)
    n = 4000
    labels = (rng.random(n) < 0.3).astype(int)
    p_true = np.where(labels == 0, rng.beta(8, 1, n), rng.beta(2, 1, n))
    probs = conformal.binary_probs(np.where(labels == 1, p_true, 1 - p_true))
    alpha = 0.1
    marginal = conformal.resplit_evaluate(probs, labels, alpha, "lac", n_resplits=100, seed=0)
    mondrian = conformal.resplit_evaluate(
        probs, labels, alpha, "lac", mondrian=True, n_resplits=100, seed=0
    )
    assert marginal["class_coverage"][:, 1].mean() < 1 - alpha - 0.03
    assert mondrian["class_coverage"][:, 0].mean() >= 1 - alpha - 0.01
    assert mondrian["class_coverage"][:, 1].mean() >= 1 - alpha - 0.01


def test_mondrian_calibrate_uses_each_class_alone():
    scores = np.array([0.1, 0.2, 0.3, 0.9, 0.8, 0.7])
    labels = np.array([0, 0, 0, 1, 1, 1])
    # n = 3 per class, alpha = 0.25: ceil(4 * 0.75) = 3 -> each class's maximum.
    np.testing.assert_allclose(conformal.calibrate(scores, 0.25, labels=labels), [0.3, 0.9])


def test_predict_sets_validates_thresholds_shape():
    with pytest.raises(ValueError, match="thresholds"):
        conformal.predict_sets(np.full((4, 3), 1 / 3), np.zeros(2))


def test_agrees_with_mapie_lac_on_binary_data():
    pytest.importorskip("mapie")
    from dlbook.experiments.conformal_studies import mapie_comparison

    probs, labels = exchangeable_data(600, n_classes=2, seed=11)
    table = mapie_comparison(probs[:300], labels[:300], probs[300:], [0.05, 0.1, 0.2])
    assert table["threshold_abs_diff"].max() < 1e-12
    assert table["sets_differing"].sum() == 0


def test_mapie_tolerance_explains_set_differences_for_a_confident_model():
    pytest.importorskip("mapie")
    from dlbook.experiments.conformal_studies import mapie_comparison

    # a model so confident that the wrong label's score 1 - p sits within 1e-8 of the threshold
    rng = np.random.default_rng(5)
    p_true = 1 - rng.uniform(1e-8, 3e-8, size=400)
    labels = np.arange(400) % 2
    probs = np.stack([p_true, 1 - p_true], axis=1)
    probs[labels == 1] = probs[labels == 1, ::-1]
    test = np.array([[1 - 2.5e-8, 2.5e-8]] * 20 + [[0.5, 0.5]] * 5)
    table = mapie_comparison(probs, labels, test, [0.5])
    assert table["sets_differing"].iloc[0] > 0
    assert table["sets_differing_with_mapie_tolerance"].iloc[0] == 0


def test_agrees_with_mapie_aps_on_three_classes():
    pytest.importorskip("mapie")
    from dlbook.experiments.conformal_studies import mapie_sets

    probs, labels = exchangeable_data(600, n_classes=3, seed=12)
    alphas = [0.1, 0.2]
    thresholds, sets, mapie_scores = mapie_sets(
        probs[:300], labels[:300], probs[300:], alphas, "aps"
    )
    # MAPIE's randomised APS score is mass_through - U p_y: ours with u = 1 - U.
    u = 1 - np.random.RandomState(0).uniform(size=300)
    ours = conformal.true_label_scores(probs[:300], labels[:300], "aps_rand", u=u)
    np.testing.assert_allclose(ours, mapie_scores, atol=1e-12)
    for j, alpha in enumerate(alphas):
        q = conformal.calibrate(ours, alpha)
        assert q == pytest.approx(thresholds[j], abs=1e-12)
        mine = conformal.predict_sets(probs[300:], q, "aps", include_last_label=True)
        assert np.array_equal(mine, sets[:, :, j])


def test_study_keys_and_guarantee_verdict_on_a_calibrated_model():
    from dlbook.experiments.conformal_models import ModelProbs
    from dlbook.experiments.conformal_studies import coverage_study, guarantee_check, result_keys

    probs, labels = exchangeable_data(800, n_classes=2, seed=13)
    model = ModelProbs("toy", probs[:, 1], labels, np.array(["calib"] * 800), "test")
    table, draws = coverage_study(model, [0.05, 0.1], n_resplits=200, seed=0)
    keys = result_keys(table)
    assert "coverage_lac_a0.05" in keys and "class_coverage_min_mondrian_lac_a0.1" in keys
    assert draws[("aps_rand", 0.1)].shape == (200,)
    tolerance, holds = guarantee_check(table)
    assert 0 < tolerance < 0.02 and holds
    # A table whose coverage falls short of its target beyond the tolerance fails the check.
    broken = table.assign(coverage=table["coverage"] - 0.05)
    assert not guarantee_check(broken)[1]


def test_chapter4_probabilities_are_read_and_pooled(tmp_path):
    from dlbook.experiments.conformal_models import chapter4_models

    rng = np.random.default_rng(0)
    split = np.array(["train"] * 10 + ["val"] * 10 + ["calib"] * 10 + ["test"] * 10)
    labels = rng.integers(0, 2, 40)
    good = np.where(labels == 1, 0.9, 0.1)
    np.savez(
        tmp_path / "mask_probs.npz",
        paths=np.array([f"img{i}.jpg" for i in range(40)]),
        labels=labels,
        split=split,
        models=np.array(["custom_cnn", "efficientnet_lite0"]),
        probs__custom_cnn=np.full(40, 0.5),
        probs__efficientnet_lite0=good,
    )
    models = chapter4_models(tmp_path / "mask_probs.npz")
    strong = models["efficientnet_lite0"]
    assert len(strong.labels) == 20 and set(strong.split) == {"calib", "test"}
    assert strong.extra["val_accuracy"] == 1.0 and strong.accuracy == 1.0
    np.testing.assert_allclose(strong.probs.sum(axis=1), 1.0)


def _study(seed=13):
    from dlbook.experiments.conformal_models import ModelProbs
    from dlbook.experiments.conformal_studies import coverage_study, guarantee_check

    probs, labels = exchangeable_data(600, n_classes=2, seed=seed)
    best = ModelProbs("good", probs[:, 1], labels, np.array(["calib"] * 600), "test")
    weak = ModelProbs("flat", np.full(600, 0.5), labels, np.array(["calib"] * 600), "test")
    table, draws = coverage_study(best, [0.05, 0.1], n_resplits=100, seed=0)
    weak_table, _ = coverage_study(weak, [0.05, 0.1], n_resplits=100, seed=0)
    return best, weak, table, weak_table, draws, guarantee_check(pd.concat([table, weak_table]))


def test_worst_gap_names_the_method_and_alpha_furthest_below_target():
    from dlbook.experiments.conformal_studies import worst_gap

    table = pd.DataFrame(
        {
            "method": ["lac", "aps", "lac"],
            "alpha": [0.1, 0.1, 0.2],
            "target": [0.9, 0.9, 0.8],
            "coverage": [0.91, 0.899, 0.85],
        }
    )
    assert worst_gap(table) == {"gap": pytest.approx(-0.001), "method": "aps", "alpha": 0.1}


def test_class_coverage_summary_collapses_to_one_row_per_model_and_method():
    from dlbook.experiments import conformal as cf

    best, weak, table, weak_table, draws, (tolerance, holds) = _study()
    found = cf.Coverage(table, weak_table, draws, tolerance, holds, 600)
    summary = cf.class_coverage_summary(found, ("good", "flat"))
    assert len(summary) == 2 * table["method"].nunique()
    gaps = table.groupby("method")["class_coverage_min"].min() - 0.95  # smallest target at 0.05
    row = summary[(summary.model == "good") & (summary.method == "lac")].iloc[0]
    assert row["worst class: coverage minus target"] <= 100 * (gaps["lac"] + 0.05) + 1e-9
    text = cf.story_class_coverage(found, ("good", "flat"))
    assert "Mondrian calibration" in text and "points" in text
    html = cf.class_coverage_table(found, ("good", "flat")).to_html()
    assert "nan" not in html.lower() and "None" not in html


def test_coverage_story_quotes_the_claims_sentence_and_never_its_own_verdict():
    from dlbook.book import claims
    from dlbook.experiments import conformal as cf

    keys = {
        "coverage_guarantee_holds": True,
        "resplits": 500,
        "pool_size": 1200,
        "coverage_mc_tolerance": 0.004,
        "weak_coverage_worst_gap": -0.001,
        "weak_coverage_worst_gap_method": "raps",
        "weak_coverage_worst_gap_alpha": 0.05,
        "coverage_lac_a0.1": 0.9001,
    }
    by_chapter = {"conformal": keys}
    text = cf.story_coverage(keys, by_chapter)
    assert text.endswith(claims.sentence("conformal_coverage", by_chapter))
    assert "keeps its mean coverage above" in text and "-0.10 points (raps, alpha = 0.05)" in text
    failing = cf.story_coverage({**keys, "coverage_guarantee_holds": False}, by_chapter)
    assert "does **not** keep" in failing


def test_mapie_story_says_identical_rather_than_a_zero_in_e_notation():
    from dlbook.experiments.conformal import story_mapie

    same = pd.DataFrame(
        {
            "threshold_abs_diff": [0.0, 0.0],
            "sets_differing": [0, 0],
            "sets_differing_with_mapie_tolerance": [0, 0],
            "test_points": [600, 600],
        }
    )
    assert story_mapie(same).startswith("The thresholds are identical, and so are all 600")
    assert "e+00" not in story_mapie(same)
    differ = same.assign(threshold_abs_diff=[1e-9, 0.0], sets_differing=[3, 0])
    assert "at most 1.00e-09" in story_mapie(differ) and "at most 3" in story_mapie(differ)


def test_quantile_example_matches_the_hand_computation():
    from dlbook.experiments.conformal import quantile_example, story_quantile_example

    example = quantile_example(0.2)
    assert example == {"calibrate": 0.8, "inverted_cdf": 0.8, "higher": pytest.approx(0.9)}
    assert "the next order statistic" in story_quantile_example(example)


def test_efficiency_shift_and_summary_stories_read_the_numbers():
    from dlbook.experiments import conformal as cf

    best, weak, table, weak_table, draws, (tolerance, holds) = _study()
    text = cf.story_efficiency(table, "good", 0.05)
    assert "alpha = 0.05" in text and "singletons" in text
    shift = pd.DataFrame(
        {
            "corruption": ["blur3", "blur3"],
            "calibration": ["clean calibration", "shifted calibration"],
            "alpha": [0.1, 0.1],
            "target": [0.9, 0.9],
            "coverage": [0.7, 0.899],
            "set_size": [0.8, 1.1],
        }
    )
    assert "-20.0 points from its target" in cf.story_shift(shift)
    assert "within 0.1 points" in cf.story_shift(shift)
    summary = cf.story_summary(
        {
            "coverage_guarantee_holds": True,
            "resplits": 500,
            "mapie_sets_differing_with_tolerance": 0,
            "shift_coverage_blur3_clean_a0.1": 0.7,
            "shift_coverage_noise3_clean_a0.1": 0.95,
        }
    )
    assert "held for both" in summary and "equal MAPIE's" in summary and "in 1 of 2" in summary


def test_coverage_table_has_one_column_per_target_and_shows_hundredths_of_a_point():
    from dlbook.experiments.conformal import coverage_table

    table = pd.DataFrame(
        {"method": ["lac", "lac", "aps"], "alpha": [0.05, 0.1, 0.05], "coverage": [0.9488, 0.9, 1]}
    )
    html = coverage_table(table).to_html()
    assert "target 95%" in html and "target 90%" in html and "94.88%" in html
    assert "nan" not in html.lower()


def test_alpha_key_round_trips_and_other_keys_have_no_alpha():
    key = results.alpha_key("shift_coverage_blur3_clean", 0.05)
    assert key == "shift_coverage_blur3_clean_a0.05"
    assert results.key_alpha(key) == ("shift_coverage_blur3_clean", 0.05)
    assert results.key_alpha("weak_set_size_mondrian_lac_a0.1") == (
        "weak_set_size_mondrian_lac",
        0.1,
    )
    for other in ("coverage_guarantee_holds", "review_rate", "coverage_lac_a", "aps_rand"):
        assert results.key_alpha(other) is None


def test_coverage_laws_are_the_beta_binomial_of_the_calibration_rank():
    from dlbook.experiments.conformal_studies import coverage_laws

    law = coverage_laws([0.1], n_cal=99, n_test=50)[0.1]
    # rank 90 of 99: mean coverage 90 / 100, the density integrates to one over the grid
    step = law["coverage"][1] - law["coverage"][0]
    assert np.sum(law["density"]) * step == pytest.approx(1.0, abs=1e-3)
    assert np.sum(law["coverage"] * law["density"]) * step == pytest.approx(0.9, abs=1e-3)
    low, high = law["band"]
    assert low < 0.9 < high and 0 <= low and high <= 1
