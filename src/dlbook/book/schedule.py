"""Chapters in parallel: which chapter waits for which, in what order, on how many cores.

``waits_for`` turns the ``after`` fields of ``build.Chapter`` into a graph; ``priorities`` orders
the chapters ready at one moment (the longest remaining chain first, from the last build's
seconds, so the chapter the others wait on starts early); ``run_concurrently`` executes them,
``jobs`` at a time, each in its own worker process whose notebook kernel gets its share of the
cores (``kernel_environment``). The build's parent process alone writes ``run.json`` and
``chapter_keys.json``, from the ``on_done`` callback.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

import psutil

from dlbook.core import parallel

EVERY_EARLIER = "*"
"""In ``Chapter.after``: every chapter listed before this one (the summary pages)."""


def waits_for(chapters: Sequence) -> dict[str, set[str]]:
    """``{chapter: names it waits for}`` among ``chapters`` (book order).

    A name in ``after`` that is not among ``chapters`` is not waited for (a build of a subset);
    ``EVERY_EARLIER`` stands for every chapter listed before.

    Raises
    ------
    ValueError
        If a chapter waits for one listed after it (the book order must respect the graph).
    """
    position = {chapter.name: i for i, chapter in enumerate(chapters)}
    graph = {}
    for i, chapter in enumerate(chapters):
        names = set()
        for name in chapter.after:
            if name == EVERY_EARLIER:
                names |= {c.name for c in chapters[:i]}
            elif name in position:
                if position[name] > i:
                    raise ValueError(
                        f"chapter {chapter.name!r} waits for {name!r}, which the book lists after "
                        "it; list it earlier or drop the dependency"
                    )
                names.add(name)
        graph[chapter.name] = names
    return graph


def priorities(graph: dict[str, set[str]], seconds: dict[str, float]) -> dict[str, float]:
    """Each chapter's longest chain of ``seconds`` through the chapters that wait for it.

    Started in decreasing order, the chapter others wait on (chapter 4, in this book) goes first;
    without a last build, the chapter with the longest chain of waiting chapters does.
    """
    waiting = {name: [n for n, deps in graph.items() if name in deps] for name in graph}
    found: dict[str, float] = {}

    def chain(name: str) -> float:
        if name not in found:
            after = max((chain(n) for n in waiting[name]), default=0.0)
            found[name] = float(seconds.get(name) or 1.0) + after  # no record: 1 s
        return found[name]

    return {name: chain(name) for name in graph}


def kernel_environment(
    share: int, ray_address: str | None = None, workers: int | None = None
) -> dict[str, str]:
    """What a chapter's kernel runs with beside others: its ``share`` of the cores for its own
    thread pools (``parallel.thread_environment``), ``workers`` ``Run.map`` workers (default:
    ``share``), and the Ray cluster's address when there is one.

    The build gives every chapter as many workers as there are cores: the chapters finish at
    different times, and the last one (chapter 4, the longest) would otherwise run its
    independent trainings on its share alone while the other cores sit idle. While chapters
    overlap, the operating system shares the cores; results do not depend on it (a task's
    thread pools keep their serial sizes, see ``parallel``)."""
    environment = parallel.thread_environment(share)
    environment[parallel.JOBS_VARIABLE] = str(workers or share)
    if ray_address:
        environment[parallel.RAY_ADDRESS_VARIABLE] = ray_address
    return environment


def width(graph: dict[str, set[str]], names: Sequence[str]) -> int:
    """How many of the chapters ``names`` can run at once: the most on one level of the graph
    (a chapter's level is one more than its deepest dependency's among ``names``)."""
    level: dict[str, int] = {}
    for name in names:  # book order lists a chapter after those it waits for
        level[name] = 1 + max((level[d] for d in graph.get(name, ()) if d in level), default=0)
    counts = [list(level.values()).count(value) for value in set(level.values())]
    return max(counts, default=1)


def core_share(jobs: int, at_once: int, cores: int | None = None) -> int:
    """Cores each chapter kernel gets: the available ``cores`` split between the chapters that
    can run at once (``jobs``, at most ``at_once``, from ``width``), at least 1."""
    cores = cores or parallel.available_cores()
    return max(1, cores // max(1, min(jobs, at_once)))


def cpu_clock() -> float:
    """CPU seconds (user + system) of this process and of its children that ended (a chapter's
    kernel, once papermill shut it down); deltas of it measure a chapter's process tree."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _in_worker(execute: Callable, environment: dict[str, str], arguments: tuple):
    """In a worker process: the kernel's environment, then ``execute(*arguments)``."""
    os.environ.update(environment)
    return execute(*arguments), os.getpid()


