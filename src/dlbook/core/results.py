"""Reading and writing a chapter's measured numbers: ``results/<profile>/<chapter>.json``.

Numbers flow one way: a chapter computes them, ``save`` writes them, and tables, figures and the
claims page read them back with ``load``. Values are flat: numbers, booleans and short strings.
"""

from __future__ import annotations

import json
import math
import os
from numbers import Real
from pathlib import Path

import numpy as np

from dlbook.core import cache

MAX_STRING_LENGTH = 200


def _plain(key: str, value):
    """Return ``value`` as a JSON scalar, or raise a ValueError naming the key."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, Real):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        if len(value) > MAX_STRING_LENGTH:
            raise ValueError(
                f"result {key!r} is a string of {len(value)} characters; "
                f"at most {MAX_STRING_LENGTH} are allowed (results hold short values)"
            )
        return value
    if value is None:
        return None
    raise ValueError(
        f"result {key!r} has type {type(value).__name__}; results are flat: "
        "numbers, booleans, short strings or None"
    )


def save(results_dir: str | os.PathLike, chapter: str, values: dict) -> Path:
    """Merge ``values`` into ``<results_dir>/<chapter>.json`` and return its path.

    Keys already in the file and not in ``values`` are kept, so a chapter may save in steps.
    Non-finite floats are stored as ``null``.
    """
    path = Path(results_dir) / f"{chapter}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    merged = load(results_dir, chapter) if path.exists() else {}
    for key, value in values.items():
        if not isinstance(key, str):
            raise ValueError(f"result keys must be strings, got {key!r}")
        merged[key] = _plain(key, value)
    return cache.write_json(path, merged)


def load(results_dir: str | os.PathLike, chapter: str) -> dict:
    """Return the saved results of ``chapter``, or an empty dict when it has none yet."""
    path = Path(results_dir) / f"{chapter}.json"
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def load_all(results_dir: str | os.PathLike) -> dict[str, dict]:
    """Return ``{chapter: results}`` for every chapter JSON in ``results_dir`` (not run.json,
    nor the hidden file a chapter running beside this one is writing before it moves it into
    place: ``cache.write_atomically``)."""
    folder = Path(results_dir)
    return {
        p.stem: json.loads(p.read_text())
        for p in sorted(folder.glob("*.json"))
        if p.stem not in ("run", "bench") and not p.name.startswith(".")
    }


def alpha_key(name: str, alpha: float) -> str:
    """A result key for a value measured at ``alpha``: ``alpha_key("coverage_lac", 0.05)`` is
    ``"coverage_lac_a0.05"``; ``key_alpha`` reads the alpha back."""
    return f"{name}_a{alpha:g}"


def key_alpha(key: str) -> tuple[str, float] | None:
    """``(name, alpha)`` of a key made by ``alpha_key``, or None for any other key.

    ``key_alpha("coverage_lac_a0.05") == ("coverage_lac", 0.05)``.
    """
    name, marker, alpha = str(key).rpartition("_a")
    if not marker or not name or not alpha.replace(".", "", 1).isdigit():
        return None
    return name, float(alpha)
