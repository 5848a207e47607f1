"""Chapter 3: what each architecture costs, in parameters, MFLOPs per image and CPU latency.

``family_costs`` measures the compact families the chapter trains, ``reference_costs`` the
full-size ImageNet models (random weights: only their size and speed matter here), and
``reference_values`` flattens the latter into ``ref_<model>_*`` keys.
"""

from __future__ import annotations

import pandas as pd

from dlbook.facemask import data
from dlbook.methods import costs, models

NUM_CLASSES = len(data.CLASS_NAMES)


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
        rows[family] = costs.model_cost(model, batch_sizes, max_seconds=max_seconds)
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
            "mflops": costs.count_flops(model) / 1e6,
        }
        for batch_size in batch_sizes:
            repeats = {"min_repeats": 3} if batch_size == 1 else {"min_repeats": 1, "warmup": 1}
            timing = costs.measure_latency(
                model, batch_size=batch_size, max_seconds=max_seconds, **repeats
            )
            row[f"latency_b{batch_size}_ms"] = timing["ms_per_image"]
        row["note"] = ""
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")


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
