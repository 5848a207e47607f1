"""The build on a synthetic dataset: results, run.json, caching, failures that lose nothing."""

import json
import re
import shutil

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from dlbook.book import build, prepare, profiles
from dlbook.core import paths, results

PARAMETERS = 'profile = "smoke"\nseed = 0\ndata_dir = None\nresults_dir = None'


def _notebook(path, title, body):
    params = new_code_cell(PARAMETERS)
    params.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[new_markdown_cell(f"# {title}"), params, new_code_cell(body)])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


WRITES_RESULTS = """
from dlbook.facemask import data
from dlbook.core import results
ds = data.load_face_mask(data_dir, image_size=16, verify=False, progress=False)
results.save(results_dir, "{name}", {{"images": len(ds), "profile": profile, "seed": seed}})
print("saved")
"""


@pytest.fixture
def book(tmp_path):
    root = tmp_path / "book"
    (root / "chapters").mkdir(parents=True)
    shutil.copy(paths.REPO_ROOT / "_config.yml", root / "_config.yml")
    (root / "intro.md").write_text("# A test book\n\nTwo chapters that write results.\n")
    (root / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n  - file: chapters/alpha\n  - file: chapters/beta\n"
    )
    _notebook(root / "chapters" / "alpha.ipynb", "Alpha", WRITES_RESULTS.format(name="alpha"))
    _notebook(root / "chapters" / "beta.ipynb", "Beta", WRITES_RESULTS.format(name="beta"))
    return root


CHAPTERS = (build.Chapter("alpha", "alpha.ipynb"), build.Chapter("beta", "beta.ipynb"))


def _build(book, data_dir, **options):
    options.setdefault("render_book", False)
    return build.build(
        profile="smoke",
        data_dir=data_dir,
        verify=False,
        chapters=CHAPTERS,
        source_dir=book,
        log=lambda message: None,
        **options,
    )


def test_build_writes_results_and_run_record(book, synthetic_data):
    report = _build(book, synthetic_data)
    assert report.failed == []
    alpha = json.loads((book / "results" / "smoke" / "alpha.json").read_text())
    assert alpha == {"images": 40, "profile": "smoke", "seed": 0}
    run = json.loads((book / "results" / "smoke" / "run.json").read_text())
    assert run["profile"] == "smoke" and run["cpu_count"] >= 1
    assert {"numpy", "papermill", "python"} <= set(run["packages"])
    assert len(run["data_manifest_sha256"]) == 64
    for name in ("alpha", "beta"):
        chapter = run["chapters"][name]
        assert chapter["status"] == "ok" and chapter["error"] is None and chapter["seconds"] > 0
    executed = nbformat.read(book / "_build" / "executed" / "smoke" / "chapters" / "alpha.ipynb", 4)
    assert any("saved" in str(cell.get("outputs")) for cell in executed.cells)

    # Nothing changed: both chapters are reused. A changed notebook is executed again.
    again = _build(book, synthetic_data)
    assert all(info["cached"] for info in again.chapters.values())
    _notebook(book / "chapters" / "beta.ipynb", "Beta 2", WRITES_RESULTS.format(name="beta"))
    third = _build(book, synthetic_data)
    assert third.chapters["alpha"]["cached"] and not third.chapters["beta"]["cached"]


def test_a_re_executed_chapter_keeps_no_stale_keys(book, synthetic_data):
    out = book / "results" / "smoke"
    extra = WRITES_RESULTS.format(name="beta") + 'results.save(results_dir, "beta", {"old": 1})\n'
    _notebook(book / "chapters" / "beta.ipynb", "Beta", extra)
    _build(book, synthetic_data)
    assert json.loads((out / "beta.json").read_text())["old"] == 1
    _notebook(book / "chapters" / "beta.ipynb", "Beta 2", WRITES_RESULTS.format(name="beta"))
    _build(book, synthetic_data)
    assert "old" not in json.loads((out / "beta.json").read_text())
    assert json.loads((out / "beta.json.previous").read_text())["old"] == 1
    assert set(results.load_all(out)) == {"alpha", "beta"}


