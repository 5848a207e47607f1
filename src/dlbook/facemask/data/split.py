"""Near-duplicates and the grouped split: no near-duplicate pair crosses splits.

Two files are near-duplicates when their bytes are equal, or their difference hashes or perceptual
hashes are close (mirror images included); whole groups are assigned to splits.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from dlbook.core import cache, paths
from dlbook.core.cache import file_sha256
from dlbook.facemask.data.decode import _cached_decode

SPLIT_NAMES = ("train", "val", "calib", "test")
SPLIT_FRACTIONS = {"train": 0.6, "val": 0.1, "calib": 0.15, "test": 0.15}
DUPLICATE_MAX_DISTANCE = 4
"""Largest Hamming distance between 64-bit difference hashes still called a near-duplicate."""

PHASH_MAX_DISTANCE = 4
"""Largest Hamming distance between 64-bit perceptual hashes still called a near-duplicate."""


def difference_hash(gray: np.ndarray) -> np.ndarray:
    """64-bit difference hashes of grayscale images.

    Parameters
    ----------
    gray : ndarray, shape (N, H, W) or (N, H, W, 1), uint8

    Returns
    -------
    ndarray, shape (N,), uint64: bit ``8 * r + c`` is set where pixel (r, c) of the 8x9 thumbnail
    is brighter than its right neighbour.
    """
    gray = np.asarray(gray)
    if gray.ndim == 4:
        gray = gray[..., 0]
    thumbs = np.stack(
        [np.asarray(Image.fromarray(g).resize((9, 8), Image.Resampling.BILINEAR)) for g in gray]
    ).astype(np.int16)
    bits = (thumbs[:, :, :-1] > thumbs[:, :, 1:]).reshape(len(gray), 64)
    return np.packbits(bits, axis=1, bitorder="little").view("<u8")[:, 0].astype(np.uint64)


def perceptual_hash(gray: np.ndarray) -> np.ndarray:
    """64-bit DCT perceptual hashes (pHash) of grayscale images.

    The image is shrunk to 32x32, its 2-D DCT taken, and each of the 8x8 lowest frequencies
    (the constant term excluded from the median) set to 1 where it exceeds their median.

    Parameters
    ----------
    gray : ndarray, shape (N, H, W) or (N, H, W, 1), uint8

    Returns
    -------
    ndarray, shape (N,), uint64
    """
    from scipy.fft import dctn

    gray = np.asarray(gray)
    if gray.ndim == 4:
        gray = gray[..., 0]
    if gray.ndim != 3:
        raise ValueError(f"gray must have shape (N, H, W) or (N, H, W, 1); got {gray.shape}")
    thumbs = np.stack(
        [np.asarray(Image.fromarray(g).resize((32, 32), Image.Resampling.BILINEAR)) for g in gray]
    ).astype(np.float64)
    low = dctn(thumbs, axes=(1, 2), norm="ortho")[:, :8, :8].reshape(len(gray), 64)
    median = np.median(low[:, 1:], axis=1, keepdims=True)
    bits = low > median
    return np.packbits(bits, axis=1, bitorder="little").view("<u8")[:, 0].astype(np.uint64)


def hamming_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances between uint64 hashes: (len(a), len(b)) int."""
    xor = np.bitwise_xor(a[:, None], b[None, :])
    bytes_ = xor.view(np.uint8).reshape(len(a), len(b), 8)
    return np.unpackbits(bytes_, axis=2).sum(axis=2)


