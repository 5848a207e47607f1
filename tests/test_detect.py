import numpy as np
import pytest

from dlbook import detect


def test_box_iou_and_matching():
    a = np.array([[0, 0, 10, 10], [20, 20, 10, 10]])
    b = np.array([[5, 0, 10, 10], [100, 100, 5, 5]])
    iou = detect.box_iou(a, b)
    assert iou[0, 0] == pytest.approx(50 / 150) and iou[1].max() == 0
    truth = np.array([[0, 0, 100, 100], [200, 0, 100, 100]])
    found = np.array([[220, 20, 60, 60], [10, 10, 50, 50], [500, 500, 30, 30]])
    assert detect.match_detections(truth, found).tolist() == [1, 0]
    assert detect.match_detections(truth, np.zeros((0, 4))).tolist() == [-1, -1]


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
