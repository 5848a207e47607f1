"""Content-keyed disk cache: work that two chapters (or two builds) need is done once.

A cache entry's key is the sha256 of everything its result depends on: input arrays (dtype,
shape and bytes), settings, seeds, library versions and a version number the code bumps when its
arithmetic changes. Entries live under ``paths.cache_dir()/<kind>/`` and are written atomically,
so a crashed or concurrent run never leaves half a file behind.

``fit_key`` / ``load_fit`` / ``save_fit`` cache a Keras training run (``training.fit``): the key
covers the architecture, the initial weights (so the seed), the data, every training option and
the callbacks' settings; the entry holds the trained weights, the history and the timings the
run measured (which the chapters report, so a cached run reports the same numbers).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np

from dlbook.core import paths

FIT_CACHE_VERSION = 1


def _update(digest, part) -> None:
    if isinstance(part, np.ndarray):
        digest.update(f"ndarray{part.dtype.str}{part.shape}".encode())
        digest.update(np.ascontiguousarray(part).data)
    elif isinstance(part, dict):
        digest.update(b"dict")
        for key in sorted(part, key=str):
            _update(digest, str(key))
            _update(digest, part[key])
    elif isinstance(part, (list, tuple)):
        digest.update(f"seq{len(part)}".encode())
        for item in part:
            _update(digest, item)
    elif isinstance(part, bytes):
        digest.update(b"bytes" + part)
    elif part is None or isinstance(part, (str, int, float, bool, np.generic)):
        digest.update(f"{type(part).__name__}:{part!r}|".encode())
    else:
        raise TypeError(f"cannot key a cache entry on a {type(part).__name__}")


def digest(*parts) -> str:
    """sha256 hex digest of ``parts``: arrays, str, numbers, None, and dicts/lists/tuples of them."""
    hasher = hashlib.sha256()
    _update(hasher, parts)
    return hasher.hexdigest()


def entry(kind: str, key: str, suffix: str) -> Path:
    """The cache file of ``kind`` (a folder name) for ``key``."""
    return paths.cache_dir() / kind / f"{key[:32]}{suffix}"


def write_atomically(path: Path, write) -> Path:
    """Call ``write(tmp_path)`` then move the file into place (atomic on one file system)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{''.join(path.suffixes)}")
    write(tmp)
    tmp.replace(path)
    return path


def write_json(path: Path, payload: dict | list) -> Path:
    """Write ``payload`` as indented, key-sorted JSON, atomically."""
    text = json.dumps(payload, indent=1, sort_keys=True) + "\n"
    return write_atomically(Path(path), lambda tmp: tmp.write_text(text))


def cached_array(kind: str, key: str, compute, name: str = "") -> np.ndarray:
    """The array ``compute()`` returns, stored once under ``kind`` for ``key`` (an ``.npy`` file).

    ``name`` prefixes the file name so a person browsing the cache can tell entries apart.
    """
    path = entry(kind, key, ".npy")
    if name:
        path = path.with_name(f"{name}-{path.name}")
    if path.exists():
        return np.load(path)
    value = np.asarray(compute())
    write_atomically(path, lambda tmp: np.save(tmp, value))
    return value


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (``hashlib`` algorithm name), read in 1 MiB chunks."""
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 hex digest of a file's bytes."""
    return file_digest(path, "sha256")


# ---------------------------------------------------------------------------------------------
# Keras training runs

_CALLBACK_SETTINGS = {
    "EarlyStopping": ("monitor", "patience", "min_delta", "mode", "restore_best_weights"),
    "ReduceLROnPlateau": (
        "monitor",
        "factor",
        "patience",
        "min_lr",
        "min_delta",
        "cooldown",
        "mode",
    ),
}


def _callback_key(callback) -> tuple | None:
    names = _CALLBACK_SETTINGS.get(type(callback).__name__)
    if names is None:
        return None
    settings = {name: getattr(callback, name, None) for name in names}
    settings["baseline"] = getattr(callback, "baseline", None)
    settings["start_from_epoch"] = getattr(callback, "start_from_epoch", None)
    return (type(callback).__name__, {k: v for k, v in settings.items() if not callable(v)})


def architecture(model) -> str:
    """``model.to_json()`` with its layer names replaced by their order of appearance.

    Keras numbers auto-named layers per process (``conv2d_3``), so the same architecture built
    twice would otherwise get two keys.
    """
    import re

    text = model.to_json()
    names = dict.fromkeys(re.findall(r'"name": "([^"]*)"', text))
    for index, name in enumerate(names):
        text = text.replace(f'"{name}"', f'"layer{index}"')
    return text


def fit_key(model, x_train, y_train, validation_data, options: dict, callbacks) -> str | None:
    """Cache key of a training run of the built, compiled ``model``; None if it cannot be keyed.

    A run with a callback whose effect the key cannot describe (anything but ``EarlyStopping``
    and ``ReduceLROnPlateau``) is not cached.
    """
    import keras
    import tensorflow as tf

    callback_keys = [_callback_key(c) for c in callbacks or []]
    if any(key is None for key in callback_keys):
        return None
    return digest(
        f"fit-v{FIT_CACHE_VERSION}",
        keras.__version__,
        tf.__version__,
        intra_op_threads(tf),
        architecture(model),
        [np.asarray(w) for w in model.get_weights()],
        np.asarray(x_train),
        np.asarray(y_train),
        None if validation_data is None else [np.asarray(v) for v in validation_data],
        {key: str(value) for key, value in sorted(options.items())},
        callback_keys,
    )


def intra_op_threads(tf) -> int:
    """Threads TensorFlow splits one operation over in this process: part of a training run's
    key, since the split changes the order of sums and so the trained weights' last bits (set by
    ``tf.config.threading``, else ``TF_NUM_INTRAOP_THREADS``, else TensorFlow's default: every
    core this process may use)."""
    configured = tf.config.threading.get_intra_op_parallelism_threads()
    if configured:
        return int(configured)
    if os.environ.get("TF_NUM_INTRAOP_THREADS"):
        return int(os.environ["TF_NUM_INTRAOP_THREADS"])
    return len(os.sched_getaffinity(0))


_CALLBACK_STATE = ("stopped_epoch", "best_epoch", "best", "wait")


def load_fit(key: str, model, callbacks=()) -> tuple[dict, dict] | None:
    """Load a cached run's weights into ``model``; return (history, timings), or None if absent.

    The callbacks get back the state the run left them in (e.g. ``EarlyStopping.stopped_epoch``).
    """
    weights = entry("fits", key, ".weights.h5")
    record = entry("fits", key, ".json")
    if not (weights.exists() and record.exists()):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fresh optimizer has no slots yet; it is not used
        model.load_weights(weights)
    saved = json.loads(record.read_text())
    for callback, state in zip(callbacks or [], saved.get("callbacks", []), strict=False):
        for name, value in state.items():
            setattr(callback, name, value)
    timings = dict(saved["timings"], cached=True)
    return saved["history"], timings


def save_fit(key: str, model, history: dict, timings: dict, callbacks=()) -> None:
    """Store a finished run's trained weights, history, timings and callback state."""
    write_atomically(entry("fits", key, ".weights.h5"), model.save_weights)
    states = [
        {
            name: float(getattr(c, name)) if name == "best" else getattr(c, name)
            for name in _CALLBACK_STATE
            if isinstance(getattr(c, name, None), (int, float, np.number))
        }
        for c in callbacks or []
    ]
    record = {"history": history, "timings": timings, "callbacks": states}
    write_atomically(
        entry("fits", key, ".json"), lambda p: p.write_text(json.dumps(record, default=float))
    )
