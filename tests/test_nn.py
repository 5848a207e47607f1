"""Tests of the NumPy networks: gradients, shapes, numerical stability, train/inference modes."""

from __future__ import annotations

import numpy as np
import pytest

from dlbook.methods import optim
from dlbook.methods.nn import gradcheck, losses
from dlbook.methods.nn import init as initializers
from dlbook.methods.nn import layers as L
from dlbook.methods.nn.model import (
    Activation,
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    MaxPool2D,
    Sequential,
)


def naive_conv2d(x, W, b, stride, pad):
    """Direct loops over output positions: the definition, for small inputs only."""
    xp = np.pad(x, ((0, 0), pad[0], pad[1], (0, 0)))
    kh, kw, _, c_out = W.shape
    h_out = (xp.shape[1] - kh) // stride + 1
    w_out = (xp.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], h_out, w_out, c_out))
    for i in range(h_out):
        for j in range(w_out):
            patch = xp[:, i * stride : i * stride + kh, j * stride : j * stride + kw, :]
            out[:, i, j, :] = np.tensordot(patch, W, axes=([1, 2, 3], [0, 1, 2])) + b
    return out


# ---------------------------------------------------------------------------------------------
# Gradients


def test_every_layer_loss_and_penalty_passes_the_gradient_check():
    rows = gradcheck.gradient_check_table(seed=3)
    checked = {row["check"] for row in rows}
    for name in ("dense", "maxpool 2x2", "batchnorm (train, conv)", "softmax", "L1 penalty"):
        assert name in checked
    worst = max(rows, key=lambda row: row["max_rel_error"])
    assert worst["max_rel_error"] < 1e-7, worst


def test_gradient_check_detects_a_wrong_gradient():
    rng = np.random.default_rng(0)
    x, params = rng.standard_normal((4, 5)), {"W": rng.standard_normal((5, 3)), "b": np.zeros(3)}

    def wrong_backward(dout, cache):
        dx, grads = L.dense_backward(dout, cache)
        return dx, {"W": grads["W"].T.reshape(5, 3), "b": grads["b"]}  # scrambled dW

    errors = gradcheck.check_layer(L.dense_forward, wrong_backward, x, params, rng)
    assert errors["x"] < 1e-7
    assert errors["W"] > 1e-2


def test_whole_model_gradients_match_finite_differences():
    rng = np.random.default_rng(1)
    model = Sequential(
        [Conv2D(2, 3, stride=2, padding=1), Activation("tanh"), Flatten(), BatchNorm(), Dense(3)],
        l2=0.05,
        dtype=np.float64,
    ).build((5, 5, 2))
    x, y = rng.standard_normal((4, 5, 5, 2)), rng.integers(0, 3, 4)
    assert gradcheck.check_model(model, x, y) < 1e-7


def test_l1_and_l2_penalties_pass_the_whole_model_gradient_check():
    rng = np.random.default_rng(2)
    model = Sequential(
        [Dense(4), Activation("tanh"), Dense(3)], l1=0.03, l2=0.02, dtype=np.float64
    ).build((5,))
    for layer in model.layers:  # keep weights off the kink of |w| at 0
        for key in layer.params:
            layer.params[key] = gradcheck._away_from_zero(layer.params[key], 1e-2)
    x, y = rng.standard_normal((6, 5)), rng.integers(0, 3, 6)
    assert gradcheck.check_model(model, x, y) < 1e-7
    penalised, _ = model.loss_and_grads(x, y)
    model.l1 = model.l2 = 0.0
    plain, _ = model.loss_and_grads(x, y)
    kernels = [layer.params["W"] for layer in model.layers if "W" in layer.params]
    expected = 0.03 * sum(np.abs(w).sum() for w in kernels) + 0.02 * sum(
        (w**2).sum() for w in kernels
    )
    assert penalised - plain == pytest.approx(expected)


def test_inverted_dropout_passes_the_whole_model_gradient_check():
    rng = np.random.default_rng(3)
    model = Sequential(
        [Dense(6), Activation("tanh"), Dropout(0.4), Dense(3)], dtype=np.float64
    ).build((5,))
    x, y = rng.standard_normal((6, 5)), rng.integers(0, 3, 6)
    assert gradcheck.check_model(model, x, y, dropout_seed=7) < 1e-7
    # different masks give a different loss: the check really ran with dropout on
    first = model.loss_and_grads(x, y, rng=np.random.default_rng(7))[0]
    other = model.loss_and_grads(x, y, rng=np.random.default_rng(8))[0]
    assert first != other


