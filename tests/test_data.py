import io
import shutil

import numpy as np
import pytest
from PIL import Image

from dlbook.facemask import data


def _save(path, image, **options):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return path


# --- decoding real-world files ---------------------------------------------------------------


def test_zero_byte_file_is_a_clear_error(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(data.ImageDecodeError, match="empty file") as info:
        data.decode_image(path)
    assert info.value.path == str(path)


def test_text_named_jpg_is_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture")
    with pytest.raises(data.ImageDecodeError, match="not an image"):
        data.decode_image(path)


def test_truncated_jpeg_is_reported(tmp_path):
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, format="JPEG", quality=95)
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(data.ImageDecodeError, match="truncated|corrupt"):
        data.decode_image(path)


def test_palette_png_with_transparency_is_composited_on_white(tmp_path):
    image = Image.new("P", (10, 10), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(1, (0, 0, 5, 10))
    path = _save(tmp_path / "pal.png", image, transparency=0)
    out = data.decode_image(path, image_size=10)
    assert out.shape == (10, 10, 3)
    assert tuple(out[5, 8]) == (255, 255, 255)  # transparent -> white
    assert tuple(out[5, 1]) == (255, 0, 0)  # opaque red stays red


def test_sixteen_bit_png_is_scaled_to_eight_bits(tmp_path):
    values = np.full((8, 8), 65535, dtype=np.uint16)
    values[:, :4] = 32768
    path = _save(tmp_path / "deep.png", Image.fromarray(values))
    out = data.decode_image(path, image_size=8, color_mode="grayscale")
    assert out.shape == (8, 8, 1)
    assert out[0, 7, 0] == 255 and out[0, 0, 0] == 128


def test_cmyk_jpeg_decodes_to_rgb(tmp_path):
    path = _save(tmp_path / "print.jpg", Image.new("CMYK", (16, 16), (0, 255, 255, 0)))
    out = data.decode_image(path, image_size=16)
    assert out.shape == (16, 16, 3)
    red, green, blue = out[8, 8].astype(int)
    assert red > 200 and green < 60 and blue < 60


def test_wrong_extension_and_exif_orientation(tmp_path):
    wide = np.zeros((10, 20, 3), dtype=np.uint8)
    wide[:, :10] = 255  # left half white
    image = Image.fromarray(wide)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    path = _save(tmp_path / "photo.jpg_1088Wx1632H", image, format="JPEG", exif=exif, quality=100)
    out = data.decode_image(path, image_size=None)
    assert out.shape == (20, 10, 3)  # upright: taller than wide
    assert out[2, 5].mean() > 200 and out[18, 5].mean() < 50  # white half now on top


def test_decode_rejects_unknown_color_mode(tmp_path):
    with pytest.raises(ValueError, match="color_mode='cmyk'"):
        data.decode_image(tmp_path / "x.png", color_mode="cmyk")


# --- loading, skipping, caching ----------------------------------------------------------------


def test_load_synthetic_dataset_shapes_and_labels(synthetic_data):
    ds = data.load_face_mask(synthetic_data, image_size=32, verify=False, progress=False)
    assert ds.images.shape == (40, 32, 32, 3) and ds.images.dtype == np.uint8
    assert np.bincount(ds.labels).tolist() == [20, 20]
    assert all(p.startswith(data.CLASS_NAMES[label]) for p, label in zip(ds.paths, ds.labels))
    assert set(ds.split) <= set(data.SPLIT_NAMES)
    gray = data.load_face_mask(
        synthetic_data, image_size=16, color_mode="grayscale", verify=False, progress=False
    )
    assert gray.images.shape == (40, 16, 16, 1)


def test_corrupt_file_is_reported_and_skipped(synthetic_data, capsys):
    (synthetic_data / "with_mask" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 garbage")
    ds = data.load_face_mask(synthetic_data, image_size=24, verify=False, progress=False)
    assert len(ds) == 40
    assert [p for p, _ in ds.skipped] == ["with_mask/broken.jpg"]
    assert "broken.jpg" in capsys.readouterr().err
    again = data.load_face_mask(synthetic_data, image_size=24, verify=False, progress=False)
    assert again.skipped == ds.skipped  # the cached result still reports it
    assert "broken.jpg" in capsys.readouterr().err


def test_cache_is_invalidated_when_a_file_changes(synthetic_data):
    first = data.load_face_mask(synthetic_data, image_size=24, verify=False, progress=False)
    target = synthetic_data / first.paths[0]
    Image.new("RGB", (24, 24), (0, 0, 255)).save(target, format="PNG")
    import os

    os.utime(target, ns=(1, 1))
    second = data.load_face_mask(synthetic_data, image_size=24, verify=False, progress=False)
    assert not np.array_equal(first.images[0], second.images[0])


def test_limit_keeps_class_balance_and_split(synthetic_data):
    full = data.load_face_mask(synthetic_data, image_size=24, verify=False, progress=False)
    part = data.load_face_mask(
        synthetic_data, image_size=24, verify=False, limit=10, progress=False
    )
    assert len(part) == 10 and np.bincount(part.labels).tolist() == [5, 5]
    split_of = dict(zip(full.paths, full.split))
    assert all(split_of[p] == s for p, s in zip(part.paths, part.split))


def test_missing_data_dir_gives_clear_message(tmp_path):
    with pytest.raises(data.DataUnavailableError, match="not a folder"):
        data.resolve_data_dir(tmp_path / "nowhere")


# --- the manifest ------------------------------------------------------------------------------


def test_manifest_mismatch_names_the_files(synthetic_data, tmp_path):
    manifest = tmp_path / "manifest.csv"
    data.write_manifest(data.build_manifest(synthetic_data), manifest)
    assert data.verify_data(synthetic_data, manifest).ok
    (synthetic_data / "with_mask" / "with_mask_000.jpg").unlink()
    shutil.copy(
        synthetic_data / "with_mask" / "with_mask_002.jpg", synthetic_data / "with_mask" / "new.jpg"
    )
    changed = synthetic_data / "without_mask" / "without_mask_001.png"
    changed.write_bytes(changed.read_bytes() + b"\0")
    with pytest.raises(data.DataVerificationError) as info:
        data.verify_data(synthetic_data, manifest)
    message = str(info.value)
    assert "with_mask/with_mask_000.jpg" in message
    assert "with_mask/new.jpg" in message
    assert "without_mask/without_mask_001.png" in message
    with pytest.warns(UserWarning):
        report = data.verify_data(synthetic_data, manifest, allow_mismatch=True)
    assert len(report.missing) == len(report.extra) == len(report.changed) == 1


def test_committed_manifest_matches_the_real_data(real_data):
    rows = data.read_manifest()
    assert len(rows) == 4094
    assert data.verify_files(real_data, rows).ok


# --- duplicates and the grouped split -----------------------------------------------------------


def test_difference_hash_finds_mirrored_and_reencoded_copies():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (5, 32, 32), dtype=np.uint8)
    base = np.stack([np.asarray(Image.fromarray(b).resize((32, 32))) for b in base])
    smooth = np.stack(
        [
            np.asarray(Image.fromarray(b).resize((8, 8)).resize((32, 32), Image.BILINEAR))
            for b in base
        ]
    )
    copies = np.concatenate([smooth, smooth[:1, :, ::-1], np.clip(smooth[1:2] + 3, 0, 255)])
    hashes = data.difference_hash(copies)
    mirrored = data.difference_hash(copies[:, :, ::-1])
    pairs = {tuple(p) for p in data.near_duplicate_pairs(hashes, mirrored).tolist()}
    assert (0, 5) in pairs and (1, 6) in pairs
    groups = data.connected_groups(len(copies), np.array(sorted(pairs)))
    assert groups[0] == groups[5] and groups[1] == groups[6]
    assert len(set(groups[[0, 1, 2, 3, 4]])) == 5


def test_grouped_split_keeps_planted_duplicates_together():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 600)
    groups = np.arange(600)
    for start in range(0, 200, 5):  # 40 planted groups of 5
        groups[start : start + 5] = start
        labels[start : start + 5] = labels[start]
    split = data.grouped_split(labels, groups, data.SPLIT_FRACTIONS, seed=7)
    for g in np.unique(groups):
        assert len(set(split[groups == g])) == 1
    for name, fraction in data.SPLIT_FRACTIONS.items():
        assert abs((split == name).mean() - fraction) < 0.04
    for label in (0, 1):
        share = (split[labels == label] == "test").mean()
        assert abs(share - data.SPLIT_FRACTIONS["test"]) < 0.05
    assert not np.array_equal(split, data.grouped_split(labels, groups, seed=8))


