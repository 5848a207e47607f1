"""Chapter 4, section 1: the images at both sizes, and the audit of the data.

``load`` decodes the images once at the backbones' size and once at the custom CNN's;
``audit_data`` finds near-duplicates, split leakage and the shortcuts a model could learn from
file metadata alone, writes ``splits.csv`` and saves the counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dlbook.book import context, present
from dlbook.core import logs
from dlbook.facemask import audit, data


@dataclass(frozen=True)
class Chapter:
    """The run context and what every section needs from the data.

    Attributes
    ----------
    run : the chapter's run context (settings, seed, results folder, ``save``).
    data_dir : the face-mask folder, resolved.
    images : the images at ``settings["image_size"]`` (the backbones' size).
    small : the same images, same order, at ``settings["cnn_image_size"]`` (the custom CNN's).
    meta : file metadata of each image (format, colour mode, size), one row per image.
    resized : the same images at other sizes, decoded on first use (``images_for``).
    """

    run: context.Run
    data_dir: Path
    images: data.ImageSet
    small: data.ImageSet
    meta: pd.DataFrame
    resized: dict = field(default_factory=dict, repr=False, compare=False)


def load(run: context.Run) -> Chapter:
    """Load the images at ``run.settings["image_size"]`` and ``["cnn_image_size"]``."""
    logs.quiet_tensorflow()
    settings = run.settings
    folder = data.resolve_data_dir(run.data_dir)
    kwargs = dict(data_dir=folder, limit=settings["limit"], seed=run.seed, progress=False)
    images = data.load_face_mask(image_size=settings["image_size"], **kwargs)
    small = data.load_face_mask(image_size=settings["cnn_image_size"], **kwargs)
    if images.paths != small.paths:
        raise RuntimeError("the two image sizes decoded different files")
    return Chapter(run, folder, images, small, audit.file_metadata(folder, images.paths))


def network_size(settings: dict, backbone: str) -> int:
    """The input side in pixels backbone ``backbone`` is run at: its entry in
    ``settings["backbone_image_sizes"]``, else ``settings["image_size"]``."""
    return int(settings.get("backbone_image_sizes", {}).get(backbone, settings["image_size"]))


def images_for(chapter: Chapter, backbone: str) -> data.ImageSet:
    """The chapter's images at the size ``backbone`` is run at (same files, order and split)."""
    settings = chapter.run.settings
    size = network_size(settings, backbone)
    if size == settings["image_size"]:
        return chapter.images
    if size not in chapter.resized:
        found = data.load_face_mask(
            chapter.data_dir, image_size=size, limit=settings["limit"], seed=chapter.run.seed,
            progress=False,
        )  # fmt: skip
        if found.paths != chapter.images.paths:
            raise RuntimeError(f"the images at {size} px decoded different files")
        chapter.resized[size] = found
    return chapter.resized[size]


def stratified_pick(labels: np.ndarray, chosen: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Indices of at most ``limit`` items of ``chosen`` (bool mask) with label shares kept."""
    index = np.flatnonzero(chosen)
    if len(index) <= limit:
        return index
    return index[data.stratified_subset(labels[index], limit, seed)]


def story_load(chapter: Chapter) -> str:
    s = chapter.run.settings
    return (
        f"{len(chapter.images):,} images, decoded at {s['image_size']} px for the pretrained "
        f"backbones and at {s['cnn_image_size']} px for the custom CNN."
    )


def audit_data(chapter: Chapter) -> dict:
    """Duplicates, split leakage, ``splits.csv`` and the shortcut models (saved).

    Returns
    -------
    dict with ``duplicates`` (table by hash method), ``pairs`` (by method), ``split_table``,
    ``by_class`` (metadata per class), ``shortcut`` (accuracies of the shortcut models),
    ``shortcut_free`` (bool mask over the images), ``leaked_test`` (bool mask: test images with
    a near-duplicate in another split under any hash), and ``values`` (results keys).
    """
    run = chapter.run
    ds = chapter.images
    gray = data.load_face_mask(
        chapter.data_dir,
        image_size=32,
        color_mode="grayscale",
        seed=run.seed,
        progress=False,
    )
    keep = {p: i for i, p in enumerate(gray.paths)}
    gray_images = gray.images[[keep[p] for p in ds.paths]]
    duplicates, pairs = audit.duplicate_summary(
        gray_images, ds.labels, ds.split, chapter.data_dir, ds.paths
    )
    audit.write_splits_csv(run.results_dir / "splits.csv", ds.paths, ds.labels, ds.split, ds.groups)
    # The split's definition of near-duplicates (byte-identical, dHash- or pHash-close, mirrors
    # included), recomputed here from the hashes rather than read from the loader's groups.
    split_pairs = pairs["any"]
    crossing = audit.cross_split_pairs(split_pairs, ds.split)
    leakage = len(crossing)
    leaked = np.zeros(len(ds), dtype=bool)
    leaked[crossing.ravel()] = True
    leaked_test = leaked & (ds.split == "test")

    shortcut = shortcut_experiment(chapter, run.seed)
    free = audit.shortcut_free_mask(chapter.meta, ds.labels)
    values = {
        "duplicate_pairs": int(len(split_pairs)),
        "duplicate_groups": int(len(np.unique(ds.groups)) - (np.bincount(ds.groups) == 1).sum()),
        "duplicate_pairs_any_hash": int(duplicates.loc["any", "pairs"]),
        "phash_pairs": int(duplicates.loc["phash", "pairs"]),
        "split_leakage_pairs": leakage,
        "cross_split_pairs_any_hash": int(len(crossing)),
        "test_images_with_cross_split_duplicate": int(leaked_test.sum()),
        "shortcut_model_accuracy": shortcut["metadata + thumbnail"],
        "shortcut_metadata_accuracy": shortcut["metadata only"],
        "shortcut_thumbnail_accuracy": shortcut["thumbnail only"],
        "shortcut_free_test_images": int((free & (ds.split == "test")).sum()),
    }
    run.save(values)
    return {
        "duplicates": duplicates,
        "pairs": pairs,
        "split_table": audit.split_table(ds.labels, ds.split, ds.groups),
        "by_class": audit.metadata_by_class(chapter.meta, ds.labels),
        "shortcut": shortcut,
        "shortcut_free": free,
        "leaked_test": leaked_test,
        "values": values,
    }


def shortcut_experiment(chapter: Chapter, seed: int = 0) -> dict[str, float]:
    """Test accuracy of tree models that see only metadata, only a 4x4 thumbnail, or both."""
    ds = chapter.small
    both = audit.shortcut_features(chapter.meta, ds.images, thumbnail=4)
    n_meta = audit.shortcut_features(chapter.meta).shape[1]
    train, test = ds.split == "train", ds.split == "test"
    results = {}
    for name, columns in (
        ("metadata only", slice(0, n_meta)),
        ("thumbnail only", slice(n_meta, None)),
        ("metadata + thumbnail", slice(None)),
    ):
        model = audit.fit_shortcut_model(both[train][:, columns], ds.labels[train], seed)
        results[name] = float((model.predict(both[test][:, columns]) == ds.labels[test]).mean())
    return results


def duplicate_pictures(
    found: dict, chapter: Chapter, n: int = 6, size: int = 128
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Up to ``n`` near-duplicate pairs (any hash), drawn with the run's seed, as thumbnails.

    Returns
    -------
    list of (the first file's name, shortened; its image; its twin's image), each image
    shape (size, size, 3), uint8.
    """
    pairs = np.asarray(found["pairs"]["any"]).reshape(-1, 2)
    rng = np.random.default_rng(chapter.run.seed)
    chosen = (
        pairs[rng.choice(len(pairs), size=min(n, len(pairs)), replace=False)] if len(pairs) else []
    )
    paths = chapter.images.paths
    return [
        (
            paths[i].split("/", 1)[1][:24],
            data.decode_image(chapter.data_dir / paths[i], size),
            data.decode_image(chapter.data_dir / paths[j], size),
        )
        for i, j in chosen
    ]


def duplicates_table(found: dict) -> pd.DataFrame:
    """Near-duplicate pairs and groups by method, and how many cross splits or classes."""
    names = {
        "pairs": "pairs",
        "groups": "groups",
        "images_in_groups": "images in groups",
        "cross_split_pairs": "pairs across splits",
        "cross_class_pairs": "pairs across classes",
    }
    return present.table(found["duplicates"].rename(columns=names), index=True)


def split_table(found: dict) -> pd.DataFrame:
    """Images, classes and near-duplicate groups per split."""
    table = found["split_table"].rename(
        columns={"without_mask": "without mask", "with_mask": "with mask",
                 "with_mask_share": "share with mask"}
    )  # fmt: skip
    return present.table(table, index=True, percent_columns=["share with mask"])


def by_class_table(found: dict) -> pd.DataFrame:
    """File format, colour mode and size by class: the shortcuts."""
    table = found["by_class"].rename(
        columns={
            "jpeg_share": "JPEG",
            "rgb_share": "RGB",
            "short_side_min": "short side min",
            "short_side_median": "median",
            "short_side_max": "max",
            "aspect_median": "aspect (median)",
            "kilobytes_median": "kB (median)",
        }
    )
    return present.table(table.rename_axis("class"), index=True, percent_columns=["JPEG", "RGB"])


def story_audit(found: dict) -> str:
    v = found["values"]
    return (
        f"Of the {v['duplicate_pairs']} near-duplicate pairs found by any of the three methods "
        f"(the split's definition, recomputed here from the hashes), "
        f"**{v['split_leakage_pairs']}** cross splits, touching "
        f"{v['test_images_with_cross_split_duplicate']} test images. The images form "
        f"{v['duplicate_groups']} groups of two or more. The split is written to `splits.csv` "
        "in the results folder."
    )


def story_shortcuts(found: dict) -> str:
    s, v = found["shortcut"], found["values"]
    return (
        "A gradient-boosted tree that never sees a mask, only file metadata (format, colour "
        f"mode, size, file size) and a 4×4 colour thumbnail, reaches "
        f"**{present.percent(s['metadata + thumbnail'])}** test accuracy (metadata only "
        f"{present.percent(s['metadata only'])}, thumbnail only "
        f"{present.percent(s['thumbnail only'])}). Any model's accuracy must be read against "
        "that. The shortcut-free test subset keeps RGB JPEG images whose size lies in the "
        f"without_mask range: {v['shortcut_free_test_images']} test images."
    )
