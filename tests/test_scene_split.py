"""The scene split keeps near-duplicate photos together and is reproducible from code."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlbook.facemask.data import scene_split, voc

SCENES = Path(os.environ.get("DLBOOK_SCENES", "/work/shared/data/mask-scenes"))


def planted_photos(tmp_path: Path, n: int = 30) -> list[voc.Photo]:
    rng = np.random.default_rng(0)
    photos = []
    for k in range(n):
        pixels = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        if k == 7:  # a re-shot of photo 3: the same scene, slightly brighter
            pixels = np.clip(np.asarray(Image.open(photos[3].image_path), np.int16) + 6, 0, 255)
        path = tmp_path / f"p{k}.png"
        Image.fromarray(pixels.astype(np.uint8)).save(path)
        labels = np.array([k % 3, 0], dtype=np.int64)
        photos.append(voc.Photo(f"p{k}", path, 64, 48, np.array([[0, 0, 8, 8.0]] * 2), labels))
    return photos


def test_planted_near_duplicate_pair_shares_a_part(tmp_path):
    photos = planted_photos(tmp_path)
    pairs = scene_split.near_duplicate_photo_pairs(scene_split.photo_thumbnails(photos))
    assert [3, 7] in pairs.tolist()
    for seed in range(5):
        parts, groups = scene_split.scene_split(photos, seed)
        assert groups[3] == groups[7] and parts[3] == parts[7]
        assert set(parts) == set(scene_split.SCENE_PARTS)


def test_strata_take_the_rarest_class(tmp_path):
    photos = planted_photos(tmp_path, 6)
    # classes 0 appear 8 times, 1 and 2 twice each: class 1 and 2 tie, 1 comes first
    np.testing.assert_array_equal(scene_split.photo_strata(photos), [0, 1, 2, 0, 1, 2])


def test_split_file_round_trip_and_unknown_photo(tmp_path):
    photos = planted_photos(tmp_path, 9)
    parts = np.array(["train", "val", "test"] * 3)
    path = scene_split.write_split(photos[:8], parts[:8], np.arange(8), tmp_path / "s.csv")
    assert scene_split.read_split(path)["p4"] == "val"
    with pytest.raises(voc.AnnotationError, match=r"s\.csv: no part for 1 photos"):
        scene_split.photos_by_part(photos, path)


@pytest.mark.slow
@pytest.mark.skipif(not SCENES.is_dir(), reason="the mask-scenes data is not here")
def test_committed_split_is_what_the_code_gives(tmp_path):
    photos = voc.load_scenes(SCENES)
    parts, groups = scene_split.scene_split(photos, seed=0)
    fresh = scene_split.write_split(photos, parts, groups, tmp_path / "split.csv")
    assert fresh.read_text() == scene_split.SCENE_SPLIT_PATH.read_text()
    by_part = scene_split.photos_by_part(photos)
    for part, chosen in by_part.items():
        assert voc.class_counts(chosen)["mask_weared_incorrect"] > 0, part
