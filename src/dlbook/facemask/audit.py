"""Audit the face-mask data before trusting any accuracy: duplicates, leakage and shortcuts.

Near-duplicates are found with ``dlbook.facemask.data``'s pair finders (exact bytes, difference hash and
DCT perceptual hash, mirror images included), the definition the grouped split uses, recomputed
here independently of the loader's groups. Shortcuts are properties that separate the classes
without looking at a mask: file format, colour mode, image size and a blurred thumbnail. A
"shortcut model" trained on those alone says how much accuracy is there for the taking;
``shortcut_free_mask`` picks the images on which those properties cannot help.
"""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from dlbook.facemask import data


def cross_split_pairs(pairs: np.ndarray, split: np.ndarray) -> np.ndarray:
    """The pairs whose two members sit in different splits, shape (Q, 2), int64."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    split = np.asarray(split)
    return pairs[split[pairs[:, 0]] != split[pairs[:, 1]]]


def group_sizes(n: int, pairs: np.ndarray) -> np.ndarray:
    """Sizes of the connected groups of ``pairs`` over ``n`` items, shape (G,), int64."""
    return np.bincount(data.connected_groups(n, np.asarray(pairs).reshape(-1, 2)))


def duplicate_summary(
    gray: np.ndarray,
    labels: np.ndarray,
    split: np.ndarray,
    data_dir: str | os.PathLike,
    rel_paths: list[str],
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Count near-duplicates by method, and those crossing the splits or the classes.

    Parameters
    ----------
    gray : ndarray, shape (N, H, W, 1), uint8 (the data module hashes 32-px grayscale images)
    labels, split : ndarray, shape (N,)
    data_dir, rel_paths : where the N files are, for byte-identical duplicates.

    Returns
    -------
    (table, pairs): one row per method ("exact", "dhash", "phash", "any") with columns
    ``pairs``, ``groups`` (groups of two or more), ``images_in_groups``, ``cross_split_pairs``,
    ``cross_class_pairs``; and the pair arrays by method.
    """
    labels, split = np.asarray(labels), np.asarray(split)
    if not len(gray) == len(labels) == len(split) == len(rel_paths):
        raise ValueError(
            f"gray, labels, split and rel_paths must have equal lengths; got {len(gray)}, "
            f"{len(labels)}, {len(split)}, {len(rel_paths)}"
        )
    found = {
        "exact": data.exact_duplicate_pairs(data_dir, rel_paths),
        "dhash": data.duplicate_pairs(gray, "dhash"),
        "phash": data.duplicate_pairs(gray, "phash"),
    }
    found["any"] = np.unique(np.concatenate(list(found.values())), axis=0).reshape(-1, 2)
    rows = []
    for method, pairs in found.items():
        sizes = group_sizes(len(labels), pairs)
        rows.append(
            {
                "method": method,
                "pairs": len(pairs),
                "groups": int((sizes > 1).sum()),
                "images_in_groups": int(sizes[sizes > 1].sum()),
                "cross_split_pairs": len(cross_split_pairs(pairs, split)),
                "cross_class_pairs": int((labels[pairs[:, 0]] != labels[pairs[:, 1]]).sum()),
            }
        )
    return pd.DataFrame(rows).set_index("method"), found


# ---------------------------------------------------------------------------------------------
# Splits


