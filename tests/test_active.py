"""Active learning: strategy contracts, the obviously uncertain points, coverage, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from dlbook import active
from dlbook.experiments import active_learning as ex


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
    got = ex.labels_to_target(n, curves, 0.8)
    assert got[0] == pytest.approx(25.0)
    assert got[1] == pytest.approx(10.0)
    assert np.isnan(got[2])


def test_summary_gives_zero_saving_for_random_and_a_positive_one_for_a_faster_curve():
    n = np.array([10, 20, 30, 40])
    rng = np.random.default_rng(0)
    slow = np.array([0.6, 0.7, 0.8, 0.9]) + rng.normal(0, 0.005, (8, 4))
    fast = np.array([0.8, 0.9, 0.9, 0.9]) + rng.normal(0, 0.005, (8, 4))
    curves = {
        "n_labels": n,
        "accuracy": {"random": slow, "margin": fast},
        "seconds": {"random": 0.0, "margin": 0.0},
    }
    summary = ex.summarise(curves, target=0.85, n_boot=200)
    assert summary.loc["random", "label_saving_vs_random"] == 0
    saving = summary.loc["margin", "label_saving_vs_random"]
    assert saving == pytest.approx(1 - 15 / 35, abs=0.05)
    assert (
        summary.loc["margin", "label_saving_ci_low"]
        <= saving
        <= summary.loc["margin", "label_saving_ci_high"]
    )
    assert ex.best_strategy(summary) == "margin"
    keys = ex.result_keys(summary, 0.85, 8)
    assert keys["best_strategy"] == "margin"
    assert "label_saving_vs_random_ci_low_margin" in keys


def test_active_learning_beats_random_on_a_synthetic_pool():
    pool = ex.synthetic_pool(n=900, seed=1)
    curves = ex.run_curves(pool, ("random", "margin"), repeats=4, batch_size=10, budget=80)
    aulc = {s: ex.aulc(curves["n_labels"], a).mean() for s, a in curves["accuracy"].items()}
    assert curves["accuracy"]["random"].shape == (4, 8)
    assert aulc["margin"] > aulc["random"]


def test_strategies_match_scikit_activeml():
    pytest.importorskip("skactiveml")
    table = ex.crosscheck_skactiveml(n_trials=2)
    assert (table["mean overlap"] == 1.0).all()


def test_saving_by_target_grows_where_random_flattens_near_the_target():
    n = np.array([10, 20, 30, 40, 50])
    random_curve = np.tile([0.80, 0.90, 0.94, 0.96, 0.97], (6, 1))
    fast_curve = np.tile([0.80, 0.97, 0.98, 0.98, 0.98], (6, 1))
    curves = {
        "n_labels": n,
        "accuracy": {"random": random_curve, "badge": fast_curve},
        "seconds": {"random": 0.0, "badge": 0.0},
    }
    table = ex.saving_by_target(curves, ceiling=1.0, fractions=(0.9, 0.97), n_boot=50)
    saving = table.set_index("target_fraction")["label_saving_vs_random"]
    assert saving[0.9] == pytest.approx(1 - (10 + 10 * 0.1 / 0.17) / 20)
    assert saving[0.97] == pytest.approx(1 - 20 / 50)
