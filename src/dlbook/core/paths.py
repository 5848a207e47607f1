"""Where things live: the repository, the cache and the results folders."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]


def cache_dir() -> Path:
    """Folder for content-hash-keyed caches: ``$DLBOOK_CACHE`` or ``<repo>/.cache``."""
    path = Path(os.environ.get("DLBOOK_CACHE") or REPO_ROOT / ".cache")
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_dir(profile: str, results_dir: str | os.PathLike | None = None) -> Path:
    """Folder a chapter writes its results to: ``results_dir`` or ``<repo>/results/<profile>``."""
    path = Path(results_dir) if results_dir else REPO_ROOT / "results" / profile
    path.mkdir(parents=True, exist_ok=True)
    return path
