"""Pool-based active learning: query strategies, learners and the labelling loop.

Every strategy has the same signature,
``strategy(model, pool_features, labelled_mask, batch_size, rng) -> indices``:
it looks at the current model and the whole pool, and returns ``batch_size`` distinct indices of
unlabelled pool items to label next (int64). Strategies are found through ``STRATEGIES``.

``ActiveLearner`` runs the loop in the scikit-learn way: ``fit(X_pool, y_pool, X_eval, y_eval)``
labels an initial random seed set, then repeatedly re-trains the model, asks the strategy for a
batch and reveals those labels, until the budget is spent; ``n_labels_`` and ``accuracy_`` hold the
learning curve on the evaluation set.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

__all__ = [
    "ActiveLearner",
    "BootstrapEnsemble",
    "LogisticModel",
    "STRATEGIES",
    "UNCERTAINTY_STRATEGIES",
    "badge",
    "bald",
    "coreset",
    "entropy",
    "gradient_embedding",
    "kcenter_greedy",
    "least_confidence",
    "margin",
    "margin_diverse",
    "random_sampling",
]


# ---------------------------------------------------------------------------------------------
# Learners


class _Classifier:
    """``predict`` and ``score`` from a subclass's ``predict_proba``."""

    def predict(self, X) -> np.ndarray:
        """The most probable class of each row, int (N,)."""
        return self.predict_proba(X).argmax(axis=1)

    def score(self, X, y) -> float:
        """Accuracy on (X, y)."""
        return float(np.mean(self.predict(X) == np.asarray(y)))


