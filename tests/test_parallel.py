"""``map_tasks``: parallel results equal the serial loop's, failures named, the Ray path."""

import os
import threading
import time

import numpy as np
import pytest

from dlbook.book import schedule
from dlbook.core import parallel


def _draws(seed):
    """A seeded task whose workers finish out of order: the later seeds sleep less."""
    time.sleep(0.05 * (5 - seed % 5))
    return seed, np.random.default_rng(seed).standard_normal(4)


def test_a_parallel_map_equals_the_serial_loop_in_task_order():
    tasks = list(range(8))
    serial = [_draws(seed) for seed in tasks]
    found = parallel.map_tasks(_draws, tasks, jobs=2)
    assert [seed for seed, _ in found] == tasks
    for (_, expected), (_, got) in zip(serial, found, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_workers_run_in_other_processes_with_their_share_of_threads():
    def where(_task):
        import threadpoolctl

        names = ("OMP_NUM_THREADS", "TF_NUM_INTEROP_THREADS", "TF_NUM_INTRAOP_THREADS")
        blas = {
            p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"
        }
        return os.getpid(), tuple(os.environ.get(name) for name in names), blas

    found = parallel.map_tasks(where, range(4), jobs=2)
    assert os.getpid() not in {pid for pid, _, _ in found}
    share = str(max(1, parallel.available_cores() // 2))
    serial = parallel.BOOK_INTRA_OP_THREADS  # one size on any machine: it changes floats
    assert {threads for _, threads, _ in found} == {(str(serial), share, str(serial))}
    assert {n for _, _, blas in found for n in blas} == {serial}  # NumPy's BLAS, as serial


def test_jobs_1_is_the_plain_loop_in_this_process():
    made = parallel.map_tasks(lambda task: (os.getpid(), threading.Lock()), ["a", "b"], jobs=1)
    assert [pid for pid, _ in made] == [os.getpid()] * 2  # unpicklable results: no worker


def test_a_failing_task_names_its_chapter_and_parameters_and_the_others_finish(tmp_path):
    def work(task):
        if task["seed"] == 1:
            raise ValueError("planted failure")
        (tmp_path / f"done-{task['seed']}").write_text("ok")
        return task["seed"]

    tasks = [{"family": "cnn", "seed": s} for s in range(4)]
    for jobs in (1, 2):
        reported = []
        with pytest.raises(parallel.TaskFailures) as failed:
            parallel.map_tasks(
                work, tasks, jobs=jobs, chapter="architectures", report=reported.append
            )
        message = str(failed.value)
        assert message.startswith("architectures: 1 of 4 tasks failed")
        assert "family='cnn', seed=1" in message and "ValueError: planted failure" in message
        assert reported == [
            "architectures: task 1 (family='cnn', seed=1) failed: ValueError: planted failure"
        ]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["done-0", "done-2", "done-3"]
        for path in tmp_path.iterdir():
            path.unlink()


def test_bad_arguments_are_refused_naming_them(monkeypatch):
    with pytest.raises(ValueError, match="backend='dask' is unknown"):
        parallel.map_tasks(abs, [1], backend="dask")
    with pytest.raises(ValueError, match="jobs=0 must be"):
        parallel.map_tasks(abs, [1, 2], jobs=0)
    monkeypatch.setenv("DLBOOK_JOBS", "many")
    with pytest.raises(ValueError, match="DLBOOK_JOBS='many'"):
        parallel.default_jobs()
    monkeypatch.setenv("DLBOOK_JOBS", "3")
    assert parallel.default_jobs() == 3


def test_a_ray_address_picks_the_ray_backend(monkeypatch):
    monkeypatch.delenv("DLBOOK_RAY_ADDRESS", raising=False)
    assert parallel.resolve_ray_address() is None
    monkeypatch.setenv("DLBOOK_RAY_ADDRESS", "10.0.0.1:6379")
    assert parallel.resolve_ray_address() == "10.0.0.1:6379"
    assert parallel.resolve_ray_address("head:6379") == "head:6379"


@pytest.mark.slow
def test_the_ray_path_gives_the_serial_results_on_a_local_ray_instance():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        tasks = list(range(6))
        # a lambda travels by value: Ray's workers cannot import this test module
        found = parallel.map_tasks(
            lambda seed: (seed, np.random.default_rng(seed).standard_normal(4)),
            tasks,
            backend="ray",
        )
        for (seed, got), task in zip(found, tasks, strict=True):
            assert seed == task
            np.testing.assert_array_equal(got, _draws(task)[1])
        with pytest.raises(parallel.TaskFailures, match="conformal: 1 of 2 tasks failed"):
            parallel.map_tasks(lambda x: 1 / x, [1, 0], backend="ray", chapter="conformal")
    finally:
        ray.shutdown()


def test_the_dependency_graph_and_the_order_of_ready_chapters():
    from dlbook.book.build import Chapter

    chapters = (
        Chapter("a", "a.ipynb"),
        Chapter("d", "d.ipynb"),
        Chapter("e", "e.ipynb", after=("d", "not-in-this-build")),
        Chapter("pages", "p.ipynb", after=(schedule.EVERY_EARLIER,)),
    )
    graph = schedule.waits_for(chapters)
    assert graph == {"a": set(), "d": set(), "e": {"d"}, "pages": {"a", "d", "e"}}
    rank = schedule.priorities(graph, {"a": 50.0, "d": 40.0, "e": 30.0, "pages": 1.0})
    assert rank["d"] == 71.0 and rank["a"] == 51.0  # d first: e and the pages wait for it
    unknown = schedule.priorities(graph, {})  # no earlier build: the longest chain first
    assert unknown["d"] == 3.0 and unknown["a"] == 2.0
    with pytest.raises(ValueError, match="'a' waits for 'd', which the book lists after it"):
        schedule.waits_for((Chapter("a", "a.ipynb", after=("d",)), Chapter("d", "d.ipynb")))


def test_a_kernel_gets_its_share_of_the_cores():
    assert schedule.core_share(jobs=2, at_once=5, cores=2) == 1
    assert schedule.core_share(jobs=4, at_once=1, cores=8) == 8
    graph = {"a": set(), "b": set(), "c": {"a"}, "pages": {"a", "b", "c"}}
    assert schedule.width(graph, ["a", "b", "c", "pages"]) == 2
    assert schedule.width(graph, ["c", "pages"]) == 1  # a chain: one chapter at a time
    environment = schedule.kernel_environment(3, ray_address="head:6379")
    assert environment["DLBOOK_JOBS"] == "3" and environment["TF_NUM_INTEROP_THREADS"] == "3"
    assert environment["OMP_NUM_THREADS"] == environment["TF_NUM_INTRAOP_THREADS"]
    assert environment["DLBOOK_RAY_ADDRESS"] == "head:6379"
    assert schedule.kernel_environment(1, workers=2)["DLBOOK_JOBS"] == "2"  # every core


def test_families_trained_in_two_workers_equal_the_serial_runs(
    synthetic_data, tmp_path, monkeypatch
):
    import functools

    from dlbook.experiments import architectures_training as training
    from dlbook.facemask import data

    images = data.load_face_mask(synthetic_data, image_size=16, verify=False, progress=False)
    splits = {name: images for name in ("train", "val", "test")}
    options = {"epoch_cap": 2, "patience": 1, "batch_size": 16, "learning_rate": 1e-3}
    two = functools.partial(parallel.map_tasks, jobs=2, chapter="architectures")
    runs, curves = training.train_families(splits, ["ann", "cnn"], [0, 1], **options, map_tasks=two)
    monkeypatch.setenv("DLBOOK_CACHE", str(tmp_path / "serial-cache"))  # train again, here
    serial, serial_curves = training.train_families(splits, ["ann", "cnn"], [0, 1], **options)
    columns = ["family", "seed", "val_acc", "test_acc", "epochs_used", "stopped_early"]
    assert runs[columns].equals(serial[columns])
    assert list(curves) == list(serial_curves)
    for key, (accuracy, _seconds) in curves.items():
        np.testing.assert_array_equal(accuracy, serial_curves[key][0])


def test_chapter_4_cnn_repeats_in_two_workers_equal_the_serial_runs(synthetic_data):
    from dlbook.experiments.mask_detection import leakage
    from dlbook.facemask import data

    small = data.load_face_mask(synthetic_data, image_size=16, verify=False, progress=False)
    settings = {"cnn_filters": (4, 8), "cnn_epochs": 2, "cnn_patience": 1, "cnn_min_epochs": 1}
    tasks = [(small, small.split, settings, seed) for seed in (0, 1)]
    two = parallel.map_tasks(leakage.cnn_task, tasks, jobs=2, chapter="mask_detection")
    serial = [leakage.cnn_task(task) for task in tasks]
    for parallel_run, serial_run in zip(two, serial, strict=True):
        np.testing.assert_array_equal(parallel_run.probs, serial_run.probs)
        assert parallel_run.info["epochs"] == serial_run.info["epochs"]
        assert parallel_run.keras_model is None  # the model stays in the worker
    assert not np.array_equal(two[0].probs, two[1].probs)  # the seed matters


def _running_worker(pid: int) -> bool:
    """A live process other than multiprocessing's resource tracker (which outlives pools)."""
    import psutil

    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and not any(
            "resource_tracker" in part for part in process.cmdline()
        )
    except psutil.NoSuchProcess:
        return False


def test_a_terminated_concurrent_build_stops_its_workers():
    """SIGTERM to the build stops the chapters' worker processes instead of orphaning them."""
    import os
    import signal
    import threading
    import time

    import psutil

    from dlbook.book import schedule

    started = []

    def on_start(name, slot):
        started.append(name)

    def terminate_soon():
        time.sleep(3.0)
        os.kill(os.getpid(), signal.SIGTERM)

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    threading.Thread(target=terminate_soon, daemon=True).start()
    with pytest.raises(SystemExit):
        schedule.run_concurrently(
            ["a", "b"],
            {"a": set(), "b": set()},
            {},
            2,
            time.sleep,
            lambda name: (120,),
            {},
            on_start=on_start,
            on_done=lambda *args: None,
        )
    assert started == ["a", "b"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = {p.pid for p in psutil.Process().children(recursive=True)} - before
        alive = [pid for pid in left if _running_worker(pid)]
        if not alive:
            break
        time.sleep(0.2)
    assert not alive, f"worker processes still running: {alive}"


def test_the_tests_run_with_the_builds_thread_sizes():
    # conftest sizes this process as the build sizes its kernels and workers
    assert os.environ["TF_NUM_INTRAOP_THREADS"] == str(parallel.BOOK_INTRA_OP_THREADS)
    assert parallel.thread_environment(4)["TF_NUM_INTRAOP_THREADS"] == "1"  # on any machine
