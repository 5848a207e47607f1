import numpy as np
import pytest
from PIL import Image

from dlbook.facemask import audit, data


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


def _planted_groups(n_groups=40, seed=0):
    """Labels and group ids of items where some groups hold several near-duplicates."""
    rng = np.random.default_rng(seed)
    sizes = rng.choice([1, 1, 1, 2, 3, 6], size=n_groups)
    groups = np.repeat(np.arange(n_groups), sizes)
    labels = (rng.uniform(size=n_groups) < 0.5).astype(int)[groups]
    return labels, groups


def test_grouped_folds_never_split_a_planted_duplicate_group():
    labels, groups = _planted_groups()
    for seed in range(4):
        folds = data.grouped_folds(labels, groups, n_folds=5, seed=seed)
        assert set(folds.tolist()) == set(range(5))
        for group in np.unique(groups):
            assert len(set(folds[groups == group].tolist())) == 1
        # Real grouping, not one fold per label: each fold holds both classes.
        for fold in range(5):
            assert set(labels[folds == fold].tolist()) == {0, 1}
    # The real pair finder feeds the folds the same way as the split.
    gray = _faces(30, seed=5)
    gray = np.concatenate([gray, gray[:4, :, ::-1], gray[4:6]])[..., None]
    pairs = data.duplicate_pairs(gray, "dhash")
    found = data.connected_groups(len(gray), pairs)
    folds = data.grouped_folds(np.arange(len(gray)) % 2, found, n_folds=5, seed=0)
    assert len(pairs) >= 6 and (folds[pairs[:, 0]] == folds[pairs[:, 1]]).all()
    with pytest.raises(ValueError, match="n_folds=1"):
        data.grouped_folds(labels, groups, n_folds=1)


def test_stratified_split_keeps_fractions_and_ignores_groups():
    labels, groups = _planted_groups(n_groups=300, seed=1)
    split = data.stratified_split(labels, data.SPLIT_FRACTIONS, seed=0)
    for name, fraction in data.SPLIT_FRACTIONS.items():
        assert abs((split == name).mean() - fraction) < 0.02
        assert abs(labels[split == name].mean() - labels.mean()) < 0.05
    # Ignoring the groups, some planted duplicates straddle the split: the leak it measures.
    straddling = [g for g in np.unique(groups) if len(set(split[groups == g].tolist())) > 1]
    assert straddling
    assert np.array_equal(split, data.stratified_split(labels, data.SPLIT_FRACTIONS, seed=0))


def test_cleanlab_wiring_finds_planted_label_flips():
    from dlbook.facemask import classify

    rng = np.random.default_rng(0)
    n = 400
    truth = rng.integers(0, 2, n)
    features = rng.normal(0, 1, (n, 8)) + 2.5 * truth[:, None]
    flipped = rng.choice(n, size=12, replace=False)
    labels = truth.copy()
    labels[flipped] = 1 - labels[flipped]
    groups = np.arange(n)
    folds = data.grouped_folds(labels, groups, n_folds=5, seed=0)
    oof = classify.cross_validate_head(features, labels, groups, folds)["probs"]
    assert np.isfinite(oof).all()
    issues = audit.label_issues(labels, oof)
    found = set(issues.tolist())
    assert len(found & set(flipped.tolist())) >= 10  # most planted flips are flagged
    assert len(found - set(flipped.tolist())) <= 6  # and few clean labels are
    # Most suspicious first: the given label's probability rises along the ranking.
    given = np.where(labels[issues] == 1, oof[issues], 1 - oof[issues])
    assert np.all(np.diff(given) >= -1e-12)
    with pytest.raises(ValueError, match="same shape"):
        audit.label_issues(labels, oof[:-1])


def test_nearest_neighbours_by_cosine_distance():
    reference = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    query = np.array([[2.0, 0.1], [0.1, 3.0], [5.0, 5.0]])
    index, distance = audit.nearest_neighbours(query, reference)
    assert index.tolist() == [0, 1, 2]
    assert distance[2] == pytest.approx(0.0) and (distance >= 0).all()
    with pytest.raises(ValueError, match="must be"):
        audit.nearest_neighbours(query, reference[:, :1])