def test_failing_chapter_fails_the_build_and_keeps_the_others(book, synthetic_data):
    _notebook(book / "chapters" / "alpha.ipynb", "Alpha", "raise RuntimeError('planted failure')")
    with pytest.raises(
        build.BuildError, match=r"alpha \(cell \d+: RuntimeError: planted failure\)"
    ):
        _build(book, synthetic_data)
    run = json.loads((book / "results" / "smoke" / "run.json").read_text())
    assert run["chapters"]["alpha"]["status"] == "failed"
    assert "planted failure" in run["chapters"]["alpha"]["error"]
    assert run["chapters"]["beta"]["status"] == "ok"
    assert (book / "results" / "smoke" / "beta.json").exists()
    assert (book / "_build" / "executed" / "smoke" / "chapters" / "alpha.ipynb").exists()


def test_unknown_chapter_in_only_is_rejected(book, synthetic_data):
    with pytest.raises(ValueError, match="gamma"):
        _build(book, synthetic_data, only=["gamma"])


@pytest.mark.slow
def test_build_renders_html(book, synthetic_data):
    report = _build(book, synthetic_data, render_book=True)
    assert report.rendered
    page = (book / "_build" / "html" / "chapters" / "alpha.html").read_text()
    assert "saved" in page


def test_chapter_table_lists_chapters_in_book_order():
    from dlbook.plots import book

    run = {
        "profile": "smoke",
        "chapters": {
            name: {"status": "ok", "seconds": 1.0}
            for name in ("reproducibility", "conformal", "claims", "fundamentals")
        },
    }
    table = book.chapter_table(run)
    assert list(table["page"]) == [
        "1. Fundamentals",
        "6. Conformal prediction",
        "The claims, checked",
        "How this book was built",
    ]


def _package(root):
    """A tiny ``dlbook`` package: ``a`` imports ``b`` inside a function; ``c`` stands alone."""
    pkg = root / "dlbook"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("def f():\n    from dlbook import c as _\n")
    (pkg / "c.py").write_text('"""C."""\nfrom dlbook.sub import b\n')
    (pkg / "sub" / "b.py").write_text('"""B."""\n')
    (pkg / "d.py").write_text('"""Reached by no chapter."""\n')
    return pkg


def _code_notebook(path, *sources):
    cells = [{"cell_type": "code", "metadata": {}, "source": s} for s in sources]
    path.write_text(json.dumps({"cells": cells}))
    return path


def test_a_chapter_reaches_the_modules_it_imports_through_others(tmp_path):
    pkg = _package(tmp_path)
    notebook = _code_notebook(tmp_path / "ch.ipynb", "%matplotlib inline\nfrom dlbook.sub import a")
    reached = {p.relative_to(pkg).as_posix() for p in build.reached_modules(notebook, pkg)}
    assert reached == {"__init__.py", "sub/__init__.py", "sub/a.py", "c.py", "sub/b.py"}


def test_the_chapter_key_changes_only_with_a_module_the_chapter_reaches(tmp_path):
    pkg = _package(tmp_path)
    notebook = _code_notebook(tmp_path / "ch.ipynb", "import dlbook.sub.a")

    def key():
        sources = build.sources_sha256(build.reached_modules(notebook, pkg), pkg)
        return build.chapter_key(notebook, "smoke", 0, "data", sources)

    before = key()
    (pkg / "d.py").write_text('"""Reached by no chapter, edited."""\n')
    assert key() == before
    (pkg / "sub" / "b.py").write_text('"""B, its docstring edited."""\n')
    assert key() != before


def test_a_docstring_edit_in_conformal_reaches_only_the_chapters_that_use_it():
    # chapter 6 teaches it; chapter 4's shipping step calibrates the demo page's sets with it
    from dlbook.core import paths

    target = build.PACKAGE_DIR / "methods" / "conformal.py"
    reaching = [
        chapter.name
        for chapter in build.CHAPTERS
        if target in build.reached_modules(paths.REPO_ROOT / "chapters" / chapter.notebook)
    ]
    assert reaching == ["mask_detection", "conformal"]


TIMED = """
import json, os, time
from dlbook.core import results
started = time.time()
time.sleep(5)
results.save(results_dir, "{name}", {{"started": started, "ended": time.time(),
    "jobs": os.environ.get("DLBOOK_JOBS"), "interop": os.environ.get("TF_NUM_INTEROP_THREADS")}})
"""


