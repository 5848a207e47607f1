"""Chapter 7: the dissertation's future work made real (federated learning, mask fit).

``federated(run)`` and ``mask_fit(run)`` each compute, save their keys through ``run.save``
(``results/<profile>/future_work.json``) and return a ``Section`` (the saved values plus the
frames the figures draw); ``story_*`` word the results. Whether federated learning reproduces
central training is judged once, by ``dlbook.book.claims``; the story quotes its IID method check.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from importlib import metadata

import numpy as np
import pandas as pd

from dlbook.book import claims, present
from dlbook.book.claims.rules import federated_iid_check
from dlbook.book.context import Run
from dlbook.core import cache, logs
from dlbook.facemask import data, detect, features
from dlbook.facemask import fit as mf
from dlbook.methods import backbones, heads
from dlbook.methods import federated as fl


@dataclass
class Section:
    """A section's saved values and the tables its figures and stories read."""

    values: dict
    frames: dict = field(default_factory=dict)


def alpha_name(alpha: float) -> str:
    """Key suffix of a Dirichlet concentration: 0.1 -> "0.1", 1.0 -> "1"."""
    return f"{alpha:g}"


def partition_name(alpha: float | None) -> str:
    """The name of a partitioning: "iid", or "dirichlet-<alpha>" for a label skew."""
    return "iid" if alpha is None else f"dirichlet-{alpha_name(alpha)}"