# ---------------------------------------------------------------------------------------------
# Convolution and pooling


@pytest.mark.parametrize(
    "size, kernel, stride, padding, expected",
    [
        (7, 3, 1, "valid", 5),
        (7, 3, 1, "same", 7),
        (7, 3, 2, "same", 4),
        (8, 3, 2, "same", 4),
        (8, 3, 2, "valid", 3),
        (7, 5, 2, 2, 4),
        (6, 1, 3, 0, 2),
    ],
)
def test_conv_output_shape_and_values_match_direct_loops(size, kernel, stride, padding, expected):
    rng = np.random.default_rng(size + kernel + stride)
    x = rng.standard_normal((2, size, size + 1, 3))
    params = {"W": rng.standard_normal((kernel, kernel, 3, 4)), "b": rng.standard_normal(4)}
    out, _ = L.conv2d_forward(x, params, stride, padding)
    expected_w = L.conv_padding(size + 1, kernel, stride, padding)[2]
    assert out.shape == (2, expected, expected_w, 4)
    rows = L.conv_padding(size, kernel, stride, padding)[:2]
    cols = L.conv_padding(size + 1, kernel, stride, padding)[:2]
    np.testing.assert_allclose(
        out, naive_conv2d(x, params["W"], params["b"], stride, (rows, cols)), atol=1e-10
    )


def test_same_padding_follows_the_keras_rule():
    # Output ceil(size / stride); the odd pixel of padding goes after.
    assert L.conv_padding(8, 3, 2, "same") == (0, 1, 4)
    assert L.conv_padding(7, 3, 2, "same") == (1, 1, 4)
    assert L.conv_padding(5, 4, 1, "same") == (1, 2, 5)


def test_conv_rejects_a_kernel_larger_than_the_input():
    params = {"W": np.zeros((5, 5, 1, 1)), "b": np.zeros(1)}
    with pytest.raises(ValueError, match="does not fit"):
        L.conv2d_forward(np.zeros((1, 3, 3, 1)), params)


def test_maxpool_takes_window_maxima_and_routes_gradient_to_the_first_maximum():
    x = np.array(
        [[1.0, 3.0, 2.0, 2.0], [0.0, 3.0, 1.0, 0.0], [5.0, 4.0, 0.0, 0.0], [4.0, 5.0, 0.0, 0.0]]
    )
    out, cache = L.maxpool_forward(x[None, :, :, None], 2)
    np.testing.assert_array_equal(out[0, :, :, 0], [[3.0, 2.0], [5.0, 0.0]])
    dx, _ = L.maxpool_backward(np.ones_like(out), cache)
    expected = np.zeros((4, 4))
    expected[0, 1] = expected[0, 2] = expected[2, 0] = expected[2, 2] = 1.0
    np.testing.assert_array_equal(dx[0, :, :, 0], expected)


def test_overlapping_maxpool_matches_direct_loops():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 7, 7, 3))
    out, _ = L.maxpool_forward(x, 3, 2)
    expected = np.array(
        [
            [x[:, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3].max(axis=(1, 2)) for j in range(3)]
            for i in range(3)
        ]
    ).transpose(2, 0, 1, 3)
    np.testing.assert_array_equal(out, expected)


# ---------------------------------------------------------------------------------------------
# Losses and activations


def test_softmax_cross_entropy_is_stable_for_large_logits():
    logits = np.array([[1000.0, 0.0, -1000.0], [-1000.0, 1000.0, 0.0]])
    loss, grad = losses.softmax_cross_entropy(logits, np.array([0, 2]))
    # Example 1 is right with certainty (loss 0), example 2 is off by 1000 nats.
    assert loss == pytest.approx(500.0)
    assert np.isfinite(grad).all()
    np.testing.assert_allclose(grad, [[0, 0, 0], [0, 0.5, -0.5]], atol=1e-12)