def test_independent_chapters_run_at_once_and_a_dependant_waits(book, synthetic_data):
    for name in ("alpha", "beta", "gamma"):
        _notebook(book / "chapters" / f"{name}.ipynb", name.title(), TIMED.format(name=name))
    chapters = (
        build.Chapter("alpha", "alpha.ipynb"),
        build.Chapter("beta", "beta.ipynb"),
        build.Chapter("gamma", "gamma.ipynb", after=("alpha",)),
    )
    lines = []
    report = build.build(
        profile="smoke", data_dir=synthetic_data, verify=False, chapters=chapters,
        source_dir=book, render_book=False, jobs=2, log=lines.append,
    )  # fmt: skip
    assert report.failed == []
    out = book / "results" / "smoke"
    found = {name: json.loads((out / f"{name}.json").read_text()) for name in report.chapters}
    alpha, beta, gamma = found["alpha"], found["beta"], found["gamma"]
    assert alpha["started"] < beta["ended"] and beta["started"] < alpha["ended"]  # at once
    assert gamma["started"] >= alpha["ended"]  # after the chapter it reads
    share = str(max(1, build.parallel.available_cores() // 2))
    assert {f["interop"] for f in found.values()} == {share}  # its share for its own threads
    cores = str(build.parallel.available_cores())
    assert {f["jobs"] for f in found.values()} == {cores}  # Run.map workers: every core
    assert any("up to 2 at once" in line for line in lines)
    assert sum("in worker" in line for line in lines) == 3
    run = json.loads((out / "run.json").read_text())
    assert list(run["chapters"]) == ["alpha", "beta", "gamma"] and run["jobs"] == 2
    for info in run["chapters"].values():
        assert info["status"] == "ok" and info["cpu_seconds"] > 0
        assert info["utilisation"] == pytest.approx(info["cpu_seconds"] / info["seconds"], abs=0.02)
    assert run["cpu_seconds"] >= sum(i["cpu_seconds"] for i in run["chapters"].values()) * 0.9
    assert run["utilisation"] == pytest.approx(run["cpu_seconds"] / run["total_seconds"], 0.05)


def test_jobs_1_is_the_serial_build_in_book_order(book, synthetic_data):
    lines = []
    build.build(
        profile="smoke", data_dir=synthetic_data, verify=False, chapters=CHAPTERS,
        source_dir=book, render_book=False, jobs=1, log=lines.append,
    )  # fmt: skip
    shapes = [re.sub(r"\d+\.\d", "T", line) for line in lines]
    assert shapes == [
        "[1/2] alpha: executing chapters/alpha.ipynb ...",
        "[1/2] alpha: ok in T s -> results/smoke/alpha.json",
        "[2/2] beta: executing chapters/beta.ipynb ...",
        "[2/2] beta: ok in T s -> results/smoke/beta.json",
        "build of profile 'smoke' finished in T s",
    ]


def test_the_books_chapters_wait_for_what_they_read():
    graph = build.schedule.waits_for(build.CHAPTERS + build.PAGES)
    assert graph["conformal"] == {"mask_detection"}  # chapter 4's probabilities
    # the shared features are extracted before the chapters start: no chapter waits for them
    for name in ("fundamentals", "architectures", "active_learning", "future_work"):
        assert graph[name] == set()
    assert graph["claims"] == {c.name for c in build.CHAPTERS}
    assert graph["reproducibility"] == graph["claims"] | {"claims"}
    if "real_photos" in graph:  # it compares chapter 7's fit model: built after it
        assert graph["real_photos"] == {"mask_detection", "future_work"}


def test_the_build_command_takes_jobs_and_a_ray_address(capsys):
    from dlbook import cli

    args = cli.make_parser().parse_args(["build", "--jobs", "3", "--ray-address", "head:6379"])
    assert args.jobs == 3 and args.ray_address == "head:6379" and args.results_root is None
    assert cli.make_parser().parse_args(["build"]).jobs is None  # the cores available
    with pytest.raises(SystemExit):
        cli.make_parser().parse_args(["build", "--jobs", "0"])
    assert "--jobs '0': give a whole number of at least 1" in capsys.readouterr().err


@pytest.mark.slow
def test_the_prepare_step_fills_the_cache_the_chapters_read(real_data, tmp_path, monkeypatch):
    monkeypatch.setenv("DLBOOK_CACHE", str(tmp_path / "cache"))
    lines = []
    chapters = ["mask_detection", "active_learning"]
    first = build.schedule.prepare("smoke", real_data, 0, chapters, lines.append)
    assert first["status"] == "ok" and first["error"] is None, lines
    assert first["tasks"] == len(prepare.tasks("smoke", chapters))
    assert list((tmp_path / "cache" / "features").rglob("*.npy"))  # what the chapters then find
    assert list((tmp_path / "cache" / "fits").rglob("*.weights.h5"))  # the CNN trainings
    again = build.schedule.prepare("smoke", real_data, 0, chapters, lines.append)
    assert again["status"] == "ok" and again["cpu_seconds"] < first["cpu_seconds"]


def test_prepare_runs_what_the_chapters_to_run_need():
    assert prepare.tasks("smoke", ["fundamentals", "optimization"]) == []
    lines = []
    assert build.schedule.prepare("smoke", None, 0, ["fundamentals"], lines.append) is None
    assert lines == []  # nothing to prepare: no step, no line
    shared = prepare.tasks("smoke", ["conformal"])
    assert [task.label for task in shared] == ["shared backbone features (chapters 4-7)"]
    chapter4 = prepare.tasks("smoke", ["mask_detection"])
    settings = profiles.get("smoke", "mask_detection")
    cnn = [task for task in chapter4 if getattr(task, "kind", "") == "cnn"]
    assert len(cnn) == settings["cnn_seeds"] + settings["cnn_random_seeds"]
    costs = [task.cost for task in chapter4]
    assert costs == sorted(costs, reverse=True)  # the longest start first


def test_a_failed_prepare_step_is_logged_and_the_build_goes_on(tmp_path):
    lines = []
    found = build.schedule.prepare(
        "smoke", tmp_path / "no-such-folder", 0, ["conformal"], lines.append
    )
    assert found["status"] == "failed" and "no-such-folder" in found["error"]
    assert lines[0].startswith("prepare: 1 long independent run first, on every core")
    assert "compute what is missing themselves" in lines[-1]


def test_a_first_build_starts_with_the_chapter_on_the_longest_chain():
    graph = build.schedule.waits_for(build.CHAPTERS + build.PAGES)
    typical = {chapter.name: chapter.typical_seconds for chapter in build.CHAPTERS}
    rank = build.schedule.priorities(graph, typical)
    chapters = [chapter.name for chapter in build.CHAPTERS]
    assert max(chapters, key=rank.get) == "mask_detection"  # 4b and 6 wait for it
    # chapter 7 (4b waits for it too) before a chapter as long that nothing waits for
    assert rank["future_work"] > rank["fundamentals"]
    assert build.schedule.last_seconds({"chapters": {"a": {"seconds": None}}}) == {}


READS_THE_RECORD = """
import json, pathlib
from dlbook.core import results
record = json.loads((pathlib.Path(results_dir) / "run.json").read_text())
results.save(results_dir, "reproducibility", {"saw_totals": "total_seconds" in record,
    "chapters_seen": ",".join(record["chapters"])})
"""


@pytest.mark.parametrize("jobs", [1, 2])
def test_the_record_page_runs_last_and_sees_the_build_totals(book, synthetic_data, jobs):
    _notebook(book / "chapters" / "reproducibility.ipynb", "Record", READS_THE_RECORD)
    record = build.Chapter("reproducibility", "reproducibility.ipynb", always_run=True,
                           after=(build.schedule.EVERY_EARLIER,))  # fmt: skip
    report = build.build(
        profile="smoke", data_dir=synthetic_data, verify=False, chapters=(*CHAPTERS, record),
        source_dir=book, render_book=False, jobs=jobs, log=lambda message: None,
    )  # fmt: skip
    assert report.failed == []
    out = book / "results" / "smoke"
    seen = json.loads((out / "reproducibility.json").read_text())
    assert seen["saw_totals"] is True and seen["chapters_seen"] == "alpha,beta"
    run = json.loads((out / "run.json").read_text())
    assert run["totals_cover"] == "the whole build" and "reproducibility" in run["chapters"]
