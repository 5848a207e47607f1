"""The COCO evaluator wrapper on toy photos whose AP is worked out by hand."""

import numpy as np
import pytest

from dlbook.methods import detection_metrics as dm

CLASSES = ("with_mask", "without_mask", "mask_weared_incorrect")


def toy():
    """Two photos.

    Photo 1: face A (with_mask, 10 px wide) and face B (without_mask, 20 px).
    Photo 2: face C (with_mask, 40 px).
    with_mask boxes: d1 on A (score 0.9), d2 on nothing in photo 2 (0.8), d3 on C (0.7).
    without_mask box: d4 over the top 13.6 of B's 20 rows (IoU 0.68), score 0.6.
    """
    truth = [
        (np.array([[0, 0, 10, 10], [50, 50, 70, 70.0]]), np.array([0, 1])),
        (np.array([[100, 100, 140, 140.0]]), np.array([0])),
    ]
    found = [
        (np.array([[0, 0, 10, 10], [50, 50, 70, 63.6]]), np.array([0, 1]), np.array([0.9, 0.6])),
        (
            np.array([[0, 0, 30, 30], [100, 100, 140, 140.0]]),
            np.array([0, 0]),
            np.array([0.8, 0.7]),
        ),
    ]
    return truth, found


def test_ap_matches_the_hand_computation():
    ap = dm.average_precision(*toy(), CLASSES)
    # with_mask, ranked by score: hit, miss, hit -> recall 0.5, 0.5, 1 and precision 1, 1/2, 2/3.
    # COCO takes the best precision at recall >= r at 101 points r = 0, 0.01, ..., 1: the 51
    # points up to 0.50 get 1, the 50 points above get 2/3, so AP = (51 + 50 * 2/3) / 101.
    with_mask = (51 + 50 * 2 / 3) / 101
    assert ap["ap50"]["with_mask"] == pytest.approx(with_mask)
    # without_mask: its one box is the first and only one, so AP 1 at IoU thresholds up to 0.68:
    # 0.50, 0.55, 0.60, 0.65 of the ten from 0.50 to 0.95, so 1 at IoU 0.5 and 4/10 over all.
    assert ap["ap50"]["without_mask"] == pytest.approx(1.0)
    assert ap["ap"]["without_mask"] == pytest.approx(0.4)
    # A and C are matched exactly, so every IoU threshold gives with_mask the same AP.
    assert ap["ap"]["with_mask"] == pytest.approx(with_mask)
    # mask_weared_incorrect has no face: left out of the means, not counted as 0.
    assert np.isnan(ap["ap50"]["mask_weared_incorrect"])
    assert ap["map50"] == pytest.approx((with_mask + 1) / 2)
    assert ap["map"] == pytest.approx((with_mask + 0.4) / 2)


def test_a_box_of_the_wrong_class_still_finds_the_face():
    truth, found = toy()
    found[0] = (found[0][0], np.array([1, 0]), found[0][2])  # A called without_mask, B with_mask
    ap = dm.average_precision(truth, found, CLASSES)
    assert ap["ap50"]["without_mask"] == 0.0
    widths = dm.recall_by_width(truth, found)
    # A (10 px) <16, B (20 px) 16-32, C (40 px) 32-64: every face is found, whatever its class
    assert widths["faces"] == {"<16": 1, "16-32": 1, "32-64": 1, ">=64": 0}
    assert widths["recall"]["<16"] == 1.0 and widths["recall"]["32-64"] == 1.0
    assert np.isnan(widths["recall"][">=64"])
    assert dm.box_precision(truth, found) == pytest.approx(3 / 4)  # d2 matches nothing


def test_missed_face_lowers_recall_in_its_bin_only():
    truth, found = toy()
    found[1] = (found[1][0][:1], found[1][1][:1], found[1][2][:1])  # drop the box on C
    recall = dm.recall_by_width(truth, found)["recall"]
    assert recall["32-64"] == 0.0 and recall["<16"] == 1.0


def test_bootstrap_intervals_bracket_the_point_value():
    truth, found = toy()
    truth, found = truth * 5, found * 5
    point = dm.scores(truth, found, CLASSES)
    intervals = dm.bootstrap_scores(truth, found, CLASSES, n_boot=30, seed=1)
    low, high = intervals["map50"]
    assert low <= point["map50"] <= high and low < high


def test_mismatched_inputs_are_refused():
    truth, found = toy()
    with pytest.raises(ValueError, match="truth has 2 photos but found has 1"):
        dm.average_precision(truth, found[:1], CLASSES)