def test_binary_cross_entropy_is_stable_for_large_logits():
    loss, grad = losses.binary_cross_entropy(np.array([800.0, -800.0]), np.array([0.0, 0.0]))
    assert loss == pytest.approx(400.0)
    np.testing.assert_allclose(grad, [0.5, 0.0])


def test_softmax_and_sigmoid_do_not_overflow():
    assert np.allclose(L.softmax(np.array([[1e4, 0.0]])), [[1.0, 0.0]])
    np.testing.assert_allclose(L.sigmoid(np.array([-1e4, 0.0, 1e4])), [0.0, 0.5, 1.0])


def test_loss_rejects_labels_out_of_range_and_batch_mismatch():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        losses.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="different batch sizes"):
        losses.mse(np.zeros((2, 3)), np.zeros((3, 3)))


# ---------------------------------------------------------------------------------------------
# Batch-norm and dropout modes


def test_batchnorm_inference_uses_running_statistics_and_leaves_them_unchanged():
    rng = np.random.default_rng(0)
    params = {"gamma": np.array([2.0, 0.5]), "beta": np.array([1.0, -1.0])}
    running = {"mean": np.array([3.0, -2.0]), "var": np.array([4.0, 0.25])}
    x = rng.standard_normal((6, 2)) * 10
    out, _, new_running = L.batchnorm_forward(x, params, running, training=False, eps=0.0)
    np.testing.assert_allclose(
        out, params["gamma"] * (x - running["mean"]) / np.sqrt(running["var"]) + params["beta"]
    )
    assert new_running is running
    # One example alone gives the same output as within the batch: no batch statistics used.
    single, _, _ = L.batchnorm_forward(x[:1], params, running, training=False, eps=0.0)
    np.testing.assert_allclose(single, out[:1])


def test_batchnorm_training_normalises_the_batch_and_moves_running_statistics():
    rng = np.random.default_rng(0)
    x = 5 + 3 * rng.standard_normal((400, 3))
    layer = BatchNorm(momentum=0.9)
    layer.build((3,), rng, np.float64)
    out, _ = layer.forward(x, training=True)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-10)
    np.testing.assert_allclose(out.std(axis=0), 1, atol=1e-3)
    np.testing.assert_allclose(layer.running["mean"], 0.1 * x.mean(axis=0))
    np.testing.assert_allclose(layer.running["var"], 0.9 + 0.1 * x.var(axis=0))


def test_dropout_scales_survivors_at_train_time_and_is_identity_at_inference():
    x = np.ones((200, 100))
    out, _ = L.dropout_forward(x, 0.3, training=True, rng=np.random.default_rng(0))
    kept = out != 0
    assert kept.mean() == pytest.approx(0.7, abs=0.01)
    np.testing.assert_allclose(out[kept], 1 / 0.7)
    assert out.mean() == pytest.approx(1.0, abs=0.02)
    same, cache = L.dropout_forward(x, 0.3, training=False, rng=None)
    assert same is x and cache is None
    dx, _ = L.dropout_backward(np.ones_like(x), _)
    np.testing.assert_array_equal(dx != 0, kept)


# ---------------------------------------------------------------------------------------------
# Shape errors name the layer and the shapes


def test_dense_shape_mismatch_names_the_layer_and_shapes():
    model = Sequential([Dense(4), Dense(2)]).build((5,))
    with pytest.raises(ValueError, match=r"'dense_1'.*5 features.*\(3, 6\)"):
        model.layers[0].forward(np.zeros((3, 6), dtype=np.float32))
    with pytest.raises(
        ValueError, match=r"built for inputs of shape \(N, \*\(5,\)\), got \(3, 6\)"
    ):
        model.predict(np.zeros((3, 6)))


def test_conv_channel_mismatch_names_the_layer_and_shapes():
    params = {"W": np.zeros((3, 3, 3, 4)), "b": np.zeros(4)}
    with pytest.raises(ValueError, match=r"'conv2d_7'.*3 input channels.*\(2, 8, 8, 1\)"):
        L.conv2d_forward(np.zeros((2, 8, 8, 1)), params, name="conv2d_7")
    with pytest.raises(ValueError, match=r"'conv2d'.*4-d input.*\(8, 8\)"):
        L.conv2d_forward(np.zeros((8, 8)), params)


