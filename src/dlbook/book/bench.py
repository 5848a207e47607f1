"""``python -m dlbook bench``: how fast this machine does the book's work, measured in one run.

Measures, on the images the book uses where the dataset is present (synthetic photos otherwise):

- backbone feature extraction, images/s, through each runtime of ``dlbook.facemask.runtime`` (Keras
  reference, ``tf.function``, TFLite fp32 with XNNPACK, ONNX Runtime where installed), with
  each one's largest relative difference from the Keras features;
- the dissertation's networks (``PORTED_NETWORKS``) through the fast runtime, each at the input
  size chapter 4 runs it at, images/s, where their weight files are here;
- ``predict`` end to end (decode, model, CSV rows), the old one-image-at-a-time path and the
  batched one, images/s;
- NumPy-vs-Keras CNN training throughput (chapter 1's benchmark);
- a float32 matrix-product probe, GFLOP/s;
- each chapter's share of the last build (``results/<profile>/run.json``).

Prints a table and writes ``results/<profile>/bench.json``. Every speed claim in the book is a
ratio of two numbers from one such run on one machine; on a machine shared with other work
the absolute numbers are low and noisy, the ratios less so.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from dlbook.core import cache, logs, paths
from dlbook.facemask import runtime
from dlbook.methods import costs


def timed(work) -> tuple[object, float, float]:
    """``work()``'s result, and the wall-clock and CPU seconds (this process, all threads) it took.

    On a machine shared with other work the wall clock measures the share this process got;
    the CPU seconds measure the work itself, so both are reported.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def matmul_gflops(size: int = 1024, repeats: int = 5) -> float:
    """Best-of-``repeats`` float32 ``size`` x ``size`` matrix product through NumPy's BLAS."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    a @ b
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def sample_files(data_dir, count: int, folder: Path, seed: int = 0) -> list[Path]:
    """``count`` photos: dataset files spread over both classes, or synthetic JPEGs in ``folder``."""
    from dlbook.facemask import data

    try:
        root = data.resolve_data_dir(data_dir, download=False)
        rows = data.read_manifest()
        picked = np.random.default_rng(seed).permutation(len(rows))[:count]
        files = [root / rows[i]["path"] for i in sorted(picked)]
        if all(f.is_file() for f in files):
            return files
    except Exception:  # no dataset here: fall back to synthetic photos
        pass
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for index in range(count):
        shape = (int(rng.integers(160, 400)), int(rng.integers(160, 400)), 3)
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        files.append(folder / f"photo{index:04d}.jpg")
        Image.fromarray(image).save(files[-1], quality=90)
    return files


def feature_paths(backbone: str, images: np.ndarray) -> dict:
    """images/s and relative difference from Keras of each feature runtime on ``images``."""
    from dlbook.methods import backbones

    model = backbones.load(backbone)
    key = f"{backbone}|{backbones.weights_sha256(backbone)}"
    gflop = costs.count_flops(model, images.shape[1:]) / 1e9
    out, reference = {"features_gflop_per_image": gflop}, None
    for name in runtime.RUNTIMES:
        ok, why = runtime.available(name)
        if not ok:
            out[f"features_per_s_{name}"] = None
            out[f"features_note_{name}"] = why
            continue
        start = time.perf_counter()
        compiled = runtime.compile_model(model, images.shape[1:], name, cache_key=key)
        compiled.predict_batch(images[: compiled.batch_size])  # warm-up (tracing, allocation)
        out[f"features_compile_s_{name}"] = time.perf_counter() - start
        feats, wall, cpu = timed(lambda compiled=compiled: compiled(images))
        out[f"features_per_s_{name}"] = len(images) / wall
        out[f"features_per_cpu_s_{name}"] = len(images) / cpu
        out[f"features_gflops_{name}"] = gflop * len(images) / wall
        reference = feats if reference is None else reference
        out[f"features_relative_difference_{name}"] = runtime.relative_difference(feats, reference)
    return out


def _shipped_model(results_dir: Path, backbone: str, image_size: int, folder: Path) -> Path:
    """The book's shipped model if a build made one, else the same architecture, zero head."""
    from dlbook.facemask import classify
    from dlbook.methods import backbones

    for candidate in sorted(results_dir.glob("**/mask_classifier.keras")):
        return candidate
    model = classify.build_shipped_model(
        backbones.load(backbone), np.zeros(backbones.spec(backbone).feature_dim), 0.0, 1.0,
        image_size,
    )  # fmt: skip
    path, _ = classify.save_shipped_model(
        model, folder / "mask_classifier.keras", {"image_size": image_size, "temperature": 1.0}
    )
    return path


