"""Federated learning across image sources: clients, the scene client's photos, the top trained
on cached maps, and the verdict on synthetic values."""

from pathlib import Path

import numpy as np
import pytest

from dlbook.book import claims
from dlbook.experiments import future_work_sources as fs
from dlbook.facemask.data import scene_split, voc
from dlbook.methods import federated_top as top


def _source(name: str, parts: list[str], seed: int) -> fs.Source:
    rng = np.random.default_rng(seed)
    n = len(parts)
    return fs.Source(name, rng.integers(0, 255, (n, 8, 8, 3), np.uint8),
                     rng.integers(0, 2, n), np.array(parts), np.array([f"{name}/{k}" for k in range(n)]))  # fmt: skip


def test_clients_by_source_are_disjoint_and_cover_every_crop():
    sources = [
        _source("face_mask", ["train"] * 5 + ["test"] * 2, 0),
        _source("scenes", ["test", "train", "train", "test"], 1),
        _source("maskedfacenet", ["train"] * 3, 2),
    ]
    where = fs.assign_clients(sources)
    origin = np.concatenate([s.origin for s in sources])
    assert len(where["client"]) == len(origin) == len(set(origin)) == 14
    for k, source in enumerate(sources):
        mine = where["client"] == k
        # exactly this source's crops, each in the part the source gave it
        assert set(origin[mine]) == set(source.origin)
        np.testing.assert_array_equal(where["part"][mine], source.part)
    with pytest.raises(ValueError, match="'scenes' has parts \\['val'\\]"):
        fs.assign_clients([_source("scenes", ["train", "val"], 3)])


def _photo(stem: str) -> voc.Photo:
    return voc.Photo(stem, Path(f"/nowhere/{stem}.jpg"), 100, 100,
                     np.array([[10.0, 10.0, 40.0, 40.0]]), np.array([0]))  # fmt: skip


def test_scene_client_tests_on_validation_photos_never_the_test_photos(tmp_path):
    photos = [_photo(f"p{k}") for k in range(30)]
    parts = np.array(["train", "val", "test"] * 10)
    path = scene_split.write_split(photos, parts, np.arange(30), tmp_path / "split.csv")
    for limits in (None, {"train": 4, "test": 3}):
        chosen = fs.scene_client_photos(photos, path, limits, seed=5)
        train = {p.stem for p in chosen["train"]}
        test = {p.stem for p in chosen["test"]}
        planted_test = {p.stem for p, part in zip(photos, parts, strict=True) if part == "test"}
        val = {p.stem for p, part in zip(photos, parts, strict=True) if part == "val"}
        assert test <= val and train.isdisjoint(val)
        assert not (train | test) & planted_test
        assert len(test) == (3 if limits else 10) and len(train) == (4 if limits else 10)


def test_top_on_cached_maps_equals_the_whole_network():
    from dlbook.methods import backbones

    backbone = backbones.load("efficientnet_lite0")
    images = np.random.default_rng(0).integers(0, 255, (3, 96, 96, 3)).astype(np.uint8)
    whole = np.asarray(backbone.predict_on_batch(images.astype(np.float32)))
    maps = fs.head_maps("efficientnet_lite0", images)
    assert maps.shape == (3, 3, 3, 320) and maps.dtype == np.float16
    params = top.init_top(top.backbone_top(backbone), 2, np.random.default_rng(0))
    pooled = top.pooled_features(params, maps)
    assert whole.shape == pooled.shape == (3, 1280)
    # float16 maps: the pooled features agree to about a thousandth of their scale
    np.testing.assert_allclose(pooled, whole, atol=2e-3 * np.abs(whole).max())
    exact = np.asarray(top.cut_before_head(backbone).predict_on_batch(images.astype(np.float32)))
    np.testing.assert_allclose(top.pooled_features(params, exact), whole, rtol=1e-4, atol=1e-4)


def test_top_gradients_match_finite_differences():
    rng = np.random.default_rng(1)
    conv = (rng.normal(0, 0.5, (4, 5)).astype(np.float32), rng.normal(1, 1, 5).astype(np.float32))
    params = [p.astype(np.float64) for p in top.init_top(conv, 3, rng)]
    params[3] = rng.normal(0, 0.1, 3)
    maps, labels = rng.normal(0, 2, (6, 2, 2, 4)), rng.integers(0, 3, 6)

    def loss(p):
        logits = top.pooled_features(p, maps) @ p[2] + p[3]
        logits = logits - logits.max(1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        return -log_probs[np.arange(6), labels].mean() + 0.05 / 2 * (p[2] ** 2).sum()

    grads = top.top_gradients(params, maps, labels, l2=0.05)
    for index in range(4):
        flat = params[index].ravel()
        for j in range(0, flat.size, 3):
            step = [p.copy() for p in params]
            step[index].ravel()[j] += 1e-6
            back = [p.copy() for p in params]
            back[index].ravel()[j] -= 1e-6
            numeric = (loss(step) - loss(back)) / 2e-6
            assert grads[index].ravel()[j] == pytest.approx(numeric, abs=1e-6, rel=1e-4)


def test_train_top_learns_and_the_proximal_term_holds_it_near_the_start():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 200)
    maps = rng.normal(0, 1, (200, 2, 2, 6)) + labels[:, None, None, None] * np.linspace(-1, 1, 6)
    conv = (np.eye(6, 8, dtype=np.float32), np.ones(8, np.float32))
    start = top.init_top(conv, 2, np.random.default_rng(0))
    free = top.train_top(start, maps, labels, 5, 0.05, 16, np.random.default_rng(1))
    held = top.train_top(start, maps, labels, 5, 0.05, 16, np.random.default_rng(1), proximal_mu=5)
    assert top.top_accuracy(free, maps, labels) > 0.85 > top.top_accuracy(start, maps, labels)

    def moved(p):
        return sum(float(((a - b) ** 2).sum()) for a, b in zip(p, start, strict=True))

    assert moved(held) < 0.5 * moved(free)


