"""Edge deployment: how the TensorFlow Lite exports (``dlbook.facemask.tflite.export``) run on
one CPU core.

``benchmark_tflite`` measures each file's size, single-image latency on one thread and accuracy;
``one_core`` pins the process to one core while a pipeline is timed.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import numpy as np

from dlbook.facemask import tflite


@contextlib.contextmanager
def one_core():
    """Pin every thread of this process to one CPU core for the duration; yields the core.

    Threads started inside inherit the pin. Each thread's earlier affinity is restored after.
    Where affinity cannot be set (not Linux), nothing is pinned and -1 is yielded.
    """
    if not hasattr(os, "sched_setaffinity"):
        yield -1
        return
    allowed = sorted(os.sched_getaffinity(0))
    core = allowed[-1]
    tasks = Path("/proc/self/task")
    before = {}
    for task in tasks.iterdir() if tasks.is_dir() else []:
        with contextlib.suppress(OSError):
            tid = int(task.name)
            before[tid] = os.sched_getaffinity(tid)
            os.sched_setaffinity(tid, {core})
    os.sched_setaffinity(0, {core})
    try:
        yield core
    finally:
        for task in tasks.iterdir() if tasks.is_dir() else []:
            with contextlib.suppress(OSError):
                tid = int(task.name)
                os.sched_setaffinity(tid, before.get(tid, set(allowed)))
        os.sched_setaffinity(0, set(allowed))


def single_image_latency_ms(
    interpreter, image: np.ndarray, repeats: int = 50, warmup: int = 5
) -> float:
    """Median wall-clock milliseconds of one ``invoke`` on one image."""
    input_detail = interpreter.get_input_details()[0]
    batch = np.asarray(image, dtype=np.float32)[None]
    times = []
    for index in range(warmup + repeats):
        start = time.perf_counter()
        interpreter.set_tensor(input_detail["index"], batch)
        interpreter.invoke()
        if index >= warmup:
            times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def benchmark_tflite(
    paths: dict[str, Path],
    images: np.ndarray,
    labels: np.ndarray,
    repeats: int = 50,
) -> list[dict]:
    """Size, single-thread latency and accuracy of each exported file.

    Parameters
    ----------
    paths : precision -> ``.tflite`` file.
    images : ndarray, shape (N, S, S, 3), uint8, test images at the model's input size.
    labels : ndarray, shape (N,), 0 or 1; the model outputs P(with_mask).

    Returns
    -------
    One dict per file: ``precision``, ``bytes``, ``latency_ms``, ``accuracy``, ``probs``.
    """
    rows = []
    for precision, path in paths.items():
        interpreter = tflite.load_interpreter(path, num_threads=1)
        probs = tflite.predict(interpreter, images)[:, -1]
        rows.append(
            {
                "precision": precision,
                "bytes": Path(path).stat().st_size,
                "latency_ms": single_image_latency_ms(interpreter, images[0], repeats),
                "accuracy": float(((probs >= 0.5).astype(int) == np.asarray(labels)).mean()),
                "probs": probs,
            }
        )
        print(
            f"{precision}: {rows[-1]['bytes'] / 1e6:.2f} MB, {rows[-1]['latency_ms']:.2f} ms/image "
            f"(1 thread), accuracy {rows[-1]['accuracy']:.4f}"
        )
    return rows
