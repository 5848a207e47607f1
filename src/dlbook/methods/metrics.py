"""Summary statistics with their uncertainty: means over seeds and bootstrap intervals."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats


def mean_confidence_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``values`` with a Student-t confidence interval.

    Parameters
    ----------
    values : array-like, shape (n,), e.g. one accuracy per seed.
    level : coverage of the interval, in (0, 1).

    Returns
    -------
    (mean, low, high). With a single value the interval collapses to the mean.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("values is empty; need at least one value")
    if not 0 < level < 1:
        raise ValueError(f"level={level!r} must lie strictly between 0 and 1")
    mean = float(values.mean())
    if values.size == 1:
        return mean, mean, mean
    half = stats.t.ppf((1 + level) / 2, df=values.size - 1) * stats.sem(values)
    return mean, float(mean - half), float(mean + half)


def bootstrap_ci(
    statistic: Callable[..., float],
    *arrays,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(*arrays)``, resampling items jointly.

    Parameters
    ----------
    statistic : function of the arrays (e.g. ``accuracy_score(y_true, y_pred)``).
    *arrays : arrays of equal first dimension N, resampled with the same indices.
    n_boot : number of bootstrap resamples.
    level : coverage of the interval, in (0, 1).
    seed : seed of the resampling.

    Returns
    -------
    (low, high); NaN for both when no resample gave a finite value.
    """
    values = bootstrap_samples(statistic, *arrays, n_boot=n_boot, seed=seed)
    return percentile_interval(np.array(values), level)


def bootstrap_samples(statistic: Callable, *arrays, n_boot: int = 1000, seed: int = 0) -> list:
    """``statistic(*resampled arrays)`` for each of ``n_boot`` bootstrap resamples.

    Items are resampled jointly (the same indices in every array), ``n_boot`` draws of N
    indices from one generator seeded with ``seed``. The statistic may return anything, a dict
    of metrics for one.
    """
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array")
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"arrays must share their first dimension; got {[len(a) for a in arrays]}")
    if n_boot < 1:
        raise ValueError(f"n_boot={n_boot!r} must be a positive integer")
    rng = np.random.default_rng(seed)
    arrays = [np.asarray(a) for a in arrays]
    return [statistic(*(a[idx] for a in arrays)) for idx in rng.integers(0, n, size=(n_boot, n))]


