"""The chapter notebooks are prose and calls: the package computes, saves, words and judges.

Each chapter notebook (``chapters/0*.ipynb``) may hold only short code cells that call
``dlbook``: no cell over 6 lines, no ``results.save``, no ``def`` or ``class``, and no verdict
logic of its own (a measured value compared with a claimed figure, or a verdict word decided in
the notebook). Verdicts come from ``dlbook.book.claims``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

CHAPTERS = sorted((Path(__file__).resolve().parents[1] / "chapters").glob("0*.ipynb"))
MAX_LINES = 6

VERDICT_WORDS = r"(holds?|partly|fails?|inconclusive|untested|consistent|not supported|supported)"
VERDICT_PATTERNS = (
    # a measured value compared with one of the dissertation's figures
    re.compile(r"[<>]=?\s*(0\.9[0-9]*|9[0-9](\.[0-9]+)?|0\.30?|30)\b"),
    re.compile(r"DISSERTATION_MODELS|claims\.judge_|judge_model_claim"),
    # a verdict word chosen by a condition in the notebook
    re.compile(rf"['\"]{VERDICT_WORDS}['\"]\s+if\b|\belse\s+['\"]{VERDICT_WORDS}['\"]"),
)


def code_cells(path: Path) -> list[str]:
    notebook = json.loads(path.read_text())
    return [
        "".join(cell["source"])
        for cell in notebook["cells"]
        if cell["cell_type"] == "code" and "parameters" not in cell["metadata"].get("tags", [])
    ]


def problems(path: Path) -> list[str]:
    """What in ``path`` breaks the chapters-as-calls rules, one line each."""
    found = []
    for number, source in enumerate(code_cells(path), start=1):
        lines = [line for line in source.splitlines() if line.strip()]
        if len(lines) > MAX_LINES:
            found.append(f"code cell {number} has {len(lines)} lines (at most {MAX_LINES})")
        if re.search(r"\bresults\.save\s*\(", source):
            found.append(f"code cell {number} calls results.save (the package saves results)")
        if re.search(r"^\s*(async\s+)?(def|class)\s", source, flags=re.MULTILINE):
            found.append(f"code cell {number} defines a function or class")
        for pattern in VERDICT_PATTERNS:
            match = pattern.search(source)
            if match:
                found.append(
                    f"code cell {number} carries verdict logic ({match.group(0)!r}); "
                    "use dlbook.book.claims.judge or claims.sentence"
                )
    return found


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_is_prose_and_calls(path):
    assert problems(path) == []


def test_the_checker_catches_each_rule(tmp_path):
    def notebook(*sources):
        cells = [
            {
                "cell_type": "code",
                "metadata": {},
                "source": s,
                "outputs": [],
                "execution_count": None,
            }
            for s in sources
        ]
        path = tmp_path / "0x.ipynb"
        path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4}))
        return path

    fine = notebook("settings = profiles.get(profile, 'conformal')", "Markdown(ex.story(r))")
    assert problems(fine) == []
    found = problems(
        notebook(
            "\n".join(f"x{i} = {i}" for i in range(7)),
            "results.save(out, 'x', values)",
            "def helper():\n    return 1",
            "verdict = 'holds' if acc >= 0.96 else 'fails'",
        )
    )
    assert len(found) == 5
    assert "7 lines" in found[0] and "results.save" in found[1] and "defines" in found[2]
    assert all("verdict logic" in line for line in found[3:])
