"""Split conformal classification from first principles.

Every method here is one *score function* ``s(x, k)``: how strange label ``k`` looks for input
``x`` given the classifier's probabilities. Calibration takes the true labels' scores on held-out
data and returns a threshold ``q``; the prediction set of a new input is ``{k : s(x, k) <= q}``.
Because the true label's score is exchangeable with the calibration scores, the true label is in
the set with probability at least ``1 - alpha`` (Vovk et al. 2005; Angelopoulos & Bates 2021).

Score functions (``SCORES``):

- ``lac``: ``1 - p_k`` (least ambiguous set-valued classifier, Sadinle et al. 2019).
- ``aps``: the probability mass of the labels ranked at or above ``k`` (adaptive prediction sets,
  Romano et al. 2020), deterministic.
- ``aps_rand``: the mass ranked strictly above ``k`` plus ``u * p_k``, with ``u ~ U(0, 1)``, which
  makes the coverage exact rather than conservative.
- ``raps``: APS plus ``lam * max(0, rank_k - k_reg)`` (regularised APS, Angelopoulos et al. 2021),
  which charges for every label beyond the ``k_reg`` most likely ones.

Mondrian (class-conditional) versions calibrate one threshold per class on the calibration points
of that class, so the guarantee holds within each class, not only on average.
"""

from __future__ import annotations

import math

import numpy as np

SCORES = ("lac", "aps", "aps_rand", "raps")
RANDOMISED = ("aps_rand",)


def _check_alpha(alpha) -> float:
    alpha = float(alpha)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha={alpha!r} must lie strictly between 0 and 1 (a miscoverage rate)")
    return alpha


def conformal_rank(n: int, alpha: float) -> int:
    """``ceil((n + 1)(1 - alpha))``: which order statistic of ``n`` calibration scores is the threshold.

    Raises
    ------
    ValueError
        If ``alpha`` is outside (0, 1), or so small for ``n`` that the rank exceeds ``n`` (the
        threshold would be infinite: every set would hold every label). That needs
        ``alpha >= 1 / (n + 1)``.
    """
    alpha = _check_alpha(alpha)
    if n < 1:
        raise ValueError(f"n={n!r} calibration scores; at least one is needed")
    # The small epsilon keeps (n + 1)(1 - alpha) = 90.00000000000001 from becoming 91.
    rank = math.ceil((n + 1) * (1 - alpha) - 1e-9)
    if rank > n:
        raise ValueError(
            f"alpha={alpha!r} is too small for {n} calibration scores: the conformal quantile "
            f"is the ceil((n+1)(1-alpha)) = {rank}-th smallest score, which does not exist; "
            f"use alpha >= 1/(n+1) = {1 / (n + 1):.4g} or more calibration data"
        )
    return max(rank, 1)


