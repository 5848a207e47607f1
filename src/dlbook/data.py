"""The face-mask dataset: where it is, whether it is intact, how it is decoded and split.

The images live outside the repository (``--data-dir``, ``$DLBOOK_DATA`` or ``data/face-mask/``);
``data/face_mask_manifest.csv`` pins every file by sha256. Decoding copes with the real files' mix
of formats and modes; an unreadable file is reported by name and skipped, never fatal. Decoded
arrays are cached on disk by (data fingerprint, image size, colour mode).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dlbook import paths

CLASS_NAMES = ("without_mask", "with_mask")
"""Class folder names; the index is the label, so label 1 (the positive class) is ``with_mask``."""

MANIFEST_PATH = paths.REPO_ROOT / "data" / "face_mask_manifest.csv"
MANIFEST_COLUMNS = ("path", "class", "sha256", "bytes", "width", "height", "format", "mode")
DEFAULT_DATA_DIR = paths.REPO_ROOT / "data" / "face-mask"
UPSTREAM_COMMIT = "7e500749401bad4bb338790fbdb89b58e41ef2d9"
UPSTREAM_URL = f"https://github.com/chandrikadeb7/Face-Mask-Detection/archive/{UPSTREAM_COMMIT}.zip"
SPLIT_NAMES = ("train", "val", "calib", "test")
SPLIT_FRACTIONS = {"train": 0.6, "val": 0.1, "calib": 0.15, "test": 0.15}
DUPLICATE_MAX_DISTANCE = 4
"""Largest Hamming distance between 64-bit difference hashes still called a near-duplicate."""

PHASH_MAX_DISTANCE = 4
"""Largest Hamming distance between 64-bit perceptual hashes still called a near-duplicate."""

COLOR_MODES = {"rgb": 3, "grayscale": 1}
BACKGROUND = (255, 255, 255)
"""Transparent pixels are composited onto white."""


class DataError(Exception):
    """Base class for problems with the dataset."""


class DataUnavailableError(DataError):
    """The dataset is neither on disk nor downloadable."""


class DataVerificationError(DataError):
    """The files on disk differ from the manifest."""


class ImageDecodeError(DataError):
    """One file could not be decoded; the message names the file and the reason."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


# ---------------------------------------------------------------------------------------------
# Locating and fetching the data


def resolve_data_dir(data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Return the dataset folder: ``data_dir``, else ``$DLBOOK_DATA``, else ``data/face-mask/``.

    When the default folder is missing and ``download`` is true, the pinned upstream archive is
    downloaded and unpacked there; without internet this fails with a message saying how to point
    at a local copy.

    Raises
    ------
    DataUnavailableError
        If the folder does not exist and cannot be downloaded.
    """
    chosen = data_dir or os.environ.get("DLBOOK_DATA")
    if chosen:
        folder = Path(chosen).expanduser().resolve()
        if not folder.is_dir():
            source = "data_dir" if data_dir else "$DLBOOK_DATA"
            raise DataUnavailableError(
                f"{source} points at {folder}, which is not a folder. Point it at a folder with "
                f"the class subfolders {CLASS_NAMES[1]}/ and {CLASS_NAMES[0]}/."
            )
        return folder
    if DEFAULT_DATA_DIR.is_dir():
        return DEFAULT_DATA_DIR
    if not download:
        raise DataUnavailableError(_how_to_point_at_data(DEFAULT_DATA_DIR))
    try:
        download_dataset(DEFAULT_DATA_DIR)
    except OSError as error:
        raise DataUnavailableError(
            f"could not download the dataset ({error}). " + _how_to_point_at_data(DEFAULT_DATA_DIR)
        ) from error
    return DEFAULT_DATA_DIR


def _how_to_point_at_data(default: Path) -> str:
    return (
        f"The face-mask dataset is not at {default}. Either set DLBOOK_DATA=/path/to/face-mask "
        "(or pass --data-dir), pointing at a folder with with_mask/ and without_mask/, or run "
        f"with internet access so that the pinned archive ({UPSTREAM_URL}) can be downloaded."
    )


def download_dataset(
    dest: str | os.PathLike,
    url: str = UPSTREAM_URL,
    timeout: float = 60,
    manifest_path: str | os.PathLike = MANIFEST_PATH,
) -> Path:
    """Download the pinned upstream archive and unpack its ``dataset/`` folder into ``dest``.

    The unpacked files are verified against the manifest before ``dest`` is created, so an
    interrupted or altered download never leaves a half-filled data folder behind.
    """
    dest = Path(dest)
    print(f"downloading the face-mask dataset from {url} ...", file=sys.stderr)
    with urllib.request.urlopen(url, timeout=timeout) as response:
        payload = response.read()
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / "face-mask"
        _unpack_dataset_folder(payload, staging)
        report = verify_files(staging, read_manifest(manifest_path))
        # Upstream has one file the manifest leaves out (see the data README); drop extras.
        for rel in report.extra:
            (staging / rel).unlink()
        if report.missing or report.changed:
            raise DataVerificationError(report.describe(staging))
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), dest)
    return dest


def _unpack_dataset_folder(zip_bytes: bytes, dest: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
        for member in archive.infolist():
            parts = Path(member.filename).parts
            if len(parts) < 4 or parts[1] != "dataset" or member.is_dir():
                continue
            target = dest.joinpath(*parts[2:])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(member))


# ---------------------------------------------------------------------------------------------
# The manifest


def list_image_files(data_dir: str | os.PathLike) -> list[str]:
    """Return the relative paths (``class/name``) of every file in the class folders, sorted."""
    root = Path(data_dir)
    found = []
    for class_name in CLASS_NAMES:
        folder = root / class_name
        if folder.is_dir():
            found += [
                f"{class_name}/{p.name}"
                for p in folder.iterdir()
                if p.is_file() and not p.name.startswith(".")
            ]
    return sorted(found)


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_file(data_dir: str | os.PathLike, rel_path: str) -> dict:
    """Return one manifest row for ``rel_path``; undecodable files get empty size and format."""
    full = Path(data_dir) / rel_path
    row = {
        "path": rel_path,
        "class": rel_path.split("/", 1)[0],
        "sha256": file_sha256(full),
        "bytes": full.stat().st_size,
        "width": "",
        "height": "",
        "format": "",
        "mode": "",
    }
    try:
        with Image.open(full) as image:
            row.update(width=image.width, height=image.height, format=image.format, mode=image.mode)
    except (OSError, UnidentifiedImageError):
        pass
    return row


def build_manifest(data_dir: str | os.PathLike) -> list[dict]:
    """Return manifest rows for every file in ``data_dir``'s class folders."""
    return [describe_file(data_dir, rel) for rel in list_image_files(data_dir)]


def write_manifest(rows: list[dict], path: str | os.PathLike = MANIFEST_PATH) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_manifest(path: str | os.PathLike = MANIFEST_PATH) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def manifest_sha256(path: str | os.PathLike = MANIFEST_PATH) -> str:
    return file_sha256(path)


@dataclass
class VerificationReport:
    """How the files on disk compare with the manifest (relative paths)."""

    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.changed)

    def describe(self, data_dir, limit: int = 10) -> str:
        lines = [f"the data in {data_dir} does not match {MANIFEST_PATH.name}:"]
        for label, names in (
            ("missing", self.missing),
            ("not in the manifest", self.extra),
            ("changed (sha256 differs)", self.changed),
        ):
            if names:
                shown = ", ".join(names[:limit]) + (" ..." if len(names) > limit else "")
                lines.append(f"  {len(names)} {label}: {shown}")
        return "\n".join(lines)


