"""Chapter 3: the architecture families trained side by side, and what each one costs.

``train_families`` trains every family from scratch under one budget for several seeds;
``family_costs`` and ``reference_costs`` measure parameters, MFLOPs per image and CPU latency of the
compact families and of the full-size ImageNet models; ``summarize`` joins them into the chapter's
table and ``result_values`` flattens it into ``architectures.json``.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from dlbook.facemask import data
from dlbook.methods import metrics, models

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

    Returns
    -------
    runs : DataFrame, one row per (family, seed): ``val_acc`` and ``test_acc`` of the kept
        weights, ``epochs_used``, ``stopped_early``, ``converged``, ``train_s`` (graph tracing
        left out), ``images_per_s``.
    curves : ``{(family, seed): (val_accuracy per epoch, training seconds per epoch)}``, what
        ``accuracy_at_equal_time`` reads.
    """
    from dlbook.methods import convergence

    unknown = [name for name in families if name not in models.BUILDERS]
    if unknown:
        raise ValueError(f"families has unknown names {unknown}; use {tuple(models.BUILDERS)}")
    if len(seeds) == 0:
        raise ValueError("seeds is empty; give at least one seed")
    train, val, test = splits["train"], splits["val"], splits["test"]
    input_shape = train.images.shape[1:]
    rows, curves = [], {}
    for family in families:
        for seed in seeds:
            fit = convergence.fit_to_convergence(
                functools.partial(models.build, family, input_shape, NUM_CLASSES),
                (train.images, train.labels),
                (val.images, val.labels),
                epoch_cap=epoch_cap,
                patience=patience,
                batch_size=batch_size,
                learning_rate=learning_rate,
                seed=int(seed),
            )
            train_s = float(np.sum(fit.epoch_s))
            rows.append(
                {
                    "family": family,
                    "seed": int(seed),
                    "val_acc": accuracy(fit.model, val.images, val.labels),
                    "test_acc": accuracy(fit.model, test.images, test.labels),
                    "epochs_used": fit.epochs_used,
                    "stopped_early": fit.stopped_early,
                    "converged": fit.converged,
                    "train_s": train_s,
                    "images_per_s": len(train.labels) * fit.epochs_used / train_s,
                }
            )
            curves[(family, int(seed))] = (fit.history["val_accuracy"], fit.epoch_s)
    return pd.DataFrame(rows), curves


def accuracy(model, images, labels, batch_size: int = 256) -> float:
    """Accuracy of a Keras model called directly on batches of raw pixels (``predict`` would
    trace a new function for every model trained)."""
    probs = np.concatenate(
        [
            np.asarray(model(images[i : i + batch_size].astype(np.float32), training=False))
            for i in range(0, len(images), batch_size)
        ]
    )
    return float(np.mean(np.argmax(probs, axis=1) == labels))


def equal_time_seconds(curves: dict, requested: float) -> float:
    """The training time every family is given: ``requested``, or longer if some run had not
    finished its first epoch by then (so every family is scored on at least one epoch)."""
    first_epochs = [float(seconds[0]) for _, seconds in curves.values()]
    return float(max(requested, *first_epochs))


def accuracy_at_equal_time(curves: dict, seconds: float) -> pd.DataFrame:
    """Validation accuracy each run had reached after ``seconds`` of training (best epoch so far;
    ``convergence.accuracy_at_time``), with the epochs finished by then.

    Returns
    -------
    DataFrame, one row per (family, seed): ``acc_equal_time``, ``epochs_equal_time``.
    """
    from dlbook.methods import convergence

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
            from dlbook.methods.backbones import efficientnet_lite
        except ImportError as error:
            return None, f"dlbook.methods.backbones is not installed ({error})"
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
        values.update(reference_values(references))
    return values


def reference_values(references: pd.DataFrame) -> dict:
    """Flat results per reference model: ``ref_<model>_measured``, and when measured ``_params``,
    ``_mflops``, ``_latency_ms`` (batch 1) and ``_latency_b32_ms``."""
    values = {}
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


# ---------------------------------------------------------------------------------------------
# The chapter as calls: each section computes, saves and returns; ``story_*`` words the results.


def quiet():
    """TensorFlow's retracing warnings kept off the page while many models are timed."""
    from dlbook.experiments.backbones import quiet as quiet_backbones

    return quiet_backbones()


def _save(results_dir, values: dict) -> None:
    if results_dir is not None:
        from dlbook.core import results

        results.save(results_dir, "architectures", values)


