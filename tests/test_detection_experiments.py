import numpy as np
import pandas as pd
import pytest

from dlbook.book import profiles
from dlbook.experiments import detection


def _values(**changes):
    values = {
        "detector_best": "tiled_blazeface_union",
        "detector_min_precision": 0.95,
        "detector_recall_with_mask_tiled_blazeface_union": 0.9,
        "detector_recall_without_mask_tiled_blazeface_union": 0.985,
        "detector_precision_tiled_blazeface_union": 0.959,
        "detector_recall_with_mask_mtcnn": 0.725,
        "detector_test_masked_faces": 80,
        "detector_test_scenes": 50,
    }
    return {**values, **changes}


def test_choose_detector_wants_precision_first_then_masked_recall_then_speed():
    table = pd.DataFrame(
        {
            "precision": [1.0, 0.96, 0.96, 0.90],
            "recall_with_mask": [0.5, 0.97, 0.97, 1.0],
            "recall": [0.6, 0.98, 0.98, 1.0],
            "ms": [10, 80, 700, 5],
        },
        index=["precise", "fast_good", "slow_good", "sloppy"],
    )
    assert detection.choose_detector(table, 0.95) == "fast_good"
    assert detection.choose_detector(table, 0.99) == "precise"
    assert detection.choose_detector(table.drop(index=["precise"]), 0.99) == "fast_good"


def test_story_detectors_says_by_how_much_a_target_is_missed():
    text = detection.story_detectors(_values())
    assert "**tiled_blazeface_union** finds 90.0% of the 80 masked faces" in text
    assert "misses the 95% target by 5 points" in text and "precision misses" not in text
    assert "MTCNN alone finds 72.5%" in text and "`predict --detect` uses it" in text
    met = detection.story_detectors(_values(detector_recall_with_mask_tiled_blazeface_union=0.97))
    assert "Both targets" in met and "misses" not in met


def test_story_pipeline_reports_the_split_and_the_shortfall():
    values = {
        "pipeline_run": True,
        "pipeline_detector": "tiled_blazeface_short",
        "pipeline_fps_one_core": 4.0,
        "pipeline_detector_ms": 200.0,
        "pipeline_classifier_ms": 50.0,
        "pipeline_faces_per_frame": 3.0,
        "pipeline_frame_size": "640x480",
        "pipeline_target_fps": 10.0,
        "pipeline_fps_one_core_with_blazeface_full": 16.5,
        "pipeline_recall_with_mask_with_blazeface_full": 0.5,
        "pipeline_fps_one_core_with_tiled_blazeface_short": 12.0,
        "pipeline_fps_one_core_whole_sequence": 3.5,
    }
    text = detection.story_pipeline(values)
    assert "**4 frames/s**" in text and "misses the 10 frames/s target by 6 frames/s" in text
    assert "the detector takes 80% of the time" in text
    assert "tiled_blazeface_short 12 frames/s; blazeface_full 16.5 frames/s, finding 50.0%" in text
    assert "shared" in text
    assert "not timed" in detection.story_pipeline({"pipeline_run": False})


def test_detection_settings_exist_for_both_profiles_and_name_known_detectors():
    from dlbook.facemask import detect

    for profile in profiles.PROFILE_NAMES:
        settings = profiles.get(profile, "detection")
        assert "profile" not in settings  # the run context knows where results go
        assert set(settings["detectors"]) <= set(detect.DETECTORS)
        assert set(settings["pipeline_alternatives"]) <= set(detect.DETECTORS)
    assert detect.DEFAULT_DETECTOR in profiles.get("full", "detection")["detectors"]


def test_one_core_pins_and_restores_affinity():
    import os

    from dlbook.facemask import deploy

    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no CPU affinity on this platform")
    before = os.sched_getaffinity(0)
    with deploy.one_core() as core:
        assert os.sched_getaffinity(0) == {core}
    assert os.sched_getaffinity(0) == before


def test_detectors_section_on_synthetic_faces(synthetic_data, tmp_path, monkeypatch):
    # Synthetic "faces" are not faces: the section must still run end to end and save its keys.
    settings = {
        **profiles.get("smoke", "detection"),
        "detectors": ("blazeface_full",),
        "scene_pool": 10,
        "val_scenes": 1,
        "test_scenes": 2,
    }
    import functools

    from dlbook.book import context
    from dlbook.core import results
    from dlbook.facemask import data, detect

    unverified = functools.partial(data.load_face_mask, verify=False)
    monkeypatch.setattr(detection.data, "load_face_mask", unverified)
    monkeypatch.setitem(profiles.CHAPTER_PROFILES["detection"], "smoke", settings)
    if not detect.available("blazeface_full")[0]:
        pytest.skip(detect.available("blazeface_full")[1])
    run = context.start("smoke", "mask_detection", 0, synthetic_data, tmp_path)
    found = detection.detectors(run)
    saved = results.load(run.results_dir, "mask_detection")
    assert saved["detector_best"] == "blazeface_full" == found["best"]
    assert saved["detector_test_scenes"] == 2 and saved["detectors_compared"] == 1
    for key in ("recall_with_mask", "recall_without_mask", "precision"):
        assert np.isfinite(saved[f"detector_{key}_blazeface_full"])
    assert found["target_recall"] == detection.TARGET_RECALL
    timed = detection.pipeline(run)
    assert timed["values"]["pipeline_run"] is False  # no shipped model in this folder
    assert results.load(run.results_dir, "mask_detection")["pipeline_run"] is False