def predict_paths(model_path: Path, files: list[Path], reference_count: int) -> dict:
    """images/s of ``predict`` one image at a time (the old path) and batched (the new one)."""
    from dlbook.facemask import classify, data, predict

    model, metadata = classify.load_shipped_model(model_path)
    size = int(metadata["image_size"])
    predict.predict_one_at_a_time(model, size, files[:2])  # warm-up
    _, wall, cpu = timed(
        lambda: predict.predict_one_at_a_time(model, size, files[:reference_count])
    )
    out = {
        "predict_per_s_one_at_a_time": reference_count / wall,
        "predict_per_cpu_s_one_at_a_time": reference_count / cpu,
    }
    key = data.file_sha256(model_path)
    for name in dict.fromkeys(("keras", runtime.FAST_RUNTIME, "tflite")):
        start = time.perf_counter()
        predict.classifier(model, size, len(files), name, key).predict_batch(
            np.zeros((1, size, size, 3), np.float32)
        )
        out[f"predict_compile_s_{name}"] = time.perf_counter() - start
        _, wall, cpu = timed(
            lambda name=name: predict.predict_files(
                model, size, files, progress=False, runtime_name=name, model_key=key
            )
        )
        out[f"predict_per_s_batched_{name}"] = len(files) / wall
        out[f"predict_per_cpu_s_batched_{name}"] = len(files) / cpu
    out["predict_image_size"] = size
    out["predict_images"] = len(files)
    out["predict_reference_images"] = reference_count
    return out


def build_shares(results_dir: Path) -> dict:
    """``build_shares_from`` the last build's ``run.json`` in ``results_dir`` (empty if none)."""
    run_file = results_dir / "run.json"
    if not run_file.exists():
        return {}
    return build_shares_from(json.loads(run_file.read_text()))


def build_shares_from(run: dict) -> dict:
    """Each chapter's wall seconds and share of their sum, and, where the build measured them,
    its CPU seconds and utilisation (CPU / wall seconds); the build's own wall seconds, CPU
    seconds and utilisation (from ``run.json``: with chapters at once, the wall time is less
    than the chapters' sum)."""
    chapters = run.get("chapters", {})
    seconds = {name: float(info.get("seconds") or 0.0) for name, info in chapters.items()}
    total = sum(seconds.values())
    out = {"build_seconds_total": total}
    for name, value in seconds.items():
        out[f"build_seconds_{name}"] = value
        out[f"build_share_{name}"] = value / total if total else None
        for key in ("cpu_seconds", "utilisation"):
            if chapters[name].get(key) is not None:
                out[f"build_{key}_{name}"] = chapters[name][key]
    if run.get("cpu_seconds") is not None:
        out["build_wall_seconds"] = run["total_seconds"]
        out["build_cpu_seconds"] = run["cpu_seconds"]
        out["build_utilisation"] = run["utilisation"]
        out["build_jobs"] = run.get("jobs", 1)
    return out


def table(report: dict) -> str:
    """The report as aligned ``measure  value`` lines."""
    lines = []
    for key, value in report.items():
        if isinstance(value, float):
            value = f"{value:.3g}" if abs(value) < 1e-2 else f"{value:,.1f}"
        lines.append(f"{key:<44} {value}")
    return "\n".join(lines)


PORTED_NETWORKS = ("mobilenet_v2_torchvision", "inception_v3_fid", "vgg16_torchvision")
"""The dissertation's networks chapter 4 measures from ported ImageNet weights."""


