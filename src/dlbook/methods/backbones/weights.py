"""ImageNet weight files for the ``keras.applications`` backbones: import them offline, list them.

``python -m dlbook weights import PATH`` copies official weight files (ResNet50, VGG16,
InceptionV3, MobileNetV2, with or without the classifier) into the Keras cache, where
``keras.applications`` finds them without a download. Each file is checked first:

- against the digest ``keras.applications`` itself pins for that file name (md5, as Keras checks
  downloads; ``keras_applications.WEIGHT_FILES``): a file with another digest is refused;
- where Keras pins none (MobileNetV2), by loading it into the architecture: a file that does not
  fit is refused.

``python -m dlbook weights status`` lists each file: present or not, where, and its sha256.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from dlbook.core import cache
from dlbook.methods.backbones import keras_applications
from dlbook.methods.backbones.keras_applications import WEIGHT_FILES


class WeightsCheckError(ValueError):
    """A weight file failed its check (wrong digest, or it does not fit the architecture)."""


@dataclass
class ImportResult:
    """What ``import_weights`` did with one file."""

    source: Path
    status: str  # "imported", "already present", "refused" or "skipped"
    detail: str
    target: Path | None = None


def check_file(path: str | os.PathLike, name: str | None = None) -> str:
    """Check a weight file; return a sentence saying how, or raise ``WeightsCheckError``.

    Parameters
    ----------
    path : the file.
    name : the official file name it stands for (default: its own name).
    """
    path = Path(path)
    name = name or path.name
    if name not in WEIGHT_FILES:
        raise WeightsCheckError(
            f"{name} is not a keras.applications weight file this book uses; "
            f"expected one of {sorted(WEIGHT_FILES)}"
        )
    entry = WEIGHT_FILES[name]
    if entry.digest is not None:
        algorithm, expected = entry.digest.split(":")
        found = cache.file_digest(path, algorithm)
        if found != expected:
            raise WeightsCheckError(
                f"{path} has {algorithm} {found}, but keras.applications expects {expected} "
                f"for {name}: refused (a different or damaged file)"
            )
        return f"{algorithm} matches the digest keras.applications pins"
    _check_by_loading(path, entry)
    return "keras.applications pins no digest for this file; it loads into the architecture"


def _check_by_loading(path: Path, entry) -> None:
    from dlbook.methods import backbones

    spec = backbones.spec(entry.backbone)
    import keras

    application = getattr(keras.applications, spec.keras_class)
    try:
        if entry.include_top:
            model = application(weights=None, input_shape=(spec.image_size, spec.image_size, 3))
        else:
            model = application(weights=None, include_top=False, input_shape=(None, None, 3))
        model.load_weights(str(path))
    except Exception as error:  # h5py and Keras raise many types for a file that does not fit
        raise WeightsCheckError(
            f"{path} does not load into {spec.keras_class}: refused ({type(error).__name__}: "
            f"{str(error)[:200]})"
        ) from error


def _candidates(sources) -> list[Path]:
    files = []
    for source in sources:
        source = Path(source)
        if source.is_dir():
            files += sorted(p for p in source.rglob("*.h5") if p.is_file())
        else:
            files.append(source)
    return files


def import_weights(sources, cache_dir: str | os.PathLike | None = None) -> list[ImportResult]:
    """Check each weight file among ``sources`` (files or folders) and copy it into the cache.

    Parameters
    ----------
    sources : files, or folders searched recursively for ``*.h5``.
    cache_dir : where to copy (default: the first Keras cache folder, ``$KERAS_HOME/models``).

    Returns
    -------
    One ``ImportResult`` per file; nothing is copied for a file that fails its check.
    """
    target_dir = Path(cache_dir) if cache_dir else keras_applications.cache_dirs()[0]
    results = []
    for path in _candidates(sources):
        if not path.is_file():
            results.append(ImportResult(path, "refused", "no such file"))
            continue
        if path.name not in WEIGHT_FILES:
            results.append(ImportResult(path, "skipped", "not a weight file this book uses"))
            continue
        try:
            how = check_file(path)
        except WeightsCheckError as error:
            results.append(ImportResult(path, "refused", str(error)))
            continue
        target = target_dir / path.name
        if target.is_file() and cache.file_digest(target) == cache.file_digest(path):
            results.append(ImportResult(path, "already present", how, target))
            continue
        target_dir.mkdir(parents=True, exist_ok=True)
        cache.write_atomically(target, lambda tmp, source=path: shutil.copyfile(source, tmp))
        results.append(ImportResult(path, "imported", how, target))
    return results


def status() -> list[dict]:
    """One row per official weight file: backbone, include_top, file, present, path, sha256."""
    rows = []
    for name, entry in WEIGHT_FILES.items():
        cached = keras_applications.cached_file(name)
        rows.append(
            {
                "backbone": entry.backbone,
                "include_top": entry.include_top,
                "file": name,
                "present": cached is not None,
                "path": str(cached) if cached else "",
                "sha256": cache.file_digest(cached) if cached else "",
            }
        )
    return rows


def format_status(rows: list[dict]) -> str:
    """``status()`` as lines of text for the terminal."""
    lines = []
    for row in rows:
        kind = "with classifier" if row["include_top"] else "features"
        where = f"{row['path']} (sha256 {row['sha256'][:16]}...)" if row["present"] else "missing"
        lines.append(f"{row['backbone']:<13} {kind:<16} {where}")
    present = sum(row["present"] for row in rows)
    lines.append(
        f"{present} of {len(rows)} files present in {keras_applications.cache_dirs()[0]}; "
        "add files with `python -m dlbook weights import PATH`"
    )
    return "\n".join(lines)
