"""Chapter 3: the architecture families trained side by side, and what each one costs.

``train_families`` trains every family from scratch under one budget for several seeds;
``family_costs`` and ``reference_costs`` measure parameters, MFLOPs per image and CPU latency of the
compact families and of the full-size ImageNet models; ``summarize`` joins them into the chapter's
table and ``result_values`` flattens it into ``architectures.json``.
"""

from __future__ import annotations

import functools
import sys
import time

import numpy as np
import pandas as pd

from dlbook import data, metrics, models, profiles, training

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
    epochs: int,
    batch_size: int,
    learning_rate: float,
    lr_schedule: str = "constant",
    strategy=None,
    progress: bool = True,
) -> pd.DataFrame:
    """Train every family once per seed under the same budget and score it on the test split.

    Parameters
    ----------
    splits : "train", "val" and "test" image sets (from ``load_splits``).
    families : keys of ``models.BUILDERS``, each built with its default options.
    seeds : one training run per seed (initial weights, shuffling, dropout).
    epochs, batch_size, learning_rate, lr_schedule : the shared budget (Adam).
    strategy : a ``tf.distribute.Strategy``; None: the default one.

    Returns
    -------
    DataFrame, one row per (family, seed): ``test_acc``, ``val_acc`` (after the last epoch),
    ``train_s`` (all epochs), ``images_per_s`` (training throughput).
    """
    unknown = [name for name in families if name not in models.BUILDERS]
    if unknown:
        raise ValueError(f"families has unknown names {unknown}; use {tuple(models.BUILDERS)}")
    if len(seeds) == 0:
        raise ValueError("seeds is empty; give at least one seed")
    train, val, test = splits["train"], splits["val"], splits["test"]
    input_shape = train.images.shape[1:]
    rows = []
    for family in families:
        for seed in seeds:
            result = training.fit(
                functools.partial(models.build, family, input_shape, NUM_CLASSES),
                train.images,
                train.labels,
                validation_data=(val.images, val.labels),
                epochs=epochs,
                batch_size=batch_size,
                learning_rate=learning_rate,
                lr_schedule=lr_schedule,
                seed=int(seed),
                strategy=strategy,
            )
            row = {
                "family": family,
                "seed": int(seed),
                "test_acc": training.accuracy(result.model, test.images, test.labels),
                "val_acc": result.history["val_accuracy"][-1],
                "train_s": result.timings["train_s"],
                "images_per_s": result.timings["images_per_s"],
            }
            rows.append(row)
            if progress:
                print(
                    f"{family:>9} seed {seed}: test accuracy {row['test_acc']:.3f}, "
                    f"{row['train_s']:.1f} s",
                    file=sys.stderr,
                )
    return pd.DataFrame(rows)


def family_costs(
    families, input_shape, batch_sizes=(1, 32), max_seconds: float = 1.0
) -> pd.DataFrame:
    """Parameters, MFLOPs per image and CPU latency (ms per image) of each family's default build.

    Returns
    -------
    DataFrame indexed by family with ``params``, ``mflops`` and ``latency_b<k>_ms`` columns.
    """
    rows = {}
    for family in families:
        model = models.build(family, tuple(input_shape), NUM_CLASSES)
        rows[family] = models.model_cost(model, batch_sizes, max_seconds=max_seconds)
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("family")


def _reference_model(name: str):
    """A full-size model with random weights, or a sentence saying why it cannot be built."""
    if name in models.REFERENCE_MODELS:
        return models.build_reference(name), None
    if name.startswith("efficientnet_lite"):
        try:
            from dlbook.backbones import efficientnet_lite
        except ImportError as error:
            return None, f"dlbook.backbones is not installed ({error})"
        if name not in efficientnet_lite.VARIANTS:
            return None, f"{name} is not an EfficientNet-Lite variant"
        size = efficientnet_lite.VARIANTS[name].image_size
        return efficientnet_lite.build_efficientnet_lite(name, input_shape=(size, size, 3)), None
    raise ValueError(
        f"name={name!r} is not a reference model; use one of "
        f"{(*models.REFERENCE_MODELS, 'efficientnet_lite0')}"
    )


def reference_costs(names, batch_sizes=(1, 32), max_seconds: float = 1.0) -> pd.DataFrame:
    """Parameters, MFLOPs per image and CPU latency of full-size ImageNet models, without weights.

    Latency at batch sizes above 1 is timed once after one warm-up call, as one call of a big
    model at batch 32 takes seconds on 2 cores.

    Returns
    -------
    DataFrame indexed by model with ``input_size``, ``params``, ``mflops``, ``latency_b<k>_ms``
    and ``note`` (why a model was skipped; empty when it was measured).
    """
    rows = {}
    for name in names:
        model, reason = _reference_model(name)
        if model is None:
            rows[name] = {"note": f"skipped: {reason}"}
            continue
        row = {
            "input_size": int(model.inputs[0].shape[1]),
            "params": int(model.count_params()),
            "mflops": models.count_flops(model) / 1e6,
        }
        for batch_size in batch_sizes:
            repeats = {"min_repeats": 3} if batch_size == 1 else {"min_repeats": 1, "warmup": 1}
            timing = models.measure_latency(
                model, batch_size=batch_size, max_seconds=max_seconds, **repeats
            )
            row[f"latency_b{batch_size}_ms"] = timing["ms_per_image"]
        row["note"] = ""
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")


