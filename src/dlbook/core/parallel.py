"""Independent tasks in parallel, with the results of a plain loop: ``map_tasks``.

``map_tasks(function, tasks)`` is ``[function(task) for task in tasks]``, run by joblib: its
process backend (``loky``) on this machine, or Ray's joblib backend on a Ray cluster when one is
named (``ray_address=`` or the ``DLBOOK_RAY_ADDRESS`` environment variable). Results come back in
task order whatever order the workers finish in, and a task must carry its own seed, so the list
equals the serial loop's. ``jobs=1`` *is* the serial loop: in this process, nothing pickled.

A failing task does not stop the others: it is reported (stderr) naming the chapter and its
parameters as soon as it is gathered, and once every task has run one ``TaskFailures`` lists all
the failures.

Threads. Each worker sizes its thread pools before TensorFlow starts (``thread_environment``).
TensorFlow's inter-op pool, which only decides which independent operations run side by side,
gets the worker's share of the cores (``cores // jobs``). The pools that split one operation do
not: how many threads share a convolution or a matrix product changes the order of its sums, and
measured here, a Keras training run of this book's CNN ends with different weights at 1
intra-op thread than at 2, and chapter 3's NumPy reference of EfficientNet-Lite2 moves in its
ninth digit at 1 OpenBLAS thread. So TensorFlow's intra-op pool and OpenMP/BLAS have one size
for the whole build, serial or parallel, on any machine (``serial_intra_op_threads``: one
thread, ``BOOK_INTRA_OP_THREADS``), so parallel results equal serial ones and a laptop with
more cores gets the same numbers; the tasks and chapters share the cores through the operating
system. One thread is also the cheaper size when the cores are shared: chapter 4's CNN, trained
four epochs twice side by side on two cores, took 27 s at one intra-op thread each against 42 s
at two (and 25 CPU s per run against 32), the threads of two pools no longer waiting on each
other.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass

BACKENDS = ("loky", "ray")
RAY_ADDRESS_VARIABLE = "DLBOOK_RAY_ADDRESS"
JOBS_VARIABLE = "DLBOOK_JOBS"
CORES_VARIABLE = "DLBOOK_CORES"
INTRA_OP_VARIABLE = "DLBOOK_INTRA_OP_THREADS"
BOOK_INTRA_OP_THREADS = 1
"""TensorFlow intra-op and OpenMP/BLAS threads of every build, whatever the machine (see above)."""
FOLDER_VARIABLES = ("DLBOOK_DATA", "DLBOOK_CACHE")


def available_cores() -> int:
    """Cores this process may use: ``DLBOOK_CORES`` (its share, set by the build for a chapter
    run beside others) or the CPUs it is allowed to run on (``os.sched_getaffinity``)."""
    if os.environ.get(CORES_VARIABLE):
        return _positive(os.environ[CORES_VARIABLE], CORES_VARIABLE)
    return len(os.sched_getaffinity(0))


def default_jobs() -> int:
    """``DLBOOK_JOBS`` when set, else ``available_cores()``."""
    if os.environ.get(JOBS_VARIABLE):
        return _positive(os.environ[JOBS_VARIABLE], JOBS_VARIABLE)
    return available_cores()


def serial_intra_op_threads() -> int:
    """TensorFlow's intra-op (and OpenMP/BLAS) pool size of the build's runs:
    ``DLBOOK_INTRA_OP_THREADS`` when set, else ``BOOK_INTRA_OP_THREADS`` on every machine."""
    if os.environ.get(INTRA_OP_VARIABLE):
        return _positive(os.environ[INTRA_OP_VARIABLE], INTRA_OP_VARIABLE)
    return BOOK_INTRA_OP_THREADS


def resolve_ray_address(address: str | None = None) -> str | None:
    """The Ray cluster to use: ``address``, else ``$DLBOOK_RAY_ADDRESS``, else None (none)."""
    return address or os.environ.get(RAY_ADDRESS_VARIABLE) or None


def _positive(value, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise ValueError(f"{name}={value!r} must be a whole number of at least 1")
    return number


def thread_environment(threads: int, intra_op_threads: int | None = None) -> dict[str, str]:
    """Environment variables that size a process's thread pools before its libraries start.

    ``threads`` sizes TensorFlow's inter-op pool (which changes no result);
    ``intra_op_threads`` (default ``serial_intra_op_threads()``) sizes TensorFlow's intra-op pool
    and OpenMP/BLAS, whose size changes results in their last bits (see the module docstring).
    """
    threads = _positive(threads, "threads")
    intra = _positive(intra_op_threads or serial_intra_op_threads(), "intra_op_threads")
    shared = {
        name: str(intra) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    }
    return {
        **shared,
        "TF_NUM_INTEROP_THREADS": str(threads),
        "TF_NUM_INTRAOP_THREADS": str(intra),
        INTRA_OP_VARIABLE: str(intra),
        CORES_VARIABLE: str(threads),
        JOBS_VARIABLE: "1",  # a task's own maps run in the task: no workers of workers
    }


def _size_threads(environment: dict[str, str]) -> None:
    """In a worker: apply ``environment``; if TensorFlow already started here, size it too."""
    os.environ.update(environment)
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return
    try:
        tf.config.threading.set_inter_op_parallelism_threads(
            int(environment["TF_NUM_INTEROP_THREADS"])
        )
        tf.config.threading.set_intra_op_parallelism_threads(
            int(environment["TF_NUM_INTRAOP_THREADS"])
        )
    except RuntimeError:  # TensorFlow's pools exist already: they keep the size they started with
        pass


@dataclass(frozen=True)
class Failure:
    """One failed task: its position, its parameters in words, the error and its traceback."""

    index: int
    parameters: str
    error: str
    traceback: str = ""

    def line(self, chapter: str | None) -> str:
        where = f"{chapter}: " if chapter else ""
        return f"{where}task {self.index} ({self.parameters}) failed: {self.error}"


class TaskFailures(RuntimeError):
    """Some tasks of a ``map_tasks`` call failed; ``failures`` lists them, in task order."""

    def __init__(self, chapter: str | None, failures: list[Failure], total: int):
        self.chapter, self.failures, self.total = chapter, failures, total
        where = f"{chapter}: " if chapter else ""
        listed = "; ".join(f"task {f.index} ({f.parameters}): {f.error}" for f in failures)
        super().__init__(f"{where}{len(failures)} of {total} tasks failed: {listed}")


def describe(task) -> str:
    """A task's parameters in words: ``name=value`` pairs for a dict, the repr otherwise."""
    if isinstance(task, dict):
        return ", ".join(f"{key}={value!r}" for key, value in task.items())
    text = repr(task)
    return text if len(text) <= 200 else text[:197] + "..."