def test_dense_after_conv_without_flatten_is_refused_at_build():
    with pytest.raises(ValueError, match=r"'dense_1'.*Flatten"):
        Sequential([Conv2D(2, 3), Dense(2)]).build((6, 6, 1))


# ---------------------------------------------------------------------------------------------
# Initialisers


@pytest.mark.parametrize(
    "name, shape, variance",
    [
        ("he_normal", (400, 300), 2 / 400),
        ("he_uniform", (400, 300), 2 / 400),
        ("glorot_normal", (400, 300), 2 / 700),
        ("xavier_uniform", (400, 300), 2 / 700),
        ("he_normal", (3, 3, 20, 40), 2 / 180),
        ("glorot_uniform", (3, 3, 20, 40), 2 / (180 + 360)),
        ("normal", (400, 300), 1e-4),
    ],
)
def test_initializer_variance_follows_its_fans(name, shape, variance):
    w = initializers.get(name)(shape, np.random.default_rng(0), np.float64)
    assert w.shape == shape
    assert w.mean() == pytest.approx(0, abs=0.02 * np.sqrt(variance))
    assert w.var() == pytest.approx(variance, rel=0.05)


def test_uniform_initializers_respect_their_limit_and_unknown_names_fail():
    w = initializers.glorot_uniform((30, 70), np.random.default_rng(0))
    assert np.abs(w).max() <= np.sqrt(6 / 100)
    assert initializers.fans((3, 3, 8, 16)) == (72, 144)
    with pytest.raises(ValueError, match="initializer='lecun'"):
        initializers.get("lecun")


# ---------------------------------------------------------------------------------------------
# Sequential