def near_duplicate_pairs(
    hashes: np.ndarray,
    flipped_hashes: np.ndarray | None = None,
    max_distance: int = DUPLICATE_MAX_DISTANCE,
) -> np.ndarray:
    """Index pairs (i < j) whose hashes, or one's and the other's mirror image, are close.

    Returns
    -------
    ndarray, shape (P, 2), int64
    """
    found = []
    chunk = 512
    for start in range(0, len(hashes), chunk):
        block = hashes[start : start + chunk]
        close = hamming_distances(block, hashes) <= max_distance
        if flipped_hashes is not None:
            close |= hamming_distances(block, flipped_hashes) <= max_distance
        rows, cols = np.nonzero(close)
        rows = rows + start
        keep = rows < cols
        found.append(np.stack([rows[keep], cols[keep]], axis=1))
    return np.concatenate(found) if found else np.empty((0, 2), dtype=np.int64)


HASH_METHODS = {
    "dhash": (difference_hash, DUPLICATE_MAX_DISTANCE),
    "phash": (perceptual_hash, PHASH_MAX_DISTANCE),
}
"""The near-duplicate hashes: name -> (hash function, largest Hamming distance still close)."""


def duplicate_pairs(gray: np.ndarray, method: str = "dhash") -> np.ndarray:
    """Near-duplicate index pairs (i < j) by one hash of ``HASH_METHODS``, mirror images included.

    Parameters
    ----------
    gray : ndarray, shape (N, H, W) or (N, H, W, 1), uint8
    method : "dhash" (difference hash) or "phash" (DCT perceptual hash).

    Returns
    -------
    ndarray, shape (P, 2), int64
    """
    if method not in HASH_METHODS:
        raise ValueError(f"method={method!r} is unknown; use 'dhash' or 'phash'")
    hash_fn, threshold = HASH_METHODS[method]
    gray = np.asarray(gray)
    hashes = hash_fn(gray)
    mirrored = hash_fn(gray[:, :, ::-1])
    return near_duplicate_pairs(hashes, mirrored, max_distance=threshold).astype(np.int64)


def exact_duplicate_pairs(data_dir: str | os.PathLike, rel_paths: list[str]) -> np.ndarray:
    """Index pairs (i < j) of byte-identical files (equal sha256), shape (P, 2), int64."""
    first_seen: dict[str, list[int]] = {}
    for index, rel in enumerate(rel_paths):
        first_seen.setdefault(file_sha256(Path(data_dir) / rel), []).append(index)
    pairs = [
        (a, b)
        for members in first_seen.values()
        for k, a in enumerate(members)
        for b in members[k + 1 :]
    ]
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def connected_groups(n: int, pairs: np.ndarray) -> np.ndarray:
    """Group ids (0..G-1, in order of first member) of the graph with ``n`` nodes and ``pairs``."""
    parent = np.arange(n)

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    roots = np.array([root(i) for i in range(n)])
    _, groups = np.unique(roots, return_inverse=True)
    return groups.astype(np.int64)