def write_splits_csv(
    path: str | os.PathLike,
    rel_paths: list[str],
    labels: np.ndarray,
    split: np.ndarray,
    groups: np.ndarray,
) -> Path:
    """Write ``path,label,split,group`` (label as class name), one row per image."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["path", "label", "split", "group"])
        for rel, label, name, group in zip(rel_paths, labels, split, groups, strict=True):
            writer.writerow([rel, data.CLASS_NAMES[int(label)], str(name), int(group)])
    return path


def split_table(labels: np.ndarray, split: np.ndarray, groups: np.ndarray) -> pd.DataFrame:
    """Images per split and class, groups per split, and the with_mask share."""
    frame = pd.DataFrame({"label": labels, "split": split, "group": groups})
    table = frame.groupby("split").agg(
        images=("label", "size"), with_mask=("label", "sum"), groups=("group", "nunique")
    )
    table["without_mask"] = table["images"] - table["with_mask"]
    table["with_mask_share"] = table["with_mask"] / table["images"]
    order = [name for name in data.SPLIT_NAMES if name in table.index]
    return table.loc[order, ["images", "with_mask", "without_mask", "groups", "with_mask_share"]]


# ---------------------------------------------------------------------------------------------
# Shortcuts


def file_metadata(data_dir: str | os.PathLike, rel_paths: list[str]) -> pd.DataFrame:
    """Format, colour mode, size and file size of each file, read from its header.

    Returns
    -------
    DataFrame with one row per path and columns ``path``, ``format``, ``mode``, ``width``,
    ``height``, ``bytes``, ``short_side``, ``aspect`` (width / height). Undecodable files get
    format "unreadable" and zero sizes.
    """
    rows = []
    for rel in rel_paths:
        full = Path(data_dir) / rel
        row = {"path": rel, "format": "unreadable", "mode": "", "width": 0, "height": 0}
        try:
            with Image.open(full) as image:
                row.update(format=image.format, mode=image.mode, width=image.width)
                row["height"] = image.height
        except (OSError, UnidentifiedImageError):
            pass
        row["bytes"] = full.stat().st_size if full.exists() else 0
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame["short_side"] = frame[["width", "height"]].min(axis=1)
    frame["aspect"] = frame["width"] / frame["height"].where(frame["height"] > 0, 1)
    return frame


def metadata_by_class(meta: pd.DataFrame, labels: np.ndarray) -> pd.DataFrame:
    """Per class: image count, share of JPEG / RGB files, and short-side and aspect quantiles."""
    frame = meta.assign(label=[data.CLASS_NAMES[int(k)] for k in labels])
    return frame.groupby("label").agg(
        images=("path", "size"),
        jpeg_share=("format", lambda s: float((s == "JPEG").mean())),
        rgb_share=("mode", lambda s: float((s == "RGB").mean())),
        short_side_min=("short_side", "min"),
        short_side_median=("short_side", "median"),
        short_side_max=("short_side", "max"),
        aspect_median=("aspect", "median"),
        kilobytes_median=("bytes", lambda s: float(s.median() / 1024)),
    )


def shortcut_features(
    meta: pd.DataFrame, images: np.ndarray | None = None, thumbnail: int = 4
) -> np.ndarray:
    """Features a classifier could use without looking at a mask.

    Parameters
    ----------
    meta : from ``file_metadata``, N rows.
    images : ndarray, shape (N, H, W, 3), uint8, or None for metadata only. Each image is
        reduced to a ``thumbnail`` x ``thumbnail`` colour thumbnail (block means: a heavy blur).

    Returns
    -------
    ndarray, shape (N, F), float64: JPEG / PNG / RGB / RGBA / palette indicators, log width,
    log height, log short side, aspect, log bytes, then the thumbnail scaled to [0, 1].
    """
    columns = [
        meta["format"].eq("JPEG"),
        meta["format"].eq("PNG"),
        meta["mode"].eq("RGB"),
        meta["mode"].eq("RGBA"),
        meta["mode"].eq("P"),
        np.log1p(meta["width"]),
        np.log1p(meta["height"]),
        np.log1p(meta["short_side"]),
        meta["aspect"],
        np.log1p(meta["bytes"]),
    ]
    features = np.stack([np.asarray(c, dtype=np.float64) for c in columns], axis=1)
    if images is None:
        return features
    images = np.asarray(images)
    if images.ndim != 4 or len(images) != len(meta):
        raise ValueError(
            f"images must have shape (N, H, W, C) with N = {len(meta)}; got {images.shape}"
        )
    n, height, width, channels = images.shape
    if height % thumbnail or width % thumbnail:
        raise ValueError(f"thumbnail={thumbnail} must divide the image size {height}x{width}")
    blocks = images.reshape(n, thumbnail, height // thumbnail, thumbnail, width // thumbnail, -1)
    thumbs = blocks.mean(axis=(2, 4)).reshape(n, -1) / 255.0
    return np.concatenate([features, thumbs], axis=1)


def fit_shortcut_model(features: np.ndarray, labels: np.ndarray, seed: int = 0):
    """A gradient-boosted tree classifier on shortcut features (scikit-learn estimator)."""
    model = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, random_state=seed)
    # One thread: on a small table, OpenMP start-up costs more than it saves on a busy machine.
    with threadpool_limits(limits=1):
        return model.fit(features, labels)


def shortcut_free_mask(
    meta: pd.DataFrame, labels: np.ndarray, quantiles: tuple[float, float] = (0.05, 0.95)
) -> np.ndarray:
    """Images on which format, mode and size cannot tell the classes apart.

    Keeps RGB JPEG files whose short side lies within the ``quantiles`` of the short sides of
    the without_mask RGB JPEG files (so both classes cover the same size range).

    Returns
    -------
    ndarray, shape (N,), bool
    """
    labels = np.asarray(labels)
    jpeg = (meta["format"].eq("JPEG") & meta["mode"].eq("RGB")).to_numpy()
    reference = meta["short_side"].to_numpy()[jpeg & (labels == 0)]
    if reference.size == 0:
        return np.zeros(len(meta), dtype=bool)
    low, high = np.quantile(reference, quantiles)
    short = meta["short_side"].to_numpy()
    return jpeg & (short >= low) & (short <= high)


# ---------------------------------------------------------------------------------------------
# Labels: suspected label issues and nearest neighbours


def label_issues(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Images whose label the model's out-of-sample probabilities call into question.

    A thin wrapper around cleanlab's ``find_label_issues`` (confident learning), so the audit
    rests on a maintained library rather than a hand-rolled threshold.

    Parameters
    ----------
    labels : ndarray, shape (N,), int, 1 = with_mask: the labels as given (the manifest).
    probs : ndarray, shape (N,), float: out-of-fold P(with_mask) of each image, i.e. from a
        model that did not train on it.

    Returns
    -------
    ndarray, shape (K,), int64: indices of the suspected label issues, most suspicious first
    (lowest probability of the given label).
    """
    with warnings.catch_warnings():
        # cleanlab imports tqdm.auto, which warns in a notebook without ipywidgets.
        warnings.filterwarnings("ignore", message="IProgress not found")
        from cleanlab.filter import find_label_issues

    labels = np.asarray(labels).astype(np.int64).ravel()
    probs = np.asarray(probs, dtype=np.float64).ravel()
    if labels.shape != probs.shape:
        raise ValueError(f"labels {labels.shape} and probs {probs.shape} must have the same shape")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    pred_probs = np.clip(np.stack([1 - probs, probs], axis=1), 1e-6, 1 - 1e-6)
    pred_probs /= pred_probs.sum(axis=1, keepdims=True)
    ranked = find_label_issues(
        labels, pred_probs, return_indices_ranked_by="self_confidence", n_jobs=1
    )
    return np.asarray(ranked, dtype=np.int64)


def nearest_neighbours(query: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest reference item of each query item by cosine distance.

    Parameters
    ----------
    query : ndarray, shape (Q, D), float
    reference : ndarray, shape (R, D), float

    Returns
    -------
    (index, distance): ndarrays of shape (Q,), int64 indices into ``reference`` and float64
    cosine distances (0 = same direction).
    """
    query = np.asarray(query, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if query.ndim != 2 or reference.ndim != 2 or query.shape[1] != reference.shape[1]:
        raise ValueError(
            f"query {query.shape} and reference {reference.shape} must be (Q, D) and (R, D)"
        )
    if len(reference) == 0:
        raise ValueError("reference is empty")

    def unit(x):
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    similarity = unit(query) @ unit(reference).T
    index = similarity.argmax(axis=1)
    return index.astype(np.int64), 1.0 - similarity[np.arange(len(query)), index]
