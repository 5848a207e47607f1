"""The bench command's pieces: the build shares, the table, the GFLOP/s probe, the timer."""

import json

import pytest

from dlbook.book import bench
from dlbook.methods import costs


def test_build_shares_come_from_run_json(tmp_path):
    run = {"chapters": {"a": {"seconds": 30.0}, "b": {"seconds": 10.0}, "c": {"seconds": 0.0}}}
    (tmp_path / "run.json").write_text(json.dumps(run))
    shares = bench.build_shares(tmp_path)
    assert shares["build_seconds_total"] == 40.0
    assert shares["build_share_a"] == pytest.approx(0.75) and shares["build_share_c"] == 0.0
    assert bench.build_shares(tmp_path / "nowhere") == {}


def test_matmul_probe_counts_2n3_flops_over_the_best_repeat(monkeypatch):
    # the warm-up product is not timed; then three repeats take 4, 2 and 3 seconds
    clock = iter([0.0, 4.0, 10.0, 12.0, 20.0, 23.0])
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(clock))
    assert bench.matmul_gflops(100, repeats=3) == pytest.approx(2 * 100**3 / 2.0 / 1e9)


def test_timer_returns_the_result_with_wall_and_cpu_seconds(monkeypatch):
    walls, cpus = iter([10.0, 12.5]), iter([1.0, 1.75])
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(walls))
    monkeypatch.setattr(bench.time, "process_time", lambda: next(cpus))
    assert bench.timed(lambda: "done") == ("done", 2.5, 0.75)


def test_table_lists_every_measure_once():
    text = bench.table({"features_per_s_keras": 38.25, "features_note_onnx": "not installed"})
    assert text.splitlines() == [
        f"{'features_per_s_keras':<44} 38.2",
        f"{'features_note_onnx':<44} not installed",
    ]


@pytest.mark.slow
def test_smoke_bench_writes_bench_json(tmp_path):
    report = bench.run("smoke", results_dir=tmp_path)
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["features_relative_difference_tflite"] < 1e-4
    assert report["predict_per_s_batched_function"] > report["predict_per_s_one_at_a_time"]


def test_page_summary_and_story_read_the_report():
    report = {
        "cpu_threads": 2,
        "load_average_1min": 9.0,
        "features_backbone": "efficientnet_lite0",
        "features_image_size": 224,
        "features_per_s_keras": 20.0,
        "features_per_s_function": 22.0,
        "features_per_s_tflite": 41.0,
        "features_relative_difference_tflite": 3.1e-6,
        "predict_per_s_one_at_a_time": 3.0,
        "predict_per_s_batched_function": 30.0,
    }
    table = bench.summary(report)
    assert table.loc[0, "images/s"] == 20.0 and table["measure"].is_unique
    text = bench.story(report)
    assert "41" in text and "busy" in text and "{" not in text
    assert "not been run" in bench.story(None)


def test_count_flops_at_an_image_shape_counts_convolutions_and_dense_layers():
    import keras

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)  # 8*8 * 3*3*3*4
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same")(x)  # 4*4 * 3*3*4
    x = keras.layers.Conv2D(6, 1, groups=2)(x)  # 4*4 * 1*1*2*6
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(5)(x)  # 6*5
    model = keras.Model(inputs, outputs)
    expected = 64 * 108 + 16 * 36 + 16 * 12 + 30
    assert costs.count_flops(model, (8, 8, 3)) == 2 * expected
    assert costs.count_flops(model, (16, 16, 3)) == 2 * (4 * (64 * 108 + 16 * 36 + 16 * 12) + 30)


def test_story_states_how_far_the_reference_path_is_from_the_arithmetic_ceiling():
    report = {
        "cpu_threads": 2,
        "load_average_1min": 0.5,
        "features_backbone": "efficientnet_lite0",
        "features_image_size": 224,
        "features_per_s_keras": 160.0,
        "features_gflop_per_image": 0.77,
        "features_gflops_keras": 123.2,
        "matmul_gflops": 205.0,
        "features_keras_share_of_matmul": 123.2 / 205.0,
        "predict_per_s_one_at_a_time": 17.0,
        "predict_per_s_batched_function": 130.0,
    }
    text = bench.story(report)
    assert "60%" in text and "1.7 times" in text and "busy" not in text


def test_the_reproducibility_page_shows_wall_and_cpu_time_and_use_per_chapter():
    from dlbook.plots import book

    run = {
        "profile": "smoke", "seed": 0, "started_at": "2026-12-06T20:00:00+00:00", "cpu_count": 2,
        "cores_available": 2, "platform": "Linux", "git_commit": "abc", "packages": {},
        "data_manifest_sha256": "ab" * 32, "jobs": 2, "total_seconds": 100.0,
        "cpu_seconds": 180.0, "utilisation": 1.8,
        "chapters": {
            "fundamentals": {"status": "ok", "seconds": 40.0, "cpu_seconds": 50.0,
                             "utilisation": 1.25, "cached": False},
            "conformal": {"status": "ok", "seconds": 22.0, "cached": True},
        },
    }  # fmt: skip
    table = book.show_chapter_table(run).data
    assert list(table["CPU seconds"]) == ["50", "not measured"]
    assert list(table["CPU use"]) == ["125.0%", "not measured"]
    text = book.describe_run(run)
    assert "up to 2 chapters at once" in text and "100 s of wall time for 180 s of CPU" in text
    assert "180% of one core, out of the 200%" in text
    before = book.describe_run({**run, "totals_cover": "before the record page"})
    assert "had taken, before this page and the rendering of the book, 100 s of wall" in before
    assert "Before the chapters started" not in text  # no prepare step in this record
    run["prepared"] = {"status": "ok", "seconds": 3.0, "cpu_seconds": 2.5, "tasks": 18,
                       "error": None}  # fmt: skip
    assert "on every core (18 runs: the backbone features" in book.describe_run(run)
    assert "3 s, 2.5 CPU s" in book.describe_run(run)
    run["prepared"] = {"status": "failed", "seconds": 1.0, "cpu_seconds": 1.0,
                       "error": "no images"}  # fmt: skip
    assert "that step failed (no images): the chapters made them" in book.describe_run(run)
    inside = {k: v for k, v in run.items() if k not in ("cpu_seconds", "total_seconds")}
    assert "that step failed" in book.describe_run(inside)  # the page runs before the totals exist
    shares = bench.build_shares_from(run)
    assert shares["build_cpu_seconds_fundamentals"] == 50.0
    assert shares["build_utilisation_fundamentals"] == 1.25
    assert shares["build_utilisation"] == 1.8 and shares["build_wall_seconds"] == 100.0
