"""Chapter 4, sections 8 and 11: the shipped model and its TensorFlow Lite exports.

The best model, its preprocessing, head and temperature go into one Keras file with a JSON
description beside it; the file is reloaded and checked against the in-memory probabilities,
then exported to TFLite fp32, fp16 and int8 and measured (size, latency, accuracy).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pandas as pd

from dlbook.book import present
from dlbook.core import logs
from dlbook.experiments.mask_detection.classifiers import ModelRun, display_name
from dlbook.experiments.mask_detection.dataset import (
    Chapter,
    images_for,
    network_size,
    stratified_pick,
)
from dlbook.facemask import analyse, classify, data, deploy, predict, tflite
from dlbook.methods import backbones


def ship_model(
    run: ModelRun, temperature: float, image_size: int, out_dir: Path, provenance: dict
) -> Path:
    """Save ``run`` (a backbone + head model) as ``out_dir/models/mask_classifier.keras``."""
    if run.kind not in ("head", "finetuned"):
        raise ValueError(f"run.kind={run.kind!r}: only backbone models are shipped")
    backbone = run.keras_model if run.kind == "finetuned" else backbones.load(run.backbone)
    model = classify.build_shipped_model(
        backbone, run.head[0], run.head[1], temperature, image_size
    )
    metadata = {
        "image_size": int(image_size),
        "temperature": float(temperature),
        "model": run.name,
        "backbone": run.backbone,
        "input": "RGB, values 0-255, resized (no crop) to image_size with bilinear filtering, "
        "as dlbook.facemask.data.decode_image does",
        "output": "P(with_mask), temperature-scaled",
        **provenance,
    }
    path, _ = classify.save_shipped_model(
        model, out_dir / "models" / "mask_classifier.keras", metadata
    )
    return path


def check_shipped_model(
    path: Path, run: ModelRun, calibrated: np.ndarray, ds, n: int = 32
) -> float:
    """Largest |P| difference between the reloaded shipped model and the in-memory calibrated probs."""
    model, _ = classify.load_shipped_model(path)
    pick = np.flatnonzero(ds.split == "test")[:n]
    return float(np.abs(classify.predict_images(model, ds.images[pick]) - calibrated[pick]).max())


def save_mask_probs(path: Path, runs: dict, ds: data.ImageSet) -> Path:
    """Write ``paths``, ``labels``, ``split``, ``models`` and ``probs__<model>`` to ``path``."""
    arrays = {
        "paths": np.array(ds.paths, dtype=str),
        "labels": ds.labels.astype(np.int64),
        "split": np.asarray(ds.split, dtype=str),
        "models": np.array(list(runs), dtype=str),
    }
    for name, run in runs.items():
        arrays[f"probs__{name}"] = np.asarray(run.probs, dtype=np.float64)
    np.savez(path, **arrays)
    return path


def ship_best(chapter: Chapter, models: dict, evaluation: dict, calibration: dict) -> dict:
    """Save the best model as one Keras file, check it reloads, classify a few files (saved).

    Also writes ``mask_probs.npz`` (every model's P(with_mask) for every image, for chapter 6)
    and caches the demo page's conformal calibration for the shipped file.
    """
    ds, best, runs = chapter.images, evaluation["best"], models["runs"]
    provenance = {
        "profile": chapter.run.profile,
        "seed": chapter.run.seed,
        "trained_on": "train split, head strength chosen on val",
        "temperature_fitted_on": "calib split",
    }
    path = ship_model(
        runs[best], calibration["temperature"],
        network_size(chapter.run.settings, runs[best].backbone), chapter.run.results_dir,
        provenance,
    )  # fmt: skip
    sized = images_for(chapter, runs[best].backbone)
    gap = check_shipped_model(path, runs[best], calibration["probs_calibrated"], sized)
    save_mask_probs(chapter.run.results_dir / "mask_probs.npz", runs, ds)
    model, metadata = classify.load_shipped_model(path)
    # The demo page's conformal calibration, cached by the model file's sha256 now, so the
    # page's first start after a build does not have to score the validation images itself.
    analyse.calibration_scores(path, model, metadata, chapter.data_dir)
    sample = [chapter.data_dir / p for p in ds.paths[:: max(1, len(ds) // 6)][:6]]
    predictions, _ = predict.predict_files(
        model, int(metadata["image_size"]), sample, progress=False
    )
    example = pd.DataFrame(
        {
            "file": [str(Path(p.path).relative_to(chapter.data_dir)) for p in predictions],
            "predicted": [p.label for p in predictions],
            "P(with_mask)": [p.prob_with_mask for p in predictions],
        }
    )
    values = {"shipped_reload_max_diff": gap, "shipped_model_mb": path.stat().st_size / 1e6}
    chapter.run.save(values)
    return {"path": path, "example": example, "values": values, "model": best}


def story_ship(shipped: dict) -> str:
    v = shipped["values"]
    return (
        f"The shipped file (`models/mask_classifier.keras` in the results folder, "
        f"{present.number(v['shipped_model_mb'])} MB) holds {display_name(shipped['model'])} with its "
        "preprocessing, head and temperature; reloaded, it reproduces the in-memory calibrated "
        f"probabilities to within {present.number(v['shipped_reload_max_diff'])}. "
        "The `predict` command on six of the data set's files:"
    )


def tflite_benchmark(shipped_path: Path, chapter: Chapter) -> tuple[pd.DataFrame, dict]:
    """Export the shipped model to TFLite fp32/fp16/int8 and measure size, latency, accuracy.

    The exports go to ``models/`` in the results folder; int8 is calibrated on
    ``tflite_representative`` training images, and every precision is measured on at most
    ``tflite_test_limit`` test images (label shares kept).
    """
    model, _ = classify.load_shipped_model(shipped_path)
    settings, seed, ds = chapter.run.settings, chapter.run.seed, chapter.images
    rng = np.random.default_rng(seed)
    train = np.flatnonzero(ds.split == "train")
    representative = ds.images[rng.choice(train, settings["tflite_representative"], replace=False)]
    limit = settings["tflite_test_limit"] or len(ds)
    test = stratified_pick(ds.labels, ds.split == "test", limit, seed)
    paths = tflite.export(
        model,
        chapter.run.results_dir / "models",
        "mask_classifier",
        tflite.PRECISIONS,
        representative,
    )
    rows = deploy.benchmark_tflite(
        paths, ds.images[test], ds.labels[test], repeats=settings["latency_repeats"]
    )
    keras_probs = classify.predict_images(model, ds.images[test])
    values = {}
    for row in rows:
        probs = row.pop("probs")
        row["max_prob_diff_vs_keras"] = float(np.abs(probs - keras_probs).max())
        for key in ("bytes", "latency_ms", "accuracy"):
            values[f"tflite_{row['precision']}_{key}"] = row[key]
    values["tflite_test_images"] = int(len(test))
    return pd.DataFrame(rows).set_index("precision"), values


def export_tflite(chapter: Chapter, shipped: dict) -> dict:
    """TFLite fp32 / fp16 / int8 exports of the shipped model: size, latency, accuracy (saved)."""
    # The converter and the benchmark narrate on stdout and stderr; the table says it all.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        with logs.quiet_native_stderr():
            table, values = tflite_benchmark(shipped["path"], chapter)
    chapter.run.save(values)
    shown = table.rename(
        columns={
            "bytes": "bytes",
            "latency_ms": "latency (ms)",
            "accuracy": "accuracy",
            "max_prob_diff_vs_keras": "largest |ΔP| vs Keras",
        }
    )
    return {"table": shown, "values": values}


def tflite_table(found: dict) -> pd.DataFrame:
    table = found["table"].copy()
    table["MB"] = table.pop("bytes") / 1e6
    return present.table(table.rename_axis("precision"), index=True, percent_columns=["accuracy"])
