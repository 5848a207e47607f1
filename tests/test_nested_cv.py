"""Nested grouped cross-validation (chapter 4): no outer test item reaches a selection step."""

import numpy as np
import pytest

from dlbook.experiments.mask_detection import nested
from dlbook.facemask import data


def _synthetic(n=240, seed=0):
    """Two backbones: ``signal`` separates the classes, ``noise`` does not. Column 0 of every
    feature matrix is a planted marker: the item's index (constant scale, so heads still fit)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    groups = np.arange(n) // 2  # pairs of near-duplicates
    marker = np.arange(n, dtype=np.float32)[:, None] / n
    signal = np.hstack([marker, (labels[:, None] * 2.0 - 1) + rng.normal(0, 0.7, (n, 4))])
    noise = np.hstack([marker, rng.normal(0, 1, (n, 4))])
    folds = data.grouped_folds(labels, groups, 4, seed)
    candidates = {"signal": signal.astype(np.float32), "noise": noise.astype(np.float32)}
    return candidates, labels, groups, folds


def test_selection_never_sees_an_outer_test_item():
    candidates, labels, groups, folds = _synthetic()
    seen_folds = []

    def marked_select(part, part_labels, part_groups, seed):
        items = np.rint(part["signal"][:, 0] * len(labels)).astype(int)
        touched = set(folds[items].tolist())
        # A training part spans every outer fold but its own: all of them means a test item.
        if len(touched) == len(np.unique(folds)):
            raise AssertionError("the selection step saw an item of the outer test fold")
        seen_folds.append(touched)
        return nested.choose_configuration(part, part_labels, part_groups, seed)

    found = nested.nested_cross_validate_heads(candidates, labels, groups, folds, 0, marked_select)
    assert len(seen_folds) == 4
    assert np.isfinite(found["probs"]).all()


def test_marker_catches_a_leak():
    """The planted marker is live: a selection handed every row raises."""
    candidates, labels, groups, folds = _synthetic()

    def leaky(part, part_labels, part_groups, seed):
        items = np.rint(candidates["signal"][:, 0] * len(labels)).astype(int)
        if len(set(folds[items].tolist())) == len(np.unique(folds)):
            raise AssertionError("leak")
        return "signal", 1.0

    with pytest.raises(AssertionError, match="leak"):
        nested.nested_cross_validate_heads(candidates, labels, groups, folds, 0, leaky)


def test_nested_picks_the_informative_backbone_and_scores_out_of_fold():
    candidates, labels, groups, folds = _synthetic()
    found = nested.nested_cross_validate_heads(candidates, labels, groups, folds, seed=0)
    assert found["choices"] == ["signal"] * 4
    assert all(c in nested.STRENGTHS for c in found["strengths"])
    accuracy = np.mean((found["probs"] >= 0.5) == labels)
    assert accuracy > 0.9


def test_inner_losses_rank_the_candidates():
    candidates, labels, groups, _ = _synthetic()
    table = nested.inner_losses(candidates, labels, groups, strengths=(1.0,), inner_folds=3)
    losses = table.set_index("backbone")["log_loss"]
    assert losses["signal"] < losses["noise"]


def test_empty_candidates_are_refused():
    _, labels, groups, folds = _synthetic()
    with pytest.raises(ValueError, match="candidates is empty"):
        nested.nested_cross_validate_heads({}, labels, groups, folds)


def _headline(nested_low, nested_high, **extra):
    """Chapter 4's results with a plain cross-validated winner that would hold and a nested
    figure of ``[nested_low, nested_high]``."""
    best = "efficientnet_lite0"
    mask = {"best_model": best, "selected_on": "validation", "cv_folds": 5}
    for prefix, low, high in ((f"{best}_cv_", 0.993, 1.0), ("nested_cv_", nested_low, nested_high)):
        for metric, value in (
            ("accuracy", (low + high) / 2),
            ("precision", 0.995),
            ("recall", 0.999),
        ):
            mask.update({prefix + metric: value, f"{prefix}{metric}_ci_low": min(low, value),
                         f"{prefix}{metric}_ci_high": max(high, value)})  # fmt: skip
    return {"mask_detection": {**mask, **extra}}


def test_transfer_card_judges_the_nested_figure_when_the_headline_is_nested():
    from dlbook.book import claims

    nested_keys = {
        "cv_nested": True,
        "nested_cv_folds": 5,
        "nested_cv_choices": "efficientnet_lite0,vgg16_torchvision",
    }
    plain = claims.judge("transfer_995", _headline(0.95, 0.97))
    judged = claims.judge("transfer_995", _headline(0.95, 0.97, **nested_keys))
    assert plain.verdict == claims.HOLDS and "nested folds would keep them apart" in plain.note
    assert judged.verdict == claims.FAILS
    assert (
        "nested grouped 5-fold" in judged.measured
        and "Chosen per outer fold: EfficientNet-Lite0, VGG16" in judged.note
    )
    assert "nested folds would keep them apart" not in judged.note