def conformal_quantile(scores: np.ndarray, alpha: float) -> float:
    """The ``ceil((n + 1)(1 - alpha))``-th smallest of ``scores``, shape (n,).

    This is the empirical quantile at level ``ceil((n + 1)(1 - alpha)) / n`` read off the
    inverted CDF (``np.quantile(..., method="inverted_cdf")``, equivalently ``"lower"``). The recipe
    often quoted with ``method="higher"`` returns the next order statistic whenever the rank is
    below ``n``: still valid, slightly more conservative.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    rank = conformal_rank(len(scores), alpha)
    return float(np.partition(scores, rank - 1)[rank - 1])


def _check_probs(probs) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"probs must have shape (N, K) with K >= 2 classes; got {probs.shape}")
    if np.any(probs < -1e-9) or np.any(np.abs(probs.sum(axis=1) - 1) > 1e-6):
        raise ValueError("probs must be probabilities: non-negative rows that sum to 1")
    return probs


def binary_probs(p_positive) -> np.ndarray:
    """``(N,)`` probabilities of class 1 -> ``(N, 2)`` float64 rows ``[1 - p, p]``."""
    p = np.clip(np.asarray(p_positive, dtype=np.float64).ravel(), 0.0, 1.0)
    return np.stack([1 - p, p], axis=1)


def label_scores(probs, method="lac", u=None, lam=0.01, k_reg=1) -> np.ndarray:
    """Score of every label of every input: ``s(x_i, k)``.

    Parameters
    ----------
    probs : ndarray, shape (..., N, K), float
        Class probabilities (leading axes, such as re-splits, are broadcast).
    method : one of ``SCORES``.
    u : ndarray, shape (..., N), float in [0, 1)
        The uniform draws of the randomised score, one per input; required for ``aps_rand``.
    lam, k_reg : RAPS's penalty per extra label and the number of labels it leaves free.

    Returns
    -------
    ndarray, shape (..., N, K), float64
    """
    if method not in SCORES:
        raise ValueError(f"method={method!r} is unknown; use one of {SCORES}")
    probs = np.asarray(probs, dtype=np.float64)
    if method == "lac":
        return 1.0 - probs
    # Rank labels by decreasing probability (stable, so ties keep class order).
    order = np.argsort(-probs, axis=-1, kind="stable")
    ranks = np.argsort(order, axis=-1, kind="stable")  # 0 = most likely
    sorted_probs = np.take_along_axis(probs, order, axis=-1)
    mass_through = np.take_along_axis(np.cumsum(sorted_probs, axis=-1), ranks, axis=-1)
    if method == "aps_rand":
        if u is None:
            raise ValueError("method='aps_rand' needs u, the uniform draws, shape (..., N)")
        return mass_through - probs + np.asarray(u, dtype=np.float64)[..., None] * probs
    scores = mass_through
    if method == "raps":
        if lam < 0 or k_reg < 0:
            raise ValueError(f"lam={lam!r} and k_reg={k_reg!r} must be non-negative")
        scores = scores + lam * np.maximum(0, ranks + 1 - k_reg)
    return scores


def true_label_scores(probs, labels, method="lac", u=None, lam=0.01, k_reg=1) -> np.ndarray:
    """``s(x_i, y_i)``, shape (N,) float64: the scores calibration is done on."""
    probs = _check_probs(probs)
    labels = np.asarray(labels)
    if labels.shape != (len(probs),):
        raise ValueError(f"labels must have shape ({len(probs)},); got {labels.shape}")
    if labels.min() < 0 or labels.max() >= probs.shape[1]:
        raise ValueError(f"labels must be class indices in [0, {probs.shape[1]})")
    scores = label_scores(probs, method, u=u, lam=lam, k_reg=k_reg)
    return np.take_along_axis(scores, labels[:, None].astype(np.int64), axis=1)[:, 0]


def calibrate(scores_cal, alpha, labels=None, n_classes=None):
    """Conformal threshold(s) from calibration scores.

    Parameters
    ----------
    scores_cal : ndarray, shape (n,), float
        True-label scores of the calibration points (``true_label_scores``).
    alpha : float in (0, 1), the target miscoverage; needs ``alpha >= 1 / (n + 1)``.
    labels : ndarray, shape (n,), int, optional
        The calibration labels. Given, the calibration is Mondrian (class-conditional): one
        threshold per class, each from that class's scores alone.
    n_classes : int, optional
        Number of classes K for Mondrian calibration (default ``labels.max() + 1``).

    Returns
    -------
    float, or ndarray of shape (K,) float64 when ``labels`` is given.

    Raises
    ------
    ValueError
        If alpha is outside (0, 1), or too small for the number of calibration scores (of
        some class, for Mondrian calibration).
    """
    scores_cal = np.asarray(scores_cal, dtype=np.float64).ravel()
    alpha = _check_alpha(alpha)
    if labels is None:
        return conformal_quantile(scores_cal, alpha)
    labels = np.asarray(labels).ravel()
    if labels.shape != scores_cal.shape:
        raise ValueError(
            f"labels has shape {labels.shape}; it must match scores_cal's {scores_cal.shape}"
        )
    n_classes = int(labels.max()) + 1 if n_classes is None else int(n_classes)
    thresholds = np.empty(n_classes)
    for k in range(n_classes):
        class_scores = scores_cal[labels == k]
        try:
            thresholds[k] = conformal_quantile(class_scores, alpha)
        except ValueError as error:
            raise ValueError(f"Mondrian calibration, class {k}: {error}") from None
    return thresholds


def predict_sets(
    probs,
    thresholds,
    method="lac",
    u=None,
    lam=0.01,
    k_reg=1,
    include_last_label=None,
) -> np.ndarray:
    """Prediction sets ``{k : s(x, k) <= q_k}``.

    Parameters
    ----------
    probs : ndarray, shape (N, K), float
    thresholds : float, or ndarray of shape (K,) (Mondrian: one threshold per class).
    method, u, lam, k_reg : as in ``label_scores``; use the same as for calibration.
    include_last_label : bool or None
        For ``aps``/``raps`` only: also include the label whose score first crosses the
        threshold, so labels are added, most likely first, until their mass reaches ``q`` (Romano
        et al.'s construction; MAPIE's ``include_last_label=True``). It only ever adds labels, so
        coverage stays valid, and the deterministic scores then never give an empty set. None
        (default): on for ``aps`` and ``raps``, off otherwise.

    Returns
    -------
    ndarray, shape (N, K), bool
    """
    probs = _check_probs(probs)
    q = np.asarray(thresholds, dtype=np.float64)
    if q.ndim not in (0, 1) or (q.ndim == 1 and q.shape != (probs.shape[1],)):
        raise ValueError(
            f"thresholds must be a scalar or have shape ({probs.shape[1]},); got {q.shape}"
        )
    scores = label_scores(probs, method, u=u, lam=lam, k_reg=k_reg)
    return _sets(scores, probs, q, _include_last(method, include_last_label))


def _include_last(method: str, include_last_label) -> bool:
    if include_last_label is None:
        return method in ("aps", "raps")
    if include_last_label and method not in ("aps", "raps"):
        raise ValueError(f"include_last_label applies to 'aps' and 'raps', not {method!r}")
    return bool(include_last_label)


def _sets(scores, probs, thresholds, include_last: bool) -> np.ndarray:
    """``scores <= q``, plus, with ``include_last``, every label whose score minus its own
    probability (the mass ranked above it, plus any penalty) is still below ``q``."""
    sets = scores <= thresholds
    if include_last:
        sets |= (scores - probs) < thresholds
    return sets


def coverage_law(n_cal: int, n_test: int, alpha: float):
    """The law of one re-split's test coverage, as a count of covered test points.

    With continuous scores the coverage given a calibration set of ``n_cal`` points is
    ``Beta(r, n_cal + 1 - r)``, ``r = conformal_rank(n_cal, alpha)`` (Vovk 2012); ``n_test`` test
    points then cover a Beta-Binomial count. Returns the frozen ``scipy.stats.betabinom``.
    """
    from scipy import stats

    rank = conformal_rank(n_cal, alpha)
    return stats.betabinom(n_test, rank, n_cal + 1 - rank)


def resplit_indices(n_total: int, n_cal: int, n_resplits: int, seed: int) -> np.ndarray:
    """``n_resplits`` random permutations of ``range(n_total)``, shape (R, n_total), int64.

    The first ``n_cal`` columns of a row are that re-split's calibration points, the rest its
    test points.
    """
    if not 0 < n_cal < n_total:
        raise ValueError(f"n_cal={n_cal!r} must lie between 1 and n_total - 1 = {n_total - 1}")
    if n_resplits < 1:
        raise ValueError(f"n_resplits={n_resplits!r} must be at least 1")
    rng = np.random.default_rng(seed)
    return np.argsort(rng.random((n_resplits, n_total)), axis=1)


def resplit_evaluate(
    probs,
    labels,
    alpha,
    method="lac",
    mondrian=False,
    n_cal=None,
    n_resplits=200,
    seed=0,
    lam=0.01,
    k_reg=1,
    include_last_label=None,
) -> dict:
    """Calibrate and test on many random calibration/test re-splits of a pool at once.

    Parameters
    ----------
    probs : ndarray, shape (N, K), float; the pooled calibration and test points.
    labels : ndarray, shape (N,), int
    alpha : float; method, lam, k_reg : as in ``label_scores``.
    include_last_label : as in ``predict_sets``.
    mondrian : calibrate one threshold per class.
    n_cal : calibration points per re-split (default half of the pool).
    n_resplits : number of re-splits R.
    seed : fixes the re-splits and the randomised scores' uniform draws.

    Returns
    -------
    dict of ndarrays, shape (R,) float64: ``coverage``, ``set_size``, ``singleton_rate``,
    ``empty_rate``, ``class_coverage_min``, ``auto_accuracy`` (accuracy on singleton sets) and
    ``class_coverage`` (R, K).
    """
    probs = _check_probs(probs)
    labels = np.asarray(labels).astype(np.int64)
    n_total, n_classes = probs.shape
    n_cal = n_total // 2 if n_cal is None else int(n_cal)
    perm = resplit_indices(n_total, n_cal, n_resplits, seed)
    rng = np.random.default_rng([seed, 1])
    u = rng.random((n_resplits, n_total)) if method in RANDOMISED else None
    # Scores of every label, per re-split only when the uniform draws differ between re-splits.
    scores = label_scores(probs, method, u=u, lam=lam, k_reg=k_reg)
    if scores.ndim == 2:
        scores = np.broadcast_to(scores, (n_resplits, n_total, n_classes))
    true_scores = np.take_along_axis(scores, labels[None, :, None], axis=2)[..., 0]
    cal_idx, test_idx = perm[:, :n_cal], perm[:, n_cal:]
    cal_scores = np.take_along_axis(true_scores, cal_idx, axis=1)
    cal_labels = labels[cal_idx]
    if mondrian:
        thresholds = np.empty((n_resplits, n_classes))
        for k in range(n_classes):
            counts = (cal_labels == k).sum(axis=1)
            masked = np.sort(np.where(cal_labels == k, cal_scores, np.inf), axis=1)
            ranks = np.array([conformal_rank(int(c), alpha) for c in counts])
            thresholds[:, k] = masked[np.arange(n_resplits), ranks - 1]
        thresholds = thresholds[:, None, :]
    else:
        rank = conformal_rank(n_cal, alpha)
        thresholds = np.partition(cal_scores, rank - 1, axis=1)[:, rank - 1, None, None]
    test_scores = np.take_along_axis(scores, test_idx[..., None], axis=1)
    include_last = _include_last(method, include_last_label)
    sets = _sets(test_scores, probs[test_idx], thresholds, include_last)  # (R, n_test, K)
    test_labels = labels[test_idx]
    covered = np.take_along_axis(sets, test_labels[..., None], axis=2)[..., 0]
    sizes = sets.sum(axis=2)
    singleton = sizes == 1
    predicted = np.argmax(sets, axis=2)
    correct_singletons = (singleton & (predicted == test_labels)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auto_accuracy = correct_singletons / singleton.sum(axis=1)
        class_coverage = np.stack(
            [
                (covered & (test_labels == k)).sum(axis=1) / (test_labels == k).sum(axis=1)
                for k in range(n_classes)
            ],
            axis=1,
        )
    return {
        "coverage": covered.mean(axis=1),
        "set_size": sizes.mean(axis=1),
        "singleton_rate": singleton.mean(axis=1),
        "empty_rate": (sizes == 0).mean(axis=1),
        "class_coverage": class_coverage,
        "class_coverage_min": np.nanmin(class_coverage, axis=1),
        "auto_accuracy": auto_accuracy,
    }
