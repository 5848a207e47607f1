"""Build the book: verify the data, execute every chapter with papermill, render with Jupyter Book.

Each chapter is executed with the same four parameters (``profile``, ``seed``, ``data_dir``,
``results_dir``) into ``_build/executed/<profile>/chapters/``, a self-contained book source that
``jupyter-book build`` renders into ``_build/html``. A chapter is re-executed only when its
notebook, the ``dlbook`` modules it imports (directly or through others), the profile, the seed
or the data changed. A failing chapter is recorded in ``results/<profile>/run.json`` and fails the
build, but the other chapters still run and keep their results.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from dlbook.book import profiles
from dlbook.core import cache, logs, paths
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
    """A notebook of the book: its results name and file in ``chapters/``."""

    name: str
    notebook: str
    always_run: bool = False  # pages that summarise the others' results run every build


CHAPTERS = (
    Chapter("fundamentals", "01_fundamentals.ipynb"),
    Chapter("optimization", "02_optimization.ipynb"),
    Chapter("architectures", "03_architectures.ipynb"),
    Chapter("mask_detection", "04_mask_detection.ipynb"),
    Chapter("real_photos", "04b_real_photos.ipynb"),
    Chapter("active_learning", "05_active_learning.ipynb"),
    Chapter("conformal", "06_conformal.ipynb"),
    Chapter("future_work", "07_future_work.ipynb"),
)
PAGES = (
    Chapter("claims", "claims.ipynb", always_run=True),
    Chapter("reproducibility", "reproducibility.ipynb", always_run=True),
)


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
) -> tuple[str, float, str | None]:
    """Execute one notebook with papermill; return (status, seconds, error or None)."""
    import papermill

    started = time.perf_counter()
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
    return status, time.perf_counter() - started, error_text


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
    source_dir = Path(source_dir)
    build_dir = Path(build_dir or source_dir / "_build")
    book_dir = build_dir / "executed" / profile
    results_dir = paths.results_dir(profile, Path(results_root or source_dir / "results") / profile)
    run_file = results_dir / "run.json"
    cache_file = book_dir / "chapter_keys.json"
    logs.set_tensorflow_log_level()  # inherited by the kernels, before they import TensorFlow

    started = time.perf_counter()
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
    for number, chapter in enumerate(chapters, start=1):
        source = source_dir / "chapters" / chapter.notebook
        output = book_dir / "chapters" / chapter.notebook
        sources = sources_sha256(reached_modules(source))
        key = chapter_key(source, profile, seed, data_info["data_id"], sources)
        selected = only is None or chapter.name in only or chapter.always_run
        before = previous_run.get("chapters", {}).get(chapter.name)
        unchanged = previous_keys.get(chapter.name) == key and output.exists()
        prefix = f"[{number}/{len(chapters)}] {chapter.name}"
        if (
            not force
            and not chapter.always_run
            and before
            and before["status"] == "ok"
            and (unchanged or not selected)
        ):
            info = {**before, "cached": True}
            log(f"{prefix}: up to date ({before['seconds']:.1f} s when it last ran)")
        elif not selected:
            info = {"status": "not run", "seconds": 0.0, "error": None, "cached": False}
            log(f"{prefix}: not selected and never ran")
        else:
            log(f"{prefix}: executing {source.relative_to(source_dir)} ...")
            _set_aside_results(results_dir, chapter.name)
            status, seconds, error = execute_chapter(
                chapter, source, output, parameters, cwd=source.parent
            )
            info = {"status": status, "seconds": round(seconds, 1), "error": error, "cached": False}
            if status == "ok":
                previous_keys[chapter.name] = key
                written = results_dir / f"{chapter.name}.json"
                where = f" -> {written.relative_to(source_dir)}" if written.exists() else ""
                log(f"{prefix}: ok in {seconds:.1f} s{where}")
            else:
                previous_keys.pop(chapter.name, None)
                log(f"{prefix}: FAILED after {seconds:.1f} s: {error}")
            cache.write_json(cache_file, previous_keys)
        run["chapters"][chapter.name] = info
        run["seconds_executing"] = round(
            sum(c["seconds"] for c in run["chapters"].values() if not c.get("cached")), 1
        )
        cache.write_json(run_file, run)
    report.chapters = run["chapters"]

    if report.failed:
        run["total_seconds"] = round(time.perf_counter() - started, 1)
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
    run["total_seconds"] = round(time.perf_counter() - started, 1)
    cache.write_json(run_file, run)
    log(f"build of profile {profile!r} finished in {run['total_seconds']:.1f} s")
    return report


# ---------------------------------------------------------------------------------------------
# Checking the rendered pages as a reader would


MACHINERY = (
    ("PosixPath(", "a Python path repr"),
    ("WARNING:", "a library warning"),
    ("Traceback", "a traceback"),
    ("URLError", "a network error"),
)
MISSING_CELLS = {"nan", "NaN", "None", "<NA>", "NaT"}
LONG_DECIMALS = re.compile(r"(?<![\w.])-?\d+\.\d{5,}(?![\w.])")
"""A number with 5 or more decimals; flagged when it also has more than 4 significant digits."""
ROOT_PATH = re.compile(r"/root/[\w.~/-]+")
NETWORK = re.compile(r"^(https?:)?//", re.IGNORECASE)


def _too_precise(number: str) -> bool:
    """5 or more decimals, more than 4 significant digits: ``0.849123`` is, ``0.00249`` is not."""
    return len(number.lstrip("-").lstrip("0").replace(".", "").lstrip("0")) > 4


def _page_problems(text_html: str, name: str, checkout: Path, ids_of) -> list[str]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text_html, "html.parser")
    problems = []
    maths = [
        tag.get("src", "")
        for tag in soup.find_all("script")
        if re.search(r"mathjax|katex", tag.get("src", ""), re.IGNORECASE)
    ]
    if maths and all(NETWORK.match(src) for src in maths):
        problems.append(f"{name}: maths is loaded only from the network ({maths[0]})")
    body = soup.find("main") or soup.body or soup
    for tag in body.find_all(["script", "style"]):
        tag.decompose()
    text = body.get_text(" ")
    for needle, what in MACHINERY:
        if needle in text:
            problems.append(f"{name}: {what} ({needle!r}) on the page")
    for path in sorted(set(ROOT_PATH.findall(text))):
        problems.append(f"{name}: a path of the build machine ({path})")
    if str(checkout) in text:
        problems.append(f"{name}: a path of the checkout ({checkout})")
    for cell in body.find_all(["td", "th"]):
        value = cell.get_text(" ", strip=True)
        if value in MISSING_CELLS:
            problems.append(f"{name}: a table cell reads {value!r}")
        elif any(_too_precise(number) for number in LONG_DECIMALS.findall(value)):
            problems.append(f"{name}: a table cell with 5 or more decimals ({value!r})")
    for link in body.find_all("a", href=True):
        href = link["href"]
        if NETWORK.match(href) or "#" not in href or href.startswith(("#", "mailto:")):
            continue
        target, anchor = href.split("#", 1)
        ids = ids_of(target)
        if ids is None:
            problems.append(f"{name}: a link to a missing page ({href})")
        elif anchor and anchor not in ids:
            problems.append(f"{name}: a link to a missing section ({href})")
    return problems


def check_html(folder, checkout=None) -> list[str]:
    """What a reader should never see on the rendered pages under ``folder``, one line each.

    Looks for machinery (a ``PosixPath(`` repr, ``WARNING:``, a ``Traceback``, a ``URLError``, a
    path under ``/root/`` or of the ``checkout``), table cells reading nan or None or with 5 or
    more decimals, maths (MathJax or KaTeX) loaded only from the network, and links to a section
    of another page that does not exist. The theme's own pages (search, index) are skipped.
    """
    from bs4 import BeautifulSoup

    folder = Path(folder)
    checkout = Path(checkout or paths.REPO_ROOT)
    cache: dict[Path, set[str] | None] = {}
    problems = []
    skipped = {"search.html", "genindex.html", "py-modindex.html"}
    for page in sorted(folder.rglob("*.html")):
        relative = page.relative_to(folder)
        if page.name in skipped or relative.parts[0].startswith("_"):
            continue

        def ids_of(target: str, page=page) -> set[str] | None:
            path = (page.parent / target).resolve() if target else page.resolve()
            if path not in cache:
                cache[path] = (
                    {
                        tag["id"]
                        for tag in BeautifulSoup(path.read_text(), "html.parser").find_all(id=True)
                    }
                    if path.is_file()
                    else None
                )
            return cache[path]

        problems += _page_problems(page.read_text(), relative.as_posix(), checkout, ids_of)
    return problems
