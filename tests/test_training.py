"""The fit helper: it learns, it is reproducible, and it runs unchanged under a distribution strategy."""

from __future__ import annotations

import functools

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from dlbook.methods import models, training  # noqa: E402


def _bright_vs_dark(n=64, size=12, seed=0):
    """Two classes a linear model separates: dark images (label 0) and bright ones (label 1)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    base = np.where(labels[:, None, None, None] == 1, 170, 80)
    images = np.clip(base + rng.normal(0, 30, size=(n, size, size, 3)), 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64)


def _small_cnn(size=12):
    return models.build_cnn((size, size, 3), 2, filters=(4,), dense_units=0, dropout=0.0)


def test_fit_learns_an_easy_task_and_reports_history_and_timings():
    x, y = _bright_vs_dark()
    result = training.fit(
        _small_cnn,
        x,
        y,
        validation_data=(x, y),
        epochs=8,
        batch_size=16,
        learning_rate=0.02,
        seed=0,
    )
    assert set(result.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(result.history["loss"]) == 8
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert training.accuracy(result.model, x, y) >= 0.9
    assert len(result.timings["epoch_s"]) == 8
    assert result.timings["train_s"] >= sum(result.timings["epoch_s"]) * 0.99
    assert result.timings["images_per_s"] == pytest.approx(64 * 8 / result.timings["train_s"])
    assert result.strategy == "_DefaultDistributionStrategy"
    assert result.replicas == 1


def test_fit_is_reproducible_for_a_seed_and_differs_across_seeds():
    x, y = _bright_vs_dark()
    model_fn = functools.partial(models.build, "resnet", (12, 12, 3), 2, stage_filters=(4,))
    runs = [
        training.fit(model_fn, x, y, epochs=2, batch_size=16, seed=s, use_cache=False)
        for s in (5, 5, 6)
    ]
    for a, b in zip(runs[0].model.get_weights(), runs[1].model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert runs[0].history["loss"] == pytest.approx(runs[1].history["loss"], rel=1e-5)
    assert not np.allclose(runs[0].model.get_weights()[0], runs[2].model.get_weights()[0])


def test_several_steps_per_call_train_exactly_like_one(monkeypatch):
    # 40 images at batch 8: 5 steps an epoch, so a call of 8 steps also covers a partial chunk.
    x, y = _bright_vs_dark(n=40)
    model_fn = functools.partial(
        models.build, "cnn", (12, 12, 3), 2, filters=(4,), augmentation=True, seed=3
    )
    runs = {}
    for steps in (1, training.STEPS_PER_EXECUTION):
        monkeypatch.setattr(training, "STEPS_PER_EXECUTION", steps)
        runs[steps] = training.fit(
            model_fn, x, y, validation_data=(x, y), epochs=3, batch_size=8, seed=3,
            use_cache=False,
        )  # fmt: skip
    assert max(runs) > 1
    one, many = runs[1], runs[max(runs)]
    for a, b in zip(one.model.get_weights(), many.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert one.history == many.history


def test_the_same_call_runs_under_an_explicit_strategy():
    x, y = _bright_vs_dark(n=32)
    default = training.fit(_small_cnn, x, y, epochs=2, batch_size=8, seed=1)
    mirrored = training.fit(
        _small_cnn,
        x,
        y,
        epochs=2,
        batch_size=8,
        seed=1,
        strategy=tf.distribute.MirroredStrategy(["/cpu:0"]),
    )
    assert mirrored.strategy == "MirroredStrategy"
    assert mirrored.replicas == 1
    # the model's variables were created under the strategy, mirrored across its devices
    assert isinstance(mirrored.model.trainable_weights[0].value, tf.distribute.DistributedValues)
    assert not isinstance(default.model.trainable_weights[0].value, tf.distribute.DistributedValues)
    # Same seed, same data, same steps: the same model up to the order of float reductions.
    assert mirrored.history["loss"] == pytest.approx(default.history["loss"], rel=0.02)
    for a, b in zip(default.model.get_weights(), mirrored.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=0.02)


def test_a_sigmoid_model_trains_with_binary_loss():
    x, y = _bright_vs_dark()
    model_fn = functools.partial(
        models.build, "ann", (12, 12, 3), 1, hidden_units=(16,), dropout=0.0
    )
    result = training.fit(model_fn, x, y, epochs=20, batch_size=16, learning_rate=0.01, seed=0)
    probs = training.predict_proba(result.model, x)
    assert probs.shape == (64, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert training.accuracy(result.model, x, y) >= 0.9
    # a one-unit sigmoid scores its two classes, as predict_proba does
    assert training.accuracy(result.model, x, y) == np.mean(probs.argmax(axis=1) == y)


def test_fit_validates_its_arguments():
    x, y = _bright_vs_dark(n=8)
    with pytest.raises(ValueError, match=r"labels have shape \(7,\)"):
        training.fit(_small_cnn, x, y[:7])
    with pytest.raises(ValueError, match="dtype float"):
        training.fit(_small_cnn, x, y.astype(float))
    with pytest.raises(ValueError, match="epochs=0"):
        training.fit(_small_cnn, x, y, epochs=0)
    with pytest.raises(ValueError, match="optimizer='lion'"):
        training.fit(_small_cnn, x, y, optimizer="lion")
    with pytest.raises(ValueError, match="strategy='mirrored'"):
        training.fit(_small_cnn, x, y, strategy="mirrored")
    with pytest.raises(ValueError, match="expected a keras.Model"):
        training.fit(lambda: "not a model", x, y)


def test_cosine_schedule_decays_the_learning_rate_to_zero_over_the_run():
    x, y = _bright_vs_dark(n=32)
    result = training.fit(
        _small_cnn, x, y, epochs=2, batch_size=8, learning_rate=0.05, lr_schedule="cosine"
    )
    assert int(result.model.optimizer.iterations) == 8
    # after the last of the 8 steps the rate has reached 0
    assert float(result.model.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="lr_schedule='step'"):
        training.fit(_small_cnn, x, y, lr_schedule="step")


def test_an_identical_run_comes_from_the_cache_with_its_history_and_state():
    import keras

    x, y = _bright_vs_dark()

    def run(**changes):
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=1)
        options = dict(validation_data=(x, y), epochs=6, batch_size=16, learning_rate=0.02)
        options.update(changes)
        return training.fit(_small_cnn, x, y, seed=0, callbacks=[stop], **options), stop

    (first, stop1), (second, stop2) = run(), run()
    assert "cached" not in first.timings and second.timings["cached"] is True
    assert second.history == first.history and second.timings["train_s"] == first.timings["train_s"]
    assert stop2.stopped_epoch == stop1.stopped_epoch
    for a, b in zip(first.model.get_weights(), second.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        training.predict_proba(first.model, x), training.predict_proba(second.model, x)
    )
    # any change to data, options or seed is a new run
    assert "cached" not in run(learning_rate=0.01)[0].timings
    changed = x.copy()
    changed[0, 0, 0, 0] ^= 1
    assert "cached" not in training.fit(_small_cnn, changed, y, epochs=1, seed=0).timings


def test_a_run_that_lowers_its_rate_on_a_plateau_is_cached_under_its_settings():
    import keras

    x, y = _bright_vs_dark()

    def run(factor=0.5):
        slow_down = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=factor,
                                                      patience=1)  # fmt: skip
        return training.fit(_small_cnn, x, y, validation_data=(x, y), epochs=3, batch_size=16,
                            seed=0, callbacks=[slow_down])  # fmt: skip

    first, second = run(), run()
    assert "cached" not in first.timings and second.timings["cached"] is True
    assert second.history == first.history
    assert "cached" not in run(factor=0.2).timings  # another factor is another run


def test_the_input_pipeline_does_not_autotune_and_keeps_the_seeded_order():
    x, y = _bright_vs_dark(n=40)
    dataset = training.make_dataset(x, y, batch_size=8, shuffle=True, seed=5)
    assert dataset.options().autotune.enabled is False  # autotuning stalled one-thread runs
    first = [b.numpy() for _, b in dataset]
    again = [b.numpy() for _, b in training.make_dataset(x, y, batch_size=8, shuffle=True, seed=5)]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert sorted(np.concatenate(first).tolist()) == sorted(y.tolist())  # every image, once
