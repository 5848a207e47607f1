"""Chapter 3: the architecture families trained side by side, and what each one costs.

Each section of the chapter is one call that computes, saves (through ``run.save``) and returns:
``families`` (training, ``architectures_training``, and costs, ``architectures_costs``),
``references`` (the full-size ImageNet models' costs); the pretrained backbones' sections are in
``dlbook.experiments.backbones``. The ``*_table`` functions format tables for the page and the
``story_*`` functions word the results.
"""

from __future__ import annotations

import pandas as pd

from dlbook.book import present
from dlbook.book.context import Run
from dlbook.core import logs
from dlbook.experiments import architectures_costs, architectures_training


def families(run: Run) -> dict:
    """Part 1: every family trained to early stopping for each seed, scored at equal training
    time, costed, and the best family chosen on validation; saves the ``arch_*`` keys.

    Training seeds are ``run.seed + s`` for ``s`` in ``settings["seeds"]``; ``run.seed`` also
    fixes the split. Returns ``splits`` (sizes), ``runs`` (with accuracy at equal time),
    ``curves``, ``timelines`` (what the accuracy-against-time figure draws), ``summary`` (per
    family), ``costs`` and ``values``.
    """
    settings, seed = run.settings, run.seed
    splits = architectures_training.load_splits(settings, run.data_dir, seed)
    runs, curves = architectures_training.train_families(
        splits,
        settings["families"],
        [seed + s for s in settings["seeds"]],
        epoch_cap=settings["epoch_cap"],
        patience=settings["patience"],
        batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"],
        map_tasks=run.map,
    )
    seconds = architectures_training.equal_time_seconds(curves, settings["equal_time_seconds"])
    equal_time = architectures_training.accuracy_at_equal_time(curves, seconds)
    runs = runs.merge(equal_time, on=["family", "seed"])
    with logs.quiet_block():
        family_costs = architectures_costs.family_costs(
            settings["families"],
            splits["train"].images.shape[1:],
            settings["latency_batch_sizes"],
            settings["latency_max_seconds"],
        )
    summary = architectures_training.summarize(runs, family_costs)
    values = architectures_training.result_values(summary)
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
    run.save(values)
    return {
        "splits": architectures_training.split_sizes(splits),
        "runs": runs,
        "curves": curves,
        "timelines": architectures_training.accuracy_timelines(curves),
        "summary": summary,
        "costs": family_costs,
        "values": values,
    }


def references(run: Run) -> dict:
    """The full-size ImageNet models' costs, without weights; saves ``ref_<model>_*``."""
    settings = run.settings
    with logs.quiet_block():
        table = architectures_costs.reference_costs(
            settings["reference_models"],
            settings["reference_batch_sizes"],
            settings["latency_max_seconds"],
        )
    values = architectures_costs.reference_values(table)
    run.save(values)
    return {"table": table, "values": values}


# ---------------------------------------------------------------------------------------------
# Tables and sentences from the results.


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
