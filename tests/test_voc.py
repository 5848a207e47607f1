"""VOC parsing: a hand-made file (with stray text after a box), bad files named, the real set."""

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlbook.facemask.data import manifest, voc

SCENES = Path(os.environ.get("DLBOOK_SCENES", "/work/shared/data/mask-scenes"))

XML = """<annotation>
  <filename>{stem}.png</filename>
  <size><width>{w}</width><height>{h}</height><depth>3</depth></size>
  <object><name>with_mask</name>
    <bndbox><xmin>10</xmin><ymin>12</ymin><xmax>30</xmax><ymax>40</ymax></bndbox>stray text
  </object>
  <object><name>mask_weared_incorrect</name>
    <bndbox><xmin>50</xmin><ymin>5</ymin><xmax>{x1}</xmax><ymax>20</ymax></bndbox>
  </object>
</annotation>"""


def make_folder(root: Path, stems=("a", "b"), size=(64, 48), x1=65) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    for stem in stems:
        Image.new("RGB", size, (90, 90, 90)).save(root / "images" / f"{stem}.jpg")
        text = XML.format(stem=stem, w=size[0], h=size[1], x1=x1)
        (root / "annotations" / f"{stem}.xml").write_text(text)
    return root


def test_parse_hand_made_file_with_stray_text(tmp_path):
    make_folder(tmp_path, ("a",))
    width, height, boxes, labels = voc.parse_annotation(tmp_path / "annotations" / "a.xml")
    assert (width, height) == (64, 48)
    # the second box ends at 65 on a 64-px image (VOC's 1-based inclusive end): clipped to 64
    np.testing.assert_array_equal(boxes, [[10, 12, 30, 40], [50, 5, 64, 20]])
    np.testing.assert_array_equal(labels, [0, 2])


def test_box_far_outside_the_image_names_the_file(tmp_path):
    make_folder(tmp_path, ("a",), x1=90)
    with pytest.raises(voc.AnnotationError, match=r"a\.xml.*outside the 64x48 image"):
        voc.parse_annotation(tmp_path / "annotations" / "a.xml")


def test_bad_xml_missing_image_and_empty_folder_are_named(tmp_path):
    root = make_folder(tmp_path / "set", ("a", "b", "c"))
    (root / "annotations" / "b.xml").write_text("<annotation><size>")
    (root / "images" / "c.jpg").unlink()
    report = io.StringIO()
    photos = voc.load_photos(root / "images", root / "annotations", report=report)
    assert [p.stem for p in photos] == ["a"]
    text = report.getvalue()
    assert "b.xml: not readable VOC XML" in text and "no photo for annotation c.xml" in text
    (tmp_path / "empty").mkdir()
    with pytest.raises(voc.AnnotationError, match="empty: no .xml annotation files"):
        voc.load_photos(root / "images", tmp_path / "empty")


def test_photo_size_must_match_its_annotation(tmp_path):
    root = make_folder(tmp_path, ("a",))
    Image.new("RGB", (10, 10)).save(root / "images" / "a.jpg")
    with pytest.raises(voc.AnnotationError, match=r"a\.jpg: the photo is 10x10 but a\.xml"):
        voc.load_photo(root / "annotations" / "a.xml", root / "images")


def test_unknown_class_is_an_error(tmp_path):
    root = make_folder(tmp_path, ("a",))
    path = root / "annotations" / "a.xml"
    path.write_text(path.read_text().replace("with_mask", "helmet"))
    with pytest.raises(voc.AnnotationError, match="'helmet'"):
        voc.parse_annotation(path)


def test_scenes_folder_from_environment_or_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DLBOOK_SCENES", str(tmp_path))
    assert voc.scenes_dir() == tmp_path.resolve()
    monkeypatch.setenv("DLBOOK_SCENES", str(tmp_path / "nowhere"))
    with pytest.raises(manifest.DataUnavailableError, match="nowhere is not a folder"):
        voc.scenes_dir()
    monkeypatch.delenv("DLBOOK_SCENES")
    monkeypatch.setenv("DLBOOK_DATA", str(tmp_path / "face-mask"))
    (tmp_path / "face-mask").mkdir()
    with pytest.raises(manifest.DataUnavailableError, match="mask-scenes is not a folder"):
        voc.scenes_dir()


