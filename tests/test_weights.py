import hashlib

import numpy as np
import pytest

from dlbook import cli
from dlbook.methods.backbones import keras_applications, weights

VGG_NOTOP = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
MOBILENET_NOTOP = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


@pytest.fixture
def keras_cache(tmp_path, monkeypatch):
    cache = tmp_path / "keras" / "models"
    monkeypatch.setattr(keras_applications, "cache_dirs", lambda: [cache])
    monkeypatch.setattr(keras_applications, "_download_reachable", lambda url: (False, "offline"))
    return cache


def test_pinned_digests_are_the_ones_keras_checks():
    from keras.src.applications import resnet

    md5 = {name: entry.digest for name, entry in keras_applications.WEIGHT_FILES.items()}
    assert md5["resnet50_weights_tf_dim_ordering_tf_kernels.h5"] == (
        "md5:" + resnet.WEIGHTS_HASHES["resnet50"][0]
    )
    assert md5["resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"] == (
        "md5:" + resnet.WEIGHTS_HASHES["resnet50"][1]
    )
    backbones = {entry.backbone for entry in keras_applications.WEIGHT_FILES.values()}
    assert backbones == {"resnet50", "vgg16", "inception_v3", "mobilenet_v2"}


def test_weights_import_refuses_a_file_with_the_wrong_hash(tmp_path, keras_cache, capsys):
    bad = tmp_path / "download" / VGG_NOTOP
    bad.parent.mkdir()
    bad.write_bytes(b"not the VGG16 weights")
    assert cli.main(["weights", "import", str(bad.parent)]) == 1
    err = capsys.readouterr().err
    assert "refused" in err and "keras.applications expects 6d6bbae143d832006294945121d1f1fc" in err
    assert not (keras_cache / VGG_NOTOP).exists()
    assert not keras_applications.cached_file(VGG_NOTOP)


def test_weights_import_copies_a_file_with_the_pinned_hash(tmp_path, keras_cache, monkeypatch):
    good = tmp_path / VGG_NOTOP
    good.write_bytes(b"pretend VGG16 weights")
    digest = "md5:" + hashlib.md5(good.read_bytes()).hexdigest()
    entry = keras_applications.WEIGHT_FILES[VGG_NOTOP]
    monkeypatch.setitem(
        keras_applications.WEIGHT_FILES,
        VGG_NOTOP,
        keras_applications.WeightFile(entry.backbone, False, digest, entry.url_folder),
    )
    other = tmp_path / "notes.h5"
    other.write_bytes(b"")
    results = weights.import_weights([good, other])
    assert [r.status for r in results] == ["imported", "skipped"]
    assert (keras_cache / VGG_NOTOP).read_bytes() == good.read_bytes()
    assert weights.import_weights([good])[0].status == "already present"
    rows = {(r["backbone"], r["include_top"]): r for r in weights.status()}
    assert rows[("vgg16", False)]["present"] and not rows[("resnet50", False)]["present"]
    assert rows[("vgg16", False)]["sha256"] == hashlib.sha256(good.read_bytes()).hexdigest()
    from dlbook.methods import backbones

    assert backbones.available("vgg16")[0] and not backbones.available("resnet50")[0]


def test_weights_without_a_pinned_digest_are_checked_by_loading(tmp_path, keras_cache):
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    junk = tmp_path / "junk" / MOBILENET_NOTOP
    junk.parent.mkdir()
    junk.write_bytes(b"\x89HDF junk")
    with pytest.raises(weights.WeightsCheckError, match="does not load into MobileNetV2"):
        weights.check_file(junk)
    # A file in Keras' legacy HDF5 layout, as the official files are, passes.
    model = keras.applications.MobileNetV2(
        weights=None, include_top=False, input_shape=(None, None, 3)
    )
    real = tmp_path / MOBILENET_NOTOP
    with h5py.File(real, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, model)
    assert "loads into the architecture" in weights.check_file(real)
    assert [r.status for r in weights.import_weights([real, junk])] == ["imported", "refused"]


def test_weights_status_lists_every_file(keras_cache, capsys):
    assert cli.main(["weights", "status"]) == 0
    out = capsys.readouterr().out
    assert out.count("missing") == len(keras_applications.WEIGHT_FILES)
    assert "0 of 8 files present" in out
    assert np.all([not row["present"] for row in weights.status()])
