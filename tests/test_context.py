"""The run context every chapter starts with, and the content-keyed cache behind it."""

import os

import numpy as np
import pytest

from dlbook.book import context
from dlbook.core import cache


def test_an_unknown_profile_is_refused_naming_the_choices(tmp_path):
    with pytest.raises(ValueError, match=r"profile='fast'.*'smoke', 'full'"):
        context.start("fast", "conformal", results_dir=tmp_path)


def test_an_unknown_settings_block_is_refused(tmp_path):
    with pytest.raises(ValueError, match="chapter='nope' is unknown"):
        context.start("smoke", "nope", results_dir=tmp_path)


def test_save_merges_into_the_chapters_file_and_load_reads_it(tmp_path):
    run = context.start("smoke", "conformal", seed=3, results_dir=tmp_path / "r")
    assert run.settings and run.seed == 3 and run.results_dir.is_dir()
    run.save({"a": 1})
    run.save({"b": np.float32(0.5)})
    assert run.load() == {"a": 1, "b": 0.5}
    assert run.load_all() == {"conformal": {"a": 1, "b": 0.5}}
    # a chapter beside this one, mid-write: its hidden temporary file is not a chapter's results
    (run.results_dir / ".future_work.json.123.tmp.json").write_text("")
    assert run.load_all() == {"conformal": {"a": 1, "b": 0.5}}
    detection = run.part("detection")
    assert detection.chapter == "conformal" and detection.settings != run.settings


def test_the_cache_returns_the_stored_value_without_recomputing(tmp_path, monkeypatch):
    monkeypatch.setenv("DLBOOK_CACHE", str(tmp_path))
    calls = []

    def compute(x):
        calls.append(x)
        return np.arange(3) * x

    def cached(parts, work):
        return cache.cached_array("test", cache.digest(*parts), work)

    first = cached(("v1", np.ones(2)), lambda: compute(2))
    again = cached(("v1", np.ones(2)), lambda: compute(99))
    np.testing.assert_array_equal(first, again)
    assert calls == [2]
    changed = cached(("v1", np.ones(3)), lambda: compute(5))
    np.testing.assert_array_equal(changed, [0, 5, 10])
    assert calls == [2, 5]


def test_write_json_and_file_sha256(tmp_path):
    path = cache.write_json(tmp_path / "x" / "a.json", {"b": 1, "a": [1, 2]})
    assert path.read_text().startswith('{\n "a"')
    assert not list(path.parent.glob("*.tmp*"))
    import hashlib

    assert cache.file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_run_map_is_the_loop_with_the_chapter_named_in_failures(tmp_path, monkeypatch):
    from dlbook.core import parallel

    run = context.start("smoke", "conformal", seed=3, results_dir=tmp_path / "r")
    draw = lambda seed: float(np.random.default_rng(seed).random())  # noqa: E731
    seeds = [run.seed + s for s in range(4)]
    assert run.map(draw, seeds, jobs=2) == [draw(s) for s in seeds]
    monkeypatch.setenv("DLBOOK_JOBS", "1")  # what a serial build gives its chapters
    assert run.map(lambda _: os.getpid(), [0, 1]) == [os.getpid()] * 2
    with pytest.raises(
        parallel.TaskFailures, match=r"^conformal: 1 of 2 tasks failed: task 1 \(0\)"
    ):
        run.map(lambda x: 1 / x, [1, 0], jobs=2)