def _attempt(function: Callable, task) -> tuple[bool, object]:
    """``(True, function(task))``, or ``(False, (error line, traceback))`` if it raised."""
    try:
        return True, function(task)
    except Exception as error:  # noqa: BLE001 - reported with its task, the others go on
        return False, (f"{type(error).__name__}: {error}", traceback.format_exc())


def _in_worker(function: Callable, task, environment: dict[str, str]) -> tuple[bool, object]:
    _size_threads(environment)
    return _attempt(function, task)


def _ray_backend(address: str | None) -> tuple[int, bool]:
    """Connect to the Ray cluster (or use the Ray instance this process started), register Ray's
    joblib backend; return the cluster's CPU count and whether this call connected."""
    import ray
    from ray.util.joblib import register_ray

    connected = not ray.is_initialized()
    if connected:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    register_ray()
    return max(1, int(ray.cluster_resources().get("CPU", 1))), connected


def map_tasks(
    function: Callable,
    tasks: Iterable,
    jobs: int | None = None,
    backend: str | None = None,
    *,
    chapter: str | None = None,
    ray_address: str | None = None,
    report=None,
) -> list:
    """``[function(task) for task in tasks]``, the tasks run in parallel, results in task order.

    Parameters
    ----------
    function : a function of one task; it must be picklable by cloudpickle (module functions,
        ``functools.partial``, lambdas all are) and return picklable results.
    tasks : the tasks, each carrying everything it depends on (its seed included).
    jobs : workers at once (default ``default_jobs()``; on Ray, the cluster's CPUs). 1: the plain
        loop in this process.
    backend : "loky" (processes on this machine) or "ray"; default "ray" when a Ray address is
        given (``ray_address`` or ``$DLBOOK_RAY_ADDRESS``), else "loky".
    chapter : named in the failure messages.
    report : called with each failure's line as it is gathered (default: print to stderr).

    Raises
    ------
    TaskFailures
        After every task ran, if any raised: the chapter, each failed task's parameters and error.
    ValueError
        For an unknown backend or a ``jobs`` below 1.
    """
    tasks = list(tasks)
    address = resolve_ray_address(ray_address)
    backend = backend or ("ray" if address else "loky")
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is unknown; use one of {BACKENDS}")
    report = report or (lambda line: print(line, file=sys.stderr, flush=True))
    if backend == "loky":
        jobs = _positive(jobs if jobs is not None else default_jobs(), "jobs")
    if backend == "loky" and (jobs == 1 or len(tasks) <= 1):
        outcomes = (_attempt(function, task) for task in tasks)
    else:
        outcomes = _parallel_outcomes(function, tasks, jobs, backend, address)
    results, failures = [], []
    for index, (ok, value) in enumerate(outcomes):
        if ok:
            results.append(value)
            continue
        failure = Failure(index, describe(tasks[index]), *value)
        failures.append(failure)
        results.append(None)
        report(failure.line(chapter))
    if failures:
        raise TaskFailures(chapter, failures, len(tasks))
    return results


def _parallel_outcomes(function, tasks, jobs, backend, address):
    """Each task's ``(ok, value)`` from joblib workers, in task order, as they are gathered."""
    import joblib

    connected = False
    if backend == "ray":
        cluster_cpus, connected = _ray_backend(address)
        jobs = _positive(jobs if jobs is not None else cluster_cpus, "jobs")
        environment = thread_environment(1)  # Ray gives each task one CPU
        # A Ray worker has its node's environment, not this one's: the data and cache folders go
        # along (a node without them makes the cache folder and computes what it needs).
        environment.update({n: os.environ[n] for n in FOLDER_VARIABLES if n in os.environ})
    else:
        environment = thread_environment(max(1, available_cores() // jobs))
    jobs = min(jobs, len(tasks))
    # Ray's backend hands results back all at once; loky's one by one, as they are gathered.
    gathered = "list" if backend == "ray" else "generator"
    # loky would cap OpenMP/BLAS in its workers at cores // jobs; they keep the serial size.
    inner = int(environment["OMP_NUM_THREADS"]) if backend == "loky" else None
    try:
        with joblib.parallel_config(backend=backend, inner_max_num_threads=inner):
            parallel = joblib.Parallel(n_jobs=jobs, return_as=gathered)
            calls = (joblib.delayed(_in_worker)(function, task, environment) for task in tasks)
            yield from parallel(calls)
    finally:
        if connected:  # leave the cluster now, not when a notebook kernel is killed
            import ray

            ray.shutdown()
