import numpy as np
import pytest

from dlbook.methods import federated as fl


def _blobs(n, d=16, shift=1.0, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, d)).astype(np.float32) + shift * (2 * y[:, None] - 1)
    return x, y


def test_train_head_learns_and_full_batch_ignores_the_rng():
    x, y = _blobs(200)
    x = fl.normalise_features(x)
    start = fl.init_head(x.shape[1])
    a = fl.train_head(start, x, y, 20, 0.1, 1000, np.random.default_rng(0))
    b = fl.train_head(start, x, y, 20, 0.1, 1000, np.random.default_rng(99))
    assert fl.head_accuracy(a, x, y) > 0.9 and fl.head_accuracy(start, x, y) < 0.6
    np.testing.assert_array_equal(a[0], b[0])
    assert not start[0].any()  # the input is not modified


def test_proximal_term_keeps_weights_near_the_start():
    x, y = _blobs(200)
    x = fl.normalise_features(x)
    start = fl.init_head(x.shape[1])
    free = fl.train_head(start, x, y, 20, 0.1, 1000, np.random.default_rng(0))
    held = fl.train_head(start, x, y, 20, 0.1, 1000, np.random.default_rng(0), proximal_mu=5.0)
    assert np.linalg.norm(held[0]) < 0.5 * np.linalg.norm(free[0])


def test_iid_partition_gives_equal_sizes_and_every_example_one_owner():
    owner = fl.iid_partition(103, 10, np.random.default_rng(0))
    sizes = np.bincount(owner)
    assert len(sizes) == 10 and sizes.max() - sizes.min() <= 1 and sizes.sum() == 103


def test_dirichlet_partition_has_the_requested_sizes_and_skew():
    labels = np.repeat([0, 1], [600, 400])
    shares = fl.size_shares(10, 0.5, np.random.default_rng(3))
    expected = fl.client_sizes(1000, shares, 20)
    owner = fl.dirichlet_partition(labels, 10, 0.1, np.random.default_rng(3), 0.5, 20)
    np.testing.assert_array_equal(np.bincount(owner, minlength=10), expected)
    assert expected.min() >= 20 and expected.max() > 1.5 * expected.min()  # unequal sizes
    skews = {
        a: np.mean(
            [fl.label_skew(fl.dirichlet_partition(labels, 10, a, np.random.default_rng(s)), labels, 10)
             for s in range(5)]
        )
        for a in (0.1, 1.0, 1000.0)
    }  # fmt: skip
    assert skews[0.1] > skews[1.0] > skews[1000.0]
    assert skews[0.1] > 0.3 and skews[1000.0] < 0.05


def test_gaussian_epsilon_falls_with_noise_and_grows_with_rounds():
    assert fl.gaussian_epsilon(1.0, 10, 1e-5) > fl.gaussian_epsilon(2.0, 10, 1e-5)
    assert fl.gaussian_epsilon(1.0, 20, 1e-5) > fl.gaussian_epsilon(1.0, 10, 1e-5)
    # one release at z = 1: the RDP bound at its best order is about 5.3 for delta = 1e-5
    assert fl.gaussian_epsilon(1.0, 1, 1e-5) == pytest.approx(5.3, abs=0.2)
    assert fl.gaussian_epsilon(0.0, 1, 1e-5) == float("inf")


def test_flower_simulation_learns_and_fedavg_of_identical_clients_equals_central(tmp_path):
    block_x, block_y = _blobs(40, seed=1)
    clients, rounds, epochs = 10, 3, 2
    x = np.tile(block_x, (clients, 1))
    y = np.tile(block_y, clients)
    owners = {"same": np.repeat(np.arange(clients), len(block_y))}
    test_x, test_y = _blobs(300, seed=2)
    test_x = fl.normalise_features(test_x)
    path = fl.write_federation(tmp_path / "fed.npz", x, y, owners)
    runs = [fl.Experiment("fedavg", "same"), fl.Experiment("fedprox", "same", "fedprox", 0.1)]
    histories = fl.simulate(
        runs, path, {"test": (test_x, test_y)}, clients, rounds, epochs, 0.2, 1000, num_cpus=2
    )
    fedavg = histories[0]
    assert fedavg.rounds == list(range(rounds + 1))
    assert fedavg.test_accuracy[-1] > fedavg.test_accuracy[0] + 0.2
    payload = 2 * clients * sum(a.nbytes for a in fl.init_head(16))  # to and from every client
    assert payload <= fedavg.bytes_per_round[0] <= payload + 2 * clients * 2 * 256  # + npy headers
    central = fl.train_head(
        fl.init_head(16), fl.normalise_features(x), y, rounds * epochs, 0.2, 10_000,
        np.random.default_rng(0),
    )  # fmt: skip
    for mine, theirs in zip(fedavg.arrays, central, strict=True):
        np.testing.assert_allclose(mine, theirs, atol=1e-5)


def test_train_head_takes_plain_sgd_steps_with_the_proximal_pull():
    x, y = _blobs(30, d=4)
    start = [np.full((4, 2), 0.1, np.float32), np.array([0.2, -0.2], np.float32)]
    grads = fl._gradients([p.astype(np.float64) for p in start], x, y, 1e-4)
    one = fl.train_head(start, x, y, 1, 0.5, 1000, np.random.default_rng(0), proximal_mu=3.0)
    for p, g, mine in zip(start, grads, one, strict=True):
        np.testing.assert_array_equal(mine, (p - 0.5 * g).astype(np.float32))  # no pull yet
    two = fl.train_head(start, x, y, 2, 0.5, 1000, np.random.default_rng(0), proximal_mu=3.0)
    after = [p.astype(np.float64) - 0.5 * g for p, g in zip(start, grads, strict=True)]
    grads = fl._gradients(after, x, y, 1e-4)
    for p, a, g, mine in zip(start, after, grads, two, strict=True):
        expected = a - 0.5 * (g + 3.0 * (a - p.astype(np.float64)))
        np.testing.assert_allclose(mine, expected.astype(np.float32), rtol=1e-6)


def test_label_counts_and_mix():
    owner = np.array([0, 0, 1, 1, 1, 2])
    labels = np.array([0, 1, 1, 1, 0, 0])
    counts = fl.label_counts(owner, labels, 3)
    np.testing.assert_array_equal(counts, [[1, 1], [1, 2], [1, 0]])
    np.testing.assert_allclose(
        fl.label_mix(owner, labels, 3), counts / counts.sum(1, keepdims=True)
    )