def verify_files(data_dir: str | os.PathLike, manifest_rows: list[dict]) -> VerificationReport:
    """Compare the files in ``data_dir`` with ``manifest_rows`` by name and sha256."""
    expected = {row["path"]: row for row in manifest_rows}
    present = set(list_image_files(data_dir))
    report = VerificationReport(
        missing=sorted(set(expected) - present), extra=sorted(present - set(expected))
    )
    for rel in sorted(present & set(expected)):
        row = expected[rel]
        full = Path(data_dir) / rel
        if full.stat().st_size != int(row["bytes"]) or file_sha256(full) != row["sha256"]:
            report.changed.append(rel)
    return report


def verify_data(
    data_dir: str | os.PathLike,
    manifest_path: str | os.PathLike = MANIFEST_PATH,
    allow_mismatch: bool = False,
) -> VerificationReport:
    """Check ``data_dir`` against the manifest; raise unless it matches or ``allow_mismatch``.

    Raises
    ------
    DataVerificationError
        Naming the missing, extra and changed files, when they differ and ``allow_mismatch`` is
        false.
    """
    report = verify_files(data_dir, read_manifest(manifest_path))
    if not report.ok:
        message = report.describe(data_dir)
        if not allow_mismatch:
            raise DataVerificationError(
                message + "\nPass --allow-data-mismatch to proceed with the files that are there."
            )
        warnings.warn(message, stacklevel=2)
    return report


# ---------------------------------------------------------------------------------------------
# Decoding


