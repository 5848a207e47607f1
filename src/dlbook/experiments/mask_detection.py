"""Chapter 4: the face-mask classifier and detector, evaluated honestly.

Each function is one step of the chapter: audit the data, train and evaluate the models, calibrate
and ship the best one, stress it (corruptions, TFLite, composed scenes) and look at what it sees.
The notebook calls them in order; they take the chapter's settings and return tables and dicts.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dlbook import audit, claims, data, mask, metrics

DISSERTATION_TABLE = claims.DISSERTATION_MODELS

METRIC_NAMES = ("accuracy", "precision", "recall", "f1", "roc_auc")


@dataclass
class ChapterData:
    """The images at the two sizes the chapter uses, in the same order, with their metadata."""

    images: data.ImageSet  # at the backbone size
    small: data.ImageSet  # at the custom CNN's size
    meta: pd.DataFrame
    data_dir: Path


@dataclass
class ModelRun:
    """One trained model's P(with_mask) for every image, and how to rebuild it."""

    name: str
    probs: np.ndarray
    kind: str  # "head" (backbone + linear head), "cnn" or "finetuned"
    backbone: str | None = None
    head: tuple[np.ndarray, float] | None = None
    keras_model: object = None
    info: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Data and audit


def quiet_tensorflow() -> None:
    """Keep TensorFlow's informational logging (retracing notes, export paths) out of the book."""
    import logging

    import tensorflow as tf

    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)


def load_chapter_data(settings: dict, data_dir=None, seed: int = 0) -> ChapterData:
    """Load the images at ``settings["image_size"]`` and ``settings["cnn_image_size"]``."""
    folder = data.resolve_data_dir(data_dir)
    kwargs = dict(data_dir=folder, limit=settings["limit"], seed=seed, progress=False)
    images = data.load_face_mask(image_size=settings["image_size"], **kwargs)
    small = data.load_face_mask(image_size=settings["cnn_image_size"], **kwargs)
    if images.paths != small.paths:
        raise RuntimeError("the two image sizes decoded different files")
    return ChapterData(images, small, audit.file_metadata(folder, images.paths), folder)


def run_audit(chapter: ChapterData, out_dir: Path, seed: int = 0) -> dict:
    """Duplicates, split leakage, splits.csv and the shortcut model.

    Returns
    -------
    dict with ``duplicates`` (table by hash method), ``pairs`` (by method), ``split_table``,
    ``by_class`` (metadata per class), ``shortcut`` (accuracies of the shortcut models),
    ``shortcut_free`` (bool mask over the images), ``leaked_test`` (bool mask: test images with
    a near-duplicate in another split under any hash), and ``values`` (results keys).
    """
    ds = chapter.images
    gray = data.load_face_mask(
        chapter.data_dir,
        image_size=32,
        color_mode="grayscale",
        seed=seed,
        progress=False,
    )
    keep = {p: i for i, p in enumerate(gray.paths)}
    gray_images = gray.images[[keep[p] for p in ds.paths]]
    duplicates, pairs = audit.duplicate_summary(
        gray_images, ds.labels, ds.split, chapter.data_dir, ds.paths
    )
    audit.write_splits_csv(out_dir / "splits.csv", ds.paths, ds.labels, ds.split, ds.groups)
    # The split's definition of near-duplicates (byte-identical, dHash- or pHash-close, mirrors
    # included), recomputed here from the hashes rather than read from the loader's groups.
    split_pairs = pairs["any"]
    crossing = audit.cross_split_pairs(split_pairs, ds.split)
    leakage = len(crossing)
    leaked = np.zeros(len(ds), dtype=bool)
    leaked[crossing.ravel()] = True
    leaked_test = leaked & (ds.split == "test")

    shortcut = shortcut_experiment(chapter, seed)
    free = audit.shortcut_free_mask(chapter.meta, ds.labels)
    values = {
        "duplicate_pairs": int(len(split_pairs)),
        "duplicate_groups": int(len(np.unique(ds.groups)) - (np.bincount(ds.groups) == 1).sum()),
        "duplicate_pairs_any_hash": int(duplicates.loc["any", "pairs"]),
        "phash_pairs": int(duplicates.loc["phash", "pairs"]),
        "split_leakage_pairs": leakage,
        "cross_split_pairs_any_hash": int(len(crossing)),
        "test_images_with_cross_split_duplicate": int(leaked_test.sum()),
        "shortcut_model_accuracy": shortcut["metadata + thumbnail"],
        "shortcut_metadata_accuracy": shortcut["metadata only"],
        "shortcut_thumbnail_accuracy": shortcut["thumbnail only"],
        "shortcut_free_test_images": int((free & (ds.split == "test")).sum()),
    }
    return {
        "duplicates": duplicates,
        "pairs": pairs,
        "split_table": audit.split_table(ds.labels, ds.split, ds.groups),
        "by_class": audit.metadata_by_class(chapter.meta, ds.labels),
        "shortcut": shortcut,
        "shortcut_free": free,
        "leaked_test": leaked_test,
        "values": values,
    }