def run_concurrently(
    names: Sequence[str],
    graph: dict[str, set[str]],
    rank: dict[str, float],
    jobs: int,
    execute: Callable,
    arguments: Callable[[str], tuple],
    environment: dict[str, str],
    on_start: Callable[[str, int], None],
    on_done: Callable[[str, object, int, int], None],
) -> None:
    """Execute the chapters ``names``, at most ``jobs`` at once, each after those it waits for.

    Parameters
    ----------
    names : the chapters to execute, in book order; the graph's other chapters count as done.
    graph, rank : from ``waits_for`` and ``priorities``; ties go to the book order.
    execute, arguments : ``execute(*arguments(name))`` runs one chapter; ``execute`` must be a
        module-level function (worker processes import it).
    environment : set in each worker before ``execute`` (so in its kernel).
    on_start, on_done : called in this process with ``(name, slot)`` just before a chapter is
        handed to a worker and ``(name, result, slot, worker pid)`` when it ends, failed or not; a
        chapter runs after its dependencies have ended, whatever their status (as in a serial
        build).
    """
    pending = list(names)
    finished = {name for name in graph if name not in pending}
    order = {name: i for i, name in enumerate(names)}
    free = list(range(1, jobs + 1))
    running = {}
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited threads
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool, _stopped_on_term():
        try:
            while pending or running:
                ready = [n for n in pending if graph.get(n, set()) <= finished]
                ready.sort(key=lambda n: (-rank.get(n, 0.0), order[n]))
                for name in ready[: len(free)]:
                    slot = free.pop(0)
                    pending.remove(name)
                    on_start(name, slot)
                    future = pool.submit(_in_worker, execute, environment, arguments(name))
                    running[future] = (name, slot, time.perf_counter())
                if not running:
                    raise ValueError(f"chapters {pending} wait for each other; check their `after`")
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: running[f][2]):
                    name, slot, _started = running.pop(future)
                    result, pid = future.result()
                    finished.add(name)
                    free.append(slot)
                    free.sort()
                    on_done(name, result, slot, pid)
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM) or broken: stop the workers and the kernels they
            # started, or they would run on, orphaned, and the pool's exit would wait for them.
            stop_process_trees(list(pool._processes or {}))
            pool.shutdown(wait=False, cancel_futures=True)
            raise


