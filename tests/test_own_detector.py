"""The book's own one-stage detector: targets round-trip, shapes, the backbone cut, a tiny fit."""

import numpy as np
import pytest
from PIL import Image

from dlbook.facemask.detect.own import model as own
from dlbook.facemask.detect.own import targets

BOXES = np.array([[10.0, 12.0, 22.0, 26.0], [40.0, 8.0, 90.0, 70.0], [100.0, 100.0, 108.5, 109.0]])
LABELS = np.array([0, 1, 2])


def test_encode_marks_each_centre_once_with_shapes_as_documented():
    encoded = targets.encode(BOXES, LABELS, (16, 16), stride=8, n_classes=3)
    assert encoded["heatmap"].shape == (16, 16, 3)
    assert encoded["size"].shape == encoded["offset"].shape == (16, 16, 2)
    assert encoded["mask"].shape == (16, 16, 1)
    assert encoded["mask"].sum() == 3
    for c in range(3):  # exactly one peak of 1 per class, at the face's centre cell
        assert (encoded["heatmap"][:, :, c] == 1.0).sum() == 1
    cx, cy = (BOXES[1, 0] + BOXES[1, 2]) / 2 / 8, (BOXES[1, 1] + BOXES[1, 3]) / 2 / 8
    assert encoded["heatmap"][int(cy), int(cx), 1] == 1.0
    assert 0 < encoded["heatmap"][int(cy), int(cx) + 1, 1] < 1  # the Gaussian's shoulder


def test_encode_then_decode_gives_the_boxes_back():
    encoded = targets.encode(BOXES, LABELS, (16, 16), stride=8, n_classes=3)
    boxes, labels, scores = targets.decode(
        encoded["heatmap"], encoded["size"], encoded["offset"], stride=8, min_score=0.99
    )
    order = np.argsort(labels)
    np.testing.assert_array_equal(labels[order], LABELS)
    np.testing.assert_allclose(boxes[order], BOXES, atol=1e-4)
    np.testing.assert_allclose(scores, 1.0)


def test_decode_keeps_peaks_only_and_ranks_by_score():
    heatmap = np.zeros((6, 6, 2))
    heatmap[2, 2, 0], heatmap[2, 3, 0] = 0.9, 0.7  # 0.7 sits next to a larger peak: not a peak
    heatmap[5, 0, 1] = 0.5
    zeros = np.zeros((6, 6, 2))
    boxes, labels, scores = targets.decode(heatmap, zeros, zeros, stride=4, min_score=0.1)
    np.testing.assert_allclose(scores, [0.9, 0.5])
    np.testing.assert_array_equal(labels, [0, 1])
    np.testing.assert_allclose(boxes[0], [8 - 2, 8 - 2, 8 + 2, 8 + 2])  # exp(0) cells = 4 px


def test_encode_rejects_a_label_outside_the_classes():
    with pytest.raises(ValueError, match="labels"):
        targets.encode(BOXES, np.array([0, 1, 3]), (16, 16), stride=8, n_classes=3)


def test_letterbox_scales_the_long_side_and_pads_to_a_multiple_of_16():
    image = Image.fromarray(np.full((50, 100, 3), 200, np.uint8))
    pixels, scale = own.letterbox(image, 64)
    assert pixels.shape == (32, 64, 3) and scale == pytest.approx(0.64)
    assert pixels.min() == 200
    pixels, scale = own.letterbox(Image.fromarray(np.full((30, 100, 3), 9, np.uint8)), 64)
    assert pixels.shape == (32, 64, 3)  # 19 rows of photo, then zeros up to 32
    assert pixels[:19].min() == 9 and pixels[19:].max() == 0


def test_pad_maps_squares_maps_of_several_shapes():
    maps = [np.ones((2, 4, 3), np.float16), np.ones((4, 3, 3), np.float16)]
    padded = own.pad_maps(maps, 4)
    assert padded.shape == (2, 4, 4, 3)
    assert padded[0].sum() == 2 * 4 * 3 and padded[0, 2:].max() == 0
    assert padded[1].sum() == 4 * 3 * 3 and padded[1, :, 3:].max() == 0


def test_found_boxes_map_back_to_photo_pixels():
    encoded = targets.encode(BOXES * 2, LABELS, (32, 32), stride=8, n_classes=3)
    predicted = [encoded["heatmap"][None], encoded["size"][None], encoded["offset"][None]]
    ((boxes, labels, _),) = own.found_boxes(predicted, [2.0], [(120, 120)], 8, 0.99, 10)
    np.testing.assert_allclose(boxes[np.argsort(labels)], BOXES, atol=1e-4)