def test_threshold_grid_has_one_threshold_per_blazeface_model():
    from dlbook.facemask import detect

    grid = detection.threshold_grid("tiled_blazeface_union", (0.3, 0.5))
    assert grid[0] == {"blazeface_short": 0.5, "blazeface_full": 0.5}  # highest first
    assert len(grid) == 4 and {"blazeface_short": 0.5, "blazeface_full": 0.3} in grid
    assert detection.threshold_grid("tiled_blazeface_short", (0.3, 0.5)) == [
        {"blazeface_short": 0.5},
        {"blazeface_short": 0.3},
    ]
    assert detection.threshold_grid("mtcnn", (0.3, 0.5)) == [None]
    assert detect.blazeface_models("blazeface_mtcnn_union") == ("blazeface_short",)


def test_boxes_at_filters_each_member_by_its_own_models_threshold():
    scenes = [{"scene": np.zeros((100, 100, 3), np.uint8)}]
    raw = {
        "tiled_blazeface_short": [
            (np.array([[0, 0, 20, 20], [50, 50, 20, 20]]), np.array([0.35, 0.6]))
        ],
        "tiled_blazeface_full": [(np.array([[0, 60, 20, 20]]), np.array([0.32]))],
    }
    thresholds = {"blazeface_short": 0.4, "blazeface_full": 0.3}
    found = detection.boxes_at("tiled_blazeface_union", raw, scenes, thresholds)[0]
    assert sorted(map(tuple, found.tolist())) == [(0, 60, 20, 20), (50, 50, 20, 20)]
    saved = {f"detector_min_score_tiled_blazeface_union_{m}": v for m, v in thresholds.items()}
    assert detection.saved_thresholds(saved, "tiled_blazeface_union") == thresholds
    assert detection.saved_thresholds({}, "tiled_blazeface_union") is None


def test_score_for_reads_one_float_a_mapping_or_the_defaults():
    from dlbook.facemask import detect

    assert detect.score_for(0.5, "blazeface_full") == 0.5
    assert detect.score_for({"blazeface_full": 0.3}, "blazeface_full") == 0.3
    assert detect.score_for({"blazeface_full": 0.3}, "blazeface_short") == detect.DEFAULT_MIN_SCORE
    assert detect.score_for(None, "blazeface_short") == detect.DEFAULT_MIN_SCORES["blazeface_short"]
    assert detect.describe_scores({"blazeface_short": 0.45, "blazeface_full": 0.3}) == (
        "short 0.45, full 0.3"
    )


def test_plots_draw_the_targets_they_are_given():
    import matplotlib

    matplotlib.use("Agg")
    from dlbook.plots import detection as plots

    table = pd.DataFrame(
        {"recall_with_mask": [0.5], "recall_without_mask": [0.7], "precision": [0.9]},
        index=["blazeface_full"],
    )
    fig = plots.detectors({"table": table, "best": "blazeface_full", "target_recall": 0.8})
    dashed = [line for line in fig.axes[0].lines if line.get_linestyle() == "--"]
    assert [line.get_xdata()[0] for line in dashed] == [0.8]
    row = {"detector": "blazeface_full", "detector_ms": 60.0, "classifier_ms": 20.0}
    fig = plots.pipeline({"rows": [row], "values": {"pipeline_target_fps": 20.0}})
    dashed = [line for line in fig.axes[0].lines if line.get_linestyle() == "--"]
    assert [line.get_xdata()[0] for line in dashed] == [50.0]  # 1000 ms / 20 frames/s


def test_detector_table_shows_each_column_under_its_heading():
    row = {column: 0.5 for column in detection.TABLE_COLUMNS if column != "detector"}
    table = pd.DataFrame([{**row, "min_score": None}], index=["mtcnn"]).rename_axis("detector")
    shown = detection.detector_table({"table": table})
    frame = getattr(shown, "data", shown)
    assert list(frame.columns) == list(detection.TABLE_COLUMNS.values())
    assert frame.iloc[0]["detector"] == "mtcnn"