def test_grouped_split_validates_fractions():
    with pytest.raises(ValueError, match="sum to 1"):
        data.grouped_split(np.zeros(4), np.arange(4), {"train": 0.5, "test": 0.6})


@pytest.mark.slow
def test_real_split_has_no_leaking_duplicates(real_data):
    from dlbook.facemask import audit

    ds = data.load_face_mask(real_data, image_size=32, color_mode="grayscale", progress=False)
    assert len(ds) == 4094 and not ds.skipped
    for g in np.unique(ds.groups):
        assert len(set(ds.split[ds.groups == g])) == 1
    # recomputed from both hashes, independently of the loader's groups
    pairs = np.concatenate([data.duplicate_pairs(ds.images, m) for m in ("dhash", "phash")])
    assert len(pairs) > 500
    assert len(audit.cross_split_pairs(pairs, ds.split)) == 0


# --- downloading the pinned archive ------------------------------------------------------------


def _archive_of(folder, zip_path, top="Face-Mask-Detection-abc"):
    import zipfile

    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr(f"{top}/README.md", "upstream readme")
        for rel in data.list_image_files(folder):
            archive.write(folder / rel, f"{top}/dataset/{rel}")
    return zip_path


def test_download_unpacks_and_verifies_the_archive(synthetic_data, tmp_path):
    manifest = data.write_manifest(data.build_manifest(synthetic_data), tmp_path / "m.csv")
    archive = _archive_of(synthetic_data, tmp_path / "upstream.zip")
    dest = tmp_path / "downloaded" / "face-mask"
    data.download_dataset(dest, url=archive.as_uri(), manifest_path=manifest)
    assert data.list_image_files(dest) == data.list_image_files(synthetic_data)
    assert data.verify_data(dest, manifest).ok


def test_download_of_an_altered_archive_leaves_nothing_behind(synthetic_data, tmp_path):
    manifest = data.write_manifest(data.build_manifest(synthetic_data), tmp_path / "m.csv")
    victim = synthetic_data / "with_mask" / "with_mask_000.jpg"
    victim.write_bytes(victim.read_bytes()[:-10])
    archive = _archive_of(synthetic_data, tmp_path / "upstream.zip")
    dest = tmp_path / "downloaded" / "face-mask"
    with pytest.raises(data.DataVerificationError, match="with_mask_000.jpg"):
        data.download_dataset(dest, url=archive.as_uri(), manifest_path=manifest)
    assert not dest.exists()