def shortcut_experiment(chapter: ChapterData, seed: int = 0) -> dict[str, float]:
    """Test accuracy of tree models that see only metadata, only a 4x4 thumbnail, or both."""
    ds = chapter.small
    both = audit.shortcut_features(chapter.meta, ds.images, thumbnail=4)
    n_meta = audit.shortcut_features(chapter.meta).shape[1]
    train, test = ds.split == "train", ds.split == "test"
    results = {}
    for name, columns in (
        ("metadata only", slice(0, n_meta)),
        ("thumbnail only", slice(n_meta, None)),
        ("metadata + thumbnail", slice(None)),
    ):
        model = audit.fit_shortcut_model(both[train][:, columns], ds.labels[train], seed)
        results[name] = float((model.predict(both[test][:, columns]) == ds.labels[test]).mean())
    return results


# ---------------------------------------------------------------------------------------------
# Models


def backbone_status(names) -> pd.DataFrame:
    """Which backbones have ImageNet weights here, and why not."""
    from dlbook import backbones

    rows = []
    for name in names:
        ok, reason = backbones.available(name)
        rows.append({"backbone": name, "available": ok, "note": reason})
    return pd.DataFrame(rows).set_index("backbone")


def train_heads(chapter: ChapterData, names, seed: int = 0, progress: bool = False) -> dict:
    """Frozen backbone features + logistic regression, for each available backbone.

    Returns
    -------
    ``{model_name: ModelRun}`` (model name = backbone name).
    """
    from dlbook import backbones, features

    ds = chapter.images
    runs = {}
    for name in names:
        if not backbones.available(name)[0]:
            continue
        start = time.perf_counter()
        feats = features.extract(name, ds.images, progress=progress)
        train, val = ds.split == "train", ds.split == "val"
        head, strength = mask.fit_linear_head(
            feats[train], ds.labels[train], feats[val], ds.labels[val], seed=seed
        )
        runs[name] = ModelRun(
            name,
            head.predict_proba(feats)[:, 1],
            "head",
            backbone=name,
            head=(head.coef_[0].astype(np.float32), float(head.intercept_[0])),
            info={"C": strength, "seconds": time.perf_counter() - start},
        )
    return runs


def train_custom_cnn(chapter: ChapterData, settings: dict, seed: int = 0) -> ModelRun:
    """Chapter 3's custom CNN, from scratch with augmentation, early stopping on validation."""
    import functools

    import keras

    from dlbook import models, training

    ds = chapter.small
    train, val = ds.split == "train", ds.split == "val"
    shape = ds.images.shape[1:]
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=settings["cnn_patience"], restore_best_weights=True
    )
    start = time.perf_counter()
    fitted = training.fit(
        functools.partial(models.build, "cnn", shape, 2, augmentation=True, seed=seed),
        ds.images[train],
        ds.labels[train],
        validation_data=(ds.images[val], ds.labels[val]),
        epochs=settings["cnn_epochs"],
        batch_size=32,
        learning_rate=1e-3,
        seed=seed,
        callbacks=[stop],
    )
    probs = training.predict_proba(fitted.model, ds.images)[:, 1].astype(np.float64)
    info = {"epochs": len(fitted.history["loss"]), "seconds": time.perf_counter() - start}
    return ModelRun("custom_cnn", probs, "cnn", keras_model=fitted.model, info=info)


