"""The NumPy optimisers, schedules and clipping against Keras and against their definitions."""

from __future__ import annotations

import numpy as np
import pytest

from dlbook.methods import optim

SHAPES = [(3, 4), (4,), (2, 2, 3)]


def gradient_sequence(steps: int, seed: int = 0) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [[rng.normal(size=s) * (1 + 0.5 * np.sin(t)) for s in SHAPES] for t in range(steps)]


def initial_params(seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s) for s in SHAPES]


# Keras keeps the learning rate in a float32 variable, so the comparison uses a rate that float32
# holds exactly; everything else runs in float64 on both sides.
LR = float(np.float32(0.05))


def run_keras(name, lr, grads_seq, params, **clipping):
    import keras

    variables = [keras.Variable(p.copy(), dtype="float64") for p in params]
    optimizer = optim.make_keras_optimizer(name, lr, **clipping)
    for grads in grads_seq:
        optimizer.apply_gradients(zip([keras.ops.convert_to_tensor(g) for g in grads], variables))
    return [np.asarray(v.numpy()) for v in variables]


@pytest.mark.parametrize("name", list(optim.OPTIMIZERS))
def test_optimizer_matches_keras_over_60_steps(name):
    grads_seq, params = gradient_sequence(60), initial_params()
    expected = run_keras(name, LR, grads_seq, params)
    ours = [p.copy() for p in params]
    optimizer = optim.make_optimizer(name, LR)
    for grads in grads_seq:
        optimizer.step(ours, grads)
    diff = max(np.abs(a - b).max() for a, b in zip(ours, expected, strict=True))
    moved = max(np.abs(a - b).max() for a, b in zip(ours, params, strict=True))
    assert diff < 1e-6
    assert moved > 0.1  # the comparison is not between two untouched copies


@pytest.mark.parametrize(
    ("keyword", "clipper", "threshold"),
    [
        ("clipvalue", optim.clip_by_value, 0.5),
        ("clipnorm", optim.clip_by_norm, 1.0),
        ("global_clipnorm", optim.clip_by_global_norm, 1.5),
    ],
)
def test_clipping_matches_keras(keyword, clipper, threshold):
    grads_seq, params = gradient_sequence(20, seed=3), initial_params()
    expected = run_keras("sgd", LR, grads_seq, params, **{keyword: threshold})
    ours = [p.copy() for p in params]
    optimizer = optim.SGD(LR)
    for grads in grads_seq:
        optimizer.step(ours, clipper(grads, threshold))
    assert max(np.abs(a - b).max() for a, b in zip(ours, expected, strict=True)) < 1e-9


def test_clipping_definitions():
    grads = [np.array([3.0, 4.0]), np.array([0.0, 12.0])]
    by_norm = optim.clip_by_norm(grads, 5.0)
    np.testing.assert_allclose(by_norm[0], [3.0, 4.0])  # norm 5: untouched
    np.testing.assert_allclose(by_norm[1], [0.0, 5.0])
    by_global = optim.clip_by_global_norm(grads, 6.5)  # global norm 13
    np.testing.assert_allclose(by_global[0], [1.5, 2.0])
    assert optim.global_norm(by_global) == pytest.approx(6.5)
    np.testing.assert_allclose(optim.clip_by_value(grads, 3.5)[1], [0.0, 3.5])


def test_adamw_decay_is_decoupled_from_adam_with_l2():
    """Adam on loss + wd/2 |p|^2 rescales the decay per coordinate; AdamW does not."""
    wd, lr = 0.1, 0.01
    grads_seq, params = gradient_sequence(30, seed=4), initial_params()
    decoupled = [p.copy() for p in params]
    coupled = [p.copy() for p in params]
    adamw, adam = optim.AdamW(lr, weight_decay=wd), optim.Adam(lr)
    for grads in grads_seq:
        adamw.step(decoupled, grads)
        adam.step(coupled, [g + wd * p for g, p in zip(grads, coupled, strict=True)])
    gap = max(np.abs(a - b).max() for a, b in zip(decoupled, coupled, strict=True))
    assert gap > 1e-3
    # With zero gradient, AdamW shrinks every weight by exactly (1 - lr * wd) per step.
    zero = [np.zeros_like(p) for p in params]
    shrunk = [p.copy() for p in params]
    decay_only = optim.AdamW(lr, weight_decay=wd)
    for _ in range(5):
        decay_only.step(shrunk, zero)
    np.testing.assert_allclose(shrunk[0], params[0] * (1 - lr * wd) ** 5, rtol=1e-12)


