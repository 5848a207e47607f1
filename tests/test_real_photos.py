"""The real-photo pipeline's pieces: verdict mapping, box shapes, background boxes, class weights."""

import numpy as np
import pytest

from dlbook.facemask import scene_classifier as head
from dlbook.facemask import scene_pipeline as pipe
from dlbook.facemask.data import voc


def photo(boxes, labels, size=(200, 100)):
    return voc.Photo("p", None, size[0], size[1], np.array(boxes, float), np.array(labels))


def test_shipped_verdicts_map_mask_and_fit_to_three_classes():
    p_mask = np.array([0.9, 0.8, 0.2])
    fit = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.9, 0.05, 0.05]])
    labels, scores = pipe.shipped_verdicts(p_mask, fit)
    # masked + fit correct -> with_mask; masked + fit wrong -> worn wrong; no mask -> without_mask
    np.testing.assert_array_equal(labels, [0, 2, 1])
    np.testing.assert_allclose(scores, [0.9, 0.8, 0.8])
    ignored, _ = pipe.shipped_verdicts(p_mask)
    np.testing.assert_array_equal(ignored, [0, 0, 1])


def test_box_shape_learns_the_planted_mapping():
    # annotated faces are 0.8 wide and 1.1 tall of a square detector box, centred 0.1 lower
    truths, dets = [], []
    for x in (10.0, 60.0, 120.0):
        side = 30.0
        cx, cy = x + side / 2, 40 + side / 2 + 0.1 * side
        truths.append([cx - 0.4 * side, cy - 0.55 * side, cx + 0.4 * side, cy + 0.55 * side])
        dets.append([x, 40, x + side, 40 + side])
    shape, pairs = head.fit_box_shape([photo(truths, [0, 1, 0])], [(np.array(dets), np.ones(3))])
    assert pairs == 3
    assert shape.width == pytest.approx(0.8) and shape.height == pytest.approx(1.1)
    assert shape.shift_y == pytest.approx(0.1) and shape.shift_x == pytest.approx(0.0)
    np.testing.assert_allclose(shape.apply(np.array(dets)), truths)


def test_background_boxes_touch_no_face():
    faces = photo([[20, 20, 50, 50], [100, 10, 140, 50]], [0, 1])
    alarm = np.array([[150, 60, 180, 90], [22, 22, 48, 48]])  # the second one is a face
    boxes = head.background_boxes([faces], [(alarm, np.ones(2))], 5, np.random.default_rng(0))[0]
    assert len(boxes) == 5
    np.testing.assert_array_equal(boxes[0], alarm[0])  # the detector's false alarm comes first
    _, best = head.match_to_faces(faces.boxes, boxes)
    assert (best < head.BACKGROUND_MAX_IOU).all()


def test_class_weights_balance_the_rare_class():
    labels = np.array([0] * 40 + [1] * 10 + [2] * 2)
    assert head.class_weights(labels) == {0: 1, 1: 4, 2: 20}
    repeated = labels[head.balancing_repeats(labels)]
    assert np.bincount(repeated).tolist() == [40, 40, 40]


def test_head_verdicts_rank_non_faces_last():
    probs = np.array([[0.7, 0.2, 0.05, 0.05], [0.1, 0.05, 0.05, 0.8]])
    labels, scores = head.head_verdicts(probs)
    np.testing.assert_array_equal(labels, [0, 0])
    assert scores[0] > scores[1]


def test_match_to_faces_is_one_to_one():
    truth = np.array([[0, 0, 10, 10.0]])
    found = np.array([[0, 0, 10, 10], [1, 1, 10, 10.0]])
    face_of, best = head.match_to_faces(truth, found)
    assert face_of.tolist() == [0, -1] and best[1] > 0.5


def test_maskedfacenet_labels_worn_right_against_wrong(tmp_path):
    from PIL import Image

    from dlbook.experiments.real_photos import fit_check

    for k, folder in enumerate(voc.MASKEDFACENET_FOLDERS):
        (tmp_path / folder).mkdir()
        for n in range(3):
            Image.new("RGB", (20, 20), (10 * k, 0, 0)).save(tmp_path / folder / f"{n}.jpg")
    images, labels = fit_check.maskedfacenet(tmp_path, 8)
    assert images.shape == (12, 8, 8, 3) and labels.tolist() == [0] * 3 + [1] * 9
    _, few = fit_check.maskedfacenet(tmp_path, 8, limit=4, seed=0)
    assert len(few) == 4 and few.tolist().count(0) == 1  # the 1:3 proportion kept


def test_fit_flags_count_real_worn_wrong_and_false_alarms():
    from dlbook.experiments.real_photos import fit_check

    real = np.array([0, 0, 0, 0, 2, 2])  # four worn right, two worn wrong
    flags = fit_check._flags(np.array([1, 0, 0, 0, 1, 0], bool), real)
    assert flags == {"flags_incorrect": 0.5, "flags_with_mask": 0.25, "balanced_accuracy": 0.625}


def test_shipped_fit_on_real_is_balanced_accuracy_with_an_interval():
    """Flagging every worn-wrong face and half the worn-right ones is 0.75 balanced accuracy."""
    from types import SimpleNamespace

    from dlbook.experiments.real_photos.fit_check import shipped_fit_on_real

    labels = np.array([2] * 4 + [1] * 8)
    flagged = np.array([True] * 4 + [True, False] * 4)
    values = shipped_fit_on_real(flagged, labels, SimpleNamespace(settings={"n_boot": 50}, seed=0))
    assert values["fit_real_accuracy"] == pytest.approx(0.75)
    assert values["fit_real_accuracy_ci_low"] <= 0.75 <= values["fit_real_accuracy_ci_high"]
    assert values["fit_real_n"] == 12 and values["fit_real_chance"] == 0.5


def test_tiled_union_at_the_shipped_share_is_the_shipped_detector():
    pytest.importorskip("tensorflow")
    skimage_data = pytest.importorskip("skimage.data")
    from dlbook.experiments.real_photos import finding
    from dlbook.facemask import detect

    if not detect.available(detect.DEFAULT_DETECTOR)[0]:
        pytest.skip(detect.available(detect.DEFAULT_DETECTOR)[1])
    photo = skimage_data.astronaut()
    shipped = detect.load_detector(detect.DEFAULT_DETECTOR).detect(photo)
    again = finding.tiled_union(finding.SHIPPED_SHARE).detect(photo)
    np.testing.assert_allclose(again[0], shipped[0])
    np.testing.assert_allclose(again[1], shipped[1])
    finer = finding.tiled_union(0.3).detect(photo)
    assert len(finer[0]) >= len(shipped[0]) >= 1  # the union keeps the shipped faces


def test_finding_row_counts_faces_found_by_width_and_false_boxes():
    from dlbook.experiments.real_photos import finding

    truth = [(np.array([[0.0, 0, 10, 10], [50, 50, 90, 90]]), np.array([0, 1]))]
    found = [(np.array([[50.0, 50, 90, 90], [200, 200, 220, 220]]), np.zeros(2, int),
              np.array([0.9, 0.8]))]  # fmt: skip
    row = finding.finding_row(truth, found)
    assert row["recall"] == 0.5 and row["recall_ge32"] == 1.0 and row["recall_<16"] == 0.0
    assert row["box_precision"] == 0.5 and row["boxes_per_photo"] == 2.0
    assert finding.tiles_key(finding.SHIPPED_SHARE) == "shipped"
    assert finding.tiles_key(0.3) == "tiles_03"