def accuracy_interval(correct: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    """Percentile-bootstrap 95% interval of the mean of a 0/1 array, shape (N,).

    Not ``metrics.bootstrap_ci(np.mean, ...)``: that one draws the same resamples but takes its
    low end at the ``(1 - 0.95) / 2 * 100 = 2.500000000000002`` percentile, not 2.5, which moves
    the saved lower bounds in their last bits.
    """
    rng = np.random.default_rng(seed)
    correct = np.asarray(correct, dtype=np.float64)
    means = correct[rng.integers(0, len(correct), (n_boot, len(correct)))].mean(1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


# ---------------------------------------------------------------------------------------------
# Federated learning


def plan(settings) -> list[fl.Experiment]:
    """The federated runs: FedAvg on IID clients, every strategy on each skew, DP on IID."""
    runs = [fl.Experiment("fedavg iid", "iid")]
    for alpha in settings["alphas"]:
        for strategy in settings["strategies"]:
            mu = settings["proximal_mu"] if strategy == "fedprox" else 0.0
            name = f"{strategy} {partition_name(alpha)}"
            runs.append(fl.Experiment(name, partition_name(alpha), strategy, proximal_mu=mu))
    for z in settings["noise_multipliers"]:
        runs.append(
            fl.Experiment(
                f"fedavg iid dp z={z:g}",
                "iid",
                noise_multiplier=float(z),
                clipping_norm=float(settings["clipping_norm"]),
            )
        )
    return runs


def partitions(labels: np.ndarray, settings, seed: int) -> dict[str, np.ndarray]:
    """Owner of each training example under IID and each Dirichlet skew."""
    rng = np.random.default_rng(seed)
    owners = {"iid": fl.iid_partition(len(labels), settings["clients"], rng)}
    for alpha in settings["alphas"]:
        owners[partition_name(alpha)] = fl.dirichlet_partition(
            labels,
            settings["clients"],
            alpha,
            rng,
            size_sigma=settings["size_sigma"],
            min_size=settings["min_client_size"],
        )
    return owners


def _train_alone(x, y, settings, seed) -> list[np.ndarray]:
    """The head trained on ``x``, ``y`` alone, as many epochs as the federation trains in all."""
    return fl.train_head(
        fl.init_head(x.shape[1]),
        x,
        y,
        epochs=settings["rounds"] * settings["local_epochs"],
        learning_rate=settings["learning_rate"],
        batch_size=settings["batch_size"],
        rng=np.random.default_rng(seed),
    )


def _federation_file(x_train, y_train, owners: dict[str, np.ndarray]) -> str:
    """The federation's data file (what the simulated sites read), kept in the cache."""
    path = cache.entry("federated", cache.digest(x_train, y_train, owners), ".npz")
    if not path.exists():
        cache.write_atomically(path, lambda tmp: fl.write_federation(tmp, x_train, y_train, owners))
    return str(path)


def _curves(histories: list[fl.History]) -> pd.DataFrame:
    """One row per run and round: test and validation accuracy, bytes moved that round."""
    return pd.DataFrame(
        [
            {
                "run": h.experiment.name,
                "partitioning": h.experiment.partitioning,
                "strategy": h.experiment.strategy,
                "dp": h.experiment.noise_multiplier,
                "round": r,
                "test_accuracy": t,
                "val_accuracy": v,
                "bytes": h.bytes_per_round[r - 1] if r > 0 else 0,
            }
            for h in histories
            for r, t, v in zip(h.rounds, h.test_accuracy, h.val_accuracy, strict=True)
        ]
    )


def _clients(owners, x_norm, y_train, x_test, y_test, histories, settings, seed):
    """Each client's rows (alone, and every federated model on its label mix) and the mean
    test accuracy of the clients trained alone, per partitioning."""
    rows, local_means = [], {}
    for name, owner in owners.items():
        mix = fl.label_mix(owner, y_train, settings["clients"])
        local_acc = []
        for k in range(settings["clients"]):
            mine = owner == k
            alone = _train_alone(x_norm[mine], y_train[mine], settings, seed + k)
            local_acc.append(fl.head_accuracy(alone, x_test, y_test))
            client = {"partitioning": name, "client": k, "size": int(mine.sum()),
                      "majority_share": float(mix[k].max())}  # fmt: skip
            per_class = np.nan_to_num(fl.class_accuracies(alone, x_test, y_test))
            rows.append({**client, "model": "alone", "test_accuracy": local_acc[-1],
                         "own_mix_accuracy": float(mix[k] @ per_class)})  # fmt: skip
            for h in histories:
                if h.experiment.partitioning != name or h.experiment.noise_multiplier is not None:
                    continue
                per_class = np.nan_to_num(fl.class_accuracies(h.arrays, x_test, y_test))
                rows.append({**client, "model": h.experiment.strategy,
                             "test_accuracy": h.test_accuracy[-1],
                             "own_mix_accuracy": float(mix[k] @ per_class)})  # fmt: skip
        local_means[name] = float(np.mean(local_acc))
    return pd.DataFrame(rows), local_means


def _partition_table(owners, y_train, n_clients: int) -> pd.DataFrame:
    """Per partitioning: mean label skew, smallest and largest client."""
    return pd.DataFrame(
        [
            {"partitioning": name, "label_skew": fl.label_skew(o, y_train, n_clients),
             "smallest_client": int(np.bincount(o).min()), "largest_client": int(np.bincount(o).max())}
            for name, o in owners.items()
        ]
    )  # fmt: skip


def federated(run: Run) -> Section:
    """Federated vs central vs each client alone, on Flower's simulation engine; saves the keys."""
    settings, seed = run.settings, run.seed
    started = time.perf_counter()
    logs.quiet_tensorflow()  # the features' backbone and Flower import it; keep its lines off the page
    fs = features.face_mask_features(settings["features"], run.data_dir, seed, progress=False)
    x_train, y_train = fs.where("train")
    x_val, y_val = fs.where("val")
    x_test, y_test = fs.where("test")
    x_val, x_test = fl.normalise_features(x_val), fl.normalise_features(x_test)
    owners = partitions(y_train, settings, seed)
    data_file = _federation_file(x_train, y_train, owners)
    x_norm = fl.normalise_features(x_train)
    histories = fl.simulate(
        plan(settings),
        data_file,
        {"test": (x_test, y_test), "val": (x_val, y_val)},
        n_clients=settings["clients"],
        rounds=settings["rounds"],
        local_epochs=settings["local_epochs"],
        learning_rate=settings["learning_rate"],
        batch_size=settings["batch_size"],
        seed=seed,
        num_cpus=settings["ray_cpus"],
        client_cpus=settings["client_cpus"],
        server_learning_rate=settings["server_learning_rate"],
    )
    central = _train_alone(x_norm, y_train, settings, seed)
    clients, local_means = _clients(
        owners, x_norm, y_train, x_test, y_test, histories, settings, seed
    )
    partition_table = _partition_table(owners, y_train, settings["clients"])
    values = federated_keys(settings, histories, central, x_test, y_test, local_means, seed)
    values.update(
        {
            f"fl_label_skew_{p}": s
            for p, s in zip(
                partition_table["partitioning"], partition_table["label_skew"], strict=True
            )
        }
    )
    values["fl_train_images"] = len(y_train)
    values["fl_test_images"] = len(y_test)
    values["fl_seconds"] = time.perf_counter() - started
    run.save(values)
    counts = {name: fl.label_counts(o, y_train, settings["clients"]) for name, o in owners.items()}
    frames = {"curves": _curves(histories), "clients": clients, "partitions": partition_table,
              "label_counts": counts}  # fmt: skip
    return Section(values, frames)


def federated_keys(settings, histories, central, x_test, y_test, local_means, seed) -> dict:
    """The section's result keys (see the chapter's key list) from the runs."""
    final = {h.experiment.name: h for h in histories}
    correct = fl.head_logits(central, x_test).argmax(1) == y_test
    low, high = accuracy_interval(correct, settings["n_boot"], seed)
    most_skewed = partition_name(min(settings["alphas"]))
    fedavg_iid = final["fedavg iid"]
    values = {
        "fl_engine": "flower-simulation-ray",
        "flwr_version": metadata.version("flwr"),
        "fl_clients": settings["clients"],
        "fl_rounds": settings["rounds"],
        "fl_local_epochs": settings["local_epochs"],
        "fl_alphas": ",".join(alpha_name(a) for a in settings["alphas"]),
        "fl_strategies": ",".join(settings["strategies"]),
        "central_accuracy": float(correct.mean()),
        "central_accuracy_ci_low": low,
        "central_accuracy_ci_high": high,
        "fedavg_accuracy_iid": fedavg_iid.test_accuracy[-1],
        "fedavg_iid_gap_points": 100 * (float(correct.mean()) - fedavg_iid.test_accuracy[-1]),
        "fl_bytes_per_round": float(np.mean(fedavg_iid.bytes_per_round)),
        "local_only_accuracy_mean": local_means[most_skewed],
        "local_only_partitioning": most_skewed,
        "selected_on": "validation",
    }
    for name, mean in local_means.items():
        values[f"local_only_accuracy_mean_{name}"] = mean
    for alpha in settings["alphas"]:
        part = partition_name(alpha)
        candidates = {}
        for strategy in settings["strategies"]:
            h = final[f"{strategy} {part}"]
            values[f"{strategy}_accuracy_noniid_{alpha_name(alpha)}"] = h.test_accuracy[-1]
            candidates[strategy] = h.val_accuracy[-1]
        values[f"fl_best_strategy_noniid_{alpha_name(alpha)}"] = max(candidates, key=candidates.get)
    zs = settings["noise_multipliers"]
    values["fl_dp_noise_multipliers"] = ",".join(f"{z:g}" for z in zs)
    values["fl_dp_clipping_norm"] = settings["clipping_norm"]
    values["fl_dp_delta"] = settings["dp_delta"]
    for z in zs:
        h = final[f"fedavg iid dp z={z:g}"]
        values[f"fedavg_dp_accuracy_z{z:g}"] = h.test_accuracy[-1]
        values[f"fl_dp_epsilon_z{z:g}"] = fl.gaussian_epsilon(
            z, settings["rounds"], settings["dp_delta"]
        )
    return values


def story_federated(values: dict) -> str:
    """Sentences on the federated runs, from the saved values; the IID method check is worded
    by the claims engine, as the claims page words it."""
    alphas = values["fl_alphas"].split(",")
    claim = claims.claim_by_id("federated_learning")
    margin = claim.margin if claim.points else 100 * claim.margin
    lines = [
        f"With {values['fl_clients']} clients and {values['fl_rounds']} rounds on Flower "
        f"{values['flwr_version']}'s simulation engine, FedAvg on IID clients reaches "
        f"{present.percent(values['fedavg_accuracy_iid'])} on the test split, against "
        f"{present.percent(values['central_accuracy'])} for the same head trained centrally "
        f"({present.interval(values['central_accuracy_ci_low'], values['central_accuracy_ci_high'])}): "
        f"a gap of {present.points(values['fedavg_iid_gap_points'])}.",
        federated_iid_check(values, margin) + ".",
        "The claim is judged below, on clients that differ by image source.",
    ]
    for a in alphas:
        parts = [
            f"{s} {present.percent(values[f'{s}_accuracy_noniid_{a}'])}"
            for s in values["fl_strategies"].split(",")
            if f"{s}_accuracy_noniid_{a}" in values
        ]
        lines.append(
            f"Under Dirichlet label skew alpha = {a} (mean label skew "
            f"{present.number(values[f'fl_label_skew_dirichlet-{a}'])}): {', '.join(parts)}; "
            f"the best on validation is {values[f'fl_best_strategy_noniid_{a}']}."
        )
    lines.append(
        f"A client training alone on its own shard (alpha = {alphas[0]}) averages "
        f"{present.percent(values['local_only_accuracy_mean'])} on the test split. Each round moves "
        f"{present.number(values['fl_bytes_per_round'] / 1e3)} kB of model arrays (both directions, "
        "all clients), independent of how many images the clients hold."
    )
    return " ".join(lines)


def story_privacy(values: dict) -> str:
    """Sentences on the DP runs: accuracy cost and the epsilon it buys."""
    zs = values["fl_dp_noise_multipliers"].split(",")
    parts = [
        f"noise multiplier {z}: {present.percent(values[f'fedavg_dp_accuracy_z{z}'])} test accuracy, "
        f"epsilon = {present.number(values[f'fl_dp_epsilon_z{z}'])}"
        for z in zs
    ]
    return (
        f"Clipping every client update to norm {present.number(values['fl_dp_clipping_norm'])} and "
        f"adding Gaussian noise to the average gives, against {present.percent(values['fedavg_accuracy_iid'])} "
        f"without it, "
        + "; ".join(parts)
        + f" (client-level, delta = {present.number(values['fl_dp_delta'])}, "
        f"{values['fl_rounds']} rounds, every client in every round)."
    )


# ---------------------------------------------------------------------------------------------
# Mask fit


def _pick(rows: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` of ``rows`` drawn at random, in their original order."""
    return np.sort(rng.permutation(rows)[:count])


def _landmark_detector():
    """MTCNN: of the book's detectors, the one that gives eyes, nose and mouth corners."""
    return detect.load_detector("mtcnn")


def _synthetic_split(task: tuple, paths, backbone: str, folder, work: int, size: int) -> dict:
    """Faces ``rows`` (of ``paths``) drawn in every fit, their labels and backbone features;
    ``task`` is ``(rows, seed)``, one split (a ``run.map`` task: landmarks and features are the
    slow part)."""
    rows, seed = task
    faces = np.stack([data.decode_image(folder / paths[i], work) for i in rows])
    marks = mf.cached_landmarks(faces, _landmark_detector)
    images, labels, source = mf.synthetic_set(faces, marks, size, seed)
    feats = features.extract(backbone, images, progress=False)
    found = int((~np.isnan(marks).any((1, 2))).sum())
    return {"marks": marks, "images": images, "labels": labels, "source": source,
            "features": feats, "found": found}  # fmt: skip


def _flagged_gallery(fs, folder, real_rows, real_probs, count: int) -> list:
    """The real with-mask images called badly worn, most confident first: (image, fit, prob)."""
    real_pred = real_probs.argmax(1)
    flagged = real_rows[real_pred != 0]
    order = np.argsort(-real_probs[real_pred != 0].max(1))
    return [
        (data.decode_image(folder / fs.paths[i], 128), mf.FIT_CLASSES[int(p)], float(q.max()))
        for i, p, q in zip(
            flagged[order],
            real_pred[real_pred != 0][order],
            real_probs[real_pred != 0][order],
            strict=True,
        )
    ][:count]


def mask_fit(run: Run) -> Section:
    """Synthetic mask fits on train/test faces, the fit classifier, its use on real masks."""
    settings, seed = run.settings, run.seed
    started = time.perf_counter()
    logs.quiet_tensorflow()  # MTCNN and the backbone run here; keep their lines off the page
    fs = features.face_mask_features(settings["features"], run.data_dir, seed, progress=False)
    folder = data.resolve_data_dir(run.data_dir, download=False)
    rng = np.random.default_rng(seed)
    work, size = settings["fit_work_size"], settings["features"]["image_size"]
    counts = {"train": settings["fit_train_faces"], "test": settings["fit_test_faces"]}
    tasks = [  # the rows are drawn here, in this order, from the one generator
        (_pick(np.flatnonzero((fs.split == split) & (fs.labels == 0)), count, rng),
         seed + (split == "test"))
        for split, count in counts.items()
    ]  # fmt: skip
    split_sets = functools.partial(
        _synthetic_split, paths=fs.paths, backbone=fs.backbone, folder=folder, work=work, size=size
    )
    sets = dict(zip(counts, run.map(split_sets, tasks), strict=True))
    classifier = heads.fit_logistic(
        sets["train"]["features"], sets["train"]["labels"], settings["fit_c"], seed
    )
    test = sets["test"]
    predicted = classifier.predict(test["features"])
    correct = predicted == test["labels"]
    low, high = accuracy_interval(correct, settings["n_boot"], seed)
    confusion = mf.confusion_matrix(test["labels"], predicted)
    real_rows = np.flatnonzero((fs.split == "test") & (fs.labels == 1))
    real_probs = classifier.predict_proba(fs.features[real_rows])
    real_pred = real_probs.argmax(1)
    values = {
        "mask_fit_classes": ",".join(mf.FIT_CLASSES),
        "mask_fit_synthetic_accuracy": float(correct.mean()),
        "mask_fit_synthetic_accuracy_ci_low": low,
        "mask_fit_synthetic_accuracy_ci_high": high,
        "mask_fit_train_faces": sets["train"]["found"],
        "mask_fit_test_faces": test["found"],
        "mask_fit_faces_without_landmarks": int(
            sum(len(s["marks"]) - s["found"] for s in sets.values())
        ),
        "mask_fit_flagged_real_with_mask": int((real_pred != 0).sum()),
        "mask_fit_real_with_mask_images": int(len(real_rows)),
        "mask_fit_flagged_nose_exposed": int((real_pred == 1).sum()),
        "mask_fit_flagged_chin": int((real_pred == 2).sum()),
        "mask_fit_seconds": time.perf_counter() - started,
    }
    for t, name in enumerate(mf.FIT_CLASSES):
        values[f"mask_fit_recall_{name}"] = float(confusion[t, t] / max(confusion[t].sum(), 1))
    if settings["save_fit_model"]:
        model = mf.build_fit_model(backbones.load(fs.backbone), classifier, size)
        path = run.results_dir / "models" / "mask_fit.keras"
        mf.save_fit_model(model, path, {"image_size": size, "backbone": fs.backbone})
    run.save(values)
    gallery = _flagged_gallery(fs, folder, real_rows, real_probs, settings["fit_gallery"])
    examples = [test["images"][test["source"] == s] for s in np.unique(test["source"])[:4]]
    frames = {"confusion": confusion, "gallery": gallery, "examples": examples}
    return Section(values, frames)


def story_mask_fit(values: dict) -> str:
    """Sentences on the fit classifier: synthetic test accuracy, what it flags among real masks."""
    return (
        f"On synthetic masks drawn on {values['mask_fit_test_faces']} test-split faces (never seen in "
        f"training, {values['mask_fit_train_faces']} train-split faces were), the fit classifier is "
        f"{present.percent(values['mask_fit_synthetic_accuracy'])} accurate "
        f"({present.interval(values['mask_fit_synthetic_accuracy_ci_low'], values['mask_fit_synthetic_accuracy_ci_high'])}; "
        f"recall correct {present.percent(values['mask_fit_recall_correct'])}, nose exposed "
        f"{present.percent(values['mask_fit_recall_nose_exposed'])}, chin {present.percent(values['mask_fit_recall_chin'])}). "
        f"On the {values['mask_fit_real_with_mask_images']} real with-mask test images it flags "
        f"{values['mask_fit_flagged_real_with_mask']} as badly worn "
        f"({values['mask_fit_flagged_nose_exposed']} nose exposed, {values['mask_fit_flagged_chin']} on the chin). "
        "No label says whether those are right: the gallery below is there to be judged by eye."
    )
