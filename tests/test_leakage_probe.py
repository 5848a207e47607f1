"""The leakage probe: nearest neighbours, the hash sweep and near-versus-far accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from dlbook.methods import leakage_probe as probe


def planted():
    """Train features, and test features whose first 5 rows are near-copies of train rows 10-14."""
    rng = np.random.default_rng(0)
    train = rng.normal(size=(100, 16))
    test = rng.normal(size=(40, 16))
    test[:5] = train[10:15] + 1e-3 * rng.normal(size=(5, 16))
    return train, test


def test_nearest_neighbours_find_the_planted_copies_and_agree_with_brute_force():
    train, test = planted()
    distance, index = probe.nearest_train_neighbours(test, train, chunk=7)
    assert list(index[:5]) == [10, 11, 12, 13, 14] and distance[:5].max() < 1e-4
    assert distance[5:].min() > 0.05
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    brute = 1 - unit(test) @ unit(train).T
    np.testing.assert_allclose(distance, brute.min(axis=1), atol=1e-12)
    with pytest.raises(ValueError, match="feature space"):
        probe.nearest_train_neighbours(test[:, :8], train)


def test_hamming_sweep_counts_test_items_within_each_threshold():
    rng = np.random.default_rng(1)
    train = rng.random((30, 64)) < 0.5
    test = rng.random((10, 64)) < 0.5
    test[0] = train[3]  # an exact copy
    test[1] = train[4]
    test[1, :3] ^= True  # three bits away
    closest = probe.min_hamming_distances(test, train)
    brute = (test[:, None, :] != train[None, :, :]).sum(-1).min(1)
    np.testing.assert_array_equal(closest, brute)
    assert closest[0] == 0 and closest[1] <= 3
    sweep = probe.hash_threshold_sweep(test, train, thresholds=(4, 0, 2))
    assert list(sweep["threshold"]) == [0, 2, 4]
    assert sweep["test_items_within"].is_monotonic_increasing
    assert sweep.loc[0, "test_items_within"] >= 1 and sweep.loc[2, "test_items_within"] >= 2


def test_near_far_accuracy_shows_leakage_when_near_items_are_the_easy_ones():
    distance = np.arange(10, dtype=float)
    correct = np.array([1, 1, 1, 0, 1, 0, 1, 0, 0, 1], dtype=bool)
    out = probe.near_far_accuracy(distance, correct, near_share=0.3)
    assert out["near_items"] == 3 and out["far_items"] == 7
    assert out["near_accuracy"] == 1.0 and out["far_accuracy"] == pytest.approx(3 / 7)
    assert out["near_minus_far"] == pytest.approx(4 / 7) and out["near_distance_max"] == 2.0
    with pytest.raises(ValueError, match="near_share"):
        probe.near_far_accuracy(distance, correct, near_share=1.0)


def test_the_whole_probe_ties_the_parts_together():
    train, test = planted()
    rng = np.random.default_rng(2)
    train_hashes, test_hashes = rng.random((100, 64)) < 0.5, rng.random((40, 64)) < 0.5
    test_hashes[:5] = train_hashes[10:15]
    correct = np.ones(40, dtype=bool)
    correct[20:] = False
    out = probe.leakage_probe(test, train, correct, test_hashes, train_hashes, near_share=5 / 40)
    assert out["accuracy"]["near_accuracy"] == 1.0  # the planted copies are the near items
    assert out["sweep"].loc[0, "test_items_within"] >= 5
    assert list(out["neighbour"][:5]) == [10, 11, 12, 13, 14]
