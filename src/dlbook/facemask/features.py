"""The book's pooled backbone features: extracted once, cached by content, shared by chapters.

``extract(name, images)`` runs a ``dlbook.methods.backbones`` feature extractor over an image array and
caches the result under ``paths.cache_dir()/features``, keyed by the backbone, its weight file,
the image bytes and the extraction version, so two chapters that need the same features pay for
one extraction. ``face_mask_features(settings, ...)`` is the face-mask dataset's feature set under
a profile's ``FEATURES`` block (pass ``profiles.get(profile, "features")``).
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from dlbook.core import cache, logs
from dlbook.facemask import runtime
from dlbook.methods import backbones

__all__ = [
    "CACHE_VERSION",
    "FeatureSet",
    "benchmark",
    "cache_key",
    "extract",
    "face_mask_features",
]

# Bumped whenever the extractor's arithmetic changes (2: batch norm folded into the convolutions),
# so features computed by an older extractor are never reused.
CACHE_VERSION = 2
BATCH_SIZE = 32
MAX_RELATIVE_DIFFERENCE = 1e-4
"""Largest ``runtime.relative_difference`` allowed between a runtime's features and Keras's."""


def _validate_images(images) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"images has shape {images.shape}; expected RGB images of shape (N, H, W, 3)"
        )
    if not (images.dtype == np.uint8 or np.issubdtype(images.dtype, np.floating)):
        raise ValueError(f"images has dtype {images.dtype}; expected uint8 (or float in [0, 255])")
    return images


def cache_key(name: str, images: np.ndarray, runtime_name: str = "keras") -> str:
    """Cache key of the features of ``images`` under backbone ``name`` through ``runtime_name``.

    Covers the backbone, its weight file, the image array (so its size), the runtime and
    ``CACHE_VERSION``, so features from different runtimes are never mixed.
    """
    weights = backbones.weights_sha256(name)
    return cache.digest("features", name, weights, images, runtime_name, CACHE_VERSION)


@functools.lru_cache(maxsize=4)
def _shared_model(name: str):
    return backbones.load(name)


@functools.lru_cache(maxsize=8)
def runner(name: str, image_shape: tuple, runtime_name: str, batch_size: int = BATCH_SIZE):
    """The compiled feature extractor of backbone ``name`` (kept for the process)."""
    return runtime.compile_model(
        _shared_model(name),
        image_shape,
        runtime_name,
        batch_size,
        cache_key=f"{name}|{backbones.weights_sha256(name)}",
    )


def _extract(compiled, images: np.ndarray, show: bool, desc: str) -> np.ndarray:
    with logs.progress(len(images), desc, "image", enabled=show) as bar:
        return compiled(images, progress=bar).reshape(len(images), -1)


def _check(name: str, images, batch_size) -> np.ndarray:
    spec = backbones.spec(name)
    images = _validate_images(images)
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
    if min(images.shape[1:3]) < spec.min_size:
        raise ValueError(
            f"images are {images.shape[1]}x{images.shape[2]} px; {name} needs at least "
            f"{spec.min_size} px per side"
        )
    backbones.require(name)
    return images


def extract(
    name: str,
    images,
    batch_size: int = BATCH_SIZE,
    progress: bool = True,
    runtime_name: str | None = None,
) -> np.ndarray:
    """Pooled backbone features of ``images``, cached on disk.

    Parameters
    ----------
    name : a key of ``backbones.BACKBONES``.
    images : ndarray, shape (N, H, W, 3), uint8 (or float with values in [0, 255]), RGB; fed at
        their own size (resize them beforehand, e.g. with ``data.load_face_mask(image_size=...)``).
    batch_size : images per forward pass.
    progress : show a progress bar.
    runtime_name : one of ``runtime.RUNTIMES``; default ``runtime.choose_runtime(N)``. Every runtime
        gives the Keras reference's features to within ``MAX_RELATIVE_DIFFERENCE``.

    Returns
    -------
    ndarray, shape (N, D), float32
        D = ``BACKBONES[name].feature_dim``. Read from the cache (``cache_key``) when the same
        backbone weights have already seen the same image array through the same runtime.
    """
    images = _check(name, images, batch_size)
    runtime_name = runtime_name or runtime.choose_runtime(len(images))
    if len(images) == 0:
        return np.zeros((0, backbones.spec(name).feature_dim), np.float32)

    def compute():
        try:
            compiled = runner(name, tuple(images.shape[1:]), runtime_name, int(batch_size))
        except Exception as error:
            if runtime_name == "keras":
                raise
            raise _ConversionFailed(type(error).__name__) from error
        return _extract(compiled, images, progress, f"{name} features")

    label = f"{name}-{images.shape[1]}x{images.shape[2]}-{runtime_name}"
    try:
        return cache.cached_array("features", cache_key(name, images, runtime_name), compute, label)
    except _ConversionFailed as failure:  # must not stop a chapter: use the reference
        print(f"{name}: {runtime_name} failed ({failure}); using keras", file=sys.stderr)
        return extract(name, images, batch_size, progress, "keras")


class _ConversionFailed(RuntimeError):
    """A fast runtime could not compile the backbone; the message names the error's type."""


