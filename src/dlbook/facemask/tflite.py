"""TensorFlow Lite: the one place a Keras model is converted and a ``.tflite`` model is run.

- ``convert(model, precision, representative_images, input_shape)``: a flatbuffer at fp32 (no
  quantisation), fp16 (float16 weights) or int8 (weights and activations, calibrated on
  representative images; inputs and outputs stay float32, so the three are drop-in replacements).
- ``export(model, folder, stem, precisions, ...)``: one file per precision from one SavedModel
  (what ``dlbook.facemask.deploy`` ships and benchmarks).
- ``cached_fp32(model, shape, key)``: the fp32 flatbuffer at a fixed input shape, kept in the
  content-keyed cache (what ``runtime``'s ``tflite`` path runs).
- ``load_interpreter`` (from a file or bytes), ``invoke`` (one batch) and ``predict`` (image by
  image), for the classifier and for BlazeFace (``dlbook.facemask.detect``) alike.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from dlbook.core import cache, logs

PRECISIONS = ("fp32", "fp16", "int8")
CACHE_VERSION = 1
"""Bumped when the conversion changes, so an older cached flatbuffer is never reused."""


@contextlib.contextmanager
def _quiet():
    """TensorFlow's export prints its signatures and the converter warns; neither is news."""
    with logs.quiet_native_stderr(), logs.quiet_block(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _check_precisions(precisions, representative_images) -> None:
    """Raise ValueError for an unknown precision, or int8 without representative images."""
    for precision in precisions:
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r} is unknown; use one of {PRECISIONS}")
    if "int8" in precisions and (representative_images is None or len(representative_images) == 0):
        raise ValueError("precision='int8' needs representative_images (a few hundred images)")


@contextlib.contextmanager
def _saved_model(model, input_shape=None):
    """Export ``model`` to a temporary SavedModel (what the converter reads); yields its folder.

    ``input_shape`` (batch included) fixes the signature; None keeps the model's own.
    """
    import tensorflow as tf

    signature = None if input_shape is None else [tf.TensorSpec(input_shape, tf.float32)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "saved_model"
        with _quiet():
            model.export(
                str(folder), format="tf_saved_model", verbose=False, input_signature=signature
            )
        yield folder


def _convert_saved(saved_model: Path, precision: str, representative_images) -> bytes:
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
    with _quiet():
        return converter.convert()


def convert(model, precision: str = "fp32", representative_images=None, input_shape=None) -> bytes:
    """A TFLite flatbuffer of a Keras ``model``.

    Parameters
    ----------
    model : keras.Model with one float32 image input.
    precision : one of ``PRECISIONS``.
    representative_images : ndarray, shape (N, H, W, C), uint8 or float; required for "int8".
    input_shape : (B, H, W, C) to convert at a fixed batch shape; None keeps the model's own.
    """
    _check_precisions((precision,), representative_images)
    with _saved_model(model, input_shape) as saved:
        return _convert_saved(saved, precision, representative_images)


def export(
    model,
    folder: str | os.PathLike,
    stem: str,
    precisions=PRECISIONS,
    representative_images: np.ndarray | None = None,
) -> dict[str, Path]:
    """Convert ``model`` to ``folder/<stem>_<precision>.tflite`` for each precision.

    The model is exported to a SavedModel once and converted from it (see ``convert``).

    Returns
    -------
    ``{precision: path}``
    """
    _check_precisions(precisions, representative_images)
    folder = Path(folder)
    written = {}
    with _saved_model(model) as saved:
        for precision in precisions:
            flatbuffer = _convert_saved(saved, precision, representative_images)
            path = folder / f"{stem}_{precision}.tflite"
            written[precision] = cache.write_atomically(
                path, lambda t, b=flatbuffer: t.write_bytes(b)
            )
    return written


def cached_fp32(model, input_shape, key: str) -> bytes:
    """``convert(model, input_shape=input_shape)``, kept under ``cache_dir()/tflite`` for ``key``.

    ``key`` identifies the model's weights (e.g. its weight file's sha256).
    """
    import tensorflow as tf

    input_shape = tuple(int(v) for v in input_shape)
    digest = cache.digest(key, input_shape, tf.__version__, CACHE_VERSION)
    path = cache.entry("tflite", digest, ".tflite")
    if not path.exists():
        flatbuffer = convert(model, input_shape=input_shape)
        cache.write_atomically(path, lambda tmp: tmp.write_bytes(flatbuffer))
    return path.read_bytes()


def load_interpreter(source: str | os.PathLike | bytes, num_threads: int = 1):
    """A ``tf.lite.Interpreter`` for a ``.tflite`` file or flatbuffer, its tensors allocated."""
    import tensorflow as tf

    where = {"model_content": source} if isinstance(source, bytes) else {"model_path": str(source)}
    with _quiet():  # tf.lite.Interpreter's deprecation notice
        interpreter = tf.lite.Interpreter(**where, num_threads=num_threads)
        interpreter.allocate_tensors()
    return interpreter


def invoke(interpreter, batch: np.ndarray) -> list[np.ndarray]:
    """Every output of one run of ``interpreter`` on ``batch`` (its first input), copied."""
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], batch)
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()]


def predict(interpreter, images: np.ndarray) -> np.ndarray:
    """Run the interpreter image by image; its first output, shape (N, K) float32."""
    outputs = [invoke(interpreter, image[None])[0][0] for image in np.asarray(images, np.float32)]
    return np.asarray(outputs, dtype=np.float32).reshape(len(outputs), -1)
