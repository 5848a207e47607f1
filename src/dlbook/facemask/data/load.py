"""The loaded dataset: decoded images with labels, near-duplicate groups and split."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from dlbook.facemask.data.decode import COLOR_MODES, _cached_decode
from dlbook.facemask.data.fetch import resolve_data_dir
from dlbook.facemask.data.manifest import (
    CLASS_NAMES,
    DataUnavailableError,
    list_image_files,
    manifest_sha256,
    verify_data,
)
from dlbook.facemask.data.split import (
    SPLIT_FRACTIONS,
    SPLIT_NAMES,
    duplicate_groups,
    grouped_split,
    stratified_subset,
)


@dataclass
class ImageSet:
    """Decoded images with labels, paths, near-duplicate groups and split.

    Attributes
    ----------
    images : ndarray, shape (N, H, W, C), uint8
    labels : ndarray, shape (N,), int64; 1 = with_mask
    paths : list of N paths relative to the data folder
    split : ndarray, shape (N,), str in SPLIT_NAMES
    groups : ndarray, shape (N,), int64; near-duplicate group ids
    skipped : (path, reason) of every file that could not be decoded
    """

    images: np.ndarray
    labels: np.ndarray
    paths: list[str]
    split: np.ndarray
    groups: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index) -> ImageSet:
        """Return the items selected by an index array or boolean mask (``skipped`` is kept)."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return replace(
            self,
            images=self.images[index],
            labels=self.labels[index],
            paths=[self.paths[i] for i in index],
            split=self.split[index],
            groups=self.groups[index],
        )

    def where(self, split_name: str) -> ImageSet:
        """Return the items of one split."""
        if split_name not in SPLIT_NAMES:
            raise ValueError(f"split_name={split_name!r} is unknown; use one of {SPLIT_NAMES}")
        return self.subset(self.split == split_name)


def _fingerprint(data_dir: Path, rel_paths: list[str], verified: bool) -> str:
    """Identify the data's content: the manifest when verified, else names, sizes and times."""
    digest = hashlib.sha256()
    if verified:
        digest.update(manifest_sha256().encode())
    else:
        for rel in rel_paths:
            stat = (data_dir / rel).stat()
            digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def load_face_mask(
    data_dir: str | os.PathLike | None = None,
    image_size: int = 64,
    color_mode: str = "rgb",
    limit: int | None = None,
    seed: int = 0,
    verify: bool = True,
    allow_mismatch: bool = False,
    progress: bool = True,
) -> ImageSet:
    """Load the face-mask images, decoded, labelled, grouped and split.

    Parameters
    ----------
    data_dir : the dataset folder (see ``resolve_data_dir``).
    image_size : side of the square images.
    color_mode : "rgb" (C = 3) or "grayscale" (C = 1).
    limit : keep a stratified random subset of this many images (chosen by ``seed``); the split
        of an image does not depend on it.
    seed : fixes the split and the subset.
    verify : check the files against the manifest first.
    allow_mismatch : with ``verify``, warn instead of raising when the files differ.

    Returns
    -------
    ImageSet
    """
    if color_mode not in COLOR_MODES:
        raise ValueError(
            f"color_mode={color_mode!r} is not supported; use one of {tuple(COLOR_MODES)}"
        )
    if not isinstance(image_size, (int, np.integer)) or image_size < 8:
        raise ValueError(f"image_size={image_size!r} must be an integer of at least 8")
    if limit is not None and limit < 2:
        raise ValueError(f"limit={limit!r} must be None or at least 2")
    folder = resolve_data_dir(data_dir)
    rel_paths = list_image_files(folder)
    if not rel_paths:
        raise DataUnavailableError(
            f"{folder} has no files in {CLASS_NAMES[0]}/ or {CLASS_NAMES[1]}/"
        )
    verified = False
    if verify:
        verified = verify_data(folder, allow_mismatch=allow_mismatch).ok
    fingerprint = _fingerprint(folder, rel_paths, verified)
    images, kept, skipped = _cached_decode(
        folder, rel_paths, fingerprint, image_size, color_mode, progress
    )
    labels = np.array([CLASS_NAMES.index(rel.split("/", 1)[0]) for rel in kept], dtype=np.int64)
    group_of = duplicate_groups(folder, rel_paths, fingerprint, progress)
    groups = np.array([group_of[rel] for rel in kept], dtype=np.int64)
    split = grouped_split(labels, groups, SPLIT_FRACTIONS, seed)
    dataset = ImageSet(images, labels, kept, split, groups, skipped)
    if limit is not None and limit < len(dataset):
        dataset = dataset.subset(stratified_subset(labels, limit, seed))
    return dataset
