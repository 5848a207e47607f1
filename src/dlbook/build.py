"""Build the book: verify the data, execute every chapter with papermill, render with Jupyter Book.

Each chapter is executed with the same four parameters (``profile``, ``seed``, ``data_dir``,
``results_dir``) into ``_build/executed/<profile>/chapters/``, a self-contained book source that
``jupyter-book build`` renders into ``_build/html``. A chapter is re-executed only when its
notebook, the ``dlbook`` sources, the profile, the seed or the data changed. A failing chapter is
recorded in ``results/<profile>/run.json`` and fails the build, but the other chapters still run
and keep their results.
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from dlbook import data, logs, paths, profiles

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
    Chapter("active_learning", "05_active_learning.ipynb"),
    Chapter("conformal", "06_conformal.ipynb"),
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


PACKAGE_DIR = Path(__file__).resolve().parent


def sources_sha256(package_dir: Path = PACKAGE_DIR) -> str:
    """Hash of every ``.py`` file of the package (path and content)."""
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def chapter_key(notebook: Path, profile: str, seed: int, data_id: str, sources: str) -> str:
    """What a chapter's executed notebook depends on, as one hash."""
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


def git_commit(repo: Path = paths.REPO_ROOT) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return out + ("-dirty" if dirty else "")


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


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
        tidy_parameter_cells(output)
    return status, time.perf_counter() - started, error_text


def _set_aside_results(results_dir: Path, name: str) -> None:
    """Move ``<name>.json`` to ``<name>.json.previous`` before the chapter executes again.

    Chapters merge their keys into the file as they go, so without this a key that the new
    execution no longer writes would survive from the old one. The old file stays beside it.
    """
    current = results_dir / f"{name}.json"
    if current.exists():
        current.replace(current.with_name(f"{name}.json.previous"))


def tidy_parameter_cells(notebook_path: Path) -> None:
    """Drop the default parameters cell from the rendered page and fold the injected one.

    The page then shows, behind a toggle, the parameters the chapter really ran with.
    """
    import nbformat

    notebook = nbformat.read(notebook_path, as_version=4)
    for cell in notebook.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
        if "injected-parameters" in tags and "hide-cell" not in tags:
            tags.append("hide-cell")
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
    profile : "smoke" or "full" (see ``dlbook.profiles``).
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
    sources = sources_sha256()
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
            _write_json(cache_file, previous_keys)
        run["chapters"][chapter.name] = info
        run["seconds_executing"] = round(
            sum(c["seconds"] for c in run["chapters"].values() if not c.get("cached")), 1
        )
        _write_json(run_file, run)
    report.chapters = run["chapters"]

    if report.failed:
        run["total_seconds"] = round(time.perf_counter() - started, 1)
        _write_json(run_file, run)
        details = "; ".join(f"{n} ({run['chapters'][n]['error']})" for n in report.failed)
        raise BuildError(
            f"{len(report.failed)} chapter(s) failed: {details}. Executed notebooks with the "
            f"error are in {book_dir / 'chapters'}; results of the others are in {results_dir}."
        )
    if render_book:
        html = render(book_dir, source_dir, log)
        report.rendered = True
        log(f"book rendered: {html / 'index.html'}")
    run["total_seconds"] = round(time.perf_counter() - started, 1)
    _write_json(run_file, run)
    log(f"build of profile {profile!r} finished in {run['total_seconds']:.1f} s")
    return report
