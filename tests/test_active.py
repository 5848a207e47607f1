"""Active learning: strategy contracts, the obviously uncertain points, coverage, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from dlbook.experiments import active_learning as ex
from dlbook.experiments import active_learning_curves as learning_curves
from dlbook.experiments import active_learning_pools as pools
from dlbook.methods import active


@pytest.fixture
def pool():
    from sklearn.datasets import make_blobs

    x, y = make_blobs(300, centers=[[-3, 0], [3, 0]], cluster_std=1.0, random_state=0)
    labelled = np.zeros(len(y), dtype=bool)
    labelled[np.random.default_rng(0).choice(len(y), 20, replace=False)] = True
    return x, y, labelled


def fitted(strategy, x, y, labelled):
    return active.default_model(strategy).fit(x[labelled], y[labelled])


@pytest.mark.parametrize("strategy", sorted(active.STRATEGIES))
def test_strategy_returns_unique_unlabelled_indices_of_the_right_count(strategy, pool):
    x, y, labelled = pool
    model = fitted(strategy, x, y, labelled)
    picked = active.STRATEGIES[strategy](model, x, labelled, 15, np.random.default_rng(1))
    assert len(picked) == 15
    assert len(set(picked.tolist())) == 15
    assert not labelled[picked].any()
    assert np.issubdtype(np.asarray(picked).dtype, np.integer)


@pytest.mark.parametrize("strategy", sorted(active.STRATEGIES))
def test_strategy_rejects_a_batch_larger_than_the_unlabelled_pool(strategy, pool):
    x, y, labelled = pool
    model = fitted(strategy, x, y, labelled)
    with pytest.raises(ValueError, match="batch_size"):
        active.STRATEGIES[strategy](model, x, labelled, 281, np.random.default_rng(0))


@pytest.mark.parametrize("strategy", active.UNCERTAINTY_STRATEGIES)
def test_uncertainty_strategies_pick_the_points_on_the_decision_boundary(strategy, pool):
    x, y, labelled = pool
    # Points planted on the boundary x0 = 0, far from both blobs along x1 only a little.
    x = np.vstack([x, [[0.0, 0.5], [0.0, -0.5], [0.05, 0.0], [-0.05, 0.2]]])
    y = np.concatenate([y, [0, 1, 0, 1]])
    labelled = np.concatenate([labelled, [False] * 4])
    model = fitted(strategy, x, y, labelled)
    picked = active.STRATEGIES[strategy](model, x, labelled, 4, np.random.default_rng(0))
    if strategy == "bald":
        # BALD scores disagreement between bootstrap members, whose boundaries differ in slope
        # too: its picks lie in the gap between the blobs, not necessarily on the planted points.
        assert (np.abs(x[picked, 0]) < 1.5).all()
    else:
        assert set(picked.tolist()) == {300, 301, 302, 303}


def test_binary_least_confidence_margin_and_entropy_agree(pool):
    x, y, labelled = pool
    model = fitted("margin", x, y, labelled)
    batches = [
        set(active.STRATEGIES[s](model, x, labelled, 10, np.random.default_rng(0)).tolist())
        for s in ("least_confidence", "margin", "entropy")
    ]
    assert batches[0] == batches[1] == batches[2]


def test_bald_is_zero_when_the_members_agree_and_positive_when_they_disagree():
    agree = np.tile([[0.5, 0.5]], (4, 1, 1))
    disagree = np.array([[[0.99, 0.01]], [[0.01, 0.99]]])
    assert active.bald_scores(agree)[0] == pytest.approx(0.0, abs=1e-12)
    assert active.bald_scores(disagree)[0] > 0.6


def test_bald_requires_posterior_samples(pool):
    x, y, labelled = pool
    with pytest.raises(ValueError, match="predict_proba_samples"):
        active.bald(fitted("margin", x, y, labelled), x, labelled, 5, np.random.default_rng(0))


def coverage_radius(x, chosen):
    d = ((x[:, None, :] - x[None, chosen, :]) ** 2).sum(-1)
    return np.sqrt(d.min(axis=1)).max()


def test_coreset_covers_the_space_better_than_random():
    x = np.random.default_rng(0).uniform(-1, 1, size=(500, 2))
    labelled = np.zeros(500, dtype=bool)
    labelled[:2] = True
    chosen = active.coreset(None, x, labelled, 30, np.random.default_rng(0))
    radius = coverage_radius(x, np.r_[[0, 1], chosen])
    random_radii = [
        coverage_radius(
            x, np.r_[[0, 1], np.random.default_rng(s).choice(np.arange(2, 500), 30, replace=False)]
        )
        for s in range(20)
    ]
    assert radius < min(random_radii)
    # Greedy k-centre is a 2-approximation: no point lies farther than twice the spacing of picks.
    assert radius < 0.5


def test_gradient_embedding_is_the_logistic_loss_gradient(pool):
    x, y, labelled = pool
    model = fitted("badge", x, y, labelled)
    emb = active.gradient_embedding(model, x[:5])
    coef, intercept = model.decision_weights()
    p = 1 / (1 + np.exp(-(x[:5] @ coef[0] + intercept[0])))
    yhat = (p > 0.5).astype(float)
    np.testing.assert_allclose(emb[:, :2], (p - yhat)[:, None] * x[:5], rtol=1e-6)
    np.testing.assert_allclose(emb[:, 2], p - yhat, rtol=1e-6)


def test_learner_is_deterministic_for_a_seed_and_differs_across_seeds(pool):
    x, y, _ = pool
    runs = [
        active.ActiveLearner("badge", initial_size=6, batch_size=5, budget=31, random_state=s).fit(
            x, y, x, y
        )
        for s in (3, 3, 4)
    ]
    np.testing.assert_array_equal(runs[0].query_order_, runs[1].query_order_)
    np.testing.assert_array_equal(runs[0].accuracy_, runs[1].accuracy_)
    assert not np.array_equal(runs[0].query_order_, runs[2].query_order_)
    assert runs[0].n_labels_.tolist() == [6, 11, 16, 21, 26, 31]
    assert len(set(runs[0].query_order_.tolist())) == 31
    assert runs[0].labelled_mask_.sum() == 31


def test_all_strategies_share_the_seed_set_of_a_repeat(pool):
    x, y, _ = pool
    orders = [
        active.ActiveLearner(s, initial_size=8, batch_size=4, budget=16, random_state=7)
        .fit(x, y)
        .query_order_[:8]
        for s in ("random", "margin", "coreset")
    ]
    assert orders[0].tolist() == orders[1].tolist() == orders[2].tolist()


def test_cold_start_with_one_class_falls_back_to_a_constant_model(pool):
    x, y, _ = pool
    model = active.LogisticModel().fit(x[y == 1][:3], np.ones(3, dtype=int))
    np.testing.assert_array_equal(model.predict_proba(x[:4]), [[0, 1]] * 4)
    learner = active.ActiveLearner("margin", initial_size=0, batch_size=5, budget=20).fit(
        x, y, x, y
    )
    assert learner.n_labels_[0] == 0 and learner.n_labels_[-1] == 20


def test_learner_rejects_bad_arguments(pool):
    x, y, _ = pool
    with pytest.raises(ValueError, match="strategy='nope'"):
        active.ActiveLearner("nope").fit(x, y)
    with pytest.raises(ValueError, match="budget=5"):
        active.ActiveLearner("random", initial_size=10, budget=5).fit(x, y)
    with pytest.raises(ValueError, match="batch_size=0"):
        active.ActiveLearner("random", batch_size=0).fit(x, y)


def test_labels_to_target_interpolates_and_reports_never_as_nan():
    n = np.array([10, 20, 30])
    curves = np.array([[0.5, 0.7, 0.9], [0.95, 0.96, 0.97], [0.5, 0.6, 0.7]])
    got = learning_curves.labels_to_target(n, curves, 0.8)
    assert got[0] == pytest.approx(25.0)
    assert got[1] == pytest.approx(10.0)
    assert np.isnan(got[2])


def _curves(n, by_strategy, split="test"):
    """A curves dict as ``run_curves`` returns it, the same curves on validation and test."""
    return {
        "n_labels": n,
        "accuracy": {"val": by_strategy, "test": by_strategy}
        if split == "both"
        else {split: by_strategy},
        "seconds": {s: 0.0 for s in by_strategy},
    }


def test_summary_gives_zero_saving_for_random_and_a_positive_one_for_a_faster_curve():
    n = np.array([10, 20, 30, 40])
    rng = np.random.default_rng(0)
    slow = np.array([0.6, 0.7, 0.8, 0.9]) + rng.normal(0, 0.005, (8, 4))
    fast = np.array([0.8, 0.9, 0.9, 0.9]) + rng.normal(0, 0.005, (8, 4))
    curves = _curves(n, {"random": slow, "margin": fast}, split="both")
    summary = learning_curves.summarise(curves, target=0.85, split="test", n_boot=200)
    assert summary.loc["random", "label_saving_vs_random"] == 0
    saving = summary.loc["margin", "label_saving_vs_random"]
    assert saving == pytest.approx(1 - 15 / 35, abs=0.05)
    assert (
        summary.loc["margin", "label_saving_ci_low"]
        <= saving
        <= summary.loc["margin", "label_saving_ci_high"]
    )
    val_summary = learning_curves.summarise(curves, target=0.85, split="val", n_boot=200)
    assert learning_curves.best_strategy(val_summary) == "margin"
    keys = learning_curves.result_keys(val_summary, summary, 0.85, 8)
    assert keys["best_strategy"] == "margin"
    assert "label_saving_vs_random_ci_low_margin" in keys
    assert keys["val_label_saving_vs_random_margin"] == pytest.approx(saving)


def test_best_strategy_refuses_a_summary_of_test_curves():
    n = np.array([10, 20])
    curves = _curves(n, {"random": np.full((3, 2), 0.9), "margin": np.full((3, 2), 0.95)})
    with pytest.raises(ValueError, match="validation"):
        learning_curves.best_strategy(
            learning_curves.summarise(curves, target=0.9, split="test", n_boot=10)
        )


def test_the_strategy_is_chosen_on_validation_even_when_test_disagrees():
    n = np.array([10, 20, 30])
    good, poor = np.tile([0.8, 0.95, 0.97], (4, 1)), np.tile([0.7, 0.8, 0.96], (4, 1))
    curves = {
        "n_labels": n,
        "accuracy": {
            "val": {"random": poor, "margin": good, "badge": poor},
            "test": {"random": poor, "margin": poor, "badge": good},
        },
        "seconds": {"random": 0.0, "margin": 0.0, "badge": 0.0},
    }
    val = learning_curves.summarise(curves, 0.9, "val", n_boot=20)
    test = learning_curves.summarise(curves, 0.9, "test", n_boot=20)
    keys = learning_curves.result_keys(val, test, 0.9, 4)
    assert keys["best_strategy"] == "margin"
    assert keys["label_saving_vs_random_margin"] == 0  # the test set scores it as it is


def test_active_learning_beats_random_on_a_synthetic_pool():
    pool = pools.synthetic_pool(n=900, seed=1)
    curves = learning_curves.run_curves(
        pool, ("random", "margin"), repeats=4, batch_size=10, budget=80
    )
    for split in ("val", "test"):
        acc = curves["accuracy"][split]
        aulc = {s: learning_curves.aulc(curves["n_labels"], a).mean() for s, a in acc.items()}
        assert acc["random"].shape == (4, 8)
        assert aulc["margin"] > aulc["random"]


def test_repeats_vary_the_seed_set_and_the_pool_order_and_strategies_share_them():
    pool = pools.synthetic_pool(n=400, seed=2)
    curves = learning_curves.run_curves(
        pool, ("random", "margin"), repeats=3, initial_size=10, budget=20
    )
    seeds = {
        s: [set(order[:10]) for order in curves["query_order"][s]] for s in ("random", "margin")
    }
    assert seeds["random"] == seeds["margin"]  # paired: the same initial labels per repeat
    assert seeds["random"][0] != seeds["random"][1]
    orders = [learning_curves.pool_order(len(pool.y_pool), 0, r) for r in range(2)]
    assert sorted(orders[0]) == list(range(len(pool.y_pool)))
    assert not np.array_equal(orders[0], orders[1])


def test_strategies_match_scikit_activeml():
    pytest.importorskip("skactiveml")
    table = learning_curves.crosscheck_skactiveml(n_trials=2)
    assert (table["mean overlap"] == 1.0).all()


def test_saving_by_target_grows_where_random_flattens_near_the_target():
    n = np.array([10, 20, 30, 40, 50])
    random_curve = np.tile([0.80, 0.90, 0.94, 0.96, 0.97], (6, 1))
    fast_curve = np.tile([0.80, 0.97, 0.98, 0.98, 0.98], (6, 1))
    curves = _curves(n, {"random": random_curve, "badge": fast_curve})
    table = learning_curves.saving_by_target(curves, ceiling=1.0, fractions=(0.9, 0.97), n_boot=50)
    saving = table.set_index("target_fraction")["label_saving_vs_random"]
    assert saving[0.9] == pytest.approx(1 - (10 + 10 * 0.1 / 0.17) / 20)
    assert saving[0.97] == pytest.approx(1 - 20 / 50)


KEYS = {
    "al_pool_size": 3000,
    "al_pool_with_mask_share": 0.5,
    "al_val_size": 400,
    "al_test_size": 600,
    "al_features": "efficientnet_lite0 224px, PCA-64",
    "full_pool_val_accuracy": 0.995,
    "full_pool_accuracy": 0.99,
    "target_fraction": 0.99,
    "target_accuracy": 0.98505,
    "al_budget_labels": 100,
    "selection_repeats": "0-9",
    "reported_repeats": "10-29",
    "best_strategy": "badge",
    "val_labels_to_target_badge": 30.0,
    "val_labels_to_target_random": 50.0,
    "labels_to_target_badge": 35.0,
    "labels_to_target_random": 55.0,
    "reaches_target_badge": True,
    "reaches_target_random": True,
    "label_saving_vs_random_badge": 0.3636,
    "label_saving_vs_random_ci_low_badge": 0.2,
    "label_saving_vs_random_ci_high_badge": 0.5,
    "binary_uncertainty_agreement": 1.0,
    "with_mask_share_at_budget_random": 0.5,
    "with_mask_share_at_budget_coreset": 0.8,
    "label_saving_vs_random_badge_at_0.97": 0.1,
    "label_saving_vs_random_badge_at_0.99": 0.3636,
}


def test_stories_quote_the_results():
    import pandas as pd

    setup = ex.story_setup(KEYS)
    assert "3000 images" in setup and "**98.50%**" in setup and "99.50%" in setup
    comparison = ex.story_comparison(KEYS)
    assert "**badge**" in comparison and "after 30 labels" in comparison
    assert "36.4% (95% CI 20.0%-50.0%)" in comparison and "lower bound" not in comparison
    assert "in 100% of the checks" in comparison
    assert "repeats 0-9" in comparison and "10-29, which chose nothing" in comparison
    table = pd.DataFrame(
        {
            "target_fraction": [0.97, 0.99, 0.97],
            "strategy": ["badge", "badge", "margin"],
            "label_saving_vs_random": [0.1, 0.3636, 0.5],
        }
    )
    by_target = ex.story_by_target(table, "badge")
    assert (
        "10.0% at 97.0%, 36.4% at 99.0%" in by_target and "grows as the target rises" in by_target
    )
    assert "from 50% (random) to 80% (coreset)" in ex.story_class_balance(KEYS)


def test_story_says_when_a_saving_is_only_a_bound_or_not_stated():
    censored = {**KEYS, "reaches_target_random": False, "labels_to_target_random": None}
    assert "lower bound" in ex.story_comparison(censored)
    assert "more than 100 for random" in ex.story_comparison(censored)
    unreached = {**KEYS, "reaches_target_badge": False}
    assert "no saving is stated" in ex.story_comparison(unreached)


def test_verdict_story_is_the_claims_sentence_once():
    from dlbook.book import claims

    by_chapter = {"active_learning": KEYS}
    text = ex.story_verdict(by_chapter)
    sentence = claims.sentence("active_learning_30", by_chapter)
    assert text.startswith(sentence) and text.count(sentence) == 1
    assert "a difference of 20 labels" in text


def test_crosscheck_and_sensitivity_stories():
    import pandas as pd

    table = pd.DataFrame(
        {"strategy": ["margin", "coreset"], "mean overlap": [1.0, 0.9], "trials": [5, 5]}
    )
    assert "90% (coreset)" in ex.story_crosscheck(table) and "margin give" in ex.story_crosscheck(
        table
    )
    sens = pd.DataFrame(
        {
            "initial_size": [2, 2, 2],
            "batch_size": [5, 5, 5],
            "strategy": ["random", "margin", "badge"],
            "aulc": [0.9, 0.92, 0.95],
        }
    )
    assert "seed set 2, batch 5: badge 0.95 against 0.9" in ex.story_sensitivity(sens)


def test_learner_scores_every_eval_set_after_every_round(pool):
    x, y, _ = pool
    learner = active.ActiveLearner("margin", initial_size=10, batch_size=10, budget=30)
    learner.fit(x, y, eval_sets={"held_out": (x[:50], y[:50])})
    assert learner.scores_["held_out"].shape == (3,)
    assert learner.scores_["held_out"][-1] == learner.score(x[:50], y[:50])


def test_curve_bands_are_the_mean_with_a_t_interval_and_collapse_for_one_repeat():
    curves = {
        "n_labels": np.array([10, 20]),
        "accuracy": {"val": {"random": np.array([[0.5, 0.7], [0.7, 0.9]])}},
        "positive_fraction": {"random": np.array([[0.5, np.nan], [0.3, 0.4]])},
    }
    bands = learning_curves.curve_bands(curves)
    mean, low, high = bands["bands"]["val"]["random"]
    np.testing.assert_allclose(mean, [0.6, 0.8])
    # two repeats: t(0.975, 1) = 12.706, sem = 0.1, clipped to [0, 1]
    np.testing.assert_allclose(low, [0.0, 0.0])
    np.testing.assert_allclose(high, [1.0, 1.0])
    assert bands["repeats"] == 2
    one = learning_curves.curve_bands(
        {**curves, "accuracy": {"val": {"random": np.array([[0.5, 0.7]])}}}
    )
    assert all(np.array_equal(x, [0.5, 0.7]) for x in one["bands"]["val"]["random"])
    np.testing.assert_allclose(learning_curves.class_balance(curves)["share"]["random"], [0.4, 0.4])


def test_the_strategy_selection_repeats_and_the_reported_repeats_are_disjoint():
    choose, report = learning_curves.repeat_partition(30, 10)
    assert list(choose) == list(range(10)) and list(report) == list(range(10, 30))
    assert not set(choose) & set(report)
    for bad in (0, 30):
        with pytest.raises(ValueError, match="selection_repeats"):
            learning_curves.repeat_partition(30, bad)
    pool = pools.synthetic_pool(n=400, seed=3)
    comparison = ex.compare(pool, 0.8, ("random", "margin"), 5, 10, 10, 40, selection_repeats=2)
    chosen_on, reported = comparison.selection_curves, comparison.curves
    assert list(chosen_on["repeats"]) == [0, 1] and list(reported["repeats"]) == [2, 3, 4]
    assert reported["accuracy"]["test"]["margin"].shape[0] == 3
    assert comparison.keys["selection_repeats"] == "0-1"
    assert comparison.keys["reported_repeats"] == "2-4"
    # the reported test curves are those of repeats 2-4 of the one run
    full = learning_curves.run_curves(pool, ("random", "margin"), 5, 10, 10, 40)
    np.testing.assert_array_equal(full["accuracy"]["test"]["margin"][2:],
                                  reported["accuracy"]["test"]["margin"])  # fmt: skip


def test_full_feature_pool_keeps_every_dimension_centred_on_the_pool():
    rng = np.random.default_rng(0)
    features = rng.normal(3.0, 2.0, (50, 7))
    fit_rows = np.arange(50) < 30
    z = pools.scale_features(features, fit_rows)
    assert z.shape == (50, 7)
    np.testing.assert_allclose(z[fit_rows].mean(axis=0), 0, atol=1e-12)
    assert z[fit_rows].std() == pytest.approx(1.0)
    # one overall scale: ratios of distances are unchanged
    d = np.linalg.norm(features[0] - features[1]) / np.linalg.norm(features[2] - features[3])
    dz = np.linalg.norm(z[0] - z[1]) / np.linalg.norm(z[2] - z[3])
    assert dz == pytest.approx(d)


def test_distances_to_one_row_equal_the_general_formula_exactly():
    x = np.random.default_rng(0).normal(size=(300, 40))
    to_row = active._DistancesToRow(x)
    for i in (0, 17, 299):
        np.testing.assert_array_equal(to_row(i), active._squared_distances(x, x[i : i + 1])[:, 0])


def test_by_target_table_keeps_close_targets_apart():
    """Targets 98% and 98.5% of the ceiling get a column each (they once both read "98%")."""
    import pandas as pd

    from dlbook.experiments import active_learning as al

    table = pd.DataFrame(
        {
            "strategy": ["margin"] * 3,
            "target_fraction": [0.98, 0.985, 0.99],
            "label_saving_vs_random": [0.1, 0.2, 0.3],
        }
    )
    shown = al.by_target_table(table).data
    assert list(shown.columns) == ["strategy", "target 98%", "target 98.5%", "target 99%"]
    assert list(shown.iloc[0]) == ["margin", "10.0%", "20.0%", "30.0%"]