def benchmark(
    name: str, images, batch_size: int = BATCH_SIZE, runtime_name: str = "keras", quiet=False
) -> float:
    """Measure feature-extraction throughput (no cache), print it and return images per second.

    Compilation and one warm-up batch are excluded from the timing.
    """
    images = _check(name, images, batch_size)
    compiled = runner(name, tuple(images.shape[1:]), runtime_name, int(batch_size))
    compiled.predict_batch(images[:batch_size])
    start = time.perf_counter()
    compiled(images)
    elapsed = time.perf_counter() - start
    rate = len(images) / elapsed
    if not quiet:
        print(
            f"{name} ({runtime_name}): {len(images)} images of {images.shape[1]}x"
            f"{images.shape[2]} px in {elapsed:.2f} s = {rate:.1f} images/s "
            f"({runtime.cpu_threads()} CPU cores)"
        )
    return rate


@dataclass
class FeatureSet:
    """Pooled backbone features of the face-mask images, with their labels and split.

    Attributes
    ----------
    features : ndarray, shape (N, D), float32
    labels : ndarray, shape (N,), int64; 1 = with_mask
    split : ndarray, shape (N,), str in {"train", "val", "calib", "test"}
    paths : list of N paths relative to the data folder
    groups : ndarray, shape (N,), int64; near-duplicate group ids
    backbone : the backbone's registry name
    image_size : side of the images fed to the backbone, in pixels
    """

    features: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    paths: list[str]
    groups: np.ndarray
    backbone: str
    image_size: int

    def __len__(self) -> int:
        return len(self.labels)

    def where(self, split_name: str) -> tuple[np.ndarray, np.ndarray]:
        """(features, labels) of one split."""
        mask = self.split == split_name
        if not mask.any():
            raise ValueError(
                f"split_name={split_name!r} selects nothing; splits: {set(self.split)}"
            )
        return self.features[mask], self.labels[mask]


FEATURE_SETTINGS = ("backbone", "image_size", "limit")


def face_mask_features(
    settings: Mapping, data_dir=None, seed: int = 0, progress: bool = True
) -> FeatureSet:
    """The face-mask images' pooled features under a ``FEATURES`` settings block.

    Parameters
    ----------
    settings : mapping with ``backbone``, ``image_size`` and ``limit`` (None: all images), e.g.
        ``profiles.get(profile, "features")``.
    data_dir, seed : passed to ``data.load_face_mask`` (images, labels and split come from there).

    Cached, so chapters share one extraction.
    """
    from dlbook.facemask import data

    missing = [key for key in FEATURE_SETTINGS if key not in settings]
    if missing:
        raise ValueError(f"settings lacks {missing}; expected the keys {FEATURE_SETTINGS}")
    images = data.load_face_mask(
        data_dir=data_dir,
        image_size=settings["image_size"],
        limit=settings["limit"],
        seed=seed,
        progress=progress,
    )
    feats = extract(settings["backbone"], images.images, progress=progress)
    return FeatureSet(
        features=feats,
        labels=images.labels,
        split=images.split,
        paths=list(images.paths),
        groups=images.groups,
        backbone=settings["backbone"],
        image_size=settings["image_size"],
    )
