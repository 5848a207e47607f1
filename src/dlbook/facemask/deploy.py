"""Edge deployment: TensorFlow Lite export (fp32, fp16, int8) and a single-core benchmark.

``export_tflite`` converts a Keras model; int8 quantises weights and activations with a
representative dataset drawn from the training split (inputs and outputs stay float32, so the
three files are drop-in replacements for each other). ``benchmark_tflite`` measures file size,
single-image latency on one CPU thread and accuracy.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
import warnings
from pathlib import Path

import numpy as np

PRECISIONS = ("fp32", "fp16", "int8")


def _saved_model(model, folder: Path) -> Path:
    """Export a Keras model as a TensorFlow SavedModel (what the TFLite converter reads)."""
    with contextlib.redirect_stdout(io.StringIO()):  # the export prints its signatures
        model.export(str(folder), format="tf_saved_model", verbose=False)
    return folder


def _convert(saved_model: Path, precision: str, representative_images) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        images = np.asarray(representative_images, dtype=np.float32)

        def representative():
            for image in images:
                yield [image[None]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return converter.convert()


def _check_precisions(precisions, representative_images) -> None:
    for precision in precisions:
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r} is unknown; use one of {PRECISIONS}")
    if "int8" in precisions and (representative_images is None or len(representative_images) == 0):
        raise ValueError("precision='int8' needs representative_images (a few hundred images)")


def export_tflite_all(
    model,
    folder: str | os.PathLike,
    stem: str,
    precisions=PRECISIONS,
    representative_images: np.ndarray | None = None,
) -> dict[str, Path]:
    """Convert a Keras model to ``folder/<stem>_<precision>.tflite`` for each precision.

    The model is exported to a SavedModel once and converted from it, see ``export_tflite``.

    Returns
    -------
    ``{precision: path}``
    """
    import tempfile

    _check_precisions(precisions, representative_images)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    with tempfile.TemporaryDirectory() as tmp:
        saved = _saved_model(model, Path(tmp) / "saved_model")
        for precision in precisions:
            path = folder / f"{stem}_{precision}.tflite"
            path.write_bytes(_convert(saved, precision, representative_images))
            written[precision] = path
    return written


def export_tflite(
    model,
    path: str | os.PathLike,
    precision: str = "fp32",
    representative_images: np.ndarray | None = None,
) -> Path:
    """Convert a Keras model to a ``.tflite`` file.

    Parameters
    ----------
    model : keras.Model with one float32 image input.
    path : file to write.
    precision : "fp32" (no quantisation), "fp16" (float16 weights) or "int8" (integer weights
        and activations, calibrated on ``representative_images``).
    representative_images : ndarray, shape (N, H, W, C), uint8 or float; required for "int8".

    Returns
    -------
    The path written.
    """
    import tempfile

    _check_precisions((precision,), representative_images)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        saved = _saved_model(model, Path(tmp) / "saved_model")
        path.write_bytes(_convert(saved, precision, representative_images))
    return path


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


def load_interpreter(path: str | os.PathLike, num_threads: int = 1):
    """A TFLite interpreter for ``path`` with its tensors allocated."""
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=num_threads)
    interpreter.allocate_tensors()
    return interpreter


def tflite_predict(interpreter, images: np.ndarray) -> np.ndarray:
    """Run the interpreter image by image; return its outputs, shape (N, K) float32."""
    input_detail = interpreter.get_input_details()[0]
    output_detail = interpreter.get_output_details()[0]
    outputs = []
    for image in np.asarray(images, dtype=np.float32):
        interpreter.set_tensor(input_detail["index"], image[None])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(output_detail["index"])[0].copy())
    return np.asarray(outputs, dtype=np.float32).reshape(len(outputs), -1)


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
        interpreter = load_interpreter(path, num_threads=1)
        probs = tflite_predict(interpreter, images)[:, -1]
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