def summarize(runs: pd.DataFrame, costs: pd.DataFrame) -> pd.DataFrame:
    """One row per family: costs, mean training time and test accuracy with a 95% t interval.

    Columns: ``params``, ``mflops``, ``latency_b<k>_ms``, ``train_s``, ``test_acc``,
    ``test_acc_low``, ``test_acc_high`` (equal to the mean with one seed), ``seeds``.
    """
    rows = {}
    for family, group in runs.groupby("family", sort=False):
        accuracies = group["test_acc"].to_numpy()
        mean, low, high = metrics.mean_confidence_interval(accuracies)
        rows[family] = {
            "train_s": float(group["train_s"].mean()),
            "test_acc": mean,
            "test_acc_low": low,
            "test_acc_high": high,
            "seeds": len(accuracies),
        }
    accuracy = pd.DataFrame.from_dict(rows, orient="index")
    return costs.join(accuracy, how="inner").rename_axis("family")


def result_values(summary: pd.DataFrame, references: pd.DataFrame | None = None) -> dict:
    """Flat results: ``<family>_test_acc``, ``_params``, ``_mflops``, ``_latency_ms`` (batch 1, ms
    per image) and more per family; ``ref_<model>_...`` per reference model; a few comparisons."""
    values = {}
    for family, row in summary.iterrows():
        values[f"{family}_test_acc"] = row["test_acc"]
        values[f"{family}_test_acc_low"] = row["test_acc_low"]
        values[f"{family}_test_acc_high"] = row["test_acc_high"]
        values[f"{family}_params"] = int(row["params"])
        values[f"{family}_mflops"] = row["mflops"]
        values[f"{family}_latency_ms"] = row["latency_b1_ms"]
        if "latency_b32_ms" in row:
            values[f"{family}_latency_b32_ms"] = row["latency_b32_ms"]
        values[f"{family}_train_s"] = row["train_s"]
    best = summary["test_acc"].idxmax()
    values["best_family"] = best
    values["best_family_test_acc"] = summary.loc[best, "test_acc"]
    values["seeds_per_family"] = int(summary["seeds"].min())
    # Is MFLOPs a good proxy for CPU latency? Rank correlation across the families, batch 1.
    values["mflops_latency_spearman"] = float(
        summary["mflops"].rank().corr(summary["latency_b1_ms"].rank())
    )
    convnets = summary.drop(index=[f for f in ("ann",) if f in summary.index])
    if len(convnets):
        values["cheapest_convnet"] = convnets["mflops"].idxmin()
        values["fastest_convnet_b1"] = convnets["latency_b1_ms"].idxmin()
    if references is not None:
        for name, row in references.iterrows():
            measured = bool(not row.get("note"))
            values[f"ref_{name}_measured"] = measured
            if not measured:
                continue
            values[f"ref_{name}_params"] = int(row["params"])
            values[f"ref_{name}_mflops"] = row["mflops"]
            values[f"ref_{name}_latency_ms"] = row["latency_b1_ms"]
            if "latency_b32_ms" in row and pd.notna(row["latency_b32_ms"]):
                values[f"ref_{name}_latency_b32_ms"] = row["latency_b32_ms"]
    return values


def run_part1(settings: dict, data_dir=None, seed: int = 0, strategy=None) -> dict:
    """Everything Part 1 measures, under one profile's ``settings``.

    Training seeds are ``seed + s`` for ``s`` in ``settings["seeds"]``; ``seed`` also fixes the
    split. Returns a dict with the tables ``splits`` (sizes), ``runs``, ``costs``, ``summary``,
    ``references``, and ``seconds`` spent on each stage.
    """
    seconds = {}
    start = time.perf_counter()
    splits = load_splits(settings, data_dir, seed)
    seconds["load"] = time.perf_counter() - start

    start = time.perf_counter()
    runs = train_families(
        splits,
        settings["families"],
        [seed + s for s in settings["seeds"]],
        settings["epochs"],
        settings["batch_size"],
        settings["learning_rate"],
        lr_schedule=settings["lr_schedule"],
        strategy=strategy,
    )
    seconds["train"] = time.perf_counter() - start

    start = time.perf_counter()
    costs = family_costs(
        settings["families"],
        splits["train"].images.shape[1:],
        settings["latency_batch_sizes"],
        settings["latency_max_seconds"],
    )
    seconds["costs"] = time.perf_counter() - start

    start = time.perf_counter()
    references = reference_costs(
        settings["reference_models"],
        settings["reference_batch_sizes"],
        settings["latency_max_seconds"],
    )
    seconds["references"] = time.perf_counter() - start
    return {
        "splits": split_sizes(splits),
        "runs": runs,
        "costs": costs,
        "summary": summarize(runs, costs),
        "references": references,
        "seconds": seconds,
    }


def benchmark_images(profile: str, count: int, data_dir=None, seed: int = 0) -> np.ndarray:
    """``count`` face-mask images at the pooled-feature input size of ``profiles.FEATURES``.

    Returns
    -------
    ndarray, shape (count, S, S, 3), uint8, S = ``profiles.get(profile, "features")["image_size"]``.
    """
    if not isinstance(count, (int, np.integer)) or count < 2:
        raise ValueError(f"count={count!r} must be an integer of at least 2")
    size = profiles.get(profile, "features")["image_size"]
    images = data.load_face_mask(
        data_dir=data_dir, image_size=size, limit=count, seed=seed, progress=False
    )
    return images.images
