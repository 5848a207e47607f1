"""Chapters 5 and 6 are calls: short cells, no definitions, no saving, no verdicts of their own."""

from __future__ import annotations

import json
import re

import pytest

from dlbook.core import paths

NOTEBOOKS = ("05_active_learning.ipynb", "06_conformal.ipynb")
MODULES = (
    "experiments/active_learning.py",
    "experiments/conformal.py",
    "plots/active_learning.py",
    "plots/conformal.py",
)


def code_cells(name):
    cells = json.loads((paths.CHAPTERS_DIR / name).read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_code_cells_are_short_calls(name):
    for source in code_cells(name):
        assert len(source.strip().splitlines()) <= 6, source
        assert not re.search(r"^\s*(def|class)\s", source, re.M), source
        assert "results.save" not in source, source
        assert not re.search(r"\b(holds|fails|partly|inconclusive|supported)\b", source), source


@pytest.mark.parametrize("module", MODULES)
def test_the_package_reads_settings_not_profiles(module):
    source = (paths.REPO_ROOT / "src" / "dlbook" / module).read_text()
    assert "profiles.get" not in source and "profile: str" not in source


def test_chapter_5_has_no_verdict_of_its_own():
    from dlbook.experiments import active_learning

    assert not hasattr(active_learning, "verdict")
    assert (
        "claims.sentence"
        in (paths.REPO_ROOT / "src/dlbook/experiments/active_learning.py").read_text()
    )