def test_manifest_names_a_changed_annotation(tmp_path):
    root = make_folder(tmp_path, ("a", "b"))
    rows = manifest.build_manifest(root, voc.SCENE_FOLDERS)
    assert {r["class"] for r in rows} == {"images", "annotations"}
    path = manifest.write_manifest(rows, tmp_path / "m.csv")
    (root / "annotations" / "b.xml").write_text("changed")
    with pytest.raises(manifest.DataVerificationError, match=r"(?s)m\.csv.*annotations/b\.xml"):
        manifest.verify_data(root, path, folders=voc.SCENE_FOLDERS)


@pytest.mark.skipif(not SCENES.is_dir(), reason="the mask-scenes data is not here")
def test_real_scenes_match_the_data_readme():
    photos = voc.load_scenes(SCENES)
    assert len(photos) == 581
    assert voc.class_counts(photos) == {
        "with_mask": 2150,
        "without_mask": 474,
        "mask_weared_incorrect": 83,
    }
    widths = np.concatenate([p.widths for p in photos])
    assert np.histogram(widths, [0, 16, 32, 64, np.inf])[0].tolist() == [769, 1057, 568, 313]


def test_face_crops_keep_wide_faces_with_their_labels(tmp_path):
    from dlbook.facemask import scene_pipeline

    root = make_folder(tmp_path, ("a", "b"))
    photos = voc.load_photos(root / "images", root / "annotations")
    crops = scene_pipeline.face_crops(photos, image_size=32)
    assert crops.images.shape == (4, 32, 32, 3) and crops.images.dtype == np.uint8
    np.testing.assert_array_equal(crops.labels, [0, 2, 0, 2])
    np.testing.assert_array_equal(crops.photo, [0, 0, 1, 1])
    wide = scene_pipeline.face_crops(photos, image_size=32, min_width=16)
    np.testing.assert_array_equal(wide.widths, [20, 20])  # the 14-px faces are left out
    np.testing.assert_array_equal(scene_pipeline.masked_vs_not([0, 1, 2]), [1, 0, 1])


def test_cached_detections_compute_once_and_keep_each_photos_boxes_and_time(tmp_path, monkeypatch):
    from dlbook.facemask import scene_pipeline

    monkeypatch.setenv("DLBOOK_CACHE", str(tmp_path / "cache"))
    root = make_folder(tmp_path, ("a", "b", "c"))
    photos = voc.load_photos(root / "images", root / "annotations")

    class TwoFacesThenNone:  # x, y, width, height boxes; the third photo has no face
        calls = 0

        def detect(self, image):
            self.calls += 1
            if self.calls == 3:
                return np.zeros((0, 4)), np.zeros(0)
            return np.array([[1.0, 2.0, 10.0, 10.0], [60.0, 40.0, 20.0, 20.0]]), [0.9, 0.4]

    for timed in (True, False):
        per_photo, ms = scene_pipeline.cached_detections(
            photos, TwoFacesThenNone, "scene_test", f"key-{timed}", "fake", timed=timed
        )
        assert [len(boxes) for boxes, _ in per_photo] == [2, 2, 0]
        np.testing.assert_allclose(per_photo[0][0][0], [1, 2, 11, 12])  # x0, y0, x1, y1
        np.testing.assert_allclose(per_photo[0][0][1], [60, 40, 64, 48])  # clipped to the photo
        np.testing.assert_allclose(per_photo[1][1], [0.9, 0.4])
        assert len(ms) == (3 if timed else 0) and (ms >= 0).all()
    again, _ = scene_pipeline.cached_detections(
        photos, lambda: pytest.fail("computed twice"), "scene_test", "key-True", "fake", timed=True
    )
    np.testing.assert_allclose(again[1][0], per_photo[1][0])
