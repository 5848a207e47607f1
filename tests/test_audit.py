import numpy as np
import pytest
from PIL import Image

from dlbook import audit, data


def _faces(n, size=32, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(n, 8, 8), dtype=np.uint8)
    return np.stack([np.asarray(Image.fromarray(b).resize((size, size))) for b in base])


def test_planted_duplicates_never_cross_the_grouped_split():
    gray = _faces(60)
    # Plant a mirror image, a brightened copy and an exact copy of three originals.
    planted = np.stack([gray[0, :, ::-1], np.clip(gray[1].astype(int) + 6, 0, 255), gray[2]])
    gray = np.concatenate([gray, planted.astype(np.uint8)])[..., None]
    labels = np.r_[np.arange(60) % 2, 0, 1, 0]
    pairs = data.duplicate_pairs(gray, "dhash")
    found = {tuple(p) for p in pairs.tolist()}
    assert {(0, 60), (1, 61), (2, 62)} <= found
    assert len(found) == 3  # the random originals are not near-duplicates of each other
    groups = data.connected_groups(len(gray), pairs)
    for seed in range(5):
        split = data.grouped_split(labels, groups, data.SPLIT_FRACTIONS, seed)
        assert len(audit.cross_split_pairs(pairs, split)) == 0
    # A split that ignores the groups leaks.
    naive = np.where(np.arange(63) < 60, "train", "test")
    assert len(audit.cross_split_pairs(pairs, naive)) == 3


def test_phash_finds_mirrors_and_ignores_different_images():
    gray = _faces(20, seed=3)
    hashes = data.perceptual_hash(gray)
    assert hashes.dtype == np.uint64 and hashes.shape == (20,)
    assert np.array_equal(
        data.perceptual_hash(gray[:, :, ::-1, None][..., 0]),
        data.perceptual_hash(gray[:, :, ::-1]),
    )
    both = np.concatenate([gray, gray[:5, :, ::-1]])
    pairs = {tuple(p) for p in data.duplicate_pairs(both, "phash").tolist()}
    assert pairs == {(k, 20 + k) for k in range(5)}
    with pytest.raises(ValueError, match="method='ahash'"):
        data.duplicate_pairs(gray, "ahash")


def test_splits_csv_and_summary_on_synthetic_data(synthetic_data, tmp_path):
    ds = data.load_face_mask(synthetic_data, image_size=32, verify=False, progress=False)
    gray = data.load_face_mask(
        synthetic_data, image_size=32, color_mode="grayscale", verify=False, progress=False
    ).images
    table, pairs = audit.duplicate_summary(gray, ds.labels, ds.split, synthetic_data, ds.paths)
    assert table.loc["dhash", "cross_split_pairs"] == 0
    assert set(table.index) == {"exact", "dhash", "phash", "any"}
    path = audit.write_splits_csv(tmp_path / "splits.csv", ds.paths, ds.labels, ds.split, ds.groups)
    lines = path.read_text().splitlines()
    assert lines[0] == "path,label,split,group" and len(lines) == len(ds) + 1
    assert lines[1].split(",")[1] in data.CLASS_NAMES


def test_shortcut_features_and_free_subset(synthetic_data):
    ds = data.load_face_mask(synthetic_data, image_size=32, verify=False, progress=False)
    meta = audit.file_metadata(synthetic_data, ds.paths)
    assert set(meta["format"]) == {"JPEG", "PNG"}
    features = audit.shortcut_features(meta, ds.images, thumbnail=4)
    assert features.shape == (len(ds), 10 + 4 * 4 * 3)
    jpeg_column = features[:, 0]
    assert np.array_equal(jpeg_column == 1, meta["format"].eq("JPEG").to_numpy())
    free = audit.shortcut_free_mask(meta, ds.labels)
    assert free.any() and (meta["format"][free] == "JPEG").all()
    with pytest.raises(ValueError, match="thumbnail=5"):
        audit.shortcut_features(meta, ds.images, thumbnail=5)
