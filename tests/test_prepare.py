"""The prepare step fills the very cache entries chapter 4 then reads."""

import pytest

from dlbook.book import context, prepare
from dlbook.experiments.mask_detection import classifiers, dataset, leakage


def _entries(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.slow
def test_chapter_4_finds_every_prepared_run_in_the_cache(real_data, tmp_path, monkeypatch):
    monkeypatch.setenv("DLBOOK_CACHE", str(tmp_path / "cache"))
    done = prepare.run("smoke", real_data, 0, ["mask_detection"], jobs=2, log=lambda line: None)
    assert done == len(prepare.tasks("smoke", ["mask_detection"]))
    before = _entries(tmp_path / "cache")
    chapter = dataset.load(context.start("smoke", "mask_detection", 0, real_data, tmp_path))
    settings = chapter.run.settings
    runs = classifiers.train_heads(chapter, ["efficientnet_lite0"], 0)
    first = classifiers.train_cnn(chapter.small, chapter.images.split, settings, 0)
    for r in range(1, settings["cnn_seeds"]):
        split = leakage.repeat_splits(chapter.images, r, 0)["grouped"]
        classifiers.train_cnn(chapter.small, split, settings, r)
    split = leakage.repeat_splits(chapter.images, 0, 0)["random"]
    classifiers.train_cnn(chapter.small, split, settings, 0)
    assert _entries(tmp_path / "cache") == before  # nothing computed twice
    assert runs["efficientnet_lite0"].probs.shape == (len(chapter.images),)
    assert first.info["seconds"] > 0


@pytest.mark.slow
def test_chapter_4b_finds_its_prepared_detections_and_maps(tmp_path, monkeypatch):
    from dlbook.book import profiles
    from dlbook.experiments.real_photos import finding, own_detector, study
    from dlbook.facemask import scene_pipeline

    monkeypatch.setenv("DLBOOK_CACHE", str(tmp_path / "cache"))
    done = prepare.run("smoke", None, 0, ["real_photos"], jobs=2, log=lambda line: None)
    assert done == len(prepare.tasks("smoke", ["real_photos"]))
    before = _entries(tmp_path / "cache")
    settings = profiles.get("smoke", "real_photos")
    parts = study.scene_parts(settings, 0)[1]
    for part in ("train", "val", "test"):
        found = scene_pipeline.detect_photos(parts[part], progress=False)
        assert len(found) == len(parts[part])
        for size in settings["own_detector"]["input_sizes"]:
            own_detector.prepare(parts[part], size, settings["own_detector"]["backbone"])
    for share in settings["tile_shares"]:
        finding.boxes_with_tiles(parts["val"], share)
    assert _entries(tmp_path / "cache") == before  # nothing computed twice
