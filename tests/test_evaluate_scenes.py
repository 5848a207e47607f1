"""``evaluate-scenes``: a two-photo VOC folder scored end to end, and its clear errors."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from dlbook import cli
from dlbook.facemask import evaluate_scenes

XML = """<annotation><size><width>80</width><height>60</height></size>
<object><name>{name}</name><bndbox><xmin>10</xmin><ymin>10</ymin><xmax>40</xmax><ymax>40</ymax>
</bndbox></object></annotation>"""


@pytest.fixture
def voc_folder(tmp_path):
    """Two photos, one with_mask face and one without_mask face, each at (10, 10)-(40, 40)."""
    for stem, name in (("one", "with_mask"), ("two", "without_mask")):
        (tmp_path / "images").mkdir(exist_ok=True)
        (tmp_path / "annotations").mkdir(exist_ok=True)
        Image.fromarray(np.full((60, 80, 3), 120, np.uint8)).save(
            tmp_path / "images" / f"{stem}.jpg"
        )
        (tmp_path / "annotations" / f"{stem}.xml").write_text(XML.format(name=name))
    return tmp_path


@pytest.fixture
def tiny_model(shipped_classifier):
    """The shared tiny shipped classifier (``conftest.shipped_classifier``)."""
    return shipped_classifier


def _csv(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["path", "label", "prob_with_mask", "x", "y", "width", "height", "class", "score"]
        )
        writer.writerows(rows)
    return path


def _main(folder, out, *extra):
    return cli.main(
        ["evaluate-scenes", "--images", str(folder / "images"), "--annotations",
         str(folder / "annotations"), "--out", str(out), "--n-boot", "5", "--no-progress", *extra]
    )  # fmt: skip


def test_predictions_csv_is_scored(voc_folder, tmp_path):
    rows = [
        ["x/one.jpg", "with_mask", "0.9", 10, 10, 30, 30, "with_mask", "0.9"],
        ["x/two.jpg", "with_mask", "0.6", 10, 10, 30, 30, "with_mask", "0.6"],  # wrong class
        ["x/two.jpg", "no_face", "", "", "", "", "", "", ""],
    ]
    predictions = _csv(tmp_path / "p.csv", rows)
    assert _main(voc_folder, tmp_path / "r.json", "--predictions", str(predictions)) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    # with_mask: a hit (0.9) then a false alarm (0.6): AP 1; without_mask: never found, AP 0
    assert report["ap50"]["with_mask"] == pytest.approx(1.0)
    assert report["ap50"]["without_mask"] == 0.0
    assert report["ap50"]["mask_weared_incorrect"] is None  # no such face: not scored
    assert report["map50"] == pytest.approx(0.5)
    assert report["recall_by_width"]["16-32"] == 1.0  # both faces found, whatever the class
    assert report["faces"] == {"with_mask": 1, "without_mask": 1, "mask_weared_incorrect": 0}


def test_unknown_class_in_predictions_names_the_line(voc_folder, tmp_path, capsys):
    predictions = _csv(tmp_path / "p.csv", [["one.jpg", "x", "1", 1, 1, 5, 5, "helmet", "1"]])
    assert _main(voc_folder, tmp_path / "r.json", "--predictions", str(predictions)) == 2
    assert "p.csv, line 2: class 'helmet'" in capsys.readouterr().err


def test_missing_model_and_bad_annotations_are_clear_errors(voc_folder, tmp_path, capsys):
    assert _main(voc_folder, tmp_path / "r.json", "--model", str(tmp_path / "none.keras")) == 2
    assert "none.keras" in capsys.readouterr().err
    (voc_folder / "annotations" / "one.xml").write_text("<annotation>")
    (voc_folder / "annotations" / "two.xml").write_text("<annotation>")
    assert _main(voc_folder, tmp_path / "r.json", "--predictions", "x.csv") == 2
    err = capsys.readouterr().err
    assert "one.xml: not readable VOC XML" in err and "none of 2 annotations is usable" in err


def test_default_model_is_the_full_builds(monkeypatch, voc_folder, tmp_path, capsys):
    monkeypatch.setattr(evaluate_scenes, "default_model", lambda: tmp_path / "full" / "m.keras")
    assert _main(voc_folder, tmp_path / "r.json") == 2
    assert "run the full build" in capsys.readouterr().err


def test_two_photo_folder_runs_end_to_end_with_a_model(voc_folder, tiny_model, tmp_path):
    assert _main(voc_folder, tmp_path / "r.json", "--model", str(tiny_model)) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["photos"] == 2 and report["predictions"].endswith("r.csv")
    # grey photos hold no face a detector can find: every face missed, so AP 0, not an error
    assert report["map50"] == 0.0 and report["boxes_found"] == 0


def test_missing_fit_model_is_a_clear_error(voc_folder, tiny_model, tmp_path, capsys):
    missing = tmp_path / "no_fit.keras"
    assert (
        _main(
            voc_folder, tmp_path / "r.json", "--model", str(tiny_model), "--fit-model", str(missing)
        )
        == 2
    )
    assert "no_fit.keras does not exist" in capsys.readouterr().err