def percentile_interval(values, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval of ``values``, NaNs left out (NaN, NaN when
    none is finite)."""
    if not 0 < level < 1:
        raise ValueError(f"level={level!r} must lie strictly between 0 and 1")
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).any():
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _check_binary(labels, probs) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).ravel()
    probs = np.asarray(probs, dtype=np.float64).ravel()
    if labels.shape != probs.shape:
        raise ValueError(f"labels {labels.shape} and probs {probs.shape} must have the same shape")
    if labels.size == 0:
        raise ValueError("labels is empty; need at least one item")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"labels must be 0 or 1; got values {np.unique(labels)[:10]}")
    if np.isnan(probs).any() or probs.min() < 0 or probs.max() > 1:
        raise ValueError("probs must be probabilities in [0, 1] without NaN")
    return labels.astype(np.int64), probs


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the probability a positive outranks a negative (ties count 1/2).

    Returns NaN when only one class is present.
    """
    labels = np.asarray(labels).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = stats.rankdata(scores)
    return float((ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def binary_metrics(labels, probs, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, precision, recall, F1 and ROC-AUC of P(positive) ``probs``.

    Parameters
    ----------
    labels : array-like, shape (N,), 0 or 1 (1 = positive class).
    probs : array-like, shape (N,), float in [0, 1].
    threshold : an item is predicted positive when its probability is at least this.

    Returns
    -------
    dict with keys accuracy, precision, recall, f1, roc_auc (precision is 0 with no positive
    prediction, as in scikit-learn's ``zero_division=0``).
    """
    labels, probs = _check_binary(labels, probs)
    predicted = (probs >= threshold).astype(np.int64)
    tp = int(((predicted == 1) & (labels == 1)).sum())
    fp = int(((predicted == 1) & (labels == 0)).sum())
    fn = int(((predicted == 0) & (labels == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return {
        "accuracy": float((predicted == labels).mean()),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "roc_auc": roc_auc(labels, probs),
    }


def confusion_counts(labels, probs, threshold: float = 0.5) -> np.ndarray:
    """2x2 confusion matrix, rows = true label (0, 1), columns = predicted label, int64."""
    labels, probs = _check_binary(labels, probs)
    predicted = (probs >= threshold).astype(np.int64)
    matrix = np.zeros((2, 2), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def classification_report(
    labels, probs, threshold: float = 0.5, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> dict[str, dict[str, float]]:
    """``binary_metrics`` with percentile-bootstrap intervals (items resampled jointly).

    Returns
    -------
    ``{metric: {"value": v, "ci_low": lo, "ci_high": hi}}`` for accuracy, precision, recall,
    f1 and roc_auc.
    """
    labels, probs = _check_binary(labels, probs)
    point = binary_metrics(labels, probs, threshold)
    samples = bootstrap_samples(
        lambda y, p: binary_metrics(y, p, threshold), labels, probs, n_boot=n_boot, seed=seed
    )
    report = {}
    for name, value in point.items():
        low, high = percentile_interval([s[name] for s in samples], level)
        report[name] = {"value": value, "ci_low": low, "ci_high": high}
    return report


def reliability_curve(labels, probs, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Top-label reliability: accuracy against confidence in equal-width confidence bins.

    The confidence of an item is max(p, 1 - p) and it is correct when its predicted label
    (p >= 0.5) equals its label; bins split [0.5, 1].

    Returns
    -------
    dict of arrays, shape (n_bins,): ``confidence`` (mean in bin, NaN if empty), ``accuracy``
    (NaN if empty), ``count`` (int64), ``edges`` shape (n_bins + 1,).
    """
    labels, probs = _check_binary(labels, probs)
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins={n_bins!r} must be a positive integer")
    confidence = np.maximum(probs, 1 - probs)
    correct = ((probs >= 0.5).astype(np.int64) == labels).astype(np.float64)
    edges = np.linspace(0.5, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, confidence, minlength=n_bins) / count
        accuracy = np.bincount(which, correct, minlength=n_bins) / count
    return {"confidence": mean_conf, "accuracy": accuracy, "count": count, "edges": edges}


def expected_calibration_error(labels, probs, n_bins: int = 10) -> float:
    """Expected calibration error: sum over bins of (share of items) x |accuracy - confidence|."""
    curve = reliability_curve(labels, probs, n_bins)
    filled = curve["count"] > 0
    weights = curve["count"][filled] / curve["count"].sum()
    gaps = np.abs(curve["accuracy"][filled] - curve["confidence"][filled])
    return float((weights * gaps).sum())


# ---------------------------------------------------------------------------------------------
# Cross-validation: metrics per fold, and their mean with an interval over folds


def fold_metrics(labels, probs, folds, threshold: float = 0.5):
    """``binary_metrics`` of each fold's held-out items.

    Parameters
    ----------
    labels : array-like, shape (N,), 0 or 1.
    probs : array-like, shape (N,), out-of-fold P(positive) of every item.
    folds : array-like, shape (N,), int: the fold each item was held out in.

    Returns
    -------
    pandas.DataFrame indexed by fold, one column per metric of ``binary_metrics`` and ``n``
    (held-out items).
    """
    import pandas as pd

    labels, probs = _check_binary(labels, probs)
    folds = np.asarray(folds).ravel()
    if folds.shape != labels.shape:
        raise ValueError(f"folds {folds.shape} and labels {labels.shape} must have the same shape")
    rows = {}
    for fold in np.unique(folds):
        held_out = folds == fold
        rows[int(fold)] = {
            **binary_metrics(labels[held_out], probs[held_out], threshold),
            "n": int(held_out.sum()),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("fold")


def summarise_folds(table, level: float = 0.95) -> dict[str, dict[str, float]]:
    """Mean of each metric over folds with a Student-t interval over the fold values.

    The interval reflects how much the metric moves from one held-out fold to the next (split
    variation); folds share training data, so it is an approximation, not an exact bound. Every
    metric here lies in [0, 1], and so is its interval clipped.

    Returns
    -------
    ``{metric: {"value": mean, "ci_low": lo, "ci_high": hi}}`` for every column but ``n``.
    """
    summary = {}
    for column in table.columns:
        if column == "n":
            continue
        values = table[column].to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            summary[column] = {"value": np.nan, "ci_low": np.nan, "ci_high": np.nan}
            continue
        mean, low, high = mean_confidence_interval(values, level)
        summary[column] = {"value": mean, "ci_low": max(low, 0.0), "ci_high": min(high, 1.0)}
    return summary
