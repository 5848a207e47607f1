"""Leakage measured, not re-derived: how close each test item sits to the training set.

A grouped split keeps near-duplicates (by a perceptual hash within some Hamming distance) on one
side. Re-applying the same rule to audit it can only confirm it. This probe measures instead:

- ``nearest_train_neighbours``: each test item's nearest training item in a feature space (the
  backbone's, say), by cosine distance;
- ``hash_threshold_sweep``: how many test items have a training item within each Hamming distance
  of their hash, for a sweep of thresholds around the one the split used;
- ``near_far_accuracy``: the model's accuracy on the test items nearest the training set against
  the rest. Leakage shows as near items scoring higher than far ones.

Pure functions of arrays: no data loading, no model; the caller passes features, hashes and which
test items the model got right.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _unit_rows(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"{name} has shape {x.shape}; expected a non-empty (N, D) array")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"{name} has all-zero rows, which have no direction for cosine distance")
    return x / norms


def nearest_train_neighbours(
    test_features: np.ndarray, train_features: np.ndarray, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Each test item's nearest training item by cosine distance.

    Parameters
    ----------
    test_features : ndarray, shape (M, D), float.
    train_features : ndarray, shape (N, D), float; the same feature space.
    chunk : test rows compared at a time (bounds memory at ``chunk * N`` floats).

    Returns
    -------
    (distance, index): float64 (M,) cosine distances in [0, 2], int64 (M,) training rows.
    """
    test, train = (
        _unit_rows(test_features, "test_features"),
        _unit_rows(train_features, "train_features"),
    )
    if test.shape[1] != train.shape[1]:
        raise ValueError(
            f"test_features have {test.shape[1]} dimensions and train_features {train.shape[1]};"
            " they must share one feature space"
        )
    distance, index = np.empty(len(test)), np.empty(len(test), dtype=np.int64)
    for start in range(0, len(test), chunk):
        similarity = test[start : start + chunk] @ train.T
        best = similarity.argmax(axis=1)
        index[start : start + chunk] = best
        distance[start : start + chunk] = 1.0 - similarity[np.arange(len(best)), best]
    return np.clip(distance, 0.0, 2.0), index


def min_hamming_distances(test_hashes: np.ndarray, train_hashes: np.ndarray) -> np.ndarray:
    """Each test hash's smallest Hamming distance to any training hash.

    Parameters
    ----------
    test_hashes, train_hashes : ndarray, shape (M, B) and (N, B), bool: B-bit hashes.

    Returns
    -------
    int64 (M,).
    """
    test, train = np.asarray(test_hashes, dtype=bool), np.asarray(train_hashes, dtype=bool)
    if test.ndim != 2 or train.ndim != 2 or test.shape[1] != train.shape[1]:
        raise ValueError(
            f"hashes have shapes {test.shape} and {train.shape}; expected (M, B) and (N, B)"
        )
    a, b = test.astype(np.int32), train.astype(np.int32)
    # Bits that differ = ones(a) + ones(b) - 2 * shared ones, for all pairs in one product.
    distances = a.sum(1)[:, None] + b.sum(1)[None, :] - 2 * (a @ b.T)
    return distances.min(axis=1).astype(np.int64)


def hash_threshold_sweep(
    test_hashes: np.ndarray, train_hashes: np.ndarray, thresholds=range(0, 17, 2)
) -> pd.DataFrame:
    """For each Hamming threshold, the test items with a training hash at most that far.

    Returns
    -------
    DataFrame, one row per threshold (ascending): ``threshold``, ``test_items_within``,
    ``share_within`` (of all test items).
    """
    closest = min_hamming_distances(test_hashes, train_hashes)
    rows = [
        {"threshold": int(t), "test_items_within": int(np.sum(closest <= t)),
         "share_within": float(np.mean(closest <= t))}
        for t in sorted(int(t) for t in thresholds)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def near_far_accuracy(distance: np.ndarray, correct: np.ndarray, near_share: float = 0.1) -> dict:
    """Accuracy on the ``near_share`` of test items closest to the training set against the rest.

    Parameters
    ----------
    distance : ndarray, shape (M,): each test item's distance to its nearest training item.
    correct : ndarray, shape (M,), bool: whether the model got each test item right.
    near_share : fraction of test items counted as near, in (0, 1).

    Returns
    -------
    dict: ``near_items``, ``far_items``, ``near_accuracy``, ``far_accuracy``,
    ``near_minus_far`` (accuracy), ``near_distance_max`` (the cut).
    """
    distance, correct = np.asarray(distance, dtype=np.float64), np.asarray(correct, dtype=bool)
    if distance.shape != correct.shape or distance.ndim != 1:
        raise ValueError(
            f"distance {distance.shape} and correct {correct.shape} must be matching (M,) arrays"
        )
    if not 0 < near_share < 1:
        raise ValueError(f"near_share={near_share!r} must lie strictly between 0 and 1")
    if len(distance) < 2:
        raise ValueError("need at least 2 test items to split them into near and far")
    count = max(1, min(len(distance) - 1, round(near_share * len(distance))))
    order = np.argsort(distance, kind="stable")
    near = np.zeros(len(distance), dtype=bool)
    near[order[:count]] = True
    near_accuracy, far_accuracy = float(correct[near].mean()), float(correct[~near].mean())
    return {
        "near_items": int(near.sum()),
        "far_items": int((~near).sum()),
        "near_accuracy": near_accuracy,
        "far_accuracy": far_accuracy,
        "near_minus_far": near_accuracy - far_accuracy,
        "near_distance_max": float(distance[order[count - 1]]),
    }


def leakage_probe(
    test_features: np.ndarray,
    train_features: np.ndarray,
    correct: np.ndarray,
    test_hashes: np.ndarray,
    train_hashes: np.ndarray,
    thresholds=range(0, 17, 2),
    near_share: float = 0.1,
) -> dict:
    """The whole probe: nearest neighbours in feature space, near-versus-far accuracy, and the
    hash-threshold sweep.

    Returns
    -------
    dict with ``distance`` float64 (M,), ``neighbour`` int64 (M,) (``nearest_train_neighbours``),
    ``accuracy`` (``near_far_accuracy``), ``sweep`` (``hash_threshold_sweep``) and
    ``hash_distance`` int64 (M,) (``min_hamming_distances``).
    """
    distance, neighbour = nearest_train_neighbours(test_features, train_features)
    if len(distance) != len(np.asarray(test_hashes)):
        raise ValueError(
            f"test_features has {len(distance)} rows and test_hashes {len(test_hashes)}; one per "
            "test item"
        )
    return {
        "distance": distance,
        "neighbour": neighbour,
        "accuracy": near_far_accuracy(distance, correct, near_share),
        "sweep": hash_threshold_sweep(test_hashes, train_hashes, thresholds),
        "hash_distance": min_hamming_distances(test_hashes, train_hashes),
    }
