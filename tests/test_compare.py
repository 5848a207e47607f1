"""The before/after comparison that guards a reshaping of the code."""

import json

import pytest

from dlbook import cli
from dlbook.book import compare


def _write(folder, chapter, values):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{chapter}.json").write_text(json.dumps(values))


def test_a_changed_value_is_flagged_and_timings_are_ignored(tmp_path):
    before, after = tmp_path / "before", tmp_path / "after"
    _write(before, "conformal", {"coverage": 0.9, "fit_seconds": 3.0, "images_per_s": 120.0})
    _write(after, "conformal", {"coverage": 0.9000001, "fit_seconds": 4.5, "images_per_s": 80.0})
    found = compare.compare(before, after)
    assert not found.equal
    assert found.changed == {"conformal:coverage": (0.9, 0.9000001)}
    assert found.timing_skipped == 2
    assert compare.compare(before, after, rel_tol=1e-5).equal


def test_keys_present_on_one_side_only_are_reported(tmp_path):
    before, after = tmp_path / "before", tmp_path / "after"
    _write(before, "active_learning", {"saving": 0.3, "gone": 1})
    _write(after, "active_learning", {"saving": 0.3, "new": 2})
    _write(before, "run", {"total_seconds": 1})  # the build's own record is not compared
    found = compare.compare(before, after)
    assert found.only_before == ["active_learning:gone"]
    assert found.only_after == ["active_learning:new"]
    assert "DIFFERENCES" in found.report()


def test_the_command_exits_nonzero_on_a_difference(tmp_path, capsys):
    before, after = tmp_path / "before", tmp_path / "after"
    _write(before, "x", {"a": 1})
    _write(after, "x", {"a": 2})
    assert cli.main(["compare-results", str(before), str(after)]) == 1
    assert "changed x:a: 1 -> 2" in capsys.readouterr().out
    _write(after, "x", {"a": 1})
    assert cli.main(["compare-results", str(before), str(after)]) == 0


@pytest.mark.parametrize(
    "key", ["fit_seconds", "keras_cnn_images_per_s", "pipeline_fps", "fastest_convnet_b1"]
)
def test_timing_keys(key):
    assert compare.is_timing(key)


@pytest.mark.parametrize("key", ["cnn_test_accuracy", "transfer_995", "coverage_lac"])
def test_result_keys(key):
    assert not compare.is_timing(key)


def test_the_claims_list_is_compared_claim_by_claim(tmp_path):
    before, after = tmp_path / "before", tmp_path / "after"
    claim = {"id": "transfer_995", "verdict": "holds", "budget": {"seeds": 3}}
    _write(before, "claims", [claim])
    _write(after, "claims", [{**claim, "budget": {"seeds": 10}}])
    found = compare.compare(before, after)
    assert found.changed == {"claims:transfer_995.budget.seeds": (3, 10)}