def test_block_boundaries_cut_lite0_at_strides_8_and_16():
    # Lite0 halves the resolution in blocks 1, 3, 5 and 11: stride 8 ends before block 5
    assert own.block_boundaries("efficientnet_lite0") == {8: "block5_", 16: "block11_"}


def test_head_outputs_have_the_documented_shapes():
    head = own.build_head({8: 5, 16: 7}, n_classes=3, width=8, depth=1)
    heat, size, offset = head.predict_on_batch([np.zeros((2, 6, 6, 5)), np.zeros((2, 3, 3, 7))])
    assert heat.shape == (2, 6, 6, 3) and size.shape == offset.shape == (2, 6, 6, 2)
    # the heatmap starts at the prior probability everywhere
    np.testing.assert_allclose(1 / (1 + np.exp(-heat)), own.PRIOR, rtol=1e-5)


def test_a_tiny_head_overfits_two_synthetic_photos():
    import keras

    rng = np.random.default_rng(0)
    boxes = [np.array([[8.0, 8.0, 24.0, 24.0]]), np.array([[32.0, 16.0, 48.0, 40.0]])]
    labels = [np.array([0]), np.array([1])]
    maps = [np.zeros((2, 8, 8, 4), np.float16), np.zeros((2, 4, 4, 6), np.float16)]
    for k, box in enumerate(boxes):  # a feature that says "face of class k here"
        x0, y0, x1, y1 = (box[0] / 8).astype(int)
        maps[0][k, y0:y1, x0:x1, k] = 1.0
    maps[0] += rng.normal(0, 0.05, maps[0].shape).astype(np.float16)
    target = targets.encode_many(list(zip(boxes, labels, strict=True)), (8, 8), 8, 3)
    keras.utils.set_random_seed(0)
    head = own.build_head({8: 4, 16: 6}, n_classes=3, width=16, depth=1)
    step = own.make_train_step(head, keras.optimizers.Adam(0.02))
    losses = [own.train_epoch(step, maps, target, rng.permutation(2), 2)["loss"] for _ in range(80)]
    assert losses[-1] < 0.2 * losses[0]
    found = own.found_boxes(own.predict_maps(head, maps), [1.0, 1.0], [(64, 64)] * 2, 8, 0.3, 5)
    for (got, got_labels, _), box, label in zip(found, boxes, labels, strict=True):
        assert got_labels[0] == label[0]
        np.testing.assert_allclose(got[0], box[0], atol=8)  # within one cell


def test_keep_above_drops_low_scores():
    found = [(BOXES, LABELS, np.array([0.9, 0.2, 0.5]))]
    ((boxes, labels, scores),) = targets.keep_above(found, 0.5)
    np.testing.assert_array_equal(labels, [0, 2])
    np.testing.assert_allclose(scores, [0.9, 0.5])


def lite0_or_skip():
    from dlbook.methods import backbones

    ok, why = backbones.available("efficientnet_lite0")
    if not ok:
        pytest.skip(why)


def test_lite0_maps_have_the_documented_shapes_and_are_cached():
    lite0_or_skip()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(64, 96, 3), (32, 32, 3)]]
    fine, coarse = own.feature_maps("efficientnet_lite0", images)
    assert [m.shape for m in fine] == [(8, 12, 40), (4, 4, 40)]
    assert [m.shape for m in coarse] == [(4, 6, 112), (2, 2, 112)]
    assert fine[0].dtype == np.float16
    again, _ = own.feature_maps("efficientnet_lite0", images[:1])  # read from the cache
    np.testing.assert_array_equal(again[0], fine[0])


def write_photo(folder, stem, boxes, labels, rng):
    from dlbook.facemask.data import voc

    pixels = rng.integers(0, 60, (48, 64, 3), dtype=np.uint8)
    for x0, y0, x1, y1 in boxes.astype(int):
        pixels[y0:y1, x0:x1] = 230  # a bright square stands for a face
    path = folder / f"{stem}.jpg"
    Image.fromarray(pixels).save(path)
    return voc.Photo(stem, path, 64, 48, boxes, labels)


