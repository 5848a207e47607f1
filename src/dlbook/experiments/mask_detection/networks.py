"""Chapter 4, section 4b: what each transfer network costs, and how the dissertation's compare.

Every backbone with weights here runs at its own input size (``dataset.network_size``). For each,
``network_costs`` counts the FLOPs of one forward pass at that size (``methods.costs``), times
feature extraction on a sample of ``cost_sample`` images (uncached) and extrapolates to the whole
data set, and adds what fine-tuning cost: the boundary maps (the frozen bottom, estimated from its
share of the FLOPs), the training on the chapter's split and, for the networks cross-validated
fold by fold, the per-fold training. For a network with a chosen cut (``fine_tune_cuts``), one
epoch's cost is also estimated from the FLOPs of its top blocks (forward and backward, about
three forward passes) at the rate its extraction reached, which is how a network too costly to
fine-tune is recognised. The sum over the dissertation's networks is what they add to a cold
build.
"""

from __future__ import annotations

import os

import pandas as pd

from dlbook.book import present
from dlbook.experiments.mask_detection.classifiers import (
    display_name,
    fine_tune_blocks,
    missing_weights,
    plural,
)
from dlbook.experiments.mask_detection.dataset import Chapter, images_for, network_size
from dlbook.facemask import features, runtime
from dlbook.methods import backbones, costs
from dlbook.methods.backbones import fine_tune

TRAINING_PASSES = 3
"""A training step costs about three forward passes (forward, and backward through two products)."""


def bottom_share(name: str, blocks: int, size: int) -> float:
    """The share of a forward pass's FLOPs spent below the cut before the last ``blocks`` blocks."""
    model = backbones.build(name, weights=None)
    bottom, _, _ = fine_tune.split(model, blocks)
    shape = (size, size, 3)
    return costs.count_flops(bottom, shape) / costs.count_flops(model, shape)


def epoch_seconds_estimate(share: float, rate: float, train_images: int) -> float:
    """Seconds of one fine-tuning epoch over ``train_images``: the top's ``1 - share`` of a
    forward pass, ``TRAINING_PASSES`` times, at the ``rate`` (images/s) extraction reached."""
    return (1 - share) * TRAINING_PASSES * train_images / rate


def network_cost(chapter: Chapter, name: str, models: dict, cv: dict) -> dict:
    """One network's cost in the chapter (see the module docstring); seconds are wall-clock."""
    s, count = chapter.run.settings, len(chapter.images)
    size = network_size(s, name)
    sample = images_for(chapter, name).images[: s["cost_sample"]]
    rate = features.benchmark(name, sample, runtime_name=runtime.choose_runtime(count), quiet=True)
    row = {
        "network": name,
        "input_size": size,
        "gflop_per_image": costs.count_flops(
            backbones.build(name, weights=None), (size,) * 2 + (3,)
        )
        / 1e9,
        "extraction_images_per_s": rate,
        "extraction_seconds_estimate": count / rate,
    }
    tuned = models["runs"].get(f"{name}_finetuned")
    share = None
    if name in s.get("fine_tune_cuts", {}) or tuned is not None:
        blocks = fine_tune_blocks(s, name)
        share = bottom_share(name, blocks, size)
        row["fine_tune_blocks"] = blocks
        row["fine_tune_epoch_seconds_estimate"] = epoch_seconds_estimate(
            share, rate, int((chapter.images.split == "train").sum())
        )
    if tuned is not None:
        row["maps_seconds_estimate"] = row["extraction_seconds_estimate"] * share
        row["fine_tune_epochs"] = tuned.info["epochs"]
        row["fine_tune_seconds"] = tuned.info["seconds"] - tuned.info["maps_seconds"]
        if tuned.name in cv.get("fine_tune_cv_seconds", {}):
            row["fine_tune_cv_seconds"] = cv["fine_tune_cv_seconds"][tuned.name]
    parts = ("extraction_seconds_estimate", "maps_seconds_estimate", "fine_tune_seconds")
    row["cold_seconds_estimate"] = sum(row.get(key, 0.0) for key in parts) + row.get(
        "fine_tune_cv_seconds", 0.0
    )
    return row


