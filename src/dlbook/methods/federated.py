"""Federated learning on Flower: a softmax head trained across simulated clients.

The pieces are Flower's own, so the same code moves to Flower's deployment engine:

- ``client_app``: a ``flwr.clientapp.ClientApp``. On a ``train`` message it loads its shard of the
  federation's data (the file and partitioning named in the message's config; on a real
  deployment each site would read its own files instead), trains the head locally (with the
  FedProx proximal term when the server sends ``proximal-mu``) and replies with the new arrays
  and its number of examples.
- ``make_server_app``: a ``flwr.serverapp.ServerApp`` whose main function runs a list of
  ``Experiment`` s one after the other with Flower's strategies (``FedAvg``, ``FedProx``,
  ``FedAdam``, optionally wrapped in ``DifferentialPrivacyServerSideFixedClipping``), evaluating
  the global model on the server's held-out data after every round.
- ``simulate``: runs both on Flower's simulation engine (Ray backend), one Ray start for all
  experiments.

The model is small and in NumPy (no TensorFlow in the client processes): a linear softmax
head on frozen backbone features (``model="head"``), or the backbone's last convolution, pooling
and a softmax head on cached maps (``model="top"``, ``dlbook.methods.federated_top``).
Partitions: ``iid_partition`` and ``dirichlet_partition`` (label skew with unequal client
sizes), or any owner array (clients by image source).
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field

import numpy as np

from dlbook.methods import federated_top, optim

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")  # no network calls from the book's build
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")

STRATEGIES = ("fedavg", "fedprox", "fedadam")
MODELS = ("head", "top")

# ---------------------------------------------------------------------------------------------
# The head: softmax regression in NumPy


def normalise_features(features: np.ndarray) -> np.ndarray:
    """Scale each row to norm sqrt(D), so a site needs no statistics from the others.

    features : ndarray, shape (N, D) -> ndarray, shape (N, D), float32
    """
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features * (math.sqrt(features.shape[1]) / np.maximum(norms, 1e-12))


def init_head(n_features: int, n_classes: int = 2) -> list[np.ndarray]:
    """Zero weights (D, C) and bias (C,), float32: the loss is convex, so zeros are a fine start."""
    return [np.zeros((n_features, n_classes), np.float32), np.zeros(n_classes, np.float32)]


def head_logits(params: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    """Logits (N, C) of features ``x`` (N, D)."""
    weights, bias = params
    return x @ weights + bias


def head_accuracy(params: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of rows of ``x`` whose arg-max logit equals ``y``."""
    if len(y) == 0:
        return float("nan")
    return float((head_logits(params, x).argmax(1) == y).mean())


def class_accuracies(params: list[np.ndarray], x: np.ndarray, y: np.ndarray, n_classes: int = 2):
    """Accuracy on each class's rows, shape (C,) (NaN for a class with no rows)."""
    pred = head_logits(params, x).argmax(1)
    return np.array(
        [(pred[y == c] == c).mean() if (y == c).any() else np.nan for c in range(n_classes)]
    )


def _gradients(params, x, y, l2: float):
    weights, bias = params
    logits = x @ weights + bias
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    probs[np.arange(len(y)), y] -= 1.0
    probs /= len(y)
    return [x.T @ probs + l2 * weights, probs.sum(axis=0)]


