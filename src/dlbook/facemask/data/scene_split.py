"""The fixed train / validation / test split of the mask-scenes photos, near-duplicates kept together.

Photos of the same event or crowd (the same person against another wall, one crowd shot twice)
are found with the hashes chapter 4 uses for crops (``split.duplicate_pairs``), at looser
distances because whole photos of one event differ more than re-encoded crops; the connected
photos form a group, and whole groups are dealt to the parts with ``split.grouped_split``,
stratified by the rarest class a photo holds, so every part has ``mask_weared_incorrect`` faces.
The result is committed as ``data/mask_scenes_split.csv``; ``read_split`` reads it back and
checks it still names the photos at hand.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
from PIL import Image

from dlbook.core import paths
from dlbook.facemask.data import split
from dlbook.facemask.data.voc import SCENE_CLASSES, AnnotationError, Photo

SCENE_SPLIT_PATH = paths.REPO_ROOT / "data" / "mask_scenes_split.csv"
SCENE_PARTS = {"train": 0.6, "val": 0.2, "test": 0.2}
PHOTO_HASH_SIZE = 64
"""Photos are shrunk to this square grayscale thumbnail before hashing."""
PHOTO_MAX_DISTANCE = {"dhash": 8, "phash": 12}
"""Hamming distances still called "the same event" for whole photos. Chosen by looking at the
pairs: at these distances the pairs are the same person or crowd seen again; a few unrelated
pairs also join, which only makes groups larger (the safe direction)."""


def photo_thumbnails(photos: list[Photo], size: int = PHOTO_HASH_SIZE) -> np.ndarray:
    """Grayscale thumbnails, shape (N, size, size), uint8."""
    thumbs = []
    for photo in photos:
        with Image.open(photo.image_path) as image:
            gray = image.convert("L").resize((size, size), Image.Resampling.BILINEAR)
            thumbs.append(np.asarray(gray))
    return np.stack(thumbs) if thumbs else np.zeros((0, size, size), np.uint8)


def near_duplicate_photo_pairs(thumbs: np.ndarray) -> np.ndarray:
    """Index pairs (i < j) of photos close by either hash (mirror images included), (P, 2)."""
    found = []
    for method, distance in PHOTO_MAX_DISTANCE.items():
        hash_fn, _ = split.HASH_METHODS[method]
        hashes, mirrored = hash_fn(thumbs), hash_fn(thumbs[:, :, ::-1])
        found.append(split.near_duplicate_pairs(hashes, mirrored, distance))
    pairs = np.concatenate(found).astype(np.int64) if found else np.zeros((0, 2), np.int64)
    return np.unique(pairs, axis=0) if len(pairs) else pairs


def photo_strata(photos: list[Photo]) -> np.ndarray:
    """Per photo, the rarest class among its faces (index into ``SCENE_CLASSES``), shape (N,).

    Rarity is counted over ``photos``; a photo without faces takes the commonest class.
    """
    counts = np.bincount(
        np.concatenate([p.labels for p in photos] + [np.zeros(0, np.int64)]),
        minlength=len(SCENE_CLASSES),
    )
    order = np.argsort(counts, kind="stable")  # rarest first
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    strata = []
    for photo in photos:
        present = np.unique(photo.labels)
        strata.append(present[np.argmin(rank[present])] if len(present) else order[-1])
    return np.array(strata, dtype=np.int64)


def scene_split(photos: list[Photo], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split photos into ``SCENE_PARTS`` with near-duplicate groups kept whole.

    Returns
    -------
    (parts, groups): ndarray (N,) str, the part of each photo; ndarray (N,) int64, its group.

    Raises
    ------
    ValueError
        When some part ends up without a face of some class (too few photos for the split).
    """
    groups = split.connected_groups(
        len(photos), near_duplicate_photo_pairs(photo_thumbnails(photos))
    )
    parts = split.grouped_split(photo_strata(photos), groups, SCENE_PARTS, seed)
    for part in SCENE_PARTS:
        labels = [p.labels for p, s in zip(photos, parts, strict=True) if s == part]
        present = set(np.concatenate(labels + [np.zeros(0, np.int64)]).tolist())
        missing = [SCENE_CLASSES[k] for k in range(len(SCENE_CLASSES)) if k not in present]
        if missing:
            raise ValueError(f"the {part} part has no face of class {missing} (seed {seed})")
    return parts, groups


def write_split(
    photos: list[Photo], parts, groups, path: str | os.PathLike = SCENE_SPLIT_PATH
) -> Path:
    """Write ``stem,part,group`` rows, one per photo, in the photos' order."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["stem", "part", "group"])
        for photo, part, group in zip(photos, parts, groups, strict=True):
            writer.writerow([photo.stem, part, int(group)])
    return path


def read_split(path: str | os.PathLike = SCENE_SPLIT_PATH) -> dict[str, str]:
    """``{stem: part}`` from a split file."""
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["stem"]: row["part"] for row in csv.DictReader(handle)}


def photos_by_part(
    photos: list[Photo], path: str | os.PathLike = SCENE_SPLIT_PATH
) -> dict[str, list[Photo]]:
    """The photos of each part of the saved split.

    Raises
    ------
    AnnotationError
        Naming the split file, when a photo is missing from it.
    """
    assigned = read_split(path)
    unknown = [p.stem for p in photos if p.stem not in assigned]
    if unknown:
        raise AnnotationError(f"{path}: no part for {len(unknown)} photos, e.g. {unknown[:3]}")
    return {part: [p for p in photos if assigned[p.stem] == part] for part in SCENE_PARTS}
