"""What the face-mask dataset is: its classes, the manifest that pins every file, the check.

``data/face_mask_manifest.csv`` pins every file by sha256, size and format; ``verify_data`` names any
missing, extra or changed file.
"""

from __future__ import annotations

import csv
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from dlbook.core import paths
from dlbook.core.cache import file_sha256

CLASS_NAMES = ("without_mask", "with_mask")
"""Class folder names; the index is the label, so label 1 (the positive class) is ``with_mask``."""

MANIFEST_PATH = paths.REPO_ROOT / "data" / "face_mask_manifest.csv"
MANIFEST_COLUMNS = ("path", "class", "sha256", "bytes", "width", "height", "format", "mode")


class DataError(Exception):
    """Base class for problems with the dataset."""


class DataUnavailableError(DataError):
    """The dataset is neither on disk nor downloadable."""


class DataVerificationError(DataError):
    """The files on disk differ from the manifest."""


def list_image_files(
    data_dir: str | os.PathLike, folders: tuple[str, ...] = CLASS_NAMES
) -> list[str]:
    """Return the relative paths (``folder/name``) of every file in ``folders``, sorted.

    ``folders`` defaults to the face-mask class folders; the mask-scenes set passes its own
    (``images``, ``annotations``).
    """
    root = Path(data_dir)
    found = []
    for class_name in folders:
        folder = root / class_name
        if folder.is_dir():
            found += [
                f"{class_name}/{p.name}"
                for p in folder.iterdir()
                if p.is_file() and not p.name.startswith(".")
            ]
    return sorted(found)


def describe_file(data_dir: str | os.PathLike, rel_path: str) -> dict:
    """Return one manifest row for ``rel_path``; undecodable files get empty size and format."""
    full = Path(data_dir) / rel_path
    row = {
        "path": rel_path,
        "class": rel_path.split("/", 1)[0],
        "sha256": file_sha256(full),
        "bytes": full.stat().st_size,
        "width": "",
        "height": "",
        "format": "",
        "mode": "",
    }
    try:
        with Image.open(full) as image:
            row.update(width=image.width, height=image.height, format=image.format, mode=image.mode)
    except (OSError, UnidentifiedImageError):
        pass
    return row


def build_manifest(
    data_dir: str | os.PathLike, folders: tuple[str, ...] = CLASS_NAMES
) -> list[dict]:
    """Return manifest rows for every file in ``data_dir``'s ``folders`` (default: the classes)."""
    return [describe_file(data_dir, rel) for rel in list_image_files(data_dir, folders)]


def write_manifest(rows: list[dict], path: str | os.PathLike = MANIFEST_PATH) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_manifest(path: str | os.PathLike = MANIFEST_PATH) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def manifest_sha256(path: str | os.PathLike = MANIFEST_PATH) -> str:
    return file_sha256(path)


@dataclass
class VerificationReport:
    """How the files on disk compare with the manifest (relative paths)."""

    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    manifest_name: str = MANIFEST_PATH.name

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.changed)

    def describe(self, data_dir, limit: int = 10) -> str:
        lines = [f"the data in {data_dir} does not match {self.manifest_name}:"]
        for label, names in (
            ("missing", self.missing),
            ("not in the manifest", self.extra),
            ("changed (sha256 differs)", self.changed),
        ):
            if names:
                shown = ", ".join(names[:limit]) + (" ..." if len(names) > limit else "")
                lines.append(f"  {len(names)} {label}: {shown}")
        return "\n".join(lines)


def verify_files(
    data_dir: str | os.PathLike,
    manifest_rows: list[dict],
    folders: tuple[str, ...] = CLASS_NAMES,
    manifest_name: str = MANIFEST_PATH.name,
) -> VerificationReport:
    """Compare the files in ``data_dir``'s ``folders`` with ``manifest_rows`` by name and sha256."""
    expected = {row["path"]: row for row in manifest_rows}
    present = set(list_image_files(data_dir, folders))
    report = VerificationReport(
        missing=sorted(set(expected) - present),
        extra=sorted(present - set(expected)),
        manifest_name=manifest_name,
    )
    for rel in sorted(present & set(expected)):
        row = expected[rel]
        full = Path(data_dir) / rel
        if full.stat().st_size != int(row["bytes"]) or file_sha256(full) != row["sha256"]:
            report.changed.append(rel)
    return report


def verify_data(
    data_dir: str | os.PathLike,
    manifest_path: str | os.PathLike = MANIFEST_PATH,
    allow_mismatch: bool = False,
    folders: tuple[str, ...] = CLASS_NAMES,
) -> VerificationReport:
    """Check ``data_dir`` against the manifest; raise unless it matches or ``allow_mismatch``.

    ``folders`` are the subfolders the manifest covers (default: the face-mask classes).

    Raises
    ------
    DataVerificationError
        Naming the missing, extra and changed files, when they differ and ``allow_mismatch`` is
        false.
    """
    report = verify_files(data_dir, read_manifest(manifest_path), folders, Path(manifest_path).name)
    if not report.ok:
        message = report.describe(data_dir)
        if not allow_mismatch:
            raise DataVerificationError(
                message + "\nPass --allow-data-mismatch to proceed with the files that are there."
            )
        warnings.warn(message, stacklevel=2)
    return report
