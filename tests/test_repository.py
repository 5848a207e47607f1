"""Repository hygiene that a reviewer would otherwise check by hand."""

import json

import pytest

from dlbook.book import build
from dlbook.core import paths

NOTEBOOKS = sorted((paths.REPO_ROOT / "chapters").glob("*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs_and_has_parameters(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    source = "".join(tagged[0]["source"])
    for name in ("profile", "seed", "data_dir", "results_dir"):
        assert f"{name} =" in source
    assert 'profile = "smoke"' in source


def test_every_chapter_of_the_build_is_in_the_table_of_contents():
    toc = (paths.REPO_ROOT / "_toc.yml").read_text()
    for chapter in build.CHAPTERS + build.PAGES:
        assert f"chapters/{chapter.notebook.removesuffix('.ipynb')}" in toc
