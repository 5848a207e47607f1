import numpy as np
import pytest

from dlbook.facemask import corruptions
from dlbook.methods import metrics


def test_mean_confidence_interval_matches_hand_computation():
    mean, low, high = metrics.mean_confidence_interval([1.0, 2.0, 3.0])
    # t(0.975, 2) = 4.302653; sem = 1/sqrt(3)
    assert mean == 2.0
    assert high - mean == pytest.approx(4.302653 / np.sqrt(3), rel=1e-5)
    assert mean - low == pytest.approx(high - mean)


def test_bootstrap_ci_brackets_the_statistic_and_is_seeded():
    values = np.random.default_rng(0).normal(5, 1, 400)
    low, high = metrics.bootstrap_ci(np.mean, values, n_boot=500, seed=1)
    assert low < values.mean() < high
    assert high - low == pytest.approx(2 * 1.96 / np.sqrt(400), rel=0.25)
    assert (low, high) == metrics.bootstrap_ci(np.mean, values, n_boot=500, seed=1)


def test_bootstrap_ci_rejects_misaligned_arrays():
    with pytest.raises(ValueError, match="first dimension"):
        metrics.bootstrap_ci(lambda a, b: 0.0, np.zeros(3), np.zeros(4))


def test_classification_report_intervals_are_bootstrap_ci_of_each_metric():
    rng = np.random.default_rng(2)
    labels, probs = rng.integers(0, 2, 60), rng.random(60)
    report = metrics.classification_report(labels, probs, n_boot=200, seed=3)
    for name in ("accuracy", "recall"):
        interval = metrics.bootstrap_ci(
            lambda y, p, name=name: metrics.binary_metrics(y, p)[name],
            labels, probs, n_boot=200, seed=3,
        )  # fmt: skip
        assert (report[name]["ci_low"], report[name]["ci_high"]) == interval


def test_percentile_interval_skips_nan_and_is_nan_without_a_finite_value():
    assert metrics.percentile_interval([np.nan, *range(101)], 0.9) == pytest.approx((5.0, 95.0))
    assert np.isnan(metrics.percentile_interval([np.nan, np.nan])).all()


@pytest.mark.parametrize("kind", sorted(corruptions.CORRUPTIONS))
def test_corruptions_grow_with_severity(kind):
    rng = np.random.default_rng(0)
    images = rng.integers(60, 200, (6, 32, 32, 3), dtype=np.uint8)
    images[:, 8:24, 8:24] = 230  # structure that blur and rotation change
    change = [
        np.abs(corruptions.corrupt(images, kind, s, seed=0).astype(float) - images).mean()
        for s in (1, 5)
    ]
    assert change[0] > 0
    assert change[1] > change[0]


def test_corrupt_validates_arguments():
    images = np.zeros((1, 8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="kind='fog'"):
        corruptions.corrupt(images, "fog", 1)
    with pytest.raises(ValueError, match="severity=9"):
        corruptions.corrupt(images, "blur", 9)
    with pytest.raises(ValueError, match="uint8"):
        corruptions.corrupt(images.astype(float), "blur", 1)