def test_train_and_score_returns_found_lists_for_validation_and_test(tmp_path):
    lite0_or_skip()
    from dlbook.experiments.real_photos import own_detector as od

    rng = np.random.default_rng(0)
    boxes = np.array([[8.0, 8.0, 24.0, 24.0], [36.0, 20.0, 56.0, 40.0]])
    photos = [
        write_photo(tmp_path, f"p{k}", boxes + k, np.array([0, k % 3]), rng) for k in range(5)
    ]
    settings = dict(od.DEFAULTS["smoke"], input_sizes=(64,), epochs=3, eval_every=1)
    parts = {"train": photos[:3], "val": photos[3:4], "test": photos[4:]}
    result = od.train_and_score(parts, settings, 0)
    assert set(result["found"]) == {"val", "test"}
    assert len(result["found"]["val"]) == len(result["found"]["test"]) == 1
    boxes_found, labels, scores = result["found"]["test"][0]
    assert boxes_found.shape == (len(labels), 4) and len(scores) == len(labels)
    assert (scores >= settings["min_score"]).all() and (labels < 3).all()
    assert (boxes_found[:, 2] <= 64).all() and (boxes_found[:, 3] <= 48).all()  # photo pixels
    assert result["threshold"] in settings["thresholds"]
    assert 1 <= result["epochs"] <= 3 and len(result["history"]) == 3
    with pytest.raises(ValueError, match="settings lack"):
        od.train_and_score({"train": photos, "val": photos}, {"epochs": 1}, 0)
    with pytest.raises(ValueError, match="schedule='linear'"):
        od.train_and_score(parts, dict(settings, schedule="linear"), 0)


def test_training_curves_mark_the_chosen_epoch():
    import matplotlib

    matplotlib.use("Agg")
    from dlbook.plots.own_detector import training_curves

    history = [{"epoch": e, "loss": 3.0 / e, "focal": 2.0 / e, "box": 1.0 / e} for e in (1, 2, 3)]
    history[1]["val_map50"] = 0.4
    fig = training_curves(history, chosen_epoch=2)
    left, right = fig.axes
    assert len(left.lines) == 4 and left.lines[-1].get_xdata()[0] == 2  # 3 losses + marker
    assert list(right.lines[0].get_ydata()) == [0.4]


def test_class_weights_favour_rare_classes_by_the_power_given():
    labels = np.array([0] * 16 + [1] * 4 + [2])
    np.testing.assert_allclose(own.class_weights(labels, 3, 0.5), [1.0, 2.0, 4.0])
    np.testing.assert_allclose(own.class_weights(labels, 3, 0.0), [1.0, 1.0, 1.0])
    np.testing.assert_allclose(own.class_weights(np.array([0, 0, 1]), 3, 1.0), [1.0, 2.0, 2.0])


def test_averaged_weights_move_towards_the_new_ones():
    first = own.averaged(None, [np.array([1.0, 2.0])], 0.6)
    np.testing.assert_allclose(first[0], [1.0, 2.0])
    second = own.averaged(first, [np.array([3.0, 2.0])], 0.6)
    np.testing.assert_allclose(second[0], [1.8, 2.0])


def test_a_rare_class_weight_raises_its_share_of_the_loss():
    logits = np.zeros((1, 4, 4, 2), np.float32)
    target = targets.encode_many(
        [(np.array([[0.0, 0, 8, 8], [16, 16, 24, 24]]), np.array([0, 1]))], (4, 4), 8, 2
    )
    outputs = (logits, np.zeros((1, 4, 4, 2), np.float32), np.zeros((1, 4, 4, 2), np.float32))
    plain = float(own.head_loss(outputs, target)[1])
    weighted = float(own.head_loss(outputs, target, class_weights=[1.0, 3.0])[1])
    # one positive per class, each costing log(2) * 0.5 ** 2 at probability 0.5
    assert weighted - plain == pytest.approx(2 * np.log(2) * 0.25 / 2, rel=1e-4)


def test_overlapping_peaks_of_one_face_keep_the_best_box_only():
    boxes = np.array([[0.0, 0, 100, 100], [5, 5, 100, 100], [200, 200, 220, 220], [0, 0, 60, 60]])
    scores = np.array([0.5, 0.9, 0.4, 0.3])
    kept = targets.suppress_overlaps(boxes, scores, 0.5)
    assert kept.tolist() == [1, 2, 3]  # box 0 overlaps box 1 by IoU 0.90; box 3 by 0.36 only
    assert targets.suppress_overlaps(boxes, scores, 1.0).tolist() == [1, 0, 2, 3]  # none dropped