def ported_network_paths(files: list[Path], profile: str) -> dict:
    """images/s (by wall clock and per CPU-second) of each of ``PORTED_NETWORKS``' features on
    ``files``, decoded at the size chapter 4 runs it at, through the fast runtime; a network
    whose weights are not here gets None and a note saying why."""
    from dlbook.book import profiles
    from dlbook.facemask import data
    from dlbook.methods import backbones

    settings = profiles.get(profile, "mask_detection")
    out = {}
    for name in PORTED_NETWORKS:
        size = settings.get("backbone_image_sizes", {}).get(name, settings["image_size"])
        ok, why = backbones.available(name)
        out[f"network_image_size_{name}"] = int(size)
        if not ok:
            out[f"features_per_s_{name}"] = None
            out[f"features_note_{name}"] = why
            continue
        images = np.stack([data.decode_image(f, size) for f in files])
        model = backbones.load(name)
        key = f"{name}|{backbones.weights_sha256(name)}"
        compiled = runtime.compile_model(
            model, images.shape[1:], runtime.FAST_RUNTIME, cache_key=key
        )
        compiled.predict_batch(images[: compiled.batch_size])  # warm-up (tracing, allocation)
        _, wall, cpu = timed(lambda compiled=compiled, images=images: compiled(images))
        out[f"features_per_s_{name}"] = len(images) / wall
        out[f"features_per_cpu_s_{name}"] = len(images) / cpu
        out[f"features_gflop_per_image_{name}"] = costs.count_flops(model, images.shape[1:]) / 1e9
    return out


