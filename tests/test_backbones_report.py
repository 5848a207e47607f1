"""The chapter-level backbone report and the photo-check figure."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from dlbook.core import results
from dlbook.experiments import backbones as experiments
from dlbook.methods import backbones
from dlbook.plots import backbones as plots


@pytest.fixture
def offline(monkeypatch, tmp_path):
    from dlbook.methods.backbones import keras_applications

    monkeypatch.setattr(keras_applications, "cache_dirs", lambda: [tmp_path / "keras" / "models"])
    monkeypatch.setattr(keras_applications, "_download_reachable", lambda url: (False, "offline"))


@pytest.fixture(scope="module")
def lite0_check():
    return backbones.imagenet_photo_check("efficientnet_lite0")


def test_report_has_the_chapter_keys_and_saves(offline, lite0_check, tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (6, 48, 48, 3), dtype=np.uint8)
    names = ["efficientnet_lite0", "mobilenet_v2"]
    report = experiments.backbone_report(
        names, images, checks={"efficientnet_lite0": lite0_check}, batch_size=4
    )
    assert report["efficientnet_lite0_available"] is True
    assert report["efficientnet_lite0_imagenet_top1_ok"] is True
    assert report["efficientnet_lite0_features_per_s"] > 0
    assert (
        report["efficientnet_lite0_params"]
        == backbones.load("efficientnet_lite0", fold_batch_norm=False).count_params()
    )
    assert report["mobilenet_v2_available"] is False
    assert report["mobilenet_v2_features_per_s"] is None
    assert 2_000_000 < report["mobilenet_v2_params"] < 2_500_000  # MobileNetV2 1.0 without its top
    saved = results.load(results.save(tmp_path, "architectures", report).parent, "architectures")
    assert saved["mobilenet_v2_features_per_s"] is None and saved[
        "efficientnet_lite0_cat_top1"
    ] in range(281, 286)
    table = experiments.backbone_table(names, report)
    assert list(table.index) == names and "offline" in table.loc["mobilenet_v2", "weights"]
    # the page shows no paths of the machine and no library errors
    assert not any("/" in text or "Error" in text for text in table["weights"])


def test_report_rejects_unknown_names():
    with pytest.raises(ValueError, match="resnet18"):
        experiments.backbone_report(["resnet18"], np.zeros((1, 32, 32, 3), np.uint8))


def test_photo_check_figure_highlights_expected_classes(lite0_check):
    fig = plots.plot_photo_checks({"efficientnet_lite0": lite0_check})
    axes = fig.axes
    assert len(axes) == 4  # the two photos, then one backbone's bars per photo
    cat_bars = axes[2]
    assert cat_bars.get_title() == "cat, efficientnet_lite0: pass"
    highest = max(cat_bars.get_yticklabels(), key=lambda t: t.get_position()[1])
    assert highest.get_text().startswith(str(lite0_check["cat_top_k"][0][0]))  # top-1 on top
    green = [
        p
        for p in cat_bars.patches
        if p.get_facecolor()[:3] == matplotlib.colors.to_rgb("tab:green")
    ]
    assert len(green) == sum(i in range(281, 286) for i, _ in lite0_check["cat_top_k"])
    with pytest.raises(ValueError, match="checks is empty"):
        plots.plot_photo_checks({})


def test_class_label_falls_back_to_indices():
    assert plots.class_label(967) == "967 espresso"
    assert plots.class_label(904) == "class 904"
    assert plots.class_label(3, names=[f"n{i}" for i in range(1000)]) == "3 n3"


def test_availability_table_words_missing_weights_without_paths_or_errors(offline):
    table = experiments.availability_table({"backbones": ["efficientnet_lite0", "resnet50"]})
    rows = table.set_index("backbone")
    assert rows.loc["efficientnet_lite0", "available"] and not rows.loc["resnet50", "available"]
    assert rows.loc["resnet50", "weights"].startswith("weights not available offline")
    assert not any("/" in text or "Error" in text for text in table["weights"])