def train_head(
    params: list[np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    rng: np.random.Generator,
    proximal_mu: float = 0.0,
    l2: float = 1e-4,
) -> list[np.ndarray]:
    """Minibatch SGD (``optim.SGD``) on the softmax cross-entropy, from ``params`` (not modified).

    With ``proximal_mu`` > 0 the loss gains FedProx's ``mu / 2 * ||w - w_start||^2``, which keeps
    a client's weights near the global model it started from. A ``batch_size`` of at least
    ``len(y)`` is full-batch gradient descent, which does not touch ``rng``.

    Parameters
    ----------
    x : ndarray, shape (N, D), float32
    y : ndarray, shape (N,), int
    """
    start = [p.astype(np.float64) for p in params]
    current = [p.copy() for p in start]
    n = len(y)
    if n == 0:
        return [p.astype(np.float32) for p in current]
    optimizer = optim.SGD(learning_rate)
    for _ in range(epochs):
        order = np.arange(n) if batch_size >= n else rng.permutation(n)
        for begin in range(0, n, batch_size):
            rows = order[begin : begin + batch_size]
            grads = _gradients(current, x[rows], y[rows], l2)
            if proximal_mu:
                grads = [
                    g + proximal_mu * (c - s) for g, c, s in zip(grads, current, start, strict=True)
                ]
            optimizer.step(current, grads)
    return [p.astype(np.float32) for p in current]


# ---------------------------------------------------------------------------------------------
# Partitions


def iid_partition(n: int, n_clients: int, rng: np.random.Generator) -> np.ndarray:
    """Owner (client id) of each of ``n`` examples: a random split into equal shares.

    Returns ndarray, shape (n,), int64; client sizes differ by at most one.
    """
    if n_clients < 1 or n < n_clients:
        raise ValueError(f"n_clients={n_clients!r} must be between 1 and n={n}")
    owner = np.empty(n, dtype=np.int64)
    owner[rng.permutation(n)] = np.arange(n) % n_clients
    return owner


def size_shares(n_clients: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Unequal client size shares (sum 1): log-normal with spread ``sigma`` (0: equal)."""
    shares = np.exp(sigma * rng.standard_normal(n_clients))
    return shares / shares.sum()


def client_sizes(n: int, shares: np.ndarray, min_size: int) -> np.ndarray:
    """Integer client sizes summing to ``n``, each at least ``min_size``, otherwise ~ ``shares``."""
    shares = np.asarray(shares, dtype=np.float64)
    spare = n - len(shares) * min_size
    if spare < 0:
        raise ValueError(
            f"{len(shares)} clients of at least {min_size} examples need more than {n}"
        )
    raw = shares / shares.sum() * spare
    sizes = np.floor(raw).astype(np.int64)
    sizes[np.argsort(sizes - raw)[: spare - sizes.sum()]] += 1
    return sizes + min_size


def dirichlet_partition(
    labels: np.ndarray,
    n_clients: int,
    alpha: float,
    rng: np.random.Generator,
    size_sigma: float = 0.5,
    min_size: int = 10,
) -> np.ndarray:
    """Owner of each example under Dirichlet label skew with unequal client sizes.

    Client ``k`` gets ``client_sizes(...)[k]`` examples (log-normal shares with spread
    ``size_sigma``, at least ``min_size``) and wants the label mix ``q_k ~ Dirichlet(alpha * C *
    prior)`` (prior: the global label frequencies, C classes). Clients are filled in random order;
    when a wanted label runs out, the client is topped up from the labels left, so sizes are
    exact and every example has one owner. Small ``alpha``: clients dominated by one label;
    large ``alpha``: every client near the global mix.

    Returns
    -------
    ndarray, shape (N,), int64, client ids in [0, n_clients).
    """
    labels = np.asarray(labels)
    if alpha <= 0:
        raise ValueError(f"alpha={alpha!r} must be positive")
    sizes = client_sizes(len(labels), size_shares(n_clients, size_sigma, rng), min_size)
    classes = np.unique(labels)
    prior = np.array([(labels == c).mean() for c in classes])
    pools = [list(rng.permutation(np.flatnonzero(labels == c))) for c in classes]
    owner = np.full(len(labels), -1, dtype=np.int64)
    for k in rng.permutation(n_clients):
        want = rng.multinomial(sizes[k], rng.dirichlet(alpha * len(classes) * prior))
        taken = []
        for c, count in enumerate(want):
            taken += [pools[c].pop() for _ in range(min(count, len(pools[c])))]
        while len(taken) < sizes[k]:
            c = int(np.argmax([len(pool) for pool in pools]))
            taken.append(pools[c].pop())
        owner[taken] = k
    return owner


def label_counts(owner: np.ndarray, labels: np.ndarray, n_clients: int, n_classes: int = 2):
    """How many examples of each label each client holds, shape (n_clients, n_classes), float."""
    counts = np.zeros((n_clients, n_classes))
    np.add.at(counts, (owner, labels), 1)
    return counts


def label_mix(owner: np.ndarray, labels: np.ndarray, n_clients: int, n_classes: int = 2):
    """Each client's label proportions, shape (n_clients, n_classes)."""
    counts = label_counts(owner, labels, n_clients, n_classes)
    return counts / np.maximum(counts.sum(1, keepdims=True), 1)


def label_skew(owner: np.ndarray, labels: np.ndarray, n_clients: int, n_classes: int = 2) -> float:
    """Mean total-variation distance between a client's label mix and the global one (0: IID)."""
    mix = label_mix(owner, labels, n_clients, n_classes)
    overall = np.bincount(labels, minlength=n_classes) / len(labels)
    return float(0.5 * np.abs(mix - overall).sum(1).mean())


# ---------------------------------------------------------------------------------------------
# Differential privacy: what the Gaussian mechanism's noise buys


def gaussian_epsilon(noise_multiplier: float, rounds: int, delta: float) -> float:
    """Client-level epsilon of ``rounds`` Gaussian releases without subsampling amplification.

    Renyi DP of one release at order a is ``a / (2 z^2)``; releases add up; the conversion
    ``eps = rdp + log(1/delta) / (a - 1)`` is minimised over a > 1 (Mironov 2017). Every client
    takes part in every round here, so no amplification by sampling applies.
    """
    if noise_multiplier <= 0:
        return float("inf")
    orders = np.concatenate([np.linspace(1.01, 10, 900), np.linspace(10, 1000, 991)])
    eps = rounds * orders / (2 * noise_multiplier**2) + math.log(1 / delta) / (orders - 1)
    return float(eps.min())


# ---------------------------------------------------------------------------------------------
# The federation's data file: what the simulated sites read


def write_federation(
    path, x_train, y_train, owners: dict[str, np.ndarray], normalise: bool = True
) -> str:
    """Save the training pool and each partitioning's owners to ``path`` (.npz); return it.

    ``normalise``: rows of features scaled by ``normalise_features`` (the head's input); maps
    for the top are stored as they are.
    """
    x = normalise_features(x_train) if normalise else np.asarray(x_train)
    arrays = {"x": x, "y": np.asarray(y_train, np.int64)}
    arrays.update({f"owner_{name}": np.asarray(o, np.int64) for name, o in owners.items()})
    np.savez(path, **arrays)
    return str(path)


@functools.lru_cache(maxsize=4)
def _federation(path: str):
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def client_shard(path: str, partitioning: str, client: int) -> tuple[np.ndarray, np.ndarray]:
    """(features, labels) held by ``client`` under ``partitioning``."""
    data = _federation(path)
    rows = data[f"owner_{partitioning}"] == client
    return data["x"][rows], data["y"][rows]


# ---------------------------------------------------------------------------------------------
# Flower: the ClientApp


def _client_train(msg, context):
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict

    config = msg.content["config"]
    client = int(context.node_config["partition-id"])
    x, y = client_shard(str(config["data-file"]), str(config["partitioning"]), client)
    params = msg.content["arrays"].to_numpy_ndarrays()
    seed = int(config["seed"]) * 1_000_003 + int(config["server-round"]) * 1009 + client
    train = federated_top.train_top if config.get("model", "head") == "top" else train_head
    new = train(
        params,
        x,
        y,
        epochs=int(config["local-epochs"]),
        learning_rate=float(config["learning-rate"]),
        batch_size=int(config["batch-size"]),
        rng=np.random.default_rng(seed),
        proximal_mu=float(config.get("proximal-mu", 0.0)),
    )
    metrics = {"num-examples": len(y), "unit-weight": 1}
    if train is train_head:  # the top's accuracy would cost another pass over the maps
        metrics["train-accuracy"] = head_accuracy(new, x, y)
    metrics = MetricRecord(metrics)
    content = RecordDict({"arrays": ArrayRecord(new), "metrics": metrics})
    return Message(content=content, reply_to=msg)


def make_client_app():
    """The federation's ``ClientApp`` (train only; evaluation is centralised on the server)."""
    from flwr.clientapp import ClientApp

    app = ClientApp()
    app.train()(_client_train)
    return app


# ---------------------------------------------------------------------------------------------
# Flower: the ServerApp


@dataclass(frozen=True)
class Experiment:
    """One federated run: a strategy on a partitioning, optionally with DP noise."""

    name: str
    partitioning: str
    strategy: str = "fedavg"
    proximal_mu: float = 0.0
    noise_multiplier: float | None = None  # None: no DP wrapper
    clipping_norm: float = 1.0
    seed: int | None = None  # None: the simulation's seed


@dataclass
class History:
    """What one experiment left: accuracy after every round, bytes moved, final arrays."""

    experiment: Experiment
    rounds: list[int] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    bytes_per_round: list[int] = field(default_factory=list)
    arrays: list[np.ndarray] | None = None


def _array_bytes(record) -> int:
    return sum(len(array.data) for array in record.values())


def _metered(strategy, bytes_per_round: list[int]):
    """Wrap a Flower strategy so it records the array bytes sent and received each round."""
    from flwr.serverapp.strategy import Strategy

    class Metered(Strategy):
        def configure_train(self, server_round, arrays, config, grid):
            messages = list(strategy.configure_train(server_round, arrays, config, grid))
            bytes_per_round.append(sum(_array_bytes(m.content["arrays"]) for m in messages))
            return messages

        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            bytes_per_round[-1] += sum(
                _array_bytes(r.content["arrays"]) for r in replies if r.has_content()
            )
            return strategy.aggregate_train(server_round, replies)

        def configure_evaluate(self, server_round, arrays, config, grid):
            return strategy.configure_evaluate(server_round, arrays, config, grid)

        def aggregate_evaluate(self, server_round, replies):
            return strategy.aggregate_evaluate(server_round, replies)

        def summary(self):
            strategy.summary()

    return Metered()


def make_strategy(experiment: Experiment, n_clients: int, server_learning_rate: float = 0.1):
    """The Flower strategy for ``experiment``: every client trains every round, none evaluates."""
    from flwr.serverapp import strategy as flwr_strategy

    common = {
        "fraction_train": 1.0,
        "fraction_evaluate": 0.0,
        "min_train_nodes": n_clients,
        "min_available_nodes": n_clients,
    }
    if experiment.noise_multiplier is not None:
        # Equal weights: the noise is calibrated to one client's clipped update over n clients,
        # which a size-weighted average would not respect.
        common["weighted_by_key"] = "unit-weight"
    if experiment.strategy == "fedavg":
        chosen = flwr_strategy.FedAvg(**common)
    elif experiment.strategy == "fedprox":
        chosen = flwr_strategy.FedProx(proximal_mu=experiment.proximal_mu, **common)
    elif experiment.strategy == "fedadam":
        chosen = flwr_strategy.FedAdam(eta=server_learning_rate, eta_l=1.0, tau=1e-3, **common)
    else:
        raise ValueError(f"strategy={experiment.strategy!r} is unknown; use one of {STRATEGIES}")
    if experiment.noise_multiplier is not None:
        chosen = flwr_strategy.DifferentialPrivacyServerSideFixedClipping(
            chosen,
            noise_multiplier=experiment.noise_multiplier,
            clipping_norm=experiment.clipping_norm,
            num_sampled_clients=n_clients,
        )
    return chosen


def make_server_app(
    experiments: list[Experiment],
    n_features: int,
    n_clients: int,
    rounds: int,
    train_config: dict,
    evaluation: dict[str, tuple[np.ndarray, np.ndarray]],
    histories: list[History],
    server_learning_rate: float = 0.1,
    initial=None,
    accuracy=head_accuracy,
):
    """A ``ServerApp`` running ``experiments`` in turn; each run's ``History`` goes to ``histories``.

    ``evaluation`` maps a name ("test", "val") to normalised (features, labels) the server holds
    for centralised evaluation, scored by ``accuracy(params, x, y)``; ``train_config`` is sent
    to the clients every round. ``initial(experiment)`` gives a run's starting arrays (default:
    a zero head of ``n_features`` inputs).
    """
    from flwr.app import ArrayRecord, ConfigRecord, MetricRecord
    from flwr.serverapp import ServerApp

    app = ServerApp()

    @app.main()
    def main(grid, context) -> None:
        for index, experiment in enumerate(experiments):
            history = History(experiment)
            strategy = make_strategy(experiment, n_clients, server_learning_rate)
            # Flower's server-side DP noise draws from NumPy's global generator, which it never
            # seeds: seed it per experiment so a differentially private run repeats exactly.
            np.random.seed(int(train_config["seed"]) * 1009 + index)

            def evaluate(server_round, arrays, history=history):
                params = arrays.to_numpy_ndarrays()
                scores = {name: accuracy(params, x, y) for name, (x, y) in evaluation.items()}
                history.rounds.append(server_round)
                history.test_accuracy.append(scores.get("test", float("nan")))
                history.val_accuracy.append(scores.get("val", float("nan")))
                return MetricRecord(scores)

            config = {**train_config, "partitioning": experiment.partitioning}
            if experiment.seed is not None:
                config["seed"] = int(experiment.seed)
            start = init_head(n_features) if initial is None else initial(experiment)
            result = _metered(strategy, history.bytes_per_round).start(
                grid=grid,
                initial_arrays=ArrayRecord(start),
                num_rounds=rounds,
                train_config=ConfigRecord(config),
                evaluate_fn=evaluate,
            )
            history.arrays = result.arrays.to_numpy_ndarrays()
            histories.append(history)

    return app


def _without_tensorflow() -> None:
    """Ray worker set-up: make ``import tensorflow`` fail fast in the client processes.

    Flower's Ray actors import TensorFlow when it is installed (to offer GPU memory growth); the
    clients here are NumPy only, and on a small CPU machine that import costs seconds per actor.
    """
    import sys

    sys.modules["tensorflow"] = None


def start_ray(num_cpus: int) -> None:
    """Start Ray for Flower's simulation engine (Flower reuses a running Ray)."""
    import contextlib
    import io
    import sys
    import warnings

    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")  # Ray's import notes missing notebook widgets
        import ray

    if ray.is_initialized():
        return
    pythonpath = os.pathsep.join([*sys.path, os.environ.get("PYTHONPATH", "")])
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        logging_level="error",
        log_to_driver=False,
        runtime_env={
            "env_vars": {"PYTHONPATH": pythonpath, "FLWR_TELEMETRY_ENABLED": "0"},
            "worker_process_setup_hook": _without_tensorflow,
        },
    )


def simulate(
    experiments: list[Experiment],
    data_file: str,
    evaluation: dict[str, tuple[np.ndarray, np.ndarray]],
    n_clients: int,
    rounds: int,
    local_epochs: int,
    learning_rate: float,
    batch_size: int,
    seed: int = 0,
    num_cpus: int = 2,
    client_cpus: float = 1.0,
    server_learning_rate: float = 0.1,
    model: str = "head",
    initial=None,
) -> list[History]:
    """Run ``experiments`` on Flower's simulation engine (Ray backend); return their histories.

    Ray gets ``num_cpus`` cores and each simulated client ``client_cpus`` of them, so at most
    ``num_cpus / client_cpus`` clients train at once. ``model`` is what the clients train:
    ``"head"`` (features in ``data_file``) or ``"top"`` (maps in ``data_file``; ``initial``
    then gives each experiment's starting arrays, see ``make_server_app``).
    """
    import contextlib
    import io
    import logging
    import warnings

    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        from flwr.common.logger import FLOWER_LOGGER
        from flwr.simulation import run_simulation

    if model not in MODELS:
        raise ValueError(f"model={model!r} is unknown; use one of {MODELS}")
    if model == "top" and initial is None:
        raise ValueError("model='top' needs initial(experiment) -> the starting arrays")
    n_features = int(_federation(data_file)["x"].shape[-1])
    histories: list[History] = []
    train_config = {
        "data-file": str(data_file),
        "local-epochs": int(local_epochs),
        "learning-rate": float(learning_rate),
        "batch-size": int(batch_size),
        "seed": int(seed),
    }
    if model == "top":  # the head's runs keep the config they always had
        train_config["model"] = model
    server = make_server_app(
        experiments,
        n_features,
        n_clients,
        rounds,
        train_config,
        evaluation,
        histories,
        server_learning_rate,
        initial,
        federated_top.top_accuracy if model == "top" else head_accuracy,
    )
    level = FLOWER_LOGGER.level
    FLOWER_LOGGER.setLevel(logging.ERROR)
    start_ray(num_cpus)
    try:
        run_simulation(
            server_app=server,
            client_app=make_client_app(),
            num_supernodes=n_clients,
            backend_config={
                "client_resources": {"num_cpus": client_cpus, "num_gpus": 0.0},
            },
        )
    finally:
        FLOWER_LOGGER.setLevel(level)
        import ray

        ray.shutdown()
    if len(histories) != len(experiments):
        raise RuntimeError(
            f"the simulation finished {len(histories)} of {len(experiments)} experiments"
        )
    return histories
