"""Build the book: verify the data, execute every chapter with papermill, render with Jupyter Book.

Each chapter is executed with the same four parameters (``profile``, ``seed``, ``data_dir``,
``results_dir``) into ``_build/executed/<profile>/chapters/``, a self-contained book source that
``jupyter-book build`` renders into ``_build/html``. A chapter is re-executed only when its
notebook, the ``dlbook`` modules it imports (directly or through others), the profile, the seed
or the data changed. A failing chapter is recorded in ``results/<profile>/run.json`` and fails the
build, but the other chapters still run and keep their results.

With ``jobs`` above 1, chapters that do not wait for each other (``Chapter.after``, declared in
``DEPENDS_ON``) execute at once, each kernel in its own process with its share of the cores
(``dlbook.book.schedule``), after the prepare step (``dlbook.book.prepare``) has run the long
independent runs several of them share, or that chapter 4 would make one after another, on every
core; ``jobs=1`` is the serial build, in book order. Either way only this process writes
``run.json`` (each chapter's wall and CPU seconds, and the build's) and ``chapter_keys.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from dlbook.book import profiles, schedule
from dlbook.book.html_check import check_html
from dlbook.core import cache, logs, parallel, paths
from dlbook.facemask import data

BOOK_FILES = ("_config.yml", "_toc.yml", "intro.md", "references.bib", "logo.png")
PACKAGES_REPORTED = (
    "tensorflow-cpu",
    "keras",
    "numpy",
    "scipy",
    "scikit-learn",
    "pillow",
    "pandas",
    "matplotlib",
    "papermill",
    "jupyter-book",
    "mapie",
    "scikit-activeml",
    "mtcnn",
    "opencv-python-headless",
    "flwr",
    "ray",
)


@dataclass(frozen=True)
class Chapter:
    """A notebook of the book: its results name and file in ``chapters/``, and the chapters it
    waits for in a parallel build (``schedule.EVERY_EARLIER``: all those listed before it)."""

    name: str
    notebook: str
    always_run: bool = False  # pages that summarise the others' results run every build
    after: tuple[str, ...] = ()
    # rough wall seconds of a full build's run of it after the prepare step, beside another
    # chapter on 2 cores: orders a build that has no record of the last one (its first)
    typical_seconds: float = 1.0


CHAPTERS = (
    Chapter("fundamentals", "01_fundamentals.ipynb", typical_seconds=450),
    Chapter("optimization", "02_optimization.ipynb", typical_seconds=650),
    Chapter("architectures", "03_architectures.ipynb", typical_seconds=300),
    Chapter("mask_detection", "04_mask_detection.ipynb", typical_seconds=850),
    Chapter("active_learning", "05_active_learning.ipynb", typical_seconds=300),
    Chapter("conformal", "06_conformal.ipynb", typical_seconds=40),
    Chapter("future_work", "07_future_work.ipynb", typical_seconds=330),
    # built after chapter 7, whose fit model it compares, though the book shows it in chapter 4
    Chapter("real_photos", "04b_real_photos.ipynb", typical_seconds=250),
)
PAGES = (
    Chapter("claims", "claims.ipynb", always_run=True),
    Chapter("reproducibility", "reproducibility.ipynb", always_run=True),
)

RECORD_PAGE = "reproducibility"
"""The page that shows ``run.json``: executed after every other page, once the build's totals so
far (wall, CPU, CPU use) are in the record, so the book shows them."""

DEPENDS_ON = {
    # mask_probs.npz (chapter 4's probabilities) picks the models chapter 6 conforms.
    "conformal": ("mask_detection",),
    # Reads chapter 4's shipped classifier and chapter 7's fit model in results/<profile>/models/.
    "real_photos": ("mask_detection", "future_work"),
    # The claims page judges every chapter's results; the reproducibility page shows run.json.
    "claims": (schedule.EVERY_EARLIER,),
    "reproducibility": (schedule.EVERY_EARLIER,),
}
"""Which chapter reads another's results, models or cache entries, found by reading the code;
``Chapter.after`` of the book's chapters comes from here."""
CHAPTERS = tuple(replace(c, after=DEPENDS_ON.get(c.name, ())) for c in CHAPTERS)
PAGES = tuple(replace(c, after=DEPENDS_ON.get(c.name, ())) for c in PAGES)


class BuildError(Exception):
    """The build could not finish; the message names the failing chapters or step."""