def grouped_split(
    labels: np.ndarray,
    groups: np.ndarray,
    fractions: dict[str, float] = SPLIT_FRACTIONS,
    seed: int = 0,
) -> np.ndarray:
    """Assign whole groups to splits, stratified by label, so no group crosses splits.

    Each group takes the label most of its members have; within a label the groups are shuffled
    by ``seed`` and laid end to end, and each group goes to the split its midpoint falls in.

    Parameters
    ----------
    labels : ndarray, shape (N,), int
    groups : ndarray, shape (N,), int; members of a group always share a split.
    fractions : split name -> fraction of the data, summing to 1.

    Returns
    -------
    ndarray, shape (N,), str: the split of each item.
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    if labels.shape != groups.shape:
        raise ValueError(
            f"labels {labels.shape} and groups {groups.shape} must have the same shape"
        )
    total = sum(fractions.values())
    if not np.isclose(total, 1.0) or min(fractions.values()) < 0:
        raise ValueError(
            f"fractions={fractions} must be non-negative and sum to 1 (sum is {total})"
        )
    rng = np.random.default_rng(seed)
    unique_groups, inverse = np.unique(groups, return_inverse=True)
    group_sizes = np.bincount(inverse)
    group_label = np.array(
        [np.bincount(labels[inverse == g]).argmax() for g in range(len(unique_groups))]
    )
    names = list(fractions)
    bounds = np.cumsum([fractions[name] for name in names])
    group_split = np.empty(len(unique_groups), dtype=object)
    for label in np.unique(group_label):
        members = rng.permutation(np.flatnonzero(group_label == label))
        sizes = group_sizes[members]
        midpoints = (np.cumsum(sizes) - sizes / 2) / sizes.sum()
        which = np.minimum(np.searchsorted(bounds, midpoints), len(names) - 1)
        group_split[members] = np.array(names, dtype=object)[which]
    return group_split[inverse].astype(str)


def duplicate_groups(data_dir, rel_paths, fingerprint, progress=True) -> dict[str, int]:
    """Near-duplicate group id for every decodable file.

    Two files are near-duplicates when their bytes are equal, or their difference hashes or their
    perceptual hashes are close (horizontal mirror images included); groups are the connected
    components of that relation, so no pair found by either hash can cross a split.
    """
    suffix = f"d{DUPLICATE_MAX_DISTANCE}-p{PHASH_MAX_DISTANCE}"
    cache_file = paths.cache_dir() / "groups" / f"{fingerprint}-{suffix}.json"
    if cache_file.exists():
        return json.loads(cache_file.read_text())
    gray, kept, _ = _cached_decode(data_dir, rel_paths, fingerprint, 32, "grayscale", progress)
    pairs = np.concatenate(
        [duplicate_pairs(gray, method) for method in HASH_METHODS]
        + [exact_duplicate_pairs(data_dir, kept)]
    )
    group_of = dict(zip(kept, connected_groups(len(kept), pairs).tolist(), strict=True))
    text = json.dumps(group_of)  # insertion order kept: callers read the groups in file order
    cache.write_atomically(cache_file, lambda tmp: tmp.write_text(text))
    return group_of


def stratified_subset(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Sorted indices of a random subset of ``limit`` items with the label proportions kept."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        share = int(round(limit * len(members) / len(labels)))
        chosen.append(rng.choice(members, size=min(share, len(members)), replace=False))
    return np.sort(np.concatenate(chosen))


def grouped_folds(labels: np.ndarray, groups: np.ndarray, n_folds: int = 5, seed: int = 0):
    """Fold of each item for grouped, stratified k-fold cross-validation.

    Every member of a near-duplicate group lands in the same fold, and each fold keeps the
    label proportions as far as whole groups allow (scikit-learn's ``StratifiedGroupKFold``).

    Parameters
    ----------
    labels : ndarray, shape (N,), int
    groups : ndarray, shape (N,), int; members of a group always share a fold.
    n_folds : number of folds, at least 2 and at most the number of groups.
    seed : shuffles the groups before they are dealt to folds.

    Returns
    -------
    ndarray, shape (N,), int64 in 0..n_folds-1.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    labels, groups = np.asarray(labels), np.asarray(groups)
    if labels.shape != groups.shape:
        raise ValueError(
            f"labels {labels.shape} and groups {groups.shape} must have the same shape"
        )
    n_groups = len(np.unique(groups))
    if not isinstance(n_folds, (int, np.integer)) or not 2 <= n_folds <= n_groups:
        raise ValueError(f"n_folds={n_folds!r} must be an integer from 2 to {n_groups} (groups)")
    folds = np.empty(len(labels), dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=int(n_folds), shuffle=True, random_state=seed)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
        folds[held_out] = fold
    return folds


def stratified_split(
    labels: np.ndarray, fractions: dict[str, float] = SPLIT_FRACTIONS, seed: int = 0
) -> np.ndarray:
    """A plain stratified random split that ignores near-duplicates (the usual practice).

    Near-duplicates can then sit on both sides of the split: the contrast that shows how much
    a grouped split matters. Same fractions and output as ``grouped_split``.
    """
    labels = np.asarray(labels)
    return grouped_split(labels, np.arange(len(labels)), fractions, seed)