def split_backbone(backbone, blocks: int):
    """Split an EfficientNet-Lite feature extractor before its last ``blocks`` blocks.

    Returns
    -------
    (bottom, top, boundary): ``bottom`` maps images to the feature maps entering the first
    of those blocks, ``top`` maps those to the pooled features; they share the backbone's
    layers, so training ``top`` updates ``backbone``. ``boundary`` names the first top layer.
    """
    import keras

    numbers = sorted(
        {
            int(layer.name.split("_")[0][5:])
            for layer in backbone.layers
            if layer.name.startswith("block") and layer.name.split("_")[0][5:].isdigit()
        }
    )
    if not 1 <= blocks < len(numbers):
        raise ValueError(f"blocks={blocks!r} must be between 1 and {len(numbers) - 1}")
    prefix = f"block{numbers[-blocks]}_"
    first = next(layer for layer in backbone.layers if layer.name.startswith(prefix))
    bottom = keras.Model(backbone.input, first.input, name="bottom")
    top = keras.Model(first.input, backbone.output, name="top")
    return bottom, top, first.name


def boundary_maps(name: str, bottom, boundary: str, images: np.ndarray) -> np.ndarray:
    """The bottom part's feature maps of ``images``, float16, cached on disk like features."""
    import hashlib

    from dlbook import backbones, features, paths

    key = hashlib.sha256(
        "|".join(
            [
                name,
                backbones.weights_sha256(name),
                f"v{features.CACHE_VERSION}",
                boundary,
                features.array_sha256(images),
            ]
        ).encode()
    ).hexdigest()[:24]
    cache_file = paths.cache_dir() / "boundary_maps" / f"{name}-{boundary}-{key}.npy"
    if cache_file.exists():
        return np.load(cache_file)
    maps = np.concatenate(
        [
            np.asarray(bottom.predict_on_batch(images[i : i + 64].astype(np.float32)), np.float16)
            for i in range(0, len(images), 64)
        ]
    )
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_name(f"{cache_file.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, maps)
    tmp.replace(cache_file)
    return maps


def fine_tune(
    chapter: ChapterData, run: ModelRun, settings: dict, seed: int = 0
) -> ModelRun | None:
    """Fine-tune the last blocks of ``run``'s backbone with its head, at a low learning rate.

    The frozen lower part runs once (its feature maps are cached on disk) and only the top
    blocks and the head are trained on them, so an epoch costs a fraction of a full pass.
    Batch-norm statistics stay frozen (the backbone runs in inference mode); there is no
    augmentation; training stops early on validation loss and keeps the best epoch. Returns
    None when no epochs are asked.
    """
    import keras

    from dlbook import backbones

    epochs = settings["fine_tune_epochs"]
    if epochs < 1:
        return None
    if run.kind != "head":
        raise ValueError(f"run.kind={run.kind!r}: fine-tuning starts from a frozen-backbone run")
    keras.utils.set_random_seed(seed)
    ds = chapter.images
    backbone = backbones.load(run.backbone)
    bottom, top, boundary = split_backbone(backbone, settings["fine_tune_blocks"])
    start = time.perf_counter()
    maps = boundary_maps(run.backbone, bottom, boundary, ds.images)
    maps_s = time.perf_counter() - start
    for layer in top.layers:
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
    inputs = keras.Input(maps.shape[1:])
    head = keras.layers.Dense(1, name="logit")
    logit = head(top(inputs, training=False))
    head.set_weights([run.head[0].reshape(-1, 1), np.array([run.head[1]], np.float32)])
    model = keras.Model(inputs, keras.layers.Activation("sigmoid")(logit))
    model.compile(
        optimizer=keras.optimizers.Adam(settings["fine_tune_learning_rate"]),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    train, val = ds.split == "train", ds.split == "val"
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=settings["fine_tune_patience"], restore_best_weights=True
    )
    start = time.perf_counter()
    history = model.fit(
        maps[train].astype(np.float32),
        ds.labels[train].astype(np.float32),
        validation_data=(maps[val].astype(np.float32), ds.labels[val].astype(np.float32)),
        epochs=epochs,
        batch_size=32,
        callbacks=[stop],
        verbose=0,
    )
    train_s = time.perf_counter() - start
    probs = np.asarray(model.predict(maps.astype(np.float32), batch_size=256, verbose=0))
    weights, bias = head.get_weights()
    return ModelRun(
        f"{run.backbone}_finetuned",
        probs.reshape(-1).astype(np.float64),
        "finetuned",
        backbone=run.backbone,
        head=(weights[:, 0], float(bias[0])),
        keras_model=backbone,
        info={
            "epochs": len(history.history["loss"]),
            "trained_from": boundary,
            "maps_seconds": maps_s,
            "train_seconds": train_s,
        },
    )


# ---------------------------------------------------------------------------------------------
# Evaluation


def evaluate_models(
    runs: dict,
    labels: np.ndarray,
    split: np.ndarray,
    subsets: dict[str, np.ndarray] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict]:
    """Test-split metrics with bootstrap CIs for each model, and accuracy on test subsets.

    Parameters
    ----------
    runs : ``{name: ModelRun}``
    subsets : ``{subset_name: bool mask over all images}``; accuracy on test ∩ mask is reported
        as column ``<subset_name>_accuracy``.

    Returns
    -------
    (table, values): a DataFrame indexed by model with each metric, its CI and the validation
    accuracy; ``values`` the flat results keys (``<model>_<metric>``, ``..._ci_low/high``).
    """
    test, val = split == "test", split == "val"
    rows, values = [], {}
    for name, run in runs.items():
        report = metrics.classification_report(
            labels[test], run.probs[test], n_boot=n_boot, seed=seed
        )
        row = {"model": name}
        for metric in METRIC_NAMES:
            row[metric] = report[metric]["value"]
            row[f"{metric}_ci_low"] = report[metric]["ci_low"]
            row[f"{metric}_ci_high"] = report[metric]["ci_high"]
            values[f"{name}_{metric}"] = report[metric]["value"]
            values[f"{name}_{metric}_ci_low"] = report[metric]["ci_low"]
            values[f"{name}_{metric}_ci_high"] = report[metric]["ci_high"]
        row["val_accuracy"] = metrics.binary_metrics(labels[val], run.probs[val])["accuracy"]
        row["val_log_loss"] = float(
            -np.mean(
                np.log(
                    np.clip(np.where(labels[val] == 1, run.probs[val], 1 - run.probs[val]), 1e-7, 1)
                )
            )
        )
        row["test_errors"] = int(((run.probs[test] >= 0.5) != labels[test]).sum())
        for subset, chosen in (subsets or {}).items():
            pick = test & chosen
            accuracy = (
                float(((run.probs[pick] >= 0.5) == labels[pick]).mean()) if pick.any() else np.nan
            )
            row[f"{subset}_accuracy"] = accuracy
            values[f"{name}_{subset}_accuracy"] = accuracy
        rows.append(row)
    return pd.DataFrame(rows).set_index("model"), values


def choose_best(table: pd.DataFrame, candidates=None) -> str:
    """The model with the highest validation accuracy (ties: lowest validation log-loss)."""
    pool = table if candidates is None else table.loc[[c for c in table.index if c in candidates]]
    ranked = pool.sort_values(["val_accuracy", "val_log_loss"], ascending=[False, True])
    return str(ranked.index[0])


def dissertation_comparison(table: pd.DataFrame, values: dict, best: str) -> pd.DataFrame:
    """The dissertation's rows beside the measured ones, with the claims page's verdict.

    Parameters
    ----------
    table : from ``evaluate_models``.
    values : the chapter's results keys so far (``<model>_accuracy``, ``..._available``, ...),
        judged by the same rule as the book's claims page (``dlbook.claims.judge_model_claim``).
    best : the best model's name, added as a last row.
    """

    rows = []
    for name, claimed in DISSERTATION_TABLE.items():
        row = {"model": name}
        measured = name in table.index
        for metric, value in claimed.items():
            row[f"claimed_{metric}"] = value
            row[f"measured_{metric}"] = table.loc[name, metric] if measured else np.nan
        judge = claims.judge_model_claim(
            name, claimed["accuracy"], claimed["precision"], claimed["recall"]
        )
        verdict = judge({"mask_detection": values})
        row["verdict"] = verdict.verdict
        row["note"] = (
            verdict.note
            if verdict.verdict != claims.NOT_MEASURED
            else (f"{name} not trained: no ImageNet weights offline")
        )
        rows.append(row)
    row = {"model": f"{best} (best here)", "verdict": "measured", "note": ""}
    for metric in ("accuracy", "precision", "recall"):
        row[f"claimed_{metric}"] = np.nan
        row[f"measured_{metric}"] = table.loc[best, metric]
    rows.append(row)
    return pd.DataFrame(rows).set_index("model")


def calibrate(run: ModelRun, labels: np.ndarray, split: np.ndarray, n_bins: int = 10) -> dict:
    """Temperature scaling fitted on the calibration split; ECE on the test split before/after."""
    logits = mask.probs_to_logits(run.probs)
    calib, test = split == "calib", split == "test"
    temperature = mask.fit_temperature(logits[calib], labels[calib])
    scaled = mask.sigmoid(logits / temperature)
    return {
        "temperature": temperature,
        "probs_calibrated": scaled,
        "ece_before": metrics.expected_calibration_error(labels[test], run.probs[test], n_bins),
        "ece_after": metrics.expected_calibration_error(labels[test], scaled[test], n_bins),
        "curve_before": metrics.reliability_curve(labels[test], run.probs[test], n_bins),
        "curve_after": metrics.reliability_curve(labels[test], scaled[test], n_bins),
    }


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


# ---------------------------------------------------------------------------------------------
# The shipped model


def ship_model(
    run: ModelRun, temperature: float, image_size: int, out_dir: Path, provenance: dict
) -> Path:
    """Save ``run`` (a backbone + head model) as ``out_dir/models/mask_classifier.keras``."""
    from dlbook import backbones

    if run.kind not in ("head", "finetuned"):
        raise ValueError(f"run.kind={run.kind!r}: only backbone models are shipped")
    backbone = run.keras_model if run.kind == "finetuned" else backbones.load(run.backbone)
    model = mask.build_shipped_model(backbone, run.head[0], run.head[1], temperature, image_size)
    metadata = {
        "image_size": int(image_size),
        "temperature": float(temperature),
        "model": run.name,
        "backbone": run.backbone,
        "input": "RGB, values 0-255, resized (no crop) to image_size with bilinear filtering, "
        "as dlbook.data.decode_image does",
        "output": "P(with_mask), temperature-scaled",
        **provenance,
    }
    path, _ = mask.save_shipped_model(model, out_dir / "models" / "mask_classifier.keras", metadata)
    return path


def check_shipped_model(
    path: Path, run: ModelRun, calibrated: np.ndarray, ds, n: int = 32
) -> float:
    """Largest |P| difference between the reloaded shipped model and the in-memory calibrated probs."""
    model, _ = mask.load_shipped_model(path)
    pick = np.flatnonzero(ds.split == "test")[:n]
    return float(np.abs(mask.predict_images(model, ds.images[pick]) - calibrated[pick]).max())


# ---------------------------------------------------------------------------------------------
# Robustness, deployment, detection, saliency


def robustness(
    classify,
    images: np.ndarray,
    labels: np.ndarray,
    severities=(1, 3, 5),
    seed: int = 0,
) -> pd.DataFrame:
    """Accuracy under each corruption of ``dlbook.corruptions`` at each severity.

    Parameters
    ----------
    classify : function (N, S, S, 3) uint8 -> (N,) P(with_mask).

    Returns
    -------
    DataFrame with columns corruption, severity, accuracy (severity 0 = clean, once per kind).
    """
    from dlbook import corruptions

    clean = float(((classify(images) >= 0.5) == labels).mean())
    rows = []
    for kind in corruptions.CORRUPTIONS:
        rows.append({"corruption": kind, "severity": 0, "accuracy": clean})
        for severity in severities:
            corrupted = corruptions.corrupt(images, kind, severity, seed)
            accuracy = float(((classify(corrupted) >= 0.5) == labels).mean())
            rows.append({"corruption": kind, "severity": severity, "accuracy": accuracy})
    return pd.DataFrame(rows)


def classifier(run: ModelRun, image_size: int | None = None):
    """A function (N, S, S, 3) uint8 -> (N,) P(with_mask) for ``run``, uncalibrated.

    Frozen-backbone runs go through ``features.extract`` (cached on disk, so repeated
    corruptions of the same images cost nothing the second time); the others through Keras.
    """
    from dlbook import features

    if run.kind == "head":

        def classify(images):
            feats = features.extract(run.backbone, images, progress=False)
            return mask.sigmoid(feats @ run.head[0] + run.head[1])

        return classify
    if run.kind == "finetuned":
        if image_size is None:
            raise ValueError("image_size is needed for a fine-tuned run")
        model = mask.build_shipped_model(run.keras_model, run.head[0], run.head[1], 1.0, image_size)
    else:
        model = run.keras_model
    return lambda images: mask.predict_images(model, images, batch_size=64)


def stratified_pick(labels: np.ndarray, chosen: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Indices of at most ``limit`` items of ``chosen`` (bool mask) with label shares kept."""
    index = np.flatnonzero(chosen)
    if len(index) <= limit:
        return index
    return index[data.stratified_subset(labels[index], limit, seed)]


def tflite_benchmark(
    shipped_path: Path, chapter: ChapterData, out_dir: Path, settings: dict, seed: int = 0
) -> tuple[pd.DataFrame, dict]:
    """Export the shipped model to TFLite fp32/fp16/int8 and measure size, latency, accuracy."""
    from dlbook import deploy

    model, _ = mask.load_shipped_model(shipped_path)
    ds = chapter.images
    rng = np.random.default_rng(seed)
    train = np.flatnonzero(ds.split == "train")
    representative = ds.images[rng.choice(train, settings["tflite_representative"], replace=False)]
    limit = settings["tflite_test_limit"] or len(ds)
    test = stratified_pick(ds.labels, ds.split == "test", limit, seed)
    paths = deploy.export_tflite_all(
        model, out_dir / "models", "mask_classifier", deploy.PRECISIONS, representative
    )
    rows = deploy.benchmark_tflite(
        paths, ds.images[test], ds.labels[test], repeats=settings["latency_repeats"]
    )
    keras_probs = mask.predict_images(model, ds.images[test])
    values = {}
    for row in rows:
        probs = row.pop("probs")
        row["max_prob_diff_vs_keras"] = float(np.abs(probs - keras_probs).max())
        for key in ("bytes", "latency_ms", "accuracy"):
            values[f"tflite_{row['precision']}_{key}"] = row[key]
    values["tflite_test_images"] = int(len(test))
    return pd.DataFrame(rows).set_index("precision"), values


def detector_benchmark(
    shipped_path: Path, chapter: ChapterData, settings: dict, seed: int = 0
) -> tuple[pd.DataFrame, dict]:
    """Recall and end-to-end accuracy of each detector on scenes of test-split faces."""
    from dlbook import detect

    model, metadata = mask.load_shipped_model(shipped_path)
    ds = chapter.images
    test = stratified_pick(ds.labels, ds.split == "test", settings["scene_pool"], seed)
    originals = [data.decode_image(chapter.data_dir / ds.paths[i], None) for i in test]
    rows, examples = [], {}
    for name in settings["detectors"]:
        start = time.perf_counter()
        result = detect.evaluate_detector(
            detect.load_detector(name),
            lambda crops: mask.predict_images(model, crops),
            originals,
            ds.labels[test],
            int(metadata["image_size"]),
            n_scenes=settings["scenes"],
            seed=seed,
        )
        examples[name] = result.pop("examples")
        result["seconds_per_scene"] = (time.perf_counter() - start) / settings["scenes"]
        rows.append({"detector": name, **result})
    table = pd.DataFrame(rows).set_index("detector")
    chosen = detect.DEFAULT_DETECTOR if detect.DEFAULT_DETECTOR in table.index else table.index[0]
    values = {
        "detector": chosen,
        "detector_recall": float(table.loc[chosen, "recall"]),
        "detector_recall_with_mask": float(table.loc[chosen, "recall_with_mask"]),
        "detector_end_to_end_accuracy": float(table.loc[chosen, "end_to_end_accuracy"]),
    }
    for name in table.index:
        values[f"detector_{name}_recall"] = float(table.loc[name, "recall"])
    return table, {"values": values, "examples": examples[chosen], "chosen": chosen}


def occlusion_saliency(
    classify, images: np.ndarray, labels: np.ndarray, patch_fraction: float = 0.25, steps: int = 7
) -> np.ndarray:
    """Occlusion sensitivity: drop in the log-odds of the true label when a grey patch covers each position.

    Parameters
    ----------
    classify : function (N, S, S, 3) uint8 -> (N,) P(with_mask).
    images : ndarray, shape (N, S, S, 3), uint8
    labels : ndarray, shape (N,), 0 or 1.

    Returns
    -------
    ndarray, shape (N, steps, steps), float64: positive where covering the region lowers the
    log-odds of the true label (the model relies on it).
    """
    images = np.asarray(images)
    size = images.shape[1]
    patch = max(1, int(round(patch_fraction * size)))
    starts = np.linspace(0, size - patch, steps).round().astype(int)
    maps = np.zeros((len(images), steps, steps))
    for n, (image, label) in enumerate(zip(images, labels, strict=True)):
        batch = np.repeat(image[None], steps * steps + 1, axis=0)
        for k, (i, j) in enumerate((i, j) for i in range(steps) for j in range(steps)):
            top, left = starts[i], starts[j]
            batch[k + 1, top : top + patch, left : left + patch] = 127
        # Log-odds, not probabilities: a confident model's probability barely moves.
        logits = mask.probs_to_logits(classify(batch))
        true_logit = logits if label == 1 else -logits
        maps[n] = (true_logit[0] - true_logit[1:]).reshape(steps, steps)
    return maps


def lower_half_share(maps: np.ndarray) -> np.ndarray:
    """Share of each map's positive saliency in its lower half (where a mask sits), shape (N,)."""
    positive = np.clip(maps, 0, None)
    steps = maps.shape[1]
    lower = positive[:, steps // 2 + steps % 2 :, :].sum(axis=(1, 2))
    upper = positive[:, : steps // 2, :].sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return lower / (lower + upper)


def saliency_examples(
    classify, ds: data.ImageSet, probs: np.ndarray, n_each: int = 4, seed: int = 0
) -> dict:
    """Occlusion maps for test images: correct ones of each class and the errors (up to n_each).

    Returns
    -------
    dict with ``index`` (image indices), ``kind`` (list of str), ``maps`` (K, steps, steps),
    ``lower_half_share`` (K,).
    """
    rng = np.random.default_rng(seed)
    test = ds.split == "test"
    predicted = (probs >= 0.5).astype(int)
    groups = {
        "correct with_mask": test & (predicted == ds.labels) & (ds.labels == 1),
        "correct without_mask": test & (predicted == ds.labels) & (ds.labels == 0),
        "error": test & (predicted != ds.labels),
    }
    index, kind = [], []
    for name, chosen in groups.items():
        members = np.flatnonzero(chosen)
        picked = rng.choice(members, size=min(n_each, len(members)), replace=False)
        index += picked.tolist()
        kind += [name] * len(picked)
    index = np.array(index, dtype=np.int64)
    maps = occlusion_saliency(classify, ds.images[index], ds.labels[index])
    return {"index": index, "kind": kind, "maps": maps, "lower_half_share": lower_half_share(maps)}
