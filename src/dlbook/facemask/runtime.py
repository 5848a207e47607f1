"""Inference runtimes for a Keras image model: the Keras reference and faster offline paths.

``compile_model(model, image_shape, runtime)`` returns a ``Runner`` that maps a float32 image
array (N, H, W, 3) to the model's outputs, batch by batch at one fixed batch size (the last batch
is padded, so one graph serves every call):

- ``keras``: ``model.predict_on_batch``, the reference;
- ``function``: the model's call traced once by ``tf.function`` at the fixed shape;
- ``tflite``: the model converted to a float32 TensorFlow Lite flatbuffer and run by the TFLite
  interpreter with its XNNPACK CPU kernels (no quantisation: the same arithmetic, reordered);
  the flatbuffer is cached on disk under a key the caller gives (e.g. the weight file's sha256);
- ``onnx``: ONNX Runtime, only where ``onnxruntime`` and ``tf2onnx`` are installed.

Which is fastest depends on the machine; ``python -m dlbook bench`` measures them all. On the
book's 2-core build machine, idle, EfficientNet-Lite0 at 224 px, batch 32: Keras 162 images/s,
``tf.function`` 161, TFLite 176 (features within 4e-6 of Keras's). Keras already computes about
60 % of the GFLOP/s of a NumPy matrix product there (``bench`` reports the share), so no runtime
can be much faster. ``FAST_RUNTIME`` is ``function``: within 10 % of the fastest,
bit-identical to the Keras reference (the chapters' features and results do not move), nothing
to convert.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dlbook.core import logs
from dlbook.facemask import tflite

RUNTIMES = ("keras", "function", "tflite", "onnx")
CONVERTED = ("tflite", "onnx")
"""Runtimes that first convert the model (seconds; TFLite's result is cached on disk)."""
FAST_RUNTIME = "function"
"""The runtime the book's batch paths use (see the module docstring for why)."""
DEFAULT_BATCH = 32
FAST_MIN_IMAGES = 256
"""From this many images on, a converting fast runtime pays for its conversion."""


def cpu_threads() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def choose_runtime(count: int) -> str:
    """The runtime for a job of ``count`` images: ``FAST_RUNTIME``, except that a runtime which
    converts the model first is used only from ``FAST_MIN_IMAGES`` images on.

    The choice depends only on the number of images, so the same images always get the same
    outputs.
    """
    if FAST_RUNTIME in CONVERTED and count < FAST_MIN_IMAGES:
        return "keras"
    return FAST_RUNTIME


def available(runtime: str) -> tuple[bool, str]:
    """Whether ``runtime`` can run here, and why not."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime={runtime!r} is unknown; use one of {RUNTIMES}")
    if runtime == "onnx":
        missing = [m for m in ("onnxruntime", "tf2onnx") if importlib.util.find_spec(m) is None]
        if missing:
            return False, f"{' and '.join(missing)} not installed"
    return True, "available"


@dataclass
class Runner:
    """A compiled model: ``runner(images)`` -> outputs, float32 (N, ...).

    Attributes
    ----------
    runtime : one of ``RUNTIMES``.
    batch_size : images per forward pass (the last batch is padded to it).
    image_shape : (H, W, 3), the only image shape it accepts.
    run_batch : the compiled forward pass on one full batch, float32 (batch_size, H, W, 3).
    """

    runtime: str
    batch_size: int
    image_shape: tuple[int, int, int]
    run_batch: Callable[[np.ndarray], np.ndarray]

    def __call__(self, images: np.ndarray, progress=None) -> np.ndarray:
        """Outputs for ``images``, shape (N, H, W, 3), any N; ``progress`` is advanced per image."""
        images = np.asarray(images)
        if tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(
                f"images have shape {images.shape[1:]}; this runner takes {self.image_shape}"
            )
        out = []
        for start in range(0, len(images), self.batch_size):
            batch = images[start : start + self.batch_size].astype(np.float32)
            out.append(self.predict_batch(batch))
            if progress is not None:
                progress.update(len(batch))
        if not out:
            return np.zeros((0,), np.float32)
        return np.concatenate(out)

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """Outputs for at most ``batch_size`` images, padding them to a full batch."""
        count = len(batch)
        if count > self.batch_size:
            raise ValueError(f"batch has {count} images; at most {self.batch_size} fit")
        batch = np.asarray(batch, dtype=np.float32)
        if count < self.batch_size:
            pad = np.zeros((self.batch_size - count, *batch.shape[1:]), np.float32)
            batch = np.concatenate([batch, pad])
        return np.asarray(self.run_batch(batch), dtype=np.float32)[:count]


def compile_model(
    model,
    image_shape: tuple[int, int, int],
    runtime: str = "keras",
    batch_size: int = DEFAULT_BATCH,
    threads: int | None = None,
    cache_key: str | None = None,
) -> Runner:
    """A ``Runner`` for ``model`` at a fixed input shape.

    Parameters
    ----------
    model : keras.Model with one float32 image input.
    image_shape : (H, W, 3).
    runtime : one of ``RUNTIMES``.
    batch_size : images per forward pass.
    threads : CPU threads for ``tflite``/``onnx`` (default: all this process may use).
    cache_key : identifies the model's weights (e.g. a file's sha256); with it the converted
        ``tflite`` flatbuffer is kept in the cache and reused (``tflite.cached_fp32``).
    """
    ok, why = available(runtime)
    if not ok:
        raise RuntimeError(f"runtime={runtime!r} cannot run here: {why}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
    image_shape = tuple(int(v) for v in image_shape)
    threads = threads or cpu_threads()
    if runtime == "keras":
        run = lambda batch: model.predict_on_batch(batch)  # noqa: E731
    elif runtime == "function":
        run = _tf_function(model, (batch_size, *image_shape))
    elif runtime == "tflite":
        run = _tflite(model, (batch_size, *image_shape), threads, cache_key)
    else:
        run = _onnx(model, (batch_size, *image_shape), threads)
    return Runner(runtime, int(batch_size), image_shape, run)


def _tf_function(model, shape):
    import tensorflow as tf

    call = tf.function(
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec(shape, tf.float32)],
        reduce_retracing=True,
    )
    return lambda batch: call(tf.constant(batch)).numpy()


def _tflite(model, shape, threads: int, cache_key: str | None):
    if cache_key is None:
        flatbuffer = tflite.convert(model, input_shape=shape)
    else:
        flatbuffer = tflite.cached_fp32(model, shape, cache_key)
    interpreter = tflite.load_interpreter(flatbuffer, num_threads=threads)
    return lambda batch: tflite.invoke(interpreter, batch)[0]


def _onnx(model, shape, threads: int):  # pragma: no cover - onnxruntime is not pinned
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    with contextlib.redirect_stdout(io.StringIO()), logs.quiet_native_stderr():
        proto, _ = tf2onnx.convert.from_keras(
            model, input_signature=[tf.TensorSpec(shape, tf.float32)]
        )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(proto.SerializeToString(), options)
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


def relative_difference(output: np.ndarray, reference: np.ndarray) -> float:
    """max |output - reference| / max |reference|: the error measure the fast paths are held to."""
    reference = np.asarray(reference, dtype=np.float64)
    scale = np.abs(reference).max()
    diff = np.abs(np.asarray(output, dtype=np.float64) - reference).max()
    return float(diff / scale) if scale > 0 else float(diff)
