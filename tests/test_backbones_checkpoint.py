"""The legacy torch.save reader: real checkpoints load, crafted ones cannot run code."""

import io
import pickle
import struct
import sys
import types

import numpy as np
import pytest

from dlbook.methods.backbones import efficientnet_lite
from dlbook.methods.backbones.torch_checkpoint import (
    LEGACY_MAGIC_NUMBER,
    LEGACY_PROTOCOL_VERSION,
    UnsafeCheckpointError,
    load_legacy_state_dict,
)


class _Touch:
    """Pickles to a call of ``open(path, "w")``: unpickling it unchecked creates a file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def _legacy_file(path, main_pickle: bytes, storages=()):
    """Write the legacy container around ``main_pickle``: header pickles, keys, raw storages."""
    with open(path, "wb") as f:
        for header in (
            LEGACY_MAGIC_NUMBER,
            LEGACY_PROTOCOL_VERSION,
            {"protocol_version": 1001, "little_endian": True, "type_sizes": {"int": 4}},
        ):
            pickle.dump(header, f, protocol=2)
        f.write(main_pickle)
        pickle.dump([key for key, _ in storages], f, protocol=2)
        for _, array in storages:
            f.write(struct.pack("<q", array.size))
            f.write(array.astype("<f4").tobytes())
    return path


def test_malicious_checkpoint_is_refused_without_running_code(tmp_path):
    victim = tmp_path / "pwned"
    payload = pickle.dumps({"_conv_stem.weight": _Touch(victim)}, protocol=2)
    _legacy_file(tmp_path / "bad.pth", payload)
    with pytest.raises(UnsafeCheckpointError, match="open"):
        load_legacy_state_dict(tmp_path / "bad.pth")
    assert not victim.exists()
    # The same payload really would run through the standard unpickler.
    pickle.loads(payload)["_conv_stem.weight"].close()
    assert victim.exists()


@pytest.mark.parametrize("target", ["os.system", "builtins.eval", "torch.load", "numpy.load"])
def test_any_other_global_is_refused_even_in_the_header(tmp_path, target):
    module, name = target.split(".")
    opcodes = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X\x04\x00\x00\x00trueq\x00\x85R."
    (tmp_path / "bad.pth").write_bytes(opcodes)
    with pytest.raises(UnsafeCheckpointError, match=name):
        load_legacy_state_dict(tmp_path / "bad.pth")


def test_strided_and_offset_tensors_are_rebuilt(tmp_path, monkeypatch):
    """A checkpoint written through the real torch global names (faked here) round-trips."""

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while pickling")

    torch = types.ModuleType("torch")
    torch_utils = types.ModuleType("torch._utils")
    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    torch.FloatStorage, torch_utils._rebuild_tensor_v2 = FloatStorage, _rebuild_tensor_v2
    torch._utils = torch_utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", torch_utils)

    storage = np.arange(20, dtype=np.float32)

    class Tensor:
        def __init__(self, offset, size, stride):
            self.args = (offset, size, stride)

        def __reduce__(self):
            import collections

            offset, size, stride = self.args
            return (
                _rebuild_tensor_v2,
                (storage_ref, offset, size, stride, False, collections.OrderedDict()),
            )

    class StorageRef:
        pass

    storage_ref = StorageRef()

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if obj is storage_ref:
                return ("storage", FloatStorage, "0", "cpu", storage.size, None)
            return None

    import collections

    state = collections.OrderedDict(
        [
            ("matrix", Tensor(2, (3, 4), (4, 1))),  # rows 2..13 of the storage
            ("transposed", Tensor(0, (4, 3), (1, 4))),  # a transposed view
            ("scalar", Tensor(19, (), ())),
        ]
    )
    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump(state)
    _legacy_file(tmp_path / "ok.pth", buffer.getvalue(), [("0", storage)])
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.delitem(sys.modules, "torch._utils")

    loaded = load_legacy_state_dict(tmp_path / "ok.pth")
    assert list(loaded) == ["matrix", "transposed", "scalar"]
    np.testing.assert_array_equal(loaded["matrix"], storage[2:14].reshape(3, 4))
    np.testing.assert_array_equal(loaded["transposed"], storage[:12].reshape(3, 4).T)
    assert loaded["scalar"] == 19 and loaded["matrix"].dtype == np.float32


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    real = efficientnet_lite.weights_path("efficientnet_lite0").read_bytes()
    (tmp_path / "cut.pth").write_bytes(real[: len(real) // 2])
    with pytest.raises(ValueError, match="truncated"):
        load_legacy_state_dict(tmp_path / "cut.pth")


def test_real_checkpoint_has_the_expected_tensors():
    state = efficientnet_lite.load_state_dict("efficientnet_lite0")
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.1._depthwise_conv.weight"].shape == (96, 1, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    blocks = {int(k.split(".")[1]) for k in state if k.startswith("_blocks.")}
    assert blocks == set(range(len(efficientnet_lite.block_args("efficientnet_lite0"))))
    assert np.all(state["_bn1.running_var"] > 0)
