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
    (low, high)
    """
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array")
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"arrays must share their first dimension; got {[len(a) for a in arrays]}")
    if n_boot < 1:
        raise ValueError(f"n_boot={n_boot!r} must be a positive integer")
    if not 0 < level < 1:
        raise ValueError(f"level={level!r} must lie strictly between 0 and 1")
    rng = np.random.default_rng(seed)
    arrays = [np.asarray(a) for a in arrays]
    values = np.array(
        [statistic(*(a[idx] for a in arrays)) for idx in rng.integers(0, n, size=(n_boot, n))]
    )
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)