class LogisticModel(_Classifier):
    """L2-regularised logistic regression that copes with the first rounds of active learning.

    With no labels it predicts the uniform distribution; with labels of a single class it predicts
    that class with certainty; otherwise it is scikit-learn's ``LogisticRegression`` (lbfgs), warm
    started from the previous fit so each round costs a few iterations.

    Parameters
    ----------
    C : inverse regularisation strength, > 0.
    n_classes : number of classes; labels are ints in ``[0, n_classes)``.
    max_iter : lbfgs iterations per fit.
    """

    def __init__(self, C: float = 1.0, n_classes: int = 2, max_iter: int = 200):
        if not C > 0:
            raise ValueError(f"C={C!r} must be a positive float")
        if int(n_classes) < 2:
            raise ValueError(f"n_classes={n_classes!r} must be an integer >= 2")
        self.C = C
        self.n_classes = int(n_classes)
        self.max_iter = max_iter
        self._lr = None
        self._constant = np.full(self.n_classes, 1.0 / self.n_classes)

    def fit(self, X, y) -> LogisticModel:
        """Fit on ``X`` float (n, D) and ``y`` int (n,); n may be 0."""
        y = np.asarray(y, dtype=np.int64)
        seen = np.unique(y)
        if seen.size < 2:
            self._constant = np.full(self.n_classes, 1.0 / self.n_classes)
            if seen.size == 1:
                self._constant = np.eye(self.n_classes)[seen[0]]
            self._fitted_classes = seen
            return self
        if self._lr is None or set(self._fitted_classes) != set(seen):
            self._lr = LogisticRegression(C=self.C, max_iter=self.max_iter, warm_start=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self._lr.fit(X, y)
        self._fitted_classes = seen
        return self

    @property
    def is_constant(self) -> bool:
        return len(getattr(self, "_fitted_classes", ())) < 2

    def decision_weights(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(coef, intercept)`` of the fitted regression, or None while it is constant."""
        if self.is_constant:
            return None
        return self._lr.coef_, self._lr.intercept_

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, float64 (N, n_classes)."""
        X = np.asarray(X)
        if self.is_constant:
            return np.tile(self._constant, (len(X), 1))
        proba = np.zeros((len(X), self.n_classes))
        proba[:, self._fitted_classes] = self._lr.predict_proba(X)
        return proba


class BootstrapEnsemble(_Classifier):
    """A bootstrap ensemble of ``LogisticModel``s: an approximate posterior for BALD.

    Each member is fitted on a resample (with replacement) of the labelled set; the resamples are
    drawn from ``seed`` and the number of labels, so refitting the same data is deterministic.
    ``predict_proba_samples`` returns the members' probabilities, ``predict_proba`` their mean.
    """

    def __init__(self, n_members: int = 8, C: float = 1.0, n_classes: int = 2, seed: int = 0):
        if int(n_members) < 2:
            raise ValueError(f"n_members={n_members!r} must be an integer >= 2")
        self.n_members = int(n_members)
        self.n_classes = int(n_classes)
        self.seed = seed
        self.members = [LogisticModel(C=C, n_classes=n_classes) for _ in range(self.n_members)]

    def fit(self, X, y) -> BootstrapEnsemble:
        X, y = np.asarray(X), np.asarray(y, dtype=np.int64)
        rng = np.random.default_rng([self.seed, len(y)])
        for member in self.members:
            idx = rng.integers(0, len(y), size=len(y))
            member.fit(X[idx], y[idx])
        return self

    def predict_proba_samples(self, X) -> np.ndarray:
        """Each member's class probabilities, float64 (n_members, N, n_classes)."""
        return np.stack([m.predict_proba(X) for m in self.members])

    def predict_proba(self, X) -> np.ndarray:
        return self.predict_proba_samples(X).mean(axis=0)


# ---------------------------------------------------------------------------------------------
# Strategies


def _check_query(pool_features, labelled_mask, batch_size) -> np.ndarray:
    """Validate a strategy's arguments; return the unlabelled indices, int64 (U,)."""
    labelled_mask = np.asarray(labelled_mask)
    if labelled_mask.dtype != bool or labelled_mask.shape != (len(pool_features),):
        raise ValueError(
            f"labelled_mask must be a boolean array of shape ({len(pool_features)},); "
            f"got dtype {labelled_mask.dtype} and shape {labelled_mask.shape}"
        )
    unlabelled = np.flatnonzero(~labelled_mask)
    if not 1 <= int(batch_size) <= unlabelled.size:
        raise ValueError(
            f"batch_size={batch_size!r} must lie between 1 and the {unlabelled.size} unlabelled items"
        )
    return unlabelled


def _top_k(scores: np.ndarray, candidates: np.ndarray, k: int, rng) -> np.ndarray:
    """The ``k`` candidates with the highest scores; ties are broken at random by ``rng``."""
    shuffle = rng.permutation(candidates.size)
    order = np.argsort(-scores[shuffle], kind="stable")[:k]
    return candidates[shuffle[order]]


def random_sampling(model, pool_features, labelled_mask, batch_size, rng) -> np.ndarray:
    """Uniformly random unlabelled items: the baseline every strategy is measured against."""
    unlabelled = _check_query(pool_features, labelled_mask, batch_size)
    return rng.choice(unlabelled, size=int(batch_size), replace=False)


def _uncertainty(score_fn):
    def strategy(model, pool_features, labelled_mask, batch_size, rng) -> np.ndarray:
        unlabelled = _check_query(pool_features, labelled_mask, batch_size)
        proba = model.predict_proba(pool_features[unlabelled])
        return _top_k(score_fn(proba), unlabelled, int(batch_size), rng)

    return strategy


def least_confidence_scores(proba: np.ndarray) -> np.ndarray:
    """1 - max_k p_k for probabilities (N, K); higher is more uncertain."""
    return 1.0 - proba.max(axis=1)


def margin_scores(proba: np.ndarray) -> np.ndarray:
    """Minus the gap between the two most probable classes; higher is more uncertain."""
    top2 = np.sort(proba, axis=1)[:, -2:]
    return top2[:, 0] - top2[:, 1]


def entropy_scores(proba: np.ndarray) -> np.ndarray:
    """Predictive entropy in nats, (N,)."""
    return -np.sum(proba * np.log(np.clip(proba, 1e-12, 1.0)), axis=1)


least_confidence = _uncertainty(least_confidence_scores)
least_confidence.__name__ = "least_confidence"
least_confidence.__doc__ = "The items whose most probable class is least probable."
margin = _uncertainty(margin_scores)
margin.__name__ = "margin"
margin.__doc__ = "The items with the smallest gap between the two most probable classes."
entropy = _uncertainty(entropy_scores)
entropy.__name__ = "entropy"
entropy.__doc__ = "The items with the highest predictive entropy."


def bald_scores(proba_samples: np.ndarray) -> np.ndarray:
    """Mutual information between label and model, from posterior samples (S, N, K), in nats.

    BALD = H[mean_s p_s] - mean_s H[p_s]: high where the members disagree, not merely where each
    member is unsure.
    """
    return entropy_scores(proba_samples.mean(axis=0)) - np.mean(
        [entropy_scores(p) for p in proba_samples], axis=0
    )


def bald(model, pool_features, labelled_mask, batch_size, rng) -> np.ndarray:
    """The items with the highest BALD score; ``model`` needs ``predict_proba_samples``."""
    unlabelled = _check_query(pool_features, labelled_mask, batch_size)
    if not hasattr(model, "predict_proba_samples"):
        raise ValueError(
            f"bald needs a model with predict_proba_samples (e.g. BootstrapEnsemble); "
            f"got {type(model).__name__}"
        )
    scores = bald_scores(model.predict_proba_samples(pool_features[unlabelled]))
    return _top_k(scores, unlabelled, int(batch_size), rng)


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances, (len(a), len(b)), clipped at 0 against round-off."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


class _DistancesToRow:
    """``_squared_distances(x, x[i : i + 1])[:, 0]`` for one fixed ``x`` and many ``i``, with the
    squared norms and ``2 x`` computed once instead of at every call (the same arithmetic, so the
    same values): greedy k-centre and k-means++ ask for one row per pick."""

    def __init__(self, x: np.ndarray):
        self.x = x
        self.squared_norms = (x * x).sum(1)
        self.twice = 2.0 * x

    def __call__(self, i: int) -> np.ndarray:
        d = self.squared_norms[:, None] + self.squared_norms[i] - self.twice @ self.x[i : i + 1].T
        return np.maximum(d, 0.0)[:, 0]


def kcenter_greedy(
    features: np.ndarray, centres: np.ndarray, candidates: np.ndarray, k: int, rng
) -> np.ndarray:
    """Greedy k-centre: repeatedly take the candidate farthest from every centre chosen so far.

    Parameters
    ----------
    features : ndarray, shape (N, D), float
    centres : int indices (L,) of items already covered (may be empty).
    candidates : int indices (U,) to choose from.
    k : how many to choose.
    rng : picks the first item when there are no centres.

    Returns
    -------
    ndarray, shape (k,), int64, a subset of ``candidates`` in the order chosen.
    """
    x = features[candidates].astype(np.float64)
    min_d = np.full(len(candidates), np.inf)
    for start in range(0, len(centres), 512):
        block = features[centres[start : start + 512]].astype(np.float64)
        min_d = np.minimum(min_d, _squared_distances(x, block).min(axis=1))
    chosen, to_row = [], _DistancesToRow(x)
    for _ in range(k):
        # With nothing covered yet every distance is infinite: start from a random item.
        i = int(rng.integers(len(candidates))) if np.isinf(min_d).all() else int(np.argmax(min_d))
        chosen.append(i)
        min_d = np.minimum(min_d, to_row(i))
        min_d[i] = -1.0
    return candidates[np.array(chosen, dtype=np.int64)]


def coreset(model, pool_features, labelled_mask, batch_size, rng) -> np.ndarray:
    """Core-set (Sener & Savarese): greedy k-centre on the features; ignores the model."""
    unlabelled = _check_query(pool_features, labelled_mask, batch_size)
    return kcenter_greedy(
        pool_features, np.flatnonzero(labelled_mask), unlabelled, int(batch_size), rng
    )


def gradient_embedding(model, X: np.ndarray) -> np.ndarray:
    """BADGE's embedding: the loss gradient w.r.t. the last layer, at the predicted label.

    For a binary logistic regression the gradient w.r.t. (w, b) is ``(p_1 - yhat) * [x, 1]``;
    for K classes it is ``(p - onehot(yhat)) outer [x, 1]``, flattened. Its norm is the model's
    uncertainty, its direction the item's features.

    Returns
    -------
    ndarray, shape (N, D + 1) for two classes or (N, K * (D + 1)), float64.
    """
    proba = model.predict_proba(X)
    x1 = np.hstack([np.asarray(X, dtype=np.float64), np.ones((len(X), 1))])
    predicted = proba.argmax(axis=1)
    if proba.shape[1] == 2:
        return (proba[:, 1] - predicted)[:, None] * x1
    residual = proba - np.eye(proba.shape[1])[predicted]
    return (residual[:, :, None] * x1[:, None, :]).reshape(len(X), -1)


def kmeanspp_seeds(embedding: np.ndarray, k: int, rng) -> np.ndarray:
    """k-means++ seeding: the largest-norm item first, then sampling proportional to D^2.

    Returns ``k`` distinct row indices (int64). When every remaining D^2 is 0 (all the
    embeddings coincide, e.g. a model that is certain everywhere) the rest are drawn uniformly.
    """
    n, to_row = len(embedding), _DistancesToRow(embedding)
    chosen = [int(np.argmax(to_row.squared_norms))]
    min_d = to_row(chosen[0])
    min_d[chosen[0]] = 0.0
    available = np.ones(n, dtype=bool)
    available[chosen[0]] = False
    for _ in range(k - 1):
        weights = np.where(available, min_d, 0.0)
        total = weights.sum()
        if total > 0:
            i = int(rng.choice(n, p=weights / total))
        else:
            i = int(rng.choice(np.flatnonzero(available)))
        chosen.append(i)
        available[i] = False
        min_d = np.minimum(min_d, to_row(i))
    return np.array(chosen, dtype=np.int64)


def badge(model, pool_features, labelled_mask, batch_size, rng) -> np.ndarray:
    """BADGE (Ash et al.): k-means++ seeds in the gradient embedding, uncertain and diverse."""
    unlabelled = _check_query(pool_features, labelled_mask, batch_size)
    embedding = gradient_embedding(model, pool_features[unlabelled])
    return unlabelled[kmeanspp_seeds(embedding, int(batch_size), rng)]


def margin_diverse(
    model, pool_features, labelled_mask, batch_size, rng, candidates_per_item: int = 10
) -> np.ndarray:
    """Margin sampling made batch-aware: the ``candidates_per_item * batch_size`` most uncertain
    items, thinned by greedy k-centre so one batch does not ask about near-copies."""
    unlabelled = _check_query(pool_features, labelled_mask, batch_size)
    proba = model.predict_proba(pool_features[unlabelled])
    n_candidates = min(unlabelled.size, candidates_per_item * int(batch_size))
    shortlist = _top_k(margin_scores(proba), unlabelled, n_candidates, rng)
    return kcenter_greedy(
        pool_features, np.flatnonzero(labelled_mask), shortlist, int(batch_size), rng
    )


STRATEGIES = {
    "random": random_sampling,
    "least_confidence": least_confidence,
    "margin": margin,
    "entropy": entropy,
    "bald": bald,
    "coreset": coreset,
    "badge": badge,
    "margin_diverse": margin_diverse,
}
"""Strategy name -> ``strategy(model, pool_features, labelled_mask, batch_size, rng)``."""

UNCERTAINTY_STRATEGIES = ("least_confidence", "margin", "entropy", "bald")


# ---------------------------------------------------------------------------------------------
# The loop


def default_model(strategy: str, n_classes: int = 2, C: float = 1.0, seed: int = 0):
    """The learner a strategy is run with: a bootstrap ensemble for BALD, else one regression."""
    if strategy == "bald":
        return BootstrapEnsemble(n_members=8, C=C, n_classes=n_classes, seed=seed)
    return LogisticModel(C=C, n_classes=n_classes)


def initial_indices(y_pool: np.ndarray, initial_size: int, seed: int) -> np.ndarray:
    """The random seed set of a repeat: ``initial_size`` distinct pool indices from ``seed``.

    It depends on the seed only, not on the strategy, so all strategies of one repeat start from
    the same labelled items.
    """
    rng = np.random.default_rng([seed, 0])
    return rng.choice(len(y_pool), size=int(initial_size), replace=False).astype(np.int64)


class ActiveLearner(_Classifier):
    """Pool-based active learning with a scikit-learn-style interface.

    Parameters
    ----------
    strategy : a name in ``STRATEGIES`` or a callable with the strategy signature.
    model : an object with ``fit(X, y)`` and ``predict_proba(X)``; None picks
        ``default_model(strategy)``. It is refitted in place every round.
    initial_size : labels in the random seed set (0 is a true cold start).
    batch_size : labels bought per round.
    budget : total labels at the end, including the seed set.
    random_state : int seed; fixes the seed set and every random choice of the strategy.

    Attributes (after ``fit``)
    --------------------------
    model_ : the model trained on all the labels bought.
    labelled_mask_ : bool (N_pool,).
    query_order_ : int64 (budget,), pool indices in the order they were labelled (seed set first).
    n_labels_ : int64 (R,), the label counts at which the model was evaluated.
    accuracy_ : float64 (R,), accuracy on the evaluation set at each count (empty without one).
    scores_ : {name: float64 (R,)}, accuracy on each of ``fit``'s ``eval_sets`` at each count.
    """

    def __init__(
        self,
        strategy="margin",
        model=None,
        initial_size: int = 10,
        batch_size: int = 10,
        budget: int = 200,
        random_state: int = 0,
    ):
        self.strategy = strategy
        self.model = model
        self.initial_size = initial_size
        self.batch_size = batch_size
        self.budget = budget
        self.random_state = random_state

    def _validate(self, n_pool: int):
        if isinstance(self.strategy, str) and self.strategy not in STRATEGIES:
            raise ValueError(
                f"strategy={self.strategy!r} is unknown; use one of {tuple(STRATEGIES)}"
            )
        if not callable(self.strategy) and not isinstance(self.strategy, str):
            raise ValueError(f"strategy={self.strategy!r} must be a name or a callable")
        if not 0 <= int(self.initial_size) <= n_pool:
            raise ValueError(f"initial_size={self.initial_size!r} must lie in [0, {n_pool}]")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size={self.batch_size!r} must be a positive integer")
        if not int(self.initial_size) <= int(self.budget) <= n_pool:
            raise ValueError(
                f"budget={self.budget!r} must lie between initial_size={self.initial_size} "
                f"and the pool size {n_pool}"
            )

    def fit(self, X_pool, y_pool, X_eval=None, y_eval=None, eval_sets=None) -> ActiveLearner:
        """Run the loop on a pool whose labels ``y_pool`` are revealed only when queried.

        Parameters
        ----------
        X_pool : ndarray, shape (N, D), float
        y_pool : ndarray, shape (N,), int; the oracle.
        X_eval, y_eval : optional evaluation set, (M, D) and (M,); the model is scored after every
            round.
        eval_sets : optional ``{name: (X, y)}`` of further sets scored after every round (e.g. a
            validation set for choosing a strategy and a test set for scoring the chosen one).
        """
        X_pool = np.asarray(X_pool)
        y_pool = np.asarray(y_pool, dtype=np.int64)
        if X_pool.ndim != 2 or len(X_pool) != len(y_pool):
            raise ValueError(
                f"X_pool must be (N, D) and y_pool (N,); got {X_pool.shape} and {y_pool.shape}"
            )
        self._validate(len(y_pool))
        name = self.strategy if isinstance(self.strategy, str) else None
        query = STRATEGIES[name] if name else self.strategy
        n_classes = int(max(y_pool.max(), 1)) + 1
        model = self.model
        if model is None:
            model = default_model(name or "", n_classes=n_classes, seed=self.random_state)
        rng = np.random.default_rng([self.random_state, 1])

        order = list(initial_indices(y_pool, self.initial_size, self.random_state))
        labelled = np.zeros(len(y_pool), dtype=bool)
        labelled[order] = True
        eval_sets = dict(eval_sets or {})
        n_labels, accuracy = [], []
        scores = {name: [] for name in eval_sets}
        while True:
            model.fit(X_pool[labelled], y_pool[labelled])
            n_labels.append(int(labelled.sum()))
            if X_eval is not None:
                accuracy.append(float(np.mean(model.predict(X_eval) == np.asarray(y_eval))))
            for name, (X_set, y_set) in eval_sets.items():
                scores[name].append(float(np.mean(model.predict(X_set) == np.asarray(y_set))))
            remaining = int(self.budget) - int(labelled.sum())
            if remaining <= 0:
                break
            picked = np.asarray(
                query(model, X_pool, labelled, min(int(self.batch_size), remaining), rng)
            )
            labelled[picked] = True
            order.extend(int(i) for i in picked)

        self.model_ = model
        self.labelled_mask_ = labelled
        self.query_order_ = np.array(order, dtype=np.int64)
        self.n_labels_ = np.array(n_labels, dtype=np.int64)
        self.accuracy_ = np.array(accuracy, dtype=np.float64)
        self.scores_ = {name: np.array(v, dtype=np.float64) for name, v in scores.items()}
        return self

    def predict_proba(self, X) -> np.ndarray:
        return self.model_.predict_proba(X)
