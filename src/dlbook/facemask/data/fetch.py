"""Where the face-mask data is: ``--data-dir``, ``$DLBOOK_DATA`` or ``data/face-mask/``.

When the default folder is missing, the pinned upstream archive is downloaded and verified against
the manifest before the folder is created.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from dlbook.core import paths
from dlbook.facemask.data.manifest import (
    CLASS_NAMES,
    MANIFEST_PATH,
    DataUnavailableError,
    DataVerificationError,
    read_manifest,
    verify_files,
)

DEFAULT_DATA_DIR = paths.REPO_ROOT / "data" / "face-mask"
UPSTREAM_COMMIT = "7e500749401bad4bb338790fbdb89b58e41ef2d9"
UPSTREAM_URL = f"https://github.com/chandrikadeb7/Face-Mask-Detection/archive/{UPSTREAM_COMMIT}.zip"


def resolve_data_dir(data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Return the dataset folder: ``data_dir``, else ``$DLBOOK_DATA``, else ``data/face-mask/``.

    When the default folder is missing and ``download`` is true, the pinned upstream archive is
    downloaded and unpacked there; without internet this fails with a message saying how to point
    at a local copy.

    Raises
    ------
    DataUnavailableError
        If the folder does not exist and cannot be downloaded.
    """
    chosen = data_dir or os.environ.get("DLBOOK_DATA")
    if chosen:
        folder = Path(chosen).expanduser().resolve()
        if not folder.is_dir():
            source = "data_dir" if data_dir else "$DLBOOK_DATA"
            raise DataUnavailableError(
                f"{source} points at {folder}, which is not a folder. Point it at a folder with "
                f"the class subfolders {CLASS_NAMES[1]}/ and {CLASS_NAMES[0]}/."
            )
        return folder
    if DEFAULT_DATA_DIR.is_dir():
        return DEFAULT_DATA_DIR
    if not download:
        raise DataUnavailableError(_how_to_point_at_data(DEFAULT_DATA_DIR))
    try:
        download_dataset(DEFAULT_DATA_DIR)
    except OSError as error:
        raise DataUnavailableError(
            f"could not download the dataset ({error}). " + _how_to_point_at_data(DEFAULT_DATA_DIR)
        ) from error
    return DEFAULT_DATA_DIR


def _how_to_point_at_data(default: Path) -> str:
    return (
        f"The face-mask dataset is not at {default}. Either set DLBOOK_DATA=/path/to/face-mask "
        "(or pass --data-dir), pointing at a folder with with_mask/ and without_mask/, or run "
        f"with internet access so that the pinned archive ({UPSTREAM_URL}) can be downloaded."
    )


def download_dataset(
    dest: str | os.PathLike,
    url: str = UPSTREAM_URL,
    timeout: float = 60,
    manifest_path: str | os.PathLike = MANIFEST_PATH,
) -> Path:
    """Download the pinned upstream archive and unpack its ``dataset/`` folder into ``dest``.

    The unpacked files are verified against the manifest before ``dest`` is created, so an
    interrupted or altered download never leaves a half-filled data folder behind.
    """
    dest = Path(dest)
    print(f"downloading the face-mask dataset from {url} ...", file=sys.stderr)
    with urllib.request.urlopen(url, timeout=timeout) as response:
        payload = response.read()
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / "face-mask"
        _unpack_dataset_folder(payload, staging)
        report = verify_files(staging, read_manifest(manifest_path))
        # Upstream has one file the manifest leaves out (see the data README); drop extras.
        for rel in report.extra:
            (staging / rel).unlink()
        if report.missing or report.changed:
            raise DataVerificationError(report.describe(staging))
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), dest)
    return dest


def _unpack_dataset_folder(zip_bytes: bytes, dest: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
        for member in archive.infolist():
            parts = Path(member.filename).parts
            if len(parts) < 4 or parts[1] != "dataset" or member.is_dir():
                continue
            target = dest.joinpath(*parts[2:])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(member))
