"""Read PyTorch checkpoints in the legacy ``torch.save`` format without importing PyTorch.

The legacy (pre-1.6, non-zip) format is a sequence of pickles in one file: a magic number, a protocol
version, a ``sys_info`` dict, the state dict itself (whose tensors refer to storages by key through
``persistent_load``), the list of storage keys, and then each storage's raw bytes, in key order, as
an int64 element count followed by the little-endian data.

Unpickling an untrusted file can run arbitrary code, because a pickle may name any importable
callable and call it. :class:`RestrictedUnpickler` therefore resolves only the handful of globals a
plain state dict needs (the tensor-rebuild function, storage types and ``OrderedDict``) and raises
:class:`UnsafeCheckpointError` for anything else, before anything is called.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
from dataclasses import dataclass

import numpy as np

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint asked for something a plain tensor state dict never needs."""


@dataclass(frozen=True)
class _StorageType:
    name: str
    dtype: np.dtype


@dataclass
class _Storage:
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass
class _PendingTensor:
    """A tensor whose storage bytes come later in the file."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def materialize(self) -> np.ndarray:
        if self.storage.data is None:
            raise pickle.UnpicklingError("a tensor refers to a storage whose data is missing")
        if not self.shape:
            return self.storage.data[self.offset].copy()
        extent = self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.stride)) + 1
        if min(self.shape) > 0 and extent > self.storage.numel:
            raise pickle.UnpicklingError("a tensor reaches past the end of its storage")
        itemsize = self.storage.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            self.storage.data[self.offset :],
            shape=self.shape,
            strides=tuple(s * itemsize for s in self.stride),
            writeable=False,
        )
        return np.array(view, copy=True)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    if not isinstance(storage, _Storage):
        raise UnsafeCheckpointError("_rebuild_tensor_v2 was given something that is not a storage")
    return _PendingTensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _ordered_dict(*args):
    # Only the empty ``OrderedDict()`` (backward hooks) and the state dict itself are expected.
    return collections.OrderedDict(*args)


def tensor_global(module: str, name: str):
    """The safe stand-in for a global a pickled tensor needs, or None for any other global."""
    if (module, name) == ("collections", "OrderedDict"):
        return _ordered_dict
    if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
        return _rebuild_tensor
    if module == "torch" and name in STORAGE_DTYPES:
        return _StorageType(name, STORAGE_DTYPES[name])
    return None


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals a tensor state dict needs.

    Allowed: ``collections.OrderedDict``, ``torch._utils._rebuild_tensor`` /
    ``_rebuild_tensor_v2`` (mapped to a NumPy rebuild) and the ``torch.*Storage`` classes (mapped
    to NumPy dtypes). Every other global raises :class:`UnsafeCheckpointError`.
    """

    def __init__(self, file, storages: dict[str, _Storage] | None = None):
        super().__init__(file, encoding="utf-8")
        self.storages = {} if storages is None else storages

    def find_class(self, module: str, name: str):
        found = tensor_global(module, name)
        if found is not None:
            return found
        raise UnsafeCheckpointError(
            f"checkpoint refers to the global {module}.{name}, which a tensor state dict never "
            "needs; refusing to load it"
        )

    def persistent_load(self, saved_id):
        if not (isinstance(saved_id, tuple) and saved_id and saved_id[0] == "storage"):
            raise UnsafeCheckpointError(f"unexpected persistent id {saved_id!r}")
        _, storage_type, key, _location, numel, view_metadata = saved_id
        if not isinstance(storage_type, _StorageType):
            raise UnsafeCheckpointError(f"unexpected storage type {storage_type!r}")
        if view_metadata is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        if key not in self.storages:
            self.storages[key] = _Storage(storage_type.dtype, int(numel))
        return self.storages[key]


def _restricted_load(file, storages=None):
    return RestrictedUnpickler(file, storages).load()


def _resolve(obj):
    if isinstance(obj, _PendingTensor):
        return obj.materialize()
    if isinstance(obj, dict):
        return collections.OrderedDict((k, _resolve(v)) for k, v in obj.items())
    if isinstance(obj, list):
        return [_resolve(v) for v in obj]
    return obj


def load_legacy_state_dict(path: str | os.PathLike) -> collections.OrderedDict:
    """Load a legacy-format ``torch.save`` state dict as NumPy arrays.

    Parameters
    ----------
    path : path-like
        A ``.pth`` file written by ``torch.save(state_dict, f, _use_new_zipfile_serialization=False)``
        (the default before PyTorch 1.6).

    Returns
    -------
    OrderedDict of str -> ndarray
        Parameter name to array, with the tensor's shape and dtype (e.g. float32 OIHW conv kernels).

    Raises
    ------
    UnsafeCheckpointError
        If any pickle in the file refers to a global other than the tensor-rebuild ones.
    ValueError
        If the file is not a legacy checkpoint (e.g. a zip-format one) or is truncated.
    """
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"PK":
        raise ValueError(f"{path} is a zip-format torch checkpoint; only the legacy format is read")
    f = io.BytesIO(data)
    try:
        magic = _restricted_load(f)
        if magic != LEGACY_MAGIC_NUMBER:
            raise ValueError(f"{path} is not a legacy torch checkpoint (bad magic number)")
        protocol = _restricted_load(f)
        if protocol != LEGACY_PROTOCOL_VERSION:
            raise ValueError(f"{path}: unsupported torch protocol version {protocol!r}")
        sys_info = _restricted_load(f)
        if not sys_info.get("little_endian", True):
            raise ValueError(f"{path} was written on a big-endian machine")
        storages: dict[str, _Storage] = {}
        state = _restricted_load(f, storages)
        keys = _restricted_load(f)
    except EOFError as error:
        raise ValueError(f"{path} is truncated") from error
    for key in keys:
        storage = storages[key]
        header = f.read(8)
        if len(header) != 8:
            raise ValueError(f"{path} is truncated (storage {key})")
        (numel,) = struct.unpack("<q", header)
        if numel != storage.numel:
            raise ValueError(
                f"{path}: storage {key} has {numel} elements, expected {storage.numel}"
            )
        raw = f.read(numel * storage.dtype.itemsize)
        if len(raw) != numel * storage.dtype.itemsize:
            raise ValueError(f"{path} is truncated (storage {key})")
        storage.data = np.frombuffer(raw, dtype=storage.dtype)
    state = _resolve(state)
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict but a {type(state).__name__}")
    return state