def _to_rgb(image: Image.Image) -> Image.Image:
    """Return an RGB image, compositing transparency onto white and scaling 16-bit to 8-bit."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image, dtype=np.uint32)
        scaled = (values >> 8) if values.max(initial=0) > 255 else values
        image = Image.fromarray(scaled.astype(np.uint8), mode="L")
    elif image.mode == "F":
        values = np.clip(np.asarray(image, dtype=np.float32), 0, 255)
        image = Image.fromarray(values.astype(np.uint8), mode="L")
    has_alpha = (
        image.mode in ("RGBA", "LA", "PA")
        or (image.mode == "P" and "transparency" in image.info)
        or (image.mode in ("L", "RGB") and "transparency" in image.info)
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def decode_image(
    path: str | os.PathLike, image_size: int | None = 64, color_mode: str = "rgb"
) -> np.ndarray:
    """Decode one image file into a uint8 array.

    Parameters
    ----------
    path : path of the file; its format is read from its content, not its extension.
    image_size : side of the square output (the image is resized without cropping), or None to
        keep the original size.
    color_mode : "rgb" or "grayscale".

    Returns
    -------
    ndarray, shape (image_size, image_size, C), uint8, C = 3 (rgb) or 1 (grayscale).

    Raises
    ------
    ImageDecodeError
        For an empty, truncated, unrecognised or otherwise undecodable file.
    """
    if color_mode not in COLOR_MODES:
        raise ValueError(
            f"color_mode={color_mode!r} is not supported; use one of {tuple(COLOR_MODES)}"
        )
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise ImageDecodeError(path, f"cannot read the file ({error.strerror})") from error
    if size == 0:
        raise ImageDecodeError(path, "empty file (0 bytes)")
    try:
        with Image.open(path) as image:
            if image_size and image.format == "JPEG":
                image.draft("RGB", (image_size, image_size))
            image.load()
            image = ImageOps.exif_transpose(image)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                image = _to_rgb(image)
    except UnidentifiedImageError as error:
        raise ImageDecodeError(path, "not an image in a format Pillow recognises") from error
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageDecodeError(path, f"corrupt or truncated image ({error})") from error
    if image_size:
        image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
    if color_mode == "grayscale":
        return np.asarray(image.convert("L"), dtype=np.uint8)[..., None]
    return np.asarray(image, dtype=np.uint8)


def decode_images(
    data_dir: str | os.PathLike,
    rel_paths: list[str],
    image_size: int,
    color_mode: str,
    progress: bool = True,
) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
    """Decode ``rel_paths``; return (images (N, S, S, C) uint8, decoded paths, skipped).

    Unreadable files are reported on stderr with the reason and listed in ``skipped`` as
    ``(path, reason)``; the others are decoded.
    """
    channels = COLOR_MODES[color_mode]
    images = np.empty((len(rel_paths), image_size, image_size, channels), dtype=np.uint8)
    kept, skipped = [], []
    iterator = rel_paths
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(rel_paths, desc=f"decoding {image_size}px {color_mode}", leave=False)
    for rel in iterator:
        try:
            images[len(kept)] = decode_image(Path(data_dir) / rel, image_size, color_mode)
        except ImageDecodeError as error:
            print(f"skipped {error.path}: {error.reason}", file=sys.stderr)
            skipped.append((rel, error.reason))
            continue
        kept.append(rel)
    return images[: len(kept)], kept, skipped


# ---------------------------------------------------------------------------------------------
# Near-duplicates and the grouped split


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


# ---------------------------------------------------------------------------------------------
# The loaded dataset


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


def _cached_decode(data_dir, rel_paths, fingerprint, image_size, color_mode, progress):
    cache_file = paths.cache_dir() / "images" / f"{fingerprint}-{image_size}-{color_mode}.npz"
    if cache_file.exists():
        with np.load(cache_file, allow_pickle=False) as stored:
            skipped = list(
                zip(
                    stored["skipped_paths"].tolist(),
                    stored["skipped_reasons"].tolist(),
                    strict=True,
                )
            )
            for rel, reason in skipped:
                print(f"skipped {Path(data_dir) / rel}: {reason}", file=sys.stderr)
            return stored["images"], stored["paths"].tolist(), skipped
    images, kept, skipped = decode_images(data_dir, rel_paths, image_size, color_mode, progress)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_name(cache_file.name + f".{os.getpid()}.tmp.npz")
    np.savez(
        tmp,
        images=images,
        paths=np.array(kept, dtype=str),
        skipped_paths=np.array([s[0] for s in skipped], dtype=str),
        skipped_reasons=np.array([s[1] for s in skipped], dtype=str),
    )
    tmp.replace(cache_file)
    return images, kept, skipped


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
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    cache_file.write_text(json.dumps(group_of))
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


# ---------------------------------------------------------------------------------------------
# Synthetic data for tests


def make_synthetic_dataset(
    root: str | os.PathLike, n_per_class: int = 20, image_size: int = 48, seed: int = 0
) -> Path:
    """Write a tiny two-class dataset in the face-mask folder format and return ``root``.

    A ``without_mask`` image is a skin-coloured oval face on a random background; a
    ``with_mask`` image adds a coloured band over the lower half of the face. Files alternate
    between JPEG and PNG so both decoders are exercised.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    yy, xx = np.mgrid[0:image_size, 0:image_size] / image_size
    for label, class_name in enumerate(CLASS_NAMES):
        (root / class_name).mkdir(parents=True, exist_ok=True)
        for index in range(n_per_class):
            cx, cy = rng.uniform(0.4, 0.6, size=2)
            face = ((xx - cx) / 0.28) ** 2 + ((yy - cy) / 0.36) ** 2 <= 1
            image = np.empty((image_size, image_size, 3), dtype=np.float64)
            image[:] = rng.uniform(0, 255, size=3)
            image[face] = np.array([224, 172, 140]) * rng.uniform(0.7, 1.1)
            if label == 1:
                band = face & (yy > cy + 0.02)
                image[band] = rng.uniform(0, 255, size=3)
            image += rng.normal(0, 6, size=image.shape)
            pixels = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
            suffix = "jpg" if index % 2 == 0 else "png"
            pixels.save(root / class_name / f"{class_name}_{index:03d}.{suffix}")
    return root
