import numpy as np
import pytest
from sklearn import metrics as skm

from dlbook.methods import metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_metrics_equal_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 300)
    probs = np.clip(labels * 0.3 + rng.uniform(0, 0.7, 300), 0, 1).round(2)  # many ties
    got = metrics.binary_metrics(labels, probs)
    predicted = (probs >= 0.5).astype(int)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(labels, predicted))
    assert got["precision"] == pytest.approx(skm.precision_score(labels, predicted))
    assert got["recall"] == pytest.approx(skm.recall_score(labels, predicted))
    assert got["f1"] == pytest.approx(skm.f1_score(labels, predicted))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(labels, probs))
    assert np.array_equal(
        metrics.confusion_counts(labels, probs), skm.confusion_matrix(labels, predicted)
    )


def test_classification_report_intervals_bracket_the_value_and_shrink_with_n():
    rng = np.random.default_rng(0)
    widths = []
    for n in (100, 1600):
        labels = rng.integers(0, 2, n)
        probs = np.where(rng.uniform(size=n) < 0.9, labels, 1 - labels) * 0.8 + 0.1
        report = metrics.classification_report(labels, probs, n_boot=300, seed=1)
        acc = report["accuracy"]
        assert acc["ci_low"] <= acc["value"] <= acc["ci_high"]
        widths.append(acc["ci_high"] - acc["ci_low"])
    assert widths[1] < widths[0] / 2.5  # about 1/sqrt(16) = 1/4


def test_ece_is_zero_when_calibrated_and_large_when_overconfident():
    rng = np.random.default_rng(0)
    n = 200_000
    probs = rng.uniform(0, 1, n)
    labels = (rng.uniform(0, 1, n) < probs).astype(int)
    assert metrics.expected_calibration_error(labels, probs, n_bins=10) < 0.01
    # Always 99% sure, right 75% of the time: ECE = 0.99 - 0.75.
    labels = (rng.uniform(0, 1, n) < 0.75).astype(int)
    overconfident = np.full(n, 0.99)
    assert metrics.expected_calibration_error(labels, overconfident) == pytest.approx(
        0.24, abs=0.01
    )
    curve = metrics.reliability_curve(labels, overconfident, n_bins=5)
    assert curve["count"].sum() == n and curve["count"][-1] == n


def test_metrics_validate_their_inputs():
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        metrics.binary_metrics([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="same shape"):
        metrics.binary_metrics([0, 1], [0.1])
    assert np.isnan(metrics.roc_auc([1, 1], [0.2, 0.3]))


def test_fold_metrics_and_their_summary():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 500)
    folds = np.arange(500) % 5
    probs = np.where(rng.uniform(size=500) < 0.9, labels, 1 - labels) * 0.8 + 0.1
    table = metrics.fold_metrics(labels, probs, folds)
    assert list(table.index) == [0, 1, 2, 3, 4] and (table["n"] == 100).all()
    first = folds == 0
    assert table.loc[0, "accuracy"] == pytest.approx(
        metrics.binary_metrics(labels[first], probs[first])["accuracy"]
    )
    summary = metrics.summarise_folds(table)
    accuracy = summary["accuracy"]
    assert accuracy["value"] == pytest.approx(table["accuracy"].mean())
    assert accuracy["ci_low"] < accuracy["value"] < accuracy["ci_high"]
    assert "n" not in summary and set(summary) >= {"precision", "recall", "roc_auc"}
    nearly_perfect = table.assign(accuracy=[1.0, 1.0, 0.97, 1.0, 1.0])
    assert metrics.summarise_folds(nearly_perfect)["accuracy"]["ci_high"] == 1.0
    with pytest.raises(ValueError, match="same shape"):
        metrics.fold_metrics(labels, probs, folds[:-1])
