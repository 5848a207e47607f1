"""Chapter 3, part 1: the architecture families trained side by side under one budget.

``train_families`` trains every family from scratch for several seeds to early stopping;
``accuracy_at_equal_time`` reads each run after the same training seconds; ``summarize`` joins
the runs with each family's costs (``architectures_costs``) and ``result_values`` flattens the
table into ``architectures.json``.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from dlbook.experiments import architectures_costs
from dlbook.facemask import data
from dlbook.methods import convergence, metrics, models, training

NUM_CLASSES = len(data.CLASS_NAMES)


def load_splits(settings: dict, data_dir=None, seed: int = 0) -> dict[str, data.ImageSet]:
    """The face-mask images at ``settings["image_size"]``, split into train / val / test.

    The split is the book's duplicate-grouped one, fixed by ``seed``; ``settings["limit"]`` takes a
    stratified subset first (None: every image).
    """
    images = data.load_face_mask(
        data_dir=data_dir,
        image_size=settings["image_size"],
        limit=settings["limit"],
        seed=seed,
        progress=False,
    )
    return {name: images.where(name) for name in ("train", "val", "test")}


def split_sizes(splits: dict[str, data.ImageSet]) -> pd.DataFrame:
    """Images per split and class, with the share of ``with_mask``."""
    rows = {
        name: {
            data.CLASS_NAMES[0]: int(np.sum(part.labels == 0)),
            data.CLASS_NAMES[1]: int(np.sum(part.labels == 1)),
        }
        for name, part in splits.items()
    }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table["total"] = table.sum(axis=1)
    table["with_mask share"] = table[data.CLASS_NAMES[1]] / table["total"]
    return table


def train_families(
    splits: dict[str, data.ImageSet],
    families,
    seeds,
    *,
    epoch_cap: int,
    patience: int,
    batch_size: int,
    learning_rate: float,
    map_tasks=None,
) -> tuple[pd.DataFrame, dict]:
    """Train every family once per seed to early stopping on the validation split (Adam, constant
    learning rate, best validation epoch kept), then score it once on the test split.

    Parameters
    ----------
    splits : "train", "val" and "test" image sets (from ``load_splits``).
    families : keys of ``models.BUILDERS``, each built with its default options.
    seeds : one training run per seed (initial weights, mini-batch order, dropout).
    epoch_cap, patience : at most ``epoch_cap`` epochs; stop after ``patience`` epochs without a
        lower validation loss.
    batch_size, learning_rate : the shared budget.
    map_tasks : how the independent (family, seed) runs are run, ``run.map`` for one (default: a
        plain loop); each run is seeded by its own seed, so the results do not depend on it.

    Returns
    -------
    runs : DataFrame, one row per (family, seed): ``val_acc`` and ``test_acc`` of the kept
        weights, ``epochs_used``, ``stopped_early``, ``converged``, ``train_s`` (graph tracing
        left out), ``images_per_s``.
    curves : ``{(family, seed): (val_accuracy per epoch, training seconds per epoch)}``, what
        ``accuracy_at_equal_time`` reads.
    """
    unknown = [name for name in families if name not in models.BUILDERS]
    if unknown:
        raise ValueError(f"families has unknown names {unknown}; use {tuple(models.BUILDERS)}")
    if len(seeds) == 0:
        raise ValueError("seeds is empty; give at least one seed")
    budget = {"epoch_cap": epoch_cap, "patience": patience, "batch_size": batch_size,
              "learning_rate": learning_rate}  # fmt: skip
    tasks = [{"family": family, "seed": int(seed)} for family in families for seed in seeds]
    train_one = functools.partial(_train_one, splits=splits, budget=budget)
    done = (map_tasks or _loop)(train_one, tasks)
    rows = [row for row, _ in done]
    curves = {(row["family"], row["seed"]): curve for row, curve in done}
    return pd.DataFrame(rows), curves


def _loop(function, tasks) -> list:
    return [function(task) for task in tasks]


def _train_one(task: dict, splits: dict[str, data.ImageSet], budget: dict) -> tuple[dict, tuple]:
    """One (family, seed) run of ``train_families``: its row and its (accuracy, seconds) curve."""
    family, seed = task["family"], task["seed"]
    train, val, test = splits["train"], splits["val"], splits["test"]
    fit = convergence.fit_to_convergence(
        functools.partial(models.build, family, train.images.shape[1:], NUM_CLASSES),
        (train.images, train.labels),
        (val.images, val.labels),
        seed=seed,
        **budget,
    )
    train_s = float(np.sum(fit.epoch_s))
    row = {
        "family": family,
        "seed": seed,
        "val_acc": training.accuracy(fit.model, val.images, val.labels),
        "test_acc": training.accuracy(fit.model, test.images, test.labels),
        "epochs_used": fit.epochs_used,
        "stopped_early": fit.stopped_early,
        "converged": fit.converged,
        "train_s": train_s,
        "images_per_s": len(train.labels) * fit.epochs_used / train_s,
    }
    return row, (fit.history["val_accuracy"], fit.epoch_s)


def equal_time_seconds(curves: dict, requested: float) -> float:
    """The training time every family is given: ``requested``, or longer if some run had not
    finished its first epoch by then (so every family is scored on at least one epoch)."""
    first_epochs = [float(seconds[0]) for _, seconds in curves.values()]
    return float(max(requested, *first_epochs))


def accuracy_timelines(curves: dict) -> dict:
    """What the accuracy-against-time figure draws, per run.

    Returns
    -------
    ``{(family, seed): (seconds, accuracy, best)}``: training seconds at the end of each epoch,
    the validation accuracy then, and the best accuracy so far (what a run stopped then keeps);
    each float64 (epochs,).
    """
    return {
        run: (np.cumsum(epoch_s), np.asarray(accuracy), np.maximum.accumulate(accuracy))
        for run, (accuracy, epoch_s) in curves.items()
    }


def accuracy_at_equal_time(curves: dict, seconds: float) -> pd.DataFrame:
    """Validation accuracy each run had reached after ``seconds`` of training (best epoch so far;
    ``convergence.accuracy_at_time``), with the epochs finished by then.

    Returns
    -------
    DataFrame, one row per (family, seed): ``acc_equal_time``, ``epochs_equal_time``.
    """
    rows = []
    for (family, seed), (val_accuracy, epoch_s) in curves.items():
        rows.append(
            {
                "family": family,
                "seed": seed,
                "acc_equal_time": convergence.accuracy_at_time(val_accuracy, epoch_s, seconds),
                "epochs_equal_time": int(np.sum(np.cumsum(epoch_s) <= seconds + 1e-9)),
            }
        )
    return pd.DataFrame(rows)


def summarize(runs: pd.DataFrame, costs: pd.DataFrame) -> pd.DataFrame:
    """One row per family: costs, training, and accuracies (means over seeds).

    Columns: ``params``, ``mflops``, ``latency_b<k>_ms``, ``train_s``, ``epochs_used`` (mean),
    ``converged`` (share of runs), ``val_acc``, ``test_acc``, ``test_acc_low``,
    ``test_acc_high`` (a 95% t interval over seeds, equal to the mean with one seed), ``seeds``,
    and ``acc_equal_time`` / ``epochs_equal_time`` when ``runs`` has them.
    """
    rows = {}
    for family, group in runs.groupby("family", sort=False):
        accuracies = group["test_acc"].to_numpy()
        mean, low, high = metrics.mean_confidence_interval(accuracies)
        row = {
            "train_s": float(group["train_s"].mean()),
            "val_acc": float(group["val_acc"].mean()),
            "test_acc": mean,
            "test_acc_low": low,
            "test_acc_high": high,
            "seeds": len(accuracies),
        }
        for column in ("epochs_used", "converged", "acc_equal_time", "epochs_equal_time"):
            if column in group:
                row[column] = float(group[column].astype(float).mean())
        rows[family] = row
    accuracy_table = pd.DataFrame.from_dict(rows, orient="index")
    return costs.join(accuracy_table, how="inner").rename_axis("family")


def result_values(summary: pd.DataFrame, references: pd.DataFrame | None = None) -> dict:
    """Flat results: ``arch_<key>_<family>`` (test accuracy with interval, validation accuracy,
    epochs used, accuracy at equal time), ``<family>_test_acc``, ``_params``, ``_mflops``,
    ``_latency_ms`` (batch 1, ms per image) and more per family; ``ref_<model>_...`` per reference
    model; ``best_family``, chosen on validation accuracy, and a few comparisons."""
    values = {}
    for family, row in summary.iterrows():
        values[f"arch_test_acc_{family}"] = row["test_acc"]
        values[f"arch_test_acc_{family}_ci_low"] = row["test_acc_low"]
        values[f"arch_test_acc_{family}_ci_high"] = row["test_acc_high"]
        values[f"arch_val_acc_{family}"] = row["val_acc"]
        if "epochs_used" in row:
            values[f"arch_epochs_used_{family}"] = row["epochs_used"]
        if "acc_equal_time" in row:
            values[f"arch_acc_equal_time_{family}"] = row["acc_equal_time"]
        values[f"{family}_test_acc"] = row["test_acc"]
        values[f"{family}_test_acc_low"] = row["test_acc_low"]
        values[f"{family}_test_acc_high"] = row["test_acc_high"]
        values[f"{family}_params"] = int(row["params"])
        values[f"{family}_mflops"] = row["mflops"]
        values[f"{family}_latency_ms"] = row["latency_b1_ms"]
        if "latency_b32_ms" in row:
            values[f"{family}_latency_b32_ms"] = row["latency_b32_ms"]
        values[f"{family}_train_s"] = row["train_s"]
    values["arch_families"] = ",".join(summary.index)
    best = summary["val_acc"].idxmax()
    values["best_family"] = best
    values["selected_on"] = "validation"
    values["best_family_val_acc"] = summary.loc[best, "val_acc"]
    values["best_family_test_acc"] = summary.loc[best, "test_acc"]
    values["seeds_per_family"] = int(summary["seeds"].min())
    if "converged" in summary:
        values["arch_converged_fraction"] = float(summary["converged"].mean())
    # Is MFLOPs a good proxy for CPU latency? Rank correlation across the families, batch 1.
    values["mflops_latency_spearman"] = float(
        summary["mflops"].rank().corr(summary["latency_b1_ms"].rank())
    )
    convnets = summary.drop(index=[f for f in ("ann",) if f in summary.index])
    if len(convnets):
        values["cheapest_convnet"] = convnets["mflops"].idxmin()
        values["fastest_convnet_b1"] = convnets["latency_b1_ms"].idxmin()
    if references is not None:
        values.update(architectures_costs.reference_values(references))
    return values