def families(settings: dict, data_dir=None, seed: int = 0, results_dir=None) -> dict:
    """Part 1: every family trained to early stopping for each seed, scored at equal training
    time, costed, and the best family chosen on validation; saves the ``arch_*`` keys.

    Training seeds are ``seed + s`` for ``s`` in ``settings["seeds"]``; ``seed`` also fixes the
    split. Returns ``splits`` (sizes), ``runs``, ``equal_time`` (per run), ``curves``,
    ``summary`` (per family), ``costs`` and ``values``.
    """
    splits = load_splits(settings, data_dir, seed)
    runs, curves = train_families(
        splits,
        settings["families"],
        [seed + s for s in settings["seeds"]],
        epoch_cap=settings["epoch_cap"],
        patience=settings["patience"],
        batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"],
    )
    seconds = equal_time_seconds(curves, settings["equal_time_seconds"])
    equal_time = accuracy_at_equal_time(curves, seconds)
    runs = runs.merge(equal_time, on=["family", "seed"])
    with quiet():
        costs = family_costs(
            settings["families"],
            splits["train"].images.shape[1:],
            settings["latency_batch_sizes"],
            settings["latency_max_seconds"],
        )
    summary = summarize(runs, costs)
    values = result_values(summary)
    values.update(
        {
            "arch_epoch_cap": int(settings["epoch_cap"]),
            "arch_patience": int(settings["patience"]),
            "arch_equal_time_seconds": seconds,
            "arch_image_size": int(settings["image_size"]),
            "arch_seeds": len(settings["seeds"]),
            "arch_train_images": len(splits["train"].labels),
            "arch_stopped_early_fraction": float(runs["stopped_early"].mean()),
        }
    )
    _save(results_dir, values)
    return {
        "splits": split_sizes(splits),
        "runs": runs,
        "curves": curves,
        "summary": summary,
        "costs": costs,
        "values": values,
    }


def references(settings: dict, data_dir=None, seed: int = 0, results_dir=None) -> dict:
    """The full-size ImageNet models' costs, without weights; saves ``ref_<model>_*``."""
    with quiet():
        table = reference_costs(
            settings["reference_models"],
            settings["reference_batch_sizes"],
            settings["latency_max_seconds"],
        )
    values = reference_values(table)
    _save(results_dir, values)
    return {"table": table, "values": values}


def run(settings: dict, data_dir=None, seed: int = 0, results_dir=None) -> dict:
    """Every section of chapter 3, in order; returns each section's result by name."""
    from dlbook.experiments import backbones as bx

    out = {
        "families": families(settings, data_dir, seed, results_dir),
        "references": references(settings, data_dir, seed, results_dir),
        "photo_checks": bx.photo_checks_section(settings, data_dir, seed, results_dir),
    }
    out["backbones"] = bx.backbone_speeds(
        settings, data_dir, seed, results_dir, checks=out["photo_checks"]["checks"]
    )
    return out


# -- tables and sentences from the results -------------------------------------------------


def family_table(result: dict) -> pd.DataFrame:
    """One row per family, for the page: validation and test accuracy, accuracy at equal time,
    epochs used, parameters, MFLOPs, latency and training time."""
    summary = result["summary"]
    table = pd.DataFrame(
        {
            "family": summary.index,
            "validation accuracy": summary["val_acc"].to_numpy(),
            "test accuracy": summary["test_acc"].to_numpy(),
            "test 95% CI low": summary["test_acc_low"].to_numpy(),
            "test 95% CI high": summary["test_acc_high"].to_numpy(),
            "accuracy at equal time": summary["acc_equal_time"].to_numpy(),
            "epochs used": summary["epochs_used"].to_numpy(),
            "parameters (k)": summary["params"].to_numpy() / 1e3,
            "MFLOPs": summary["mflops"].to_numpy(),
            "ms per image (batch 1)": summary["latency_b1_ms"].to_numpy(),
            "training s": summary["train_s"].to_numpy(),
        }
    )
    return table


FAMILY_PERCENT_COLUMNS = (
    "validation accuracy",
    "test accuracy",
    "test 95% CI low",
    "test 95% CI high",
    "accuracy at equal time",
)


def reference_table(result: dict) -> pd.DataFrame:
    """One row per full-size model for the page; a model not measured says why."""
    table = result["table"].copy()
    columns = {
        "input_size": "input size (px)",
        "params": "parameters (M)",
        "mflops": "MFLOPs",
        "latency_b1_ms": "ms per image (batch 1)",
        "latency_b32_ms": "ms per image (batch 32)",
    }
    if "params" in table:
        table["params"] = table["params"] / 1e6
    skipped = table["note"].fillna("") != ""
    table = table.rename(columns=columns).drop(columns=["note"])
    table = table.astype(object)
    table.loc[skipped] = table.loc[skipped].where(
        table.loc[skipped].notna(), "not built (see below)"
    )
    return table.rename_axis("model").reset_index()


