"""Classifier heads on frozen features: the one place a logistic head is fitted.

Chapters 4-7 put a head on a backbone's pooled features. The heads are scikit-learn logistic
regressions, with or without standardisation, fitted here and nowhere else.
"""

from __future__ import annotations

import numpy as np


def fit_logistic(
    features: np.ndarray, labels: np.ndarray, c: float = 1.0, seed: int = 0, standardise=True
):
    """Logistic regression (binary or multinomial) on ``features``, standardised first by default.

    Parameters
    ----------
    features : ndarray, shape (N, D), float
    labels : ndarray, shape (N,), int
    c : scikit-learn's inverse L2 strength ``C``.

    Returns
    -------
    A fitted scikit-learn estimator: ``make_pipeline(StandardScaler(), LogisticRegression)`` when
    ``standardise``, else the ``LogisticRegression`` alone.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    logistic = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    model = make_pipeline(StandardScaler(), logistic) if standardise else logistic
    return model.fit(features, labels)


def fit_logistic_chosen_on_validation(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    val_features: np.ndarray,
    val_labels: np.ndarray,
    strengths: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0),
    seed: int = 0,
):
    """Binary logistic regression on raw features, its ``C`` chosen on validation log-loss.

    Parameters
    ----------
    train_features, val_features : ndarray, shape (N, D), float32
    train_labels, val_labels : ndarray, shape (N,), int, 1 = with_mask
    strengths : candidate values of ``C``; the one with the lowest validation log-loss wins.

    Returns
    -------
    (estimator, C): the fitted ``LogisticRegression`` and its ``C``.
    """
    from sklearn.metrics import log_loss
    from threadpoolctl import threadpool_limits

    if len(train_features) != len(train_labels) or len(val_features) != len(val_labels):
        raise ValueError("features and labels must have the same number of rows")
    if not strengths:
        raise ValueError("strengths is empty; give at least one value of C")
    best = None
    # One BLAS thread: on a busy machine, extra threads cost far more than they save here.
    with threadpool_limits(limits=1):
        for strength in strengths:
            model = fit_logistic(train_features, train_labels, strength, seed, standardise=False)
            loss = log_loss(val_labels, model.predict_proba(val_features)[:, 1], labels=[0, 1])
            if best is None or loss < best[0]:
                best = (loss, strength, model)
    return best[2], best[1]
