"""Chapter 7: the dissertation's future work made real (federated learning, mask fit).

``federated(settings, data_dir, seed, results_dir)`` and ``mask_fit(...)`` each compute, save
their keys to ``results/<profile>/future_work.json`` and return a ``Section`` (the saved values
plus the frames the figures draw); ``story_*`` word the results; ``run`` does both sections.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from dlbook.book import present
from dlbook.core import paths, results
from dlbook.methods import federated as fl
from dlbook.methods import heads

CHAPTER = "future_work"


@dataclass
class Section:
    """A section's saved values and the tables its figures and stories read."""

    values: dict
    frames: dict = field(default_factory=dict)


def alpha_name(alpha: float) -> str:
    """Key suffix of a Dirichlet concentration: 0.1 -> "0.1", 1.0 -> "1"."""
    return f"{alpha:g}"


def partition_name(alpha: float | None) -> str:
    return "iid" if alpha is None else f"dirichlet-{alpha_name(alpha)}"


def accuracy_interval(correct: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    """Percentile-bootstrap 95% interval of the mean of a 0/1 array."""
    rng = np.random.default_rng(seed)
    correct = np.asarray(correct, dtype=np.float64)
    means = correct[rng.integers(0, len(correct), (n_boot, len(correct)))].mean(1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def _folder(results_dir) -> Path:
    """The results folder: ``results_dir`` (the notebook passes ``paths.results_dir(profile, ...)``)."""
    if results_dir is None:
        raise ValueError("results_dir is None; pass paths.results_dir(profile, results_dir)")
    folder = Path(results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


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
    return fl.train_head(
        fl.init_head(x.shape[1]),
        x,
        y,
        epochs=settings["rounds"] * settings["local_epochs"],
        learning_rate=settings["learning_rate"],
        batch_size=settings["batch_size"],
        rng=np.random.default_rng(seed),
    )


def federated(settings, data_dir=None, seed: int = 0, results_dir=None) -> Section:
    """Federated vs central vs each client alone, on Flower's simulation engine; saves the keys."""
    from dlbook.facemask import features

    started = time.perf_counter()
    fs = features.face_mask_features(settings["features"], data_dir, seed, progress=False)
    x_train, y_train = fs.where("train")
    x_val, y_val = fs.where("val")
    x_test, y_test = fs.where("test")
    x_val, x_test = fl.normalise_features(x_val), fl.normalise_features(x_test)
    owners = partitions(y_train, settings, seed)
    digest = hashlib.sha256(x_train.tobytes())
    for owner in owners.values():
        digest.update(owner.tobytes())
    data_file = paths.cache_dir() / "federated" / f"federation_{digest.hexdigest()[:24]}.npz"
    data_file.parent.mkdir(parents=True, exist_ok=True)
    fl.write_federation(data_file, x_train, y_train, owners)
    x_norm = fl.normalise_features(x_train)
    runs = plan(settings)
    histories = fl.simulate(
        runs,
        str(data_file),
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
    curves = pd.DataFrame(
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
    clients, local_means = [], {}
    for name, owner in owners.items():
        mix = fl.label_mix(owner, y_train, settings["clients"])
        local_acc = []
        for k in range(settings["clients"]):
            rows = owner == k
            alone = _train_alone(x_norm[rows], y_train[rows], settings, seed + k)
            local_acc.append(fl.head_accuracy(alone, x_test, y_test))
            per_class = np.nan_to_num(fl.class_accuracies(alone, x_test, y_test))
            clients.append(
                {"partitioning": name, "client": k, "model": "alone", "size": int(rows.sum()),
                 "majority_share": float(mix[k].max()), "test_accuracy": local_acc[-1],
                 "own_mix_accuracy": float(mix[k] @ per_class)}
            )  # fmt: skip
            for h in histories:
                if h.experiment.partitioning != name or h.experiment.noise_multiplier is not None:
                    continue
                per_class = np.nan_to_num(fl.class_accuracies(h.arrays, x_test, y_test))
                clients.append(
                    {"partitioning": name, "client": k, "model": h.experiment.strategy,
                     "size": int(rows.sum()), "majority_share": float(mix[k].max()),
                     "test_accuracy": h.test_accuracy[-1], "own_mix_accuracy": float(mix[k] @ per_class)}
                )  # fmt: skip
        local_means[name] = float(np.mean(local_acc))
    clients = pd.DataFrame(clients)
    partition_table = pd.DataFrame(
        [
            {"partitioning": name, "label_skew": fl.label_skew(o, y_train, settings["clients"]),
             "smallest_client": int(np.bincount(o).min()), "largest_client": int(np.bincount(o).max())}
            for name, o in owners.items()
        ]
    )  # fmt: skip
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
    results.save(_folder(results_dir), CHAPTER, values)
    frames = {"curves": curves, "clients": clients, "partitions": partition_table, "owners": owners,
              "labels": y_train}  # fmt: skip
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
    """Sentences on the federated runs, from the saved values."""
    alphas = values["fl_alphas"].split(",")
    gap = values["fedavg_iid_gap_points"]
    within = abs(gap) <= 1.0
    lines = [
        f"With {values['fl_clients']} clients and {values['fl_rounds']} rounds on Flower "
        f"{values['flwr_version']}'s simulation engine, FedAvg on IID clients reaches "
        f"{present.percent(values['fedavg_accuracy_iid'])} on the test split, against "
        f"{present.percent(values['central_accuracy'])} for the same head trained centrally "
        f"({present.interval(values['central_accuracy_ci_low'], values['central_accuracy_ci_high'])}): "
        f"a gap of {present.points(gap)}, {'within' if within else 'outside'} the one-point target."
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
    return np.sort(rng.permutation(rows)[:count])


def mask_fit(settings, data_dir=None, seed: int = 0, results_dir=None) -> Section:
    """Synthetic mask fits on train/test faces, the fit classifier, its use on real masks."""
    from dlbook.facemask import data, features
    from dlbook.facemask import fit as mf

    started = time.perf_counter()
    fs = features.face_mask_features(settings["features"], data_dir, seed, progress=False)
    folder = data.resolve_data_dir(data_dir, download=False)
    rng = np.random.default_rng(seed)
    work, size = settings["fit_work_size"], settings["features"]["image_size"]
    sets = {}
    for split, count in (
        ("train", settings["fit_train_faces"]),
        ("test", settings["fit_test_faces"]),
    ):
        rows = _pick(np.flatnonzero((fs.split == split) & (fs.labels == 0)), count, rng)
        faces = np.stack([data.decode_image(folder / fs.paths[i], work) for i in rows])
        marks = mf.cached_landmarks(faces, paths.cache_dir() / "mask_fit", _landmark_detector)
        images, labels, source = mf.synthetic_set(faces, marks, size, seed + (split == "test"))
        feats = features.extract(fs.backbone, images, progress=False)
        sets[split] = {"faces": faces, "marks": marks, "images": images, "labels": labels,
                       "source": source, "features": feats, "found": int((~np.isnan(marks).any((1, 2))).sum())}  # fmt: skip
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
    flagged = real_rows[real_pred != 0]
    order = np.argsort(-real_probs[real_pred != 0].max(1))
    gallery = [
        (data.decode_image(folder / fs.paths[i], 128), mf.FIT_CLASSES[int(p)], float(q.max()))
        for i, p, q in zip(
            flagged[order],
            real_pred[real_pred != 0][order],
            real_probs[real_pred != 0][order],
            strict=True,
        )
    ][: settings["fit_gallery"]]
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
        "mask_fit_flagged_real_with_mask": int(len(flagged)),
        "mask_fit_real_with_mask_images": int(len(real_rows)),
        "mask_fit_flagged_nose_exposed": int((real_pred == 1).sum()),
        "mask_fit_flagged_chin": int((real_pred == 2).sum()),
        "mask_fit_seconds": time.perf_counter() - started,
    }
    for t, name in enumerate(mf.FIT_CLASSES):
        values[f"mask_fit_recall_{name}"] = float(confusion[t, t] / max(confusion[t].sum(), 1))
    if settings["save_fit_model"]:
        from dlbook.methods import backbones

        model = mf.build_fit_model(backbones.load(fs.backbone), classifier, size)
        path = _folder(results_dir) / "models" / "mask_fit.keras"
        mf.save_fit_model(model, path, {"image_size": size, "backbone": fs.backbone})
    results.save(_folder(results_dir), CHAPTER, values)
    examples = [(test["images"][test["source"] == s], s) for s in np.unique(test["source"])[:4]]
    frames = {"confusion": confusion, "gallery": gallery, "examples": [e for e, _ in examples]}
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


def run(settings, data_dir=None, seed: int = 0, results_dir=None) -> dict:
    """Both sections; returns the saved values."""
    values = dict(federated(settings, data_dir, seed, results_dir).values)
    values.update(mask_fit(settings, data_dir, seed, results_dir).values)
    return values


def _landmark_detector():
    """MTCNN: of the book's detectors, the one that gives eyes, nose and mouth corners."""
    from dlbook.facemask import detect

    return detect.load_detector("mtcnn")