@dataclass
class BuildReport:
    profile: str
    run_file: Path
    chapters: dict = field(default_factory=dict)
    rendered: bool = False

    @property
    def failed(self) -> list[str]:
        return [name for name, info in self.chapters.items() if info["status"] == "failed"]


# ---------------------------------------------------------------------------------------------
# Content hashes


PACKAGE_DIR = Path(__file__).resolve().parents[1]


def _module_file(dotted: str, package_dir: Path) -> Path | None:
    """The file of ``dlbook.<...>`` module ``dotted`` under ``package_dir``, or None."""
    parts = dotted.split(".")[1:]
    base = package_dir.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports_of(source: str, package: str) -> set[str]:
    """Dotted names of the ``package`` modules (and ``module.attr`` candidates) ``source``
    imports, anywhere in it (function bodies included)."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.split(".")[0] == package}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == package:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def _notebook_code(notebook: Path) -> str:
    """A notebook's code cells as one Python source, IPython magics and shell lines left out."""
    cells = json.loads(notebook.read_text())["cells"]
    lines = []
    for cell in cells:
        if cell["cell_type"] == "code":
            source = "".join(cell["source"])
            lines += [
                line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))
            ]
    return "\n".join(lines)


def reached_modules(notebook: Path, package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """The package's module files a notebook imports, directly or through other modules.

    Imports are read statically (``ast``), inside functions too, so a module imported only when a
    function runs still counts; the packages above an imported module (their ``__init__.py``)
    count as well, since Python runs them first.
    """
    package = package_dir.name
    seen: set[Path] = set()
    pending = _imports_of(_notebook_code(notebook), package)
    while pending:
        dotted = pending.pop()
        parts = dotted.split(".")
        for depth in range(1, len(parts) + 1):
            path = _module_file(".".join(parts[:depth]), package_dir)
            if path is not None and path not in seen:
                seen.add(path)
                pending |= _imports_of(path.read_text(), package)
    return sorted(seen)


def sources_sha256(files, package_dir: Path = PACKAGE_DIR) -> str:
    """Hash of the given module files of the package (path and content)."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def chapter_key(notebook: Path, profile: str, seed: int, data_id: str, sources: str) -> str:
    """What a chapter's executed notebook depends on, as one hash: the notebook, the profile,
    the seed, the data, the ``sources`` hash of the modules it reaches and every profile block."""
    digest = hashlib.sha256()
    for part in (notebook.read_bytes(), profile.encode(), str(seed).encode(), data_id.encode()):
        digest.update(hashlib.sha256(part).digest())
    digest.update(sources.encode())
    digest.update(json.dumps(profiles.CHAPTER_PROFILES, sort_keys=True, default=str).encode())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Provenance


def package_versions(names=PACKAGES_REPORTED) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def git_commit(repo: Path = paths.REPO_ROOT) -> str | None:
    """The checkout's commit, with ``-dirty`` when tracked files differ from it (None: no git)."""
    try:
        commit = _git(repo, "rev-parse", "HEAD")
        dirty = _git(repo, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


# ---------------------------------------------------------------------------------------------
# Executing one chapter


def _describe_failure(error: Exception) -> str:
    """One line naming the failing cell and the exception, from papermill's error if it is one."""
    ename = getattr(error, "ename", None)
    if ename is not None:
        cell = getattr(error, "exec_count", None) or getattr(error, "cell_index", "?")
        evalue = str(getattr(error, "evalue", "")).strip().splitlines()
        return f"cell {cell}: {ename}: {evalue[-1] if evalue else ''}"
    return f"{type(error).__name__}: {error}"


def execute_chapter(
    chapter: Chapter, source: Path, output: Path, parameters: dict, cwd: Path
) -> tuple[str, float, float, str | None]:
    """Execute one notebook with papermill; return (status, seconds, CPU seconds, error or None).

    The CPU seconds are this process's and its kernel's (user + system, ``schedule.cpu_clock``).
    """
    import papermill

    started, cpu_started = time.perf_counter(), schedule.cpu_clock()
    try:
        # The kernel inherits this stderr: TensorFlow's native start-up lines are held back.
        with logs.quiet_native_stderr():
            papermill.execute_notebook(
                str(source),
                str(output),
                parameters=parameters,
                kernel_name="python3",
                cwd=str(cwd),
                progress_bar=False,
                log_output=False,
            )
    except Exception as error:  # noqa: BLE001 - every failure is recorded, none is fatal here
        status, error_text = "failed", _describe_failure(error)
    else:
        status, error_text = "ok", None
    if output.exists():
        tidy_parameter_cells(output, _display_paths(parameters))
    cpu = schedule.cpu_clock() - cpu_started
    return status, time.perf_counter() - started, cpu, error_text


def _shown(path: Path, source_dir: Path) -> str:
    """``path`` as the log shows it: relative to the checkout when it is inside it."""
    return str(path.relative_to(source_dir) if path.is_relative_to(source_dir) else path)


def _set_aside_results(results_dir: Path, name: str) -> None:
    """Move ``<name>.json`` to ``<name>.json.previous`` before the chapter executes again.

    Chapters merge their keys into the file as they go, so without this a key that the new
    execution no longer writes would survive from the old one. The old file stays beside it.
    """
    current = results_dir / f"{name}.json"
    if current.exists():
        current.replace(current.with_name(f"{name}.json.previous"))


def _display_paths(parameters: dict) -> dict[str, str]:
    """How the build machine's folders read on the page: the data folder as ``$DLBOOK_DATA``,
    the checkout's paths relative to it."""
    shown = {}
    if parameters.get("data_dir"):
        shown[str(parameters["data_dir"])] = "$DLBOOK_DATA"
    shown[str(paths.REPO_ROOT) + "/"] = ""
    return shown


def tidy_parameter_cells(notebook_path: Path, display_paths: dict[str, str] | None = None) -> None:
    """Drop the default parameters cell from the rendered page and fold the injected one.

    The page then shows, behind a toggle, the parameters the chapter really ran with, with the
    build machine's folders replaced as ``display_paths`` says (``{path: shown as}``).
    """
    import nbformat

    notebook = nbformat.read(notebook_path, as_version=4)
    for cell in notebook.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
        if "injected-parameters" in tags:
            if "hide-cell" not in tags:
                tags.append("hide-cell")
            for path, shown in (display_paths or {}).items():
                cell.source = cell.source.replace(path, shown)
    nbformat.write(notebook, notebook_path)


# ---------------------------------------------------------------------------------------------
# The whole build


def _resolve_data(data_dir, verify: bool, allow_mismatch: bool, log) -> tuple[Path, dict]:
    folder = data.resolve_data_dir(data_dir)
    info = {"data_dir": str(folder), "data_manifest_sha256": data.manifest_sha256()}
    if not verify:
        info.update(data_verified=False, data_id=f"unverified:{folder}")
        return folder, info
    log(f"verifying {folder} against {data.MANIFEST_PATH.name} ...")
    report = data.verify_data(folder, allow_mismatch=allow_mismatch)
    info.update(
        data_verified=report.ok,
        data_missing=len(report.missing),
        data_extra=len(report.extra),
        data_changed=len(report.changed),
    )
    info["data_id"] = info["data_manifest_sha256"] if report.ok else f"mismatch:{folder}"
    log(f"data ok: {len(data.list_image_files(folder))} files" if report.ok else "data MISMATCH")
    return folder, info


def _stage_book_files(source_dir: Path, book_dir: Path) -> None:
    book_dir.mkdir(parents=True, exist_ok=True)
    for name in BOOK_FILES:
        if (source_dir / name).exists():
            shutil.copy2(source_dir / name, book_dir / name)
    if (source_dir / "_static").is_dir():
        shutil.copytree(source_dir / "_static", book_dir / "_static", dirs_exist_ok=True)
    (book_dir / "chapters").mkdir(exist_ok=True)
    for page in (source_dir / "chapters").glob("*.md"):
        shutil.copy2(page, book_dir / "chapters" / page.name)


def render(book_dir: Path, output_root: Path, log=print) -> Path:
    """Render the executed book with ``jupyter-book build``, warnings as errors."""
    executable = Path(sys.executable).with_name("jupyter-book")
    command = [str(executable) if executable.exists() else "jupyter-book", "build", str(book_dir)]
    command += ["--path-output", str(output_root), "-W", "--keep-going"]
    log("rendering: " + " ".join(command))
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
        raise BuildError(f"jupyter-book build failed (exit {done.returncode}):\n{tail}")
    return output_root / "_build" / "html"


def build(
    profile: str = "smoke",
    only: list[str] | None = None,
    data_dir=None,
    seed: int = 0,
    verify: bool = True,
    allow_data_mismatch: bool = False,
    force: bool = False,
    render_book: bool = True,
    chapters: tuple[Chapter, ...] = CHAPTERS + PAGES,
    source_dir: Path = paths.REPO_ROOT,
    build_dir: Path | None = None,
    results_root: Path | None = None,
    jobs: int | None = None,
    ray_address: str | None = None,
    log=print,
) -> BuildReport:
    """Execute the chapters of ``profile`` and render the book; return what happened.

    Parameters
    ----------
    profile : "smoke" or "full" (see ``dlbook.book.profiles``).
    only : names of chapters to (re)execute; the others keep their last executed notebook.
        Pages with ``always_run`` (claims, reproducibility) run every time.
    force : execute even chapters whose inputs did not change.
    render_book : run ``jupyter-book build`` after a successful execution.
    jobs : chapters executed at once, each after the chapters it waits for (``Chapter.after``);
        default ``$DLBOOK_JOBS`` or the cores available. 1: one after the other in book order,
        and every ``Run.map`` in the chapters a plain loop.
    ray_address : a Ray cluster for the chapters' ``Run.map`` tasks (default
        ``$DLBOOK_RAY_ADDRESS``; None: this machine).

    Raises
    ------
    BuildError
        After all chapters ran, if any failed (the message names them and the failing cell), or
        if rendering failed.
    """
    if profile not in profiles.PROFILE_NAMES:
        raise ValueError(f"profile={profile!r} is unknown; use one of {profiles.PROFILE_NAMES}")
    names = [c.name for c in chapters]
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        raise ValueError(f"only={unknown} names unknown chapters; use some of {names}")
    jobs = parallel.default_jobs() if jobs is None else int(jobs)
    if jobs < 1:
        raise ValueError(f"jobs={jobs} must be at least 1")
    ray_address = parallel.resolve_ray_address(ray_address)
    graph = schedule.waits_for(chapters)
    source_dir = Path(source_dir)
    build_dir = Path(build_dir or source_dir / "_build")
    book_dir = build_dir / "executed" / profile
    results_dir = paths.results_dir(profile, Path(results_root or source_dir / "results") / profile)
    run_file = results_dir / "run.json"
    cache_file = book_dir / "chapter_keys.json"
    logs.set_tensorflow_log_level()  # inherited by the kernels, before they import TensorFlow

    started, cpu_started = time.perf_counter(), schedule.cpu_clock()
    folder, data_info = _resolve_data(data_dir, verify, allow_data_mismatch, log)
    _stage_book_files(source_dir, book_dir)
    previous_keys = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    previous_run = json.loads(run_file.read_text()) if run_file.exists() else {}
    run = {
        "profile": profile,
        "seed": seed,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(source_dir),
        "packages": package_versions(),
        "cpu_count": os.cpu_count(),
        "cores_available": parallel.available_cores(),
        "jobs": jobs,
        "ray_address": ray_address,
        "platform": platform.platform(),
        **data_info,
        "chapters": {},
    }
    report = BuildReport(profile, run_file)
    parameters = {
        "profile": profile,
        "seed": seed,
        "data_dir": str(folder),
        "results_dir": str(results_dir),
    }
    plans = {}

    def record(name: str, info: dict) -> None:
        """Put a chapter's outcome in run.json (book order); only this process writes it."""
        done = {**run["chapters"], name: info}
        run["chapters"] = {n: done[n] for n in names if n in done}
        executed = [c for c in run["chapters"].values() if not c.get("cached")]
        run["seconds_executing"] = round(sum(c["seconds"] for c in executed), 1)
        run["cpu_seconds_executing"] = round(sum(c.get("cpu_seconds", 0.0) for c in executed), 1)
        cache.write_json(run_file, run)

    def decide(number: int, chapter: Chapter) -> bool:
        """Log and record a chapter that need not run; True when it must be executed."""
        source = source_dir / "chapters" / chapter.notebook
        output = book_dir / "chapters" / chapter.notebook
        sources = sources_sha256(reached_modules(source))
        key = chapter_key(source, profile, seed, data_info["data_id"], sources)
        selected = only is None or chapter.name in only or chapter.always_run
        before = previous_run.get("chapters", {}).get(chapter.name)
        unchanged = previous_keys.get(chapter.name) == key and output.exists()
        prefix = f"[{number}/{len(chapters)}] {chapter.name}"
        plans[chapter.name] = (chapter, source, output, key, prefix)
        if (
            not force
            and not chapter.always_run
            and before
            and before["status"] == "ok"
            and (unchanged or not selected)
        ):
            log(f"{prefix}: up to date ({before['seconds']:.1f} s when it last ran)")
            record(chapter.name, {**before, "cached": True})
            return False
        if not selected:
            log(f"{prefix}: not selected and never ran")
            record(
                chapter.name, {"status": "not run", "seconds": 0.0, "error": None, "cached": False}
            )
            return False
        return True

    def begin(name: str, where: str = "") -> None:
        _chapter, source, _output, _key, prefix = plans[name]
        log(f"{prefix}: executing {source.relative_to(source_dir)}{where} ...")
        _set_aside_results(results_dir, name)

    def finish(name: str, result: tuple, where: str = "") -> None:
        status, seconds, cpu, error = result
        _chapter, _source, _output, key, prefix = plans[name]
        info = {"status": status, "seconds": round(seconds, 1), "error": error, "cached": False}
        info.update(
            cpu_seconds=round(cpu, 1), utilisation=round(cpu / seconds, 3) if seconds else None
        )
        if status == "ok":
            previous_keys[name] = key
            written = results_dir / f"{name}.json"
            shown = f" -> {_shown(written, source_dir)}" if written.exists() else ""
            log(f"{prefix}: ok in {seconds:.1f} s{where}{shown}")
        else:
            previous_keys.pop(name, None)
            log(f"{prefix}: FAILED after {seconds:.1f} s{where}: {error}")
        cache.write_json(cache_file, previous_keys)
        record(name, info)

    def record_totals_so_far() -> None:
        """The build's totals up to now, written for the record page to show."""
        schedule.record_totals(run, started, cpu_started)
        run["totals_cover"] = "before the record page"
        cache.write_json(run_file, run)

    def arguments(name: str) -> tuple:
        chapter, source, output, _key, _prefix = plans[name]
        return chapter, source, output, parameters, source.parent

    if jobs == 1:
        # every Run.map a plain loop, as before; the book's thread sizes, as a parallel build's
        serial = {**parallel.thread_environment(parallel.available_cores()),
                  parallel.JOBS_VARIABLE: "1"}  # fmt: skip
        if ray_address:
            serial[parallel.RAY_ADDRESS_VARIABLE] = ray_address
        for number, chapter in enumerate(chapters, start=1):
            if decide(number, chapter):
                if chapter.name == RECORD_PAGE:
                    record_totals_so_far()
                begin(chapter.name)
                with schedule.environment(serial):
                    finish(chapter.name, execute_chapter(*arguments(chapter.name)))
    else:
        to_run = [c.name for n, c in enumerate(chapters, start=1) if decide(n, c)]
        at_once = min(jobs, schedule.width(graph, to_run))
        share = schedule.core_share(jobs, at_once)
        environment = schedule.kernel_environment(
            share, ray_address, workers=parallel.available_cores()
        )
        if to_run:
            log(schedule.plan_line(to_run, at_once, share, environment, ray_address))
        if (step := schedule.prepare(profile, folder, seed, to_run, log)) is not None:
            run["prepared"] = step
        typical = {chapter.name: chapter.typical_seconds for chapter in CHAPTERS + PAGES}
        rank = schedule.priorities(graph, typical | schedule.last_seconds(previous_run))
        schedule.run_concurrently(
            [name for name in to_run if name != RECORD_PAGE], graph, rank, jobs,
            execute_chapter, arguments, environment,
            on_start=lambda name, slot: begin(name, f" in worker {slot}"),
            on_done=lambda name, result, slot, pid: finish(
                name, result, f" (worker {slot}, pid {pid}, {result[2]:.1f} CPU s)"
            ),
        )  # fmt: skip
        if RECORD_PAGE in to_run:
            record_totals_so_far()
            begin(RECORD_PAGE)
            with schedule.environment(environment):
                finish(RECORD_PAGE, execute_chapter(*arguments(RECORD_PAGE)))
    report.chapters = run["chapters"]
    schedule.record_totals(run, started, cpu_started)

    if report.failed:
        cache.write_json(run_file, run)
        details = "; ".join(f"{n} ({run['chapters'][n]['error']})" for n in report.failed)
        raise BuildError(
            f"{len(report.failed)} chapter(s) failed: {details}. Executed notebooks with the "
            f"error are in {book_dir / 'chapters'}; results of the others are in {results_dir}."
        )
    if render_book:
        html = render(book_dir, source_dir, log)
        report.rendered = True
        log(f"book rendered: {html / 'index.html'}")
        problems = check_html(html, checkout=source_dir)
        run["html_problems"] = len(problems)
        for problem in problems:
            log(f"page problem: {problem}")
    schedule.record_totals(run, started, cpu_started)
    run["totals_cover"] = "the whole build"
    cache.write_json(run_file, run)
    log(f"build of profile {profile!r} finished in {run['total_seconds']:.1f} s")
    return report
