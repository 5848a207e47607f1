"""Shared fixtures: a throw-away cache, and tiny synthetic datasets made in the test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The build's thread sizes (``parallel.BOOK_INTRA_OP_THREADS``), before anything starts
# TensorFlow or BLAS here, so a run in this process equals the same run in a build's worker.
for _name in (
    "TF_NUM_INTRAOP_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
):
    os.environ.setdefault(_name, "1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "face-mask"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Each test gets its own cache folder so cached arrays never leak between tests."""
    monkeypatch.setenv("DLBOOK_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def synthetic_data(tmp_path):
    from dlbook.facemask.data import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path / "face-mask", n_per_class=20, image_size=40, seed=1)


def real_data_dir() -> Path | None:
    """The real dataset, from $DLBOOK_DATA or ../shared beside the checkout, if present."""
    candidate = Path(os.environ.get("DLBOOK_DATA") or SHARED_DATA)
    return candidate if candidate.is_dir() else None


@pytest.fixture
def real_data():
    folder = real_data_dir()
    if folder is None:
        pytest.skip("the real face-mask dataset is not available (set DLBOOK_DATA)")
    return folder


@pytest.fixture
def shipped_classifier(tmp_path):
    """A shipped mask classifier on 16-px images whose P(with_mask) rises with the mean red level
    (a logistic head on the mean colour, temperature 2); returns the .keras path."""
    import keras

    from dlbook.facemask import classify

    inputs = keras.Input((16, 16, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    model = classify.build_shipped_model(
        keras.Model(inputs, pooled), [20.0, -3.0, 1.0], -9.0, 2.0, 16
    )
    path, _ = classify.save_shipped_model(
        model, tmp_path / "mask_classifier.keras", {"image_size": 16, "temperature": 2.0}
    )
    return path