def _judged(**changes):
    future = {
        "fl_src_sources": "face_mask,scenes,maskedfacenet",
        "fl_src_seeds": 10,
        "fl_src_worst_fedavg": 0.9,
        "fl_src_worst_central": 0.91,
        "fl_src_worst_alone": 0.8,
        "fl_src_gap_mean_points": 0.2,
        "fl_src_gap_mean_points_ci_low": -0.3,
        "fl_src_gap_mean_points_ci_high": 0.7,
        "fl_src_gap_worst_points": 0.4,
        "fl_src_gap_worst_points_ci_low": -0.2,
        "fl_src_gap_worst_points_ci_high": 0.9,
        "central_accuracy": 0.97,
        "fedavg_accuracy_iid": 0.968,
    }
    future.update(changes)
    return claims.judge("federated_learning", {"future_work": future})


def test_federated_verdict_on_sources_follows_the_rule_table():
    holds = _judged()
    assert holds.verdict == claims.HOLDS and holds.adequate
    assert "worst client" in holds.read and "Method check, not evidence" in holds.note
    # central ahead by more than the 1-point margin on the worst client, with the whole interval
    fails = _judged(fl_src_gap_worst_points=2.0, fl_src_gap_worst_points_ci_low=1.2,
                    fl_src_gap_worst_points_ci_high=2.8)  # fmt: skip
    assert fails.verdict == claims.FAILS
    straddles = _judged(fl_src_gap_mean_points_ci_high=1.5)
    assert straddles.verdict == claims.INCONCLUSIVE
    few = _judged(fl_src_seeds=2)
    assert few.verdict == claims.UNTESTED and "2 training seeds, fewer than 10" in few.note
    assert "At this budget the rule would read “holds”" in few.note


def test_federated_verdict_without_source_runs_keeps_the_old_reading():
    old = {
        "future_work": {"central_accuracy": 0.97, "fedavg_accuracy_iid": 0.965, "fl_clients": 10}
    }
    verdict = claims.judge("federated_learning", old)
    assert verdict.verdict == claims.UNTESTED and "image source or camera" in verdict.note
    assert claims.judge("federated_learning", {}).verdict == claims.NOT_MEASURED
    rows = {row["id"]: row for row in claims.evaluate({"future_work": old["future_work"]})}
    assert rows["federated_learning"]["evidence"] == "training seeds, at least 10"


def test_source_keys_take_the_worst_client_per_seed_and_central_minus_fedavg():
    scores = {
        "central": np.array([[0.9, 0.8], [0.95, 0.7]]),
        "fedavg": np.array([[0.9, 0.6], [0.85, 0.75]]),
    }
    values = fs.source_keys(["a", "b"], scores)
    # worst client per seed: central 0.8 and 0.7, FedAvg 0.6 and 0.75
    assert values["fl_src_worst_central"] == pytest.approx(0.75)
    assert values["fl_src_worst_fedavg"] == pytest.approx(0.675)
    assert values["fl_src_gap_worst_points"] == pytest.approx(100 * (0.75 - 0.675))
    assert values["fl_src_gap_mean_points"] == pytest.approx(100 * (0.8375 - 0.775))
    assert values["fl_src_acc_fedavg_b"] == pytest.approx(0.675)
    # an accuracy's interval stays within [0, 1]; a gap's does not have to
    assert 0 <= values["fl_src_acc_fedavg_b_ci_low"] and values["fl_src_acc_fedavg_b_ci_high"] <= 1
    assert values["fl_src_gap_worst_points_ci_low"] < 0


def test_story_sources_quotes_the_worst_client_the_gap_and_the_verdict():
    seeds = np.linspace(0, 0.01, 10)[:, None]
    scores = {
        "alone": np.array([[0.98, 0.94, 0.99]]) + seeds,
        "central": np.array([[0.97, 0.95, 0.97]]) + seeds,
        "fedavg": np.array([[0.97, 0.96, 0.96]]) + seeds,
    }
    values = fs.source_keys(["face_mask", "scenes", "maskedfacenet"], scores)
    for name in ("face_mask", "scenes", "maskedfacenet"):
        values[f"fl_src_train_{name}_with_mask"] = 100
        values[f"fl_src_train_{name}_without_mask"] = 0 if name == "maskedfacenet" else 50
    values.update({"fl_src_sources": "face_mask,scenes,maskedfacenet", "fl_src_seeds": 10,
                   "fl_src_rounds": 5, "fl_src_local_epochs": 1, "fl_src_top_weights": 413442,
                   "fl_src_bytes_per_round": 9.9e6})  # fmt: skip
    text = fs.story_sources(values)
    assert "face-mask crops 150, crowd-photo faces 150, MaskedFace-Net 100 training crops" in text
    # worst client per seed: FedAvg 0.96 (+ seed), central 0.95, alone 0.94
    assert "FedAvg's worst client scores 96.5%" in text and "94.5% for the worst client" in text
    assert "moves the crowd-photo faces client from 94.5% alone to 96.5%" in text
    assert "and the MaskedFace-Net client from 99.5% to 96.5%" in text
    assert "holds here" in text