def _plural(count, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def story_budget(result: dict) -> str:
    """What every family was given: images, size, epochs, early stopping, seeds."""
    v, sizes = result["values"], result["splits"]
    count = len(result["summary"])
    return (
        f"All {count} families see the same {v['arch_train_images']} training images "
        f"({v['arch_image_size']} x {v['arch_image_size']} px, duplicate-grouped split) and train "
        f"with Adam at a constant learning rate until the validation loss has not improved for "
        f"{_plural(v['arch_patience'], 'epoch')}, at most {_plural(v['arch_epoch_cap'], 'epoch')}, "
        f"keeping the best validation epoch; each family trains once per seed "
        f"({_plural(v['arch_seeds'], 'seed')}). The validation split ({int(sizes.loc['val', 'total'])} "
        f"images) picks the best family; the test split ({int(sizes.loc['test', 'total'])} images) "
        "scores each trained model once."
    )


def story_families(result: dict) -> str:
    """The family chosen on validation, its test score, the runner-up, epochs and equal time."""
    from dlbook.book import present

    v, summary = result["values"], result["summary"]
    best = v["best_family"]
    ranked = summary["val_acc"].sort_values(ascending=False)
    runner_up = ranked.index[1] if len(ranked) > 1 else None
    text = (
        f"On validation the best family is **{best}** "
        f"({present.percent(summary.loc[best, 'val_acc'])}); on the test split it scores "
        f"**{present.percent(summary.loc[best, 'test_acc'])}** "
        f"({present.interval(summary.loc[best, 'test_acc_low'], summary.loc[best, 'test_acc_high'])}"
        f" over {_plural(v['seeds_per_family'], 'seed')})."
    )
    if runner_up is not None:
        overlap = summary.loc[best, "test_acc_low"] <= summary.loc[runner_up, "test_acc_high"]
        text += (
            f" Next on validation comes {runner_up} "
            f"({present.percent(summary.loc[runner_up, 'val_acc'])}); "
            + (
                "their test intervals overlap, so the data do not separate the two."
                if overlap
                else "their test intervals do not overlap."
            )
        )
    epochs = summary["epochs_used"]
    if epochs.min() == epochs.max():
        text += f" Every family trained for {present.number(epochs.min(), 2)} epochs"
    else:
        text += (
            f" Training took between {present.number(epochs.min(), 2)} ({epochs.idxmin()}) and "
            f"{present.number(epochs.max(), 2)} ({epochs.idxmax()}) epochs on average"
        )
    text += (
        f"; early stopping fired before the cap in "
        f"{present.percent(v['arch_stopped_early_fraction'], 0)} of the runs."
    )
    timed = summary["acc_equal_time"]
    text += (
        f" Given the same {present.number(v['arch_equal_time_seconds'])} s of training each, "
        f"{timed.idxmax()} reaches the highest validation accuracy "
        f"({present.percent(timed.max())}) and {timed.idxmin()} the lowest "
        f"({present.percent(timed.min())})"
        + (
            ": given equal time, the leader is not the family chosen at convergence."
            if timed.idxmax() != best
            else ", the same family as at convergence."
        )
    )
    return text


def story_latency(result: dict) -> str:
    """Whether the fewest MFLOPs means the fastest at batch 1."""
    from dlbook.book import present

    v = result["values"]
    fastest, cheapest = v["fastest_convnet_b1"], v["cheapest_convnet"]
    text = (
        "Across the five compact families the rank correlation between MFLOPs and batch-1 latency "
        f"is {present.number(v['mflops_latency_spearman'], 2)}. "
    )
    if fastest == cheapest:
        return text + (
            f"The convolutional family with the fewest MFLOPs, {cheapest}, is also the fastest at "
            "batch 1."
        )
    text += (
        f"The convolutional family with the fewest MFLOPs, {cheapest} "
        f"({present.number(v[cheapest + '_latency_ms'])} ms per image at batch 1), is not the "
        f"fastest: {fastest} takes {present.number(v[fastest + '_latency_ms'])} ms with "
        f"{present.number(v[fastest + '_mflops'])} MFLOPs."
    )
    if f"{cheapest}_latency_b32_ms" in v:
        text += (
            f" Batching amortises per-call overhead: at batch 32 {cheapest} needs "
            f"{present.number(v[cheapest + '_latency_b32_ms'])} ms per image."
        )
    return text


def story_references(result: dict, families_result: dict) -> str:
    """The heaviest full-size model against the best compact family, and what was skipped."""
    from dlbook.book import present

    table = result["table"]
    measured = table[table["note"] == ""]
    skipped = table[table["note"] != ""]
    best = families_result["values"]["best_family"]
    summary = families_result["summary"]
    size = families_result["values"]["arch_image_size"]
    text = ""
    if len(measured):
        heaviest = measured["mflops"].idxmax()
        text = (
            f"The most expensive reference model, {heaviest}, needs "
            f"{present.number(measured.loc[heaviest, 'mflops'] / 1e3)} GFLOPs per image and "
            f"{present.number(measured.loc[heaviest, 'latency_b1_ms'])} ms per image on this CPU at "
            f"batch 1, {present.number(measured.loc[heaviest, 'mflops'] / summary.loc[best, 'mflops'])}"
            f" times the MFLOPs of the best compact family ({best}, which works at {size} px). "
        )
    if len(skipped):
        text += "Not measured here: " + ", ".join(
            f"{name} ({note.removeprefix('skipped: ')})" for name, note in skipped["note"].items()
        )
        text += "."
    else:
        text += "Every reference model in this profile was measured."
    return text