def network_costs(chapter: Chapter, models: dict, cv: dict) -> dict:
    """``network_cost`` of every backbone with weights here, and the dissertation's total (saved).

    Returns
    -------
    dict with ``table`` (one row per network) and ``values`` (``<network>_<measure>`` keys,
    ``ported_networks_cold_seconds_estimate``).
    """
    names = [name for name, run in models["runs"].items() if run.kind == "head"]
    rows = [network_cost(chapter, name, models, cv) for name in names]
    table = pd.DataFrame(rows).set_index("network")
    values = {}
    for name, row in table.iterrows():
        for key, value in row.items():
            if pd.notna(value):
                whole = key.endswith(("_size", "_blocks", "_epochs"))
                values[f"{name}_{key}"] = int(value) if whole else float(value)
    ports = [name for name in names if name in chapter.run.settings.get("fine_tune_cuts", {})]
    values["ported_networks"] = ",".join(ports)
    # Timings on a machine shared with other work are slower than on an idle one: say how busy.
    values["network_costs_timing_load_average"] = os.getloadavg()[0]
    values["network_costs_timing_cpu_threads"] = runtime.cpu_threads()
    values["ported_networks_cold_seconds_estimate"] = float(
        table.loc[ports, "cold_seconds_estimate"].sum() if ports else 0.0
    )
    chapter.run.save(values)
    return {"table": table, "values": values}


def costs_table(found: dict) -> pd.DataFrame:
    """The cost table for the page: one row per network."""
    columns = {
        "input_size": "input px",
        "gflop_per_image": "GFLOP/image",
        "extraction_images_per_s": "images/s",
        "extraction_seconds_estimate": "extraction s (est.)",
        "fine_tune_blocks": "blocks cut",
        "fine_tune_epoch_seconds_estimate": "s an epoch (est.)",
        "fine_tune_epochs": "epochs",
        "maps_seconds_estimate": "maps s (est.)",
        "fine_tune_seconds": "fine-tune s",
        "fine_tune_cv_seconds": "per-fold fine-tunes s",
        "cold_seconds_estimate": "cold build s (est.)",
    }
    table = found["table"].reindex(columns=list(columns)).rename(columns=columns)
    table.index = table.index.map(display_name)
    return present.table(
        table.rename_axis("network"),
        index=True,
        missing={
            "blocks cut": "-",
            "s an epoch (est.)": "-",
            "epochs": "not fine-tuned",
            "maps s (est.)": "-",
            "fine-tune s": "-",
            "per-fold fine-tunes s": "not run",
        },
    )


def story_costs(found: dict, settings: dict) -> str:
    v, table = found["values"], found["table"]
    ports = [name for name in v["ported_networks"].split(",") if name]
    if not ports:
        missing = [name for name in settings.get("fine_tune_cuts", {}) if name not in table.index]
        if missing:
            return (
                f"{', '.join(map(display_name, missing))}: not measured, "
                f"{missing_weights(missing[0])}. The table gives what each backbone run costs."
            )
        return (
            "The dissertation's networks are not run in this profile; the table gives what each "
            "backbone that is run costs."
        )
    sizes = ", ".join(
        f"{display_name(name)} at {int(table.loc[name, 'input_size'])} px "
        f"({present.number(table.loc[name, 'gflop_per_image'])} GFLOP an image)"
        for name in ports
    )
    minutes = v["ported_networks_cold_seconds_estimate"] / 60
    load, threads = v["network_costs_timing_load_average"], v["network_costs_timing_cpu_threads"]
    tuned = [name for name in ports if name in settings["fine_tune_ports"]]
    frozen = [name for name in ports if name not in tuned]
    folds = [name for name in tuned if pd.notna(table.loc[name].get("fine_tune_cv_seconds"))]
    text = (
        f"The dissertation's networks ran at {sizes}. Extraction was timed on "
        f"{plural(settings['cost_sample'], 'image')} and extrapolated to the whole data set; with "
        f"the fine-tuning they add about **{present.number(minutes, 2)} minutes** to a cold build "
        f"on this machine ({plural(threads, 'CPU core')}, 1-minute load "
        f"average {present.number(load, 2)} while it was timed); the "
        "target is at most 10 minutes on two cores"
        + (", met" if minutes <= 10 else ", missed here")
        + (
            ": other work shared these cores, and every figure in the table is wall-clock time."
            if minutes > 10 and load > threads
            else "."
        )
    )
    if tuned:
        text += (
            f" {' and '.join(map(display_name, tuned))} were fine-tuned on the chapter's split; "
            "fold by fold "
            + (
                f"only {' and '.join(map(display_name, folds))}, the best of them on validation"
                if folds and len(folds) < len(tuned)
                else ("all of them" if folds else "none of them")
            )
            + ", to stay within that budget."
        )
    for name in frozen:
        epoch = table.loc[name, "fine_tune_epoch_seconds_estimate"]
        blocks = int(table.loc[name, "fine_tune_blocks"])
        text += (
            f" {display_name(name)} stays frozen: one epoch of its last "
            f"{'block' if blocks == 1 else plural(blocks, 'block')} would take about "
            f"{present.number(epoch, 2)} s here, {present.number(epoch * settings['fine_tune_epochs'] / 60, 2)} "
            f"minutes for the {settings['fine_tune_epochs']}-epoch cap on one split."
        )
    return text