def test_schedules_at_known_steps():
    np.testing.assert_allclose(optim.step_decay([0, 9, 10, 25], 1.0, 10, 0.5), [1, 1, 0.5, 0.25])
    np.testing.assert_allclose(
        optim.exponential_decay([0, 50, 100], 0.1, 100, 0.5), [0.1, 0.1 / np.sqrt(2), 0.05]
    )
    np.testing.assert_allclose(
        optim.cosine_decay([0, 50, 100, 150], 1.0, 100), [1, 0.5, 0, 0], atol=1e-12
    )
    warm = optim.warmup_cosine([0, 5, 10, 55, 100], 1.0, 10, 100)
    np.testing.assert_allclose(warm, [0, 0.5, 1.0, 0.5, 0.0], atol=1e-12)
    cycle = optim.one_cycle(np.arange(101), 1.0, 101, pct_start=0.3)
    assert cycle[0] == pytest.approx(1 / 25)
    assert cycle.argmax() == 30 and cycle.max() == pytest.approx(1.0)
    assert cycle[-1] == pytest.approx(1 / 25 / 1e4)


def test_schedules_match_keras():
    import keras

    steps = np.array([0, 7, 33, 64, 99])
    exp = keras.optimizers.schedules.ExponentialDecay(0.2, 40, 0.3)
    cos = keras.optimizers.schedules.CosineDecay(0.2, 80, alpha=0.1)
    for step, ours_exp, ours_cos in zip(
        steps,
        optim.exponential_decay(steps, 0.2, 40, 0.3),
        optim.cosine_decay(steps, 0.2, 80, alpha=0.1),
        strict=True,
    ):
        assert float(exp(step)) == pytest.approx(ours_exp, rel=1e-5)
        assert float(cos(step)) == pytest.approx(ours_cos, rel=1e-5)


def test_reduce_on_plateau_halves_after_patience():
    plateau = optim.ReduceOnPlateau(1.0, factor=0.5, patience=2)
    lrs = [plateau.update(loss) for loss in [1.0, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8]]
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]


@pytest.mark.parametrize(
    ("factory", "argument"),
    [
        (lambda: optim.SGD(-0.1), "learning_rate"),
        (lambda: optim.SGD(0.1, momentum=1.0), "momentum"),
        (lambda: optim.Adam(0.1, beta_1=1.0), "beta_1"),
        (lambda: optim.Adam(0.1, beta_2=-0.1), "beta_2"),
        (lambda: optim.RMSprop(0.1, rho=1.5), "rho"),
        (lambda: optim.AdamW(0.1, weight_decay=-1), "weight_decay"),
        (lambda: optim.clip_by_norm([np.ones(2)], 0.0), "clip_norm"),
        (lambda: optim.make_optimizer("lion", 0.1), "name"),
    ],
)
def test_invalid_hyperparameters_raise_naming_the_argument(factory, argument):
    with pytest.raises(ValueError, match=argument):
        factory()


def test_mismatched_gradients_raise():
    with pytest.raises(ValueError, match="shape"):
        optim.SGD(0.1).step([np.zeros(3)], [np.zeros(4)])


def test_descend_reaches_the_valley_minimum():
    _, grad, start, minimum = optim.TEST_FUNCTIONS["narrow_valley"]
    path = optim.descend(optim.make_optimizer("momentum", 0.02), grad, start, 300)
    assert path.shape == (301, 2)
    np.testing.assert_allclose(path[-1], minimum, atol=1e-3)
