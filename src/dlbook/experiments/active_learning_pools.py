"""Chapter 5's pools: what the simulated labeller draws from, and what it is scored on.

The pool is every image outside the val and test splits; its labels are revealed only when a
strategy asks for them. ``backbone_pool`` gives the chapter's main pool (the shared backbone
features), ``pixel_pool`` the weak-feature contrast and ``synthetic_pool`` a small scikit-learn
one for tests; ``full_pool_accuracy`` is the learner's ceiling with every pool label.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from dlbook.facemask import data, features
from dlbook.methods import active

SPLITS = ("val", "test")
"""The splits a learner is scored on; every other image is in the pool."""


@dataclass
class Pool:
    """An unlabelled pool with a validation and a test set, for simulated labelling.

    Attributes
    ----------
    X_pool : ndarray, shape (N, D), float64; y_pool : int64 (N,)
    X_val : ndarray, shape (V, D), float64; y_val : int64 (V,)
    X_test : ndarray, shape (M, D), float64; y_test : int64 (M,)
    paths : list of N image paths (relative to the data folder) of the pool items
    name : what the features are
    """

    X_pool: np.ndarray
    y_pool: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    paths: list
    name: str

    def eval_sets(self) -> dict:
        """``{"val": (X_val, y_val), "test": (X_test, y_test)}``."""
        return {"val": (self.X_val, self.y_val), "test": (self.X_test, self.y_test)}


def _split_pool(features, labels, split, paths, name) -> Pool:
    split = np.asarray(split)
    in_pool = ~np.isin(split, SPLITS)
    labels = np.asarray(labels).astype(np.int64)
    return Pool(
        features[in_pool],
        labels[in_pool],
        features[split == "val"],
        labels[split == "val"],
        features[split == "test"],
        labels[split == "test"],
        [p for p, keep in zip(paths, in_pool) if keep],
        name,
    )


def reduce_features(features: np.ndarray, fit_rows: np.ndarray, n_components: int) -> np.ndarray:
    """Project onto the top ``n_components`` principal axes of ``features[fit_rows]``.

    Centred and divided by one overall scale (not whitened, so the geometry is kept). Uses only the
    pool's unlabelled features, which an active learner has anyway. Returns float64 (N, k).
    """
    from sklearn.decomposition import PCA

    if not 1 <= n_components <= features.shape[1]:
        raise ValueError(f"n_components={n_components!r} must lie in [1, {features.shape[1]}]")
    pca = PCA(n_components, random_state=0).fit(features[fit_rows])
    z = pca.transform(features).astype(np.float64)
    return z / z[fit_rows].std()


def scale_features(features: np.ndarray, fit_rows: np.ndarray) -> np.ndarray:
    """Centre on ``features[fit_rows]`` and divide by their one overall scale: every dimension
    kept, the geometry unchanged (distances for coreset and BADGE keep their meaning).
    Returns float64 (N, D)."""
    z = np.asarray(features, dtype=np.float64) - features[fit_rows].mean(axis=0)
    return z / z[fit_rows].std()


def backbone_pool(
    feature_settings: Mapping, data_dir=None, seed: int = 0, n_components: int | None = 64
) -> Pool:
    """The chapter's main pool: the shared backbone features (a ``profiles.FEATURES`` block),
    the full vectors (``n_components`` None) or PCA-reduced to ``n_components`` for speed."""
    fs = features.face_mask_features(feature_settings, data_dir, seed, progress=False)
    fit_rows = ~np.isin(fs.split, SPLITS)
    if n_components is None:
        z = scale_features(fs.features, fit_rows)
        name = f"{fs.backbone} {fs.image_size}px, all {fs.features.shape[1]} features"
    else:
        z = reduce_features(fs.features, fit_rows, n_components)
        name = f"{fs.backbone} {fs.image_size}px, PCA-{n_components}"
    return _split_pool(z, fs.labels, fs.split, fs.paths, name)


def _load_images(feature_settings: Mapping, data_dir, seed: int, **options):
    return data.load_face_mask(
        data_dir, limit=feature_settings["limit"], seed=seed, progress=False, **options
    )


def pixel_pool(
    feature_settings: Mapping,
    data_dir=None,
    seed: int = 0,
    image_size: int = 16,
    n_components: int = 32,
) -> Pool:
    """Weak features: raw grayscale pixels of ``image_size``-pixel images, PCA-reduced; the same
    images as ``feature_settings`` (a ``profiles.FEATURES`` block) selects."""
    images = _load_images(
        feature_settings, data_dir, seed, image_size=image_size, color_mode="grayscale"
    )
    x = images.images.reshape(len(images.labels), -1).astype(np.float64) / 255.0
    z = reduce_features(x, ~np.isin(images.split, SPLITS), n_components)
    name = f"{image_size}px grayscale pixels, PCA-{n_components}"
    return _split_pool(z, images.labels, images.split, list(images.paths), name)


def synthetic_pool(n: int = 1200, n_features: int = 20, seed: int = 0) -> Pool:
    """A two-class scikit-learn ``make_classification`` pool (half), validation and test sets."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n, n_features, n_informative=5, class_sep=1.0, flip_y=0.02, random_state=seed
    )
    split = np.array(["train", "train", "val", "test"])[np.arange(n) % 4]
    return _split_pool(x, y, split, [f"item{i}" for i in range(n)], "synthetic")


def full_pool_accuracy(pool: Pool, C: float = 1.0) -> dict:
    """``{"val": accuracy, "test": accuracy}`` of the learner trained on every pool label: the
    ceiling."""
    with threadpool_limits(1):
        model = active.LogisticModel(C=C).fit(pool.X_pool, pool.y_pool)
        return {name: model.score(x, y) for name, (x, y) in pool.eval_sets().items()}


def queried_images(
    pool: Pool,
    curves: dict,
    feature_settings: Mapping,
    data_dir=None,
    seed: int = 0,
    n: int = 8,
    repeat: int = 0,
    image_size: int = 64,
) -> tuple[dict, dict]:
    """The first ``n`` images each strategy bought after the seed set, in one repeat.

    ``feature_settings`` is the ``profiles.FEATURES`` block the pool was built from (it fixes the images).

    Returns
    -------
    (images, labels): strategy -> uint8 (n, image_size, image_size, 3) and strategy -> int64 (n,).
    """
    images = _load_images(feature_settings, data_dir, seed, image_size=image_size)
    row_of = {path: i for i, path in enumerate(images.paths)}
    initial = len(curves["query_order"]["random"][repeat]) - (
        curves["n_labels"][-1] - curves["n_labels"][0]
    )
    out_images, out_labels = {}, {}
    for strategy, orders in curves["query_order"].items():
        picked = orders[repeat][initial : initial + n]
        rows = [row_of[pool.paths[i]] for i in picked]
        out_images[strategy] = images.images[rows]
        out_labels[strategy] = pool.y_pool[picked]
    return out_images, out_labels