def _blobs(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = np.array([[2.0, 0.0], [-2.0, 2.0], [0.0, -2.5]])
    return centres[y] + 0.5 * rng.standard_normal((n, 2)), y


def test_sequential_learns_separable_classes_and_predicts_like_a_classifier():
    x, y = _blobs()
    model = Sequential(
        [Dense(16, "he_normal"), Activation("relu"), Dropout(0.1), Dense(3)], epochs=30, seed=0
    )
    model.fit(x, y)
    proba = model.predict_proba(x)
    assert proba.shape == (300, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    assert model.predict(x).dtype == np.int64
    assert model.score(x, y) > 0.95
    assert model.history_[-1]["loss"] < model.history_[0]["loss"]


def test_sequential_is_reproducible_for_a_seed():
    x, y = _blobs()

    def fitted(seed):
        return Sequential([Dense(8), Activation("tanh"), Dense(3)], epochs=3, seed=seed).fit(x, y)

    np.testing.assert_array_equal(fitted(4).predict_proba(x), fitted(4).predict_proba(x))
    assert not np.array_equal(fitted(4).predict_proba(x), fitted(5).predict_proba(x))


def test_binary_cross_entropy_model_and_sgd():
    x, y = _blobs()
    y = (y == 0).astype(np.int64)
    model = Sequential(
        [Dense(8), Activation("relu"), Dense(1)],
        loss="binary_cross_entropy",
        optimizer="sgd",
        learning_rate=0.05,
        epochs=20,
    ).fit(x, y)
    assert model.predict_proba(x).shape == (300, 2)
    assert model.score(x, y) > 0.95


def test_small_cnn_trains_on_images():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    x = rng.standard_normal((200, 8, 8, 1)) * 0.3
    x[y == 1, 2:6, 3:5, 0] += 1.5  # a vertical bar marks class 1
    model = Sequential(
        [
            Conv2D(4, 3, padding="same", initializer="he_normal"),
            Activation("relu"),
            MaxPool2D(2),
            Flatten(),
            Dense(2),
        ],
        epochs=10,
        learning_rate=3e-3,
    ).fit(x, y)
    assert model.score(x, y) > 0.95


def test_sequential_validates_its_arguments():
    with pytest.raises(ValueError, match="loss='mse'"):
        Sequential([Dense(1)], loss="mse")
    with pytest.raises(ValueError, match="optimizer='lion'"):
        Sequential([Dense(1)], optimizer="lion")
    with pytest.raises(ValueError, match="l1=-0.1"):
        Sequential([Dense(1)], l1=-0.1)
    with pytest.raises(ValueError, match="x has 3 rows but y has 2"):
        Sequential([Dense(2)]).fit(np.zeros((3, 2)), np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match="needs an rng"):
        Dropout(0.5).forward(np.zeros((2, 2)), training=True)


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_sequential_fit_trains_through_optim_step_for_step(name):
    """``fit`` with an optimiser name is ``optim.make_optimizer(name, lr).step`` on the layers'
    parameters, mini-batch after mini-batch (float64, so the match is exact)."""
    x, y = _blobs(n=40)

    def net():
        return Sequential([Dense(5), Activation("tanh"), BatchNorm(), Dropout(0.2), Dense(3)],
                          optimizer=name, learning_rate=0.03, batch_size=16, epochs=3, seed=2,
                          dtype=np.float64)  # fmt: skip

    fitted = net().fit(x, y)
    by_hand = net().build(x.shape[1:])
    optimizer, rng = optim.make_optimizer(name, 0.03), np.random.default_rng(2 + 1)
    for _ in range(3):
        order = rng.permutation(len(x))
        for begin in range(0, len(x), 16):
            batch = order[begin : begin + 16]
            _, grads = by_hand.loss_and_grads(x[batch], y[batch], rng=rng)
            params = [p for layer in by_hand.layers for p in layer.params.values()]
            optimizer.step(
                params, [g[k] for layer, g in zip(by_hand.layers, grads) for k in layer.params]
            )
    assert optimizer.iterations == 9
    for (_, _, a), (_, _, b) in zip(fitted.parameters(), by_hand.parameters(), strict=True):
        np.testing.assert_array_equal(a, b)
    start = net().build(x.shape[1:])
    moved = max(
        np.abs(a - b).max() for (_, _, a), (_, _, b) in zip(fitted.parameters(), start.parameters())
    )
    assert moved > 1e-3


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_sequential_fit_equals_keras_training_with_the_same_optimiser(name):
    """Full-batch training of a small dense net: NumPy ``fit`` against Keras's ``train_on_batch``
    with ``optim.make_keras_optimizer``, from the same weights, in float64."""
    import keras

    x, y = _blobs(n=32)
    model = Sequential([Dense(4), Activation("tanh"), Dense(3)], optimizer=name,
                       learning_rate=0.05, batch_size=32, epochs=6, dtype=np.float64).build((2,))  # fmt: skip
    start = [p.copy() for _, _, p in model.parameters()]
    model.fit(x, y)
    inputs = keras.Input((2,), dtype="float64")
    hidden = keras.layers.Dense(4, activation="tanh", dtype="float64")(inputs)
    k_model = keras.Model(inputs, keras.layers.Dense(3, dtype="float64")(hidden))
    k_model.set_weights(start)
    k_model.compile(optimizer=optim.make_keras_optimizer(name, float(np.float32(0.05))),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))  # fmt: skip
    for _ in range(6):
        k_model.train_on_batch(x, y)
    for (_, _, ours), theirs in zip(model.parameters(), k_model.get_weights(), strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_sequential_accepts_an_optimizer_instance_and_resets_it():
    x, y = _blobs(n=60)
    given = optim.RMSprop(0.01)
    by_instance = Sequential([Dense(3)], optimizer=given, epochs=2, dtype=np.float64).fit(x, y)
    by_name = Sequential([Dense(3)], optimizer="rmsprop", learning_rate=0.01, epochs=2,
                         dtype=np.float64).fit(x, y)  # fmt: skip
    for (_, _, a), (_, _, b) in zip(by_instance.parameters(), by_name.parameters(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert given.iterations == 0  # the instance itself is left untouched


@pytest.mark.parametrize(
    "shape, pool_size, stride",
    [((2, 7, 7, 2), 2, 2), ((2, 7, 8, 2), 3, 3), ((2, 9, 9, 1), 2, 3), ((1, 6, 6, 2), 3, 1)],
)
def test_maxpool_gradient_with_leftover_rows_gaps_and_overlaps(shape, pool_size, stride):
    rng = np.random.default_rng(0)
    errors = gradcheck.check_layer(
        lambda x, _p: L.maxpool_forward(x, pool_size, stride),
        L.maxpool_backward,
        rng.standard_normal(shape),
        {},
        rng,
    )
    assert errors["x"] < 1e-7