def run(profile: str = "smoke", data_dir=None, results_dir=None) -> dict:
    """Run every measurement, print the table, write ``bench.json``; return the report."""
    from dlbook.book import profiles
    from dlbook.facemask import data

    logs.import_tensorflow()
    settings = profiles.get(profile, "bench")
    features = profiles.get(profile, "features")
    out_dir = paths.results_dir(profile, results_dir)
    report = {
        "profile": profile,
        "cpu_threads": runtime.cpu_threads(),
        "platform": platform.platform(),
        "fast_runtime": runtime.FAST_RUNTIME,
        "features_backbone": features["backbone"],
        "features_image_size": features["image_size"],
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        count = max(settings["feature_images"], settings["predict_images"])
        files = sample_files(data_dir, count, tmp / "photos")
        images = np.stack(
            [
                data.decode_image(f, features["image_size"])
                for f in files[: settings["feature_images"]]
            ]
        )
        report["features_images"] = len(images)
        with logs.progress(5, "bench", "step") as bar:
            report.update(feature_paths(features["backbone"], images))
            report.update(ported_network_paths(files[: settings["feature_images"]], profile))
            bar.update()
            model_path = _shipped_model(
                out_dir, features["backbone"], features["image_size"], tmp / "model"
            )
            report.update(
                predict_paths(
                    model_path,
                    files[: settings["predict_images"]],
                    settings["predict_reference_images"],
                )
            )
            bar.update()
            from dlbook.methods.nn import throughput

            cnn = throughput.benchmark_cnn_training(
                steps=settings["cnn_steps"], rounds=settings["cnn_rounds"]
            )
            report.update({k: v for k, v in cnn.items() if not k.endswith("_rounds")})
            bar.update()
            report["matmul_size"] = settings["matmul_size"]
            report["matmul_gflops"] = matmul_gflops(settings["matmul_size"])
            bar.update()
            report.update(build_shares(out_dir))
            bar.update()
    keras_rate = report.get("features_per_s_keras")
    fast_rate = report.get(f"features_per_s_{runtime.FAST_RUNTIME}")
    if keras_rate and fast_rate:
        report["features_fast_over_keras"] = fast_rate / keras_rate
        report["features_fast_over_keras_cpu"] = (
            report[f"features_per_cpu_s_{runtime.FAST_RUNTIME}"]
            / report["features_per_cpu_s_keras"]
        )
    if keras_rate:
        # How close the reference path already runs to the machine's dense-arithmetic rate: a
        # runtime can be at most 1 / this share faster before it beats the matrix-product probe.
        report["features_keras_share_of_matmul"] = (
            report["features_gflops_keras"] / report["matmul_gflops"]
        )
    before = report["predict_per_s_one_at_a_time"]
    report["predict_batched_over_one_at_a_time"] = (
        report[f"predict_per_s_batched_{runtime.FAST_RUNTIME}"] / before
    )
    report["load_average_1min"] = os.getloadavg()[0]
    cache.write_json(out_dir / "bench.json", report)
    print(table(report))
    return report


def load(results_dir) -> dict | None:
    """The last ``bench.json`` in ``results_dir``, or None if the bench never ran there."""
    path = Path(results_dir) / "bench.json"
    return json.loads(path.read_text()) if path.exists() else None


_SUMMARY_ROWS = (
    ("feature extraction, Keras", "features_per_s_keras", "features_per_cpu_s_keras"),
    ("feature extraction, tf.function", "features_per_s_function", "features_per_cpu_s_function"),
    ("feature extraction, TFLite + XNNPACK", "features_per_s_tflite", "features_per_cpu_s_tflite"),
    ("feature extraction, ONNX Runtime", "features_per_s_onnx", "features_per_cpu_s_onnx"),
    ("features, MobileNetV2 (chapter 4 size)", "features_per_s_mobilenet_v2_torchvision", "features_per_cpu_s_mobilenet_v2_torchvision"),
    ("features, InceptionV3 (chapter 4 size)", "features_per_s_inception_v3_fid", "features_per_cpu_s_inception_v3_fid"),
    ("features, VGG16 (chapter 4 size)", "features_per_s_vgg16_torchvision", "features_per_cpu_s_vgg16_torchvision"),
    ("predict, one image at a time", "predict_per_s_one_at_a_time", "predict_per_cpu_s_one_at_a_time"),
    ("predict, batched, Keras", "predict_per_s_batched_keras", "predict_per_cpu_s_batched_keras"),
    ("predict, batched, tf.function", "predict_per_s_batched_function", "predict_per_cpu_s_batched_function"),
    ("predict, batched, TFLite", "predict_per_s_batched_tflite", "predict_per_cpu_s_batched_tflite"),
    ("CNN training, NumPy", "numpy_cnn_images_per_s", None),
    ("CNN training, Keras", "keras_cnn_images_per_s", None),
)  # fmt: skip


def summary(report: dict):
    """The bench as a page table: images/s by wall clock and per CPU-second, for each path."""
    import pandas as pd

    rows = [
        {
            "measure": label,
            "images/s": report.get(wall),
            "images per CPU-second": report.get(cpu) if cpu else None,
        }
        for label, wall, cpu in _SUMMARY_ROWS
    ]
    return pd.DataFrame(rows)


def story(report: dict | None) -> str:
    """Sentences for the reproducibility page, numbers glued in from ``report``."""
    from dlbook.book import present

    if report is None:
        return "The speed benchmark has not been run on this machine (`python -m dlbook bench`)."
    fast = runtime.FAST_RUNTIME
    batched = report.get(f"predict_per_s_batched_{fast}") or report.get(
        "predict_per_s_batched_keras"
    )
    parts = [
        f"On this machine ({report['cpu_threads']} CPU threads, 1-minute load average "
        f"{present.number(report.get('load_average_1min'))}), the {report['features_backbone']} "
        f"features at {report['features_image_size']} px came at "
        f"{present.number(report.get('features_per_s_keras'))} images/s through Keras, "
        f"{present.number(report.get('features_per_s_function'))} through a traced "
        f"`tf.function` and {present.number(report.get('features_per_s_tflite'))} through "
        "TFLite with XNNPACK, whose features differ from Keras's by at most "
        f"{present.number(report.get('features_relative_difference_tflite'), 2)} of their scale.",
        f"`predict` classified {present.number(report.get('predict_per_s_one_at_a_time'))} "
        f"images/s one at a time and {present.number(batched)} batched with background decoding.",
    ]
    share = report.get("features_keras_share_of_matmul")
    if share:
        parts.append(
            f"A {report['features_backbone']} forward pass is "
            f"{present.number(report['features_gflop_per_image'])} GFLOP an image, so the Keras "
            f"path already computes {present.number(report['features_gflops_keras'])} GFLOP/s, "
            f"{present.percent(share, 0)} of the {present.number(report['matmul_gflops'])} "
            "GFLOP/s that NumPy's matrix product reaches here: no runtime can be more than "
            f"{present.number(1 / share, 2)} times faster on this machine without beating "
            "that probe."
        )
    if report.get("load_average_1min", 0) > report["cpu_threads"]:
        parts.append(
            "The machine was busy with other work while it ran, so the absolute rates are low; "
            "the per-CPU-second rates are the fairer comparison."
        )
    return " ".join(parts)
