"""Chapter 2's images: flat grayscale vectors for the sweeps, RGB images for the regulariser
study."""

from __future__ import annotations

import functools

import numpy as np

from dlbook.book.context import Run
from dlbook.facemask import data


def load_arrays(
    data_dir=None, image_size: int = 16, limit: int | None = None, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Face-mask images as flat standardised grayscale vectors, per split.

    Returns
    -------
    dict split -> (x, y): x float32 (N, image_size**2), standardised with the training split's
    per-pixel mean and standard deviation; y float32 (N,), 1 for ``with_mask``.
    """
    dataset = data.load_face_mask(
        data_dir,
        image_size=image_size,
        color_mode="grayscale",
        limit=limit,
        seed=seed,
        progress=False,
    )
    flat = dataset.images.reshape(len(dataset.images), -1).astype(np.float32) / 255.0
    train = dataset.split == "train"
    mean, std = flat[train].mean(axis=0), flat[train].std(axis=0) + 1e-3
    return {
        name: (
            ((flat[mask] - mean) / std).astype(np.float32),
            dataset.labels[mask].astype(np.float32),
        )
        for name in data.SPLIT_NAMES
        if (mask := dataset.split == name).any()
    }


def subsample(x: np.ndarray, y: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A class-stratified random subset of ``size`` rows (for the over-fitting setting)."""
    index = data.stratified_subset(y.astype(np.int64), size, seed)
    return x[index], y[index]


def load_images(data_dir=None, image_size: int = 32, seed: int = 0) -> dict:
    """Face-mask images as RGB floats in [0, 1], per split: ``{split: (x, y)}`` with x float32
    (N, image_size, image_size, 3) and y int64 (N,)."""
    dataset = data.load_face_mask(data_dir, image_size=image_size, seed=seed, progress=False)
    images = dataset.images.astype(np.float32) / 255.0
    return {
        name: (images[mask], dataset.labels[mask])
        for name in data.SPLIT_NAMES
        if (mask := dataset.split == name).any()
    }


@functools.lru_cache(maxsize=4)
def _splits(data_dir, image_size: int, limit, seed: int) -> dict:
    return load_arrays(data_dir, image_size=image_size, limit=limit, seed=seed)


def splits_for(run: Run) -> dict:
    """The flat grayscale splits of the sweeps (``load_arrays``), loaded once per process."""
    return _splits(run.data_dir, run.settings["image_size"], run.settings["limit"], run.seed)


def data_summary(run: Run) -> str:
    """One sentence on the images the sweeps use."""
    splits = splits_for(run)
    counts = ", ".join(f"{len(y)} {name}" for name, (_, y) in splits.items())
    side = run.settings["image_size"]
    return (f"{side}×{side} grayscale images: {counts}; {splits['train'][0].shape[1]} inputs "
            "per image.")  # fmt: skip