@contextlib.contextmanager
def _stopped_on_term():
    """Within the block, SIGTERM raises ``SystemExit`` (as Ctrl-C raises ``KeyboardInterrupt``),
    so a build stopped by ``kill`` also stops its chapters."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_process_trees(pids, timeout: float = 5.0) -> None:
    """Terminate the processes ``pids`` and all their descendants; kill what outlives
    ``timeout`` seconds."""
    processes = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(pid)
            processes += root.children(recursive=True) + [root]
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


def record_totals(run: dict, started: float, cpu_started: float) -> None:
    """The build's wall seconds, CPU seconds (this process and every chapter's) and their ratio."""
    run["total_seconds"] = round(time.perf_counter() - started, 1)
    run["cpu_seconds"] = round(cpu_clock() - cpu_started, 1)
    run["utilisation"] = round(run["cpu_seconds"] / run["total_seconds"], 3)


def last_seconds(previous_run: dict) -> dict[str, float]:
    """Each chapter's seconds in the last build (what the scheduler expects it to take); a
    chapter with no seconds recorded is left out."""
    return {
        name: info["seconds"]
        for name, info in previous_run.get("chapters", {}).items()
        if info.get("seconds")
    }


def plan_line(to_run: list[str], at_once: int, share: int, environment: dict, ray_address) -> str:
    """One log line: how many chapters run at once, and the threads and tasks each kernel gets."""
    tasks = (
        f"Run.map on the Ray cluster at {ray_address}"
        if ray_address
        else (f"Run.map with {environment[parallel.JOBS_VARIABLE]} worker(s)")
    )
    return (
        f"executing {len(to_run)} chapter(s), up to {at_once} at once, each kernel with "
        f"{share} core(s): TensorFlow intra-op {environment['TF_NUM_INTRAOP_THREADS']} threads, "
        f"inter-op {environment['TF_NUM_INTEROP_THREADS']}, OpenMP "
        f"{environment['OMP_NUM_THREADS']}; {tasks}"
    )


class environment:
    """Set environment variables for a block (the serial build's kernels), then restore them."""

    def __init__(self, changes: dict[str, str]):
        self.changes, self.saved = changes, {}

    def __enter__(self):
        self.saved = {name: os.environ.get(name) for name in self.changes}
        os.environ.update(self.changes)

    def __exit__(self, *exc):
        for name, value in self.saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def prepare(profile: str, data_dir, seed: int, chapters, log=print) -> dict | None:
    """Run the build's prepare step (``python -m dlbook prepare``, see ``dlbook.book.prepare``)
    for ``chapters``, on every core, in a process of its own, before chapters run side by side;
    quick when the cache has its results.

    A failure is logged, not raised: the chapters then compute what is missing themselves and
    report their own errors.

    Returns
    -------
    None when ``chapters`` need nothing prepared; else a dict with ``status`` ("ok" or
    "failed"), ``seconds``, ``cpu_seconds``, ``tasks`` (how many runs it made or found) and
    ``error``.
    """
    from dlbook.book import prepare as steps

    planned = steps.tasks(profile, chapters)
    if not planned:
        return None
    runs = f"{len(planned)} long independent run{'s' if len(planned) != 1 else ''}"
    log(f"prepare: {runs} first, on every core, longest first (python -m dlbook prepare) ...")
    command = [sys.executable, "-m", "dlbook", "prepare", "--profile", profile, "--seed",
               str(seed), "--data-dir", str(data_dir), "--chapters", ",".join(chapters)]  # fmt: skip
    cores = parallel.available_cores()
    command += ["--jobs", str(cores)]
    environment = {**os.environ, **parallel.thread_environment(cores)}
    started, cpu_started = time.perf_counter(), cpu_clock()
    said, returncode, stderr = _run_logging_lines(command, environment, log)
    seconds, cpu = time.perf_counter() - started, cpu_clock() - cpu_started
    error = None
    if returncode != 0:
        error = " ".join(stderr.split())[-1500:] or f"exit status {returncode}"
    if error is None:
        log(f"{said[-1] if said else 'prepared'} ({cpu:.1f} CPU s on {cores} core(s))")
    else:
        log(f"prepare step FAILED after {seconds:.1f} s: {error}; the chapters compute what is "
            "missing themselves")  # fmt: skip
    return {
        "status": "ok" if error is None else "failed",
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu, 1),
        "tasks": len(planned),
        "error": error,
    }


def _run_logging_lines(command: list[str], environment: dict, log) -> tuple[list[str], int, str]:
    """Run ``command``, logging each line it prints as it comes (indented, but its last line,
    the summary); returns its lines, exit status and standard error."""
    import tempfile

    said: list[str] = []
    with tempfile.TemporaryFile(mode="w+") as errors:
        with subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=errors,
                              text=True) as process:  # fmt: skip
            for line in process.stdout:
                said.append(line.rstrip("\n"))
                if not (said[-1].startswith("prepared ") and " runs in " in said[-1]):
                    log(f"  {said[-1]}")
        errors.seek(0)
        return said, process.returncode, errors.read()
