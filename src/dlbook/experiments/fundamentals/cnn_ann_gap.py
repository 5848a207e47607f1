"""Chapter 1, section 4: the CNN against the ANN over seeds, at several input sizes on the
face-mask images (Keras twins of the NumPy nets, trained to early stopping) and with the NumPy nets
themselves on scikit-learn's digits."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from dlbook.book import present
from dlbook.book.context import Run
from dlbook.facemask import data
from dlbook.methods import convergence, metrics, training
from dlbook.methods.nn.keras_twin import keras_equivalent, keras_twin
from dlbook.methods.nn.networks import BLAS_THREADS, make_ann, make_cnn

MODELS = (("ANN", make_ann), ("CNN", make_cnn))
"""The two networks compared, by the name the results use."""


# -- data ------------------------------------------------------------------------------------


def standardize(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Scale images to zero mean, unit variance using the training set's (scalar) statistics."""
    train = train.astype(np.float32)
    mean, std = train.mean(), train.std() + 1e-8
    return [(a.astype(np.float32) - mean) / std for a in (train, *others)]


def digits_split(seed: int = 0, test_fraction: float = 0.25):
    """scikit-learn's 8x8 digits as (N, 8, 8, 1) float32 images, stratified train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.images[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=test_fraction, stratify=digits.target, random_state=seed
    )
    x_train, x_test = standardize(x_train, x_test)
    return x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64)


def downscale(images: np.ndarray, size: int) -> np.ndarray:
    """Square images shrunk to ``size`` px by averaging blocks of pixels (area resampling).

    Parameters
    ----------
    images : ndarray, shape (N, S, S, C); S must be a multiple of ``size``.

    Returns
    -------
    ndarray, shape (N, size, size, C), float32.
    """
    side = images.shape[1]
    if images.ndim != 4 or images.shape[2] != side:
        raise ValueError(f"images have shape {images.shape}; expected (N, S, S, C)")
    if not isinstance(size, (int, np.integer)) or size < 1 or side % size:
        raise ValueError(f"size={size!r} must divide the image side {side}")
    factor = side // size
    blocks = images.astype(np.float32).reshape(len(images), size, factor, size, factor, -1)
    return blocks.mean(axis=(2, 4))


def train_subsample(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a random ``fraction`` of the training images, drawn by ``seed`` within
    each class (all of them when ``fraction`` is 1)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction!r} must lie in (0, 1]")
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(labels == c), round(fraction * np.sum(labels == c)), False)
        for c in np.unique(labels)
    ]
    return np.sort(np.concatenate(chosen))


# -- training --------------------------------------------------------------------------------


def ann_vs_cnn(
    x_train, y_train, x_test, y_test, seeds, epochs: int, batch_size: int = 64, learning_rate=1e-3
) -> pd.DataFrame:
    """Train the NumPy ``make_ann`` and ``make_cnn`` once per seed; one row per (model, seed)
    with test accuracy, training seconds and parameter count."""
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    rows = []
    with threadpool_limits(BLAS_THREADS, user_api="blas"):
        for seed in seeds:
            for name, maker in MODELS:
                model = maker(num_classes, seed=seed, epochs=epochs, batch_size=batch_size,
                              learning_rate=learning_rate)  # fmt: skip
                start = time.perf_counter()
                model.fit(x_train, y_train)
                seconds = time.perf_counter() - start
                rows.append(
                    {
                        "model": name,
                        "seed": seed,
                        "test_accuracy": model.score(x_test, y_test),
                        "train_seconds": seconds,
                        "parameters": sum(p.size for _, _, p in model.parameters()),
                    }
                )
    return pd.DataFrame(rows)


def keras_numpy_max_diff(x: np.ndarray, num_classes: int = 2, seed: int = 0) -> float:
    """Largest absolute difference in logits between the NumPy ANN and CNN and their Keras twins,
    same weights, on the images ``x`` (shape (N, H, W, C), float32)."""
    worst = 0.0
    for _, maker in MODELS:
        model = maker(num_classes, seed=seed).build(x.shape[1:])
        k_model = keras_equivalent(model)
        with threadpool_limits(BLAS_THREADS, user_api="blas"):
            ours = model.decision_function(x)
        theirs = np.asarray(k_model(x, training=False))
        worst = max(worst, float(np.abs(ours - theirs).max()))
    return worst


def cnn_ann_runs(images, settings: dict, seeds) -> pd.DataFrame:
    """Train the chapter's ANN and CNN (as Keras twins of the NumPy nets) at each input size
    and seed, to early stopping on the validation split, and score each once on the test split.

    Parameters
    ----------
    images : ``data.ImageSet`` at the largest of ``settings["cnn_ann_sizes"]``.
    settings : ``cnn_ann_sizes``, ``cnn_ann_train_fraction``, ``cnn_ann_epoch_cap``,
        ``cnn_ann_patience``, ``batch_size``, ``learning_rate``.
    seeds : a seed sets the initial weights, the mini-batch order and the training subsample.

    Returns
    -------
    DataFrame, one row per (size, seed, model): ``val_accuracy``, ``test_accuracy``,
    ``epochs_used``, ``stopped_early``, ``converged``, ``train_images``.
    """
    train, val, test = (images.where(name) for name in ("train", "val", "test"))
    num_classes = int(images.labels.max()) + 1
    rows = []
    for size in settings["cnn_ann_sizes"]:
        pixels = {name: downscale(part.images, size) for name, part in
                  (("train", train), ("val", val), ("test", test))}  # fmt: skip
        for seed in seeds:
            keep = train_subsample(train.labels, settings["cnn_ann_train_fraction"], seed)
            x_train, x_val, x_test = standardize(
                pixels["train"][keep], pixels["val"], pixels["test"]
            )
            for name, maker in MODELS:
                net = maker(num_classes, seed=seed).build(x_train.shape[1:])
                fit = convergence.fit_to_convergence(
                    lambda net=net: keras_twin(net),
                    (x_train, train.labels[keep]),
                    (x_val, val.labels),
                    epoch_cap=settings["cnn_ann_epoch_cap"],
                    patience=settings["cnn_ann_patience"],
                    batch_size=settings["batch_size"],
                    learning_rate=settings["learning_rate"],
                    seed=seed,
                )
                predict = fit.model
                rows.append(
                    {
                        "size": int(size),
                        "seed": int(seed),
                        "model": name,
                        "val_accuracy": training.accuracy(predict, x_val, val.labels, 512),
                        "test_accuracy": training.accuracy(predict, x_test, test.labels, 512),
                        "epochs_used": fit.epochs_used,
                        "stopped_early": fit.stopped_early,
                        "converged": fit.converged,
                        "train_images": len(keep),
                    }
                )
    return pd.DataFrame(rows)


# -- summaries -------------------------------------------------------------------------------


def summarize_ann_vs_cnn(runs: pd.DataFrame) -> dict:
    """Mean accuracies and the CNN-minus-ANN gap in points with a 95% t-interval over seeds
    (the gap is paired by seed)."""
    pivot = runs.pivot(index="seed", columns="model", values="test_accuracy")
    gap = 100 * (pivot["CNN"] - pivot["ANN"])
    mean, low, high = metrics.mean_confidence_interval(gap.to_numpy())
    return {
        "ann_test_accuracy": float(pivot["ANN"].mean()),
        "cnn_test_accuracy": float(pivot["CNN"].mean()),
        "cnn_minus_ann_points": mean,
        "cnn_minus_ann_points_ci_low": low,
        "cnn_minus_ann_points_ci_high": high,
    }


def gaps_by_size(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per input size (ascending): ``size`` and the ``summarize_ann_vs_cnn`` of its runs
    (mean accuracies, the paired gap in points and its 95% interval)."""
    sizes = sorted(runs["size"].unique())
    return pd.DataFrame(
        [{"size": int(size), **summarize_ann_vs_cnn(runs[runs["size"] == size])} for size in sizes]
    )


def summarize_cnn_ann_sizes(runs: pd.DataFrame) -> dict:
    """Per input size the paired CNN-minus-ANN test gap in points with a 95% t interval over seeds
    (``cnn_minus_ann_points_<s>px``); ``cnn_minus_ann_points`` is the gap at the largest size."""
    values = {}
    sizes = sorted(runs["size"].unique())
    for size in sizes:
        part = runs[runs["size"] == size]
        gap = summarize_ann_vs_cnn(part)
        for key in ("cnn_minus_ann_points", "cnn_minus_ann_points_ci_low",
                    "cnn_minus_ann_points_ci_high"):  # fmt: skip
            suffix = key.removeprefix("cnn_minus_ann_points")
            values[f"cnn_minus_ann_points_{size}px{suffix}"] = gap[key]
        values[f"ann_test_accuracy_{size}px"] = gap["ann_test_accuracy"]
        values[f"cnn_test_accuracy_{size}px"] = gap["cnn_test_accuracy"]
    largest = summarize_ann_vs_cnn(runs[runs["size"] == sizes[-1]])
    values.update(largest)
    values["cnn_ann_sizes"] = ",".join(str(size) for size in sizes)
    values["cnn_ann_seeds"] = int(runs["seed"].nunique())
    values["cnn_ann_train_images"] = int(runs["train_images"].max())
    values["cnn_ann_converged_fraction"] = float(runs["converged"].mean())
    values["cnn_ann_stopped_early_fraction"] = float(runs["stopped_early"].mean())
    values["cnn_ann_epochs_used_mean"] = float(runs["epochs_used"].mean())
    values["cnn_ann_epochs_used_max"] = int(runs["epochs_used"].max())
    return values


def gap_table(runs: pd.DataFrame, gaps: pd.DataFrame) -> pd.DataFrame:
    """One row per input size: mean test accuracy of each net, the paired gap with its interval
    (``gaps``, from ``gaps_by_size``), and the epochs early stopping used (mean)."""
    rows = []
    for gap in gaps.itertuples(index=False):
        part = runs[runs["size"] == gap.size]
        rows.append(
            {
                "input size (px)": int(gap.size),
                "ANN test accuracy": gap.ann_test_accuracy,
                "CNN test accuracy": gap.cnn_test_accuracy,
                "CNN - ANN (points)": round(gap.cnn_minus_ann_points, 1),
                "95% CI low": round(gap.cnn_minus_ann_points_ci_low, 1),
                "95% CI high": round(gap.cnn_minus_ann_points_ci_high, 1),
                "ANN epochs": round(part.loc[part["model"] == "ANN", "epochs_used"].mean(), 1),
                "CNN epochs": round(part.loc[part["model"] == "CNN", "epochs_used"].mean(), 1),
            }
        )
    return pd.DataFrame(rows)


# -- the section -----------------------------------------------------------------------------


def cnn_vs_ann(run: Run) -> dict:
    """Section 4: the CNN-ANN gap at each input size (Keras twins trained to early stopping),
    the twins' equality with the NumPy nets, and the NumPy nets on scikit-learn's digits.

    Run seeds are ``run.seed + i`` for ``i < settings["seeds"]``; ``run.seed`` also fixes the
    split. Returns ``runs`` (face-mask), ``gaps`` (per size, for the figure), ``digits`` (NumPy
    runs), ``table`` and ``values`` (saved).
    """
    settings, seed = run.settings, run.seed
    seeds = [seed + i for i in range(settings["seeds"])]
    if not seeds:
        raise ValueError(f"settings['seeds']={settings['seeds']!r} must be at least 1")
    images = data.load_face_mask(
        run.data_dir,
        image_size=max(settings["cnn_ann_sizes"]),
        color_mode=settings["color_mode"],
        limit=settings["limit"],
        seed=seed,
        progress=False,
    )
    runs = cnn_ann_runs(images, settings, seeds)
    values = summarize_cnn_ann_sizes(runs)
    check_size = settings["cnn_ann_check_size"]
    sample = downscale(images.where("val").images[:64], check_size)
    values["cnn_ann_keras_numpy_max_diff"] = keras_numpy_max_diff(standardize(sample)[0], seed=seed)
    values["cnn_ann_check_size"] = int(check_size)
    values["cnn_ann_epoch_cap"] = int(settings["cnn_ann_epoch_cap"])
    values["cnn_ann_patience"] = int(settings["cnn_ann_patience"])
    values["seeds"] = len(seeds)
    values["face_mask_train_images"] = values["cnn_ann_train_images"]
    values["face_mask_test_images"] = int(np.sum(images.split == "test"))
    digits = pd.concat(
        [
            ann_vs_cnn(
                *digits_split(s),
                seeds=[s],
                epochs=settings["digits_epochs"],
                batch_size=settings["batch_size"],
            )  # fmt: skip
            for s in seeds
        ],
        ignore_index=True,
    )
    values.update({f"{k}_digits": v for k, v in summarize_ann_vs_cnn(digits).items()})
    values["digits_epochs"] = int(settings["digits_epochs"])
    run.save(values)
    gaps = gaps_by_size(runs)
    return {"runs": runs, "gaps": gaps, "digits": digits, "table": gap_table(runs, gaps),
            "values": values}  # fmt: skip


def story_cnn_vs_ann(result: dict) -> str:
    """The gap at each size with its interval, how the runs were trained, and the digits."""
    v = result["values"]
    sizes = [int(s) for s in v["cnn_ann_sizes"].split(",")]
    gaps = []
    for size in sizes:
        key = f"cnn_minus_ann_points_{size}px"
        low, high = v[f"{key}_ci_low"], v[f"{key}_ci_high"]
        gaps.append(
            f"**{present.points(v[key])}** at {size} px ({present.points_interval(low, high)})"
        )
    trend = _trend([v[f"cnn_minus_ann_points_{size}px"] for size in sizes])
    converged = v["cnn_ann_converged_fraction"]
    return (
        f"CNN minus ANN on the face-mask test split, mean over {v['cnn_ann_seeds']} seeds: "
        + "; ".join(gaps)
        + f". {trend} Each net trained on {v['cnn_ann_train_images']} images per seed until the "
        f"validation loss stopped improving for {_epochs(v['cnn_ann_patience'])} (cap "
        f"{v['cnn_ann_epoch_cap']}; {present.number(v['cnn_ann_epochs_used_mean'], 2)} epochs on "
        f"average); {present.percent(converged, 0)} of the runs converged by that rule. "
        f"The Keras twins match the NumPy nets to "
        f"{present.number(v['cnn_ann_keras_numpy_max_diff'], 2)} in the logits at "
        f"{v['cnn_ann_check_size']} px. On scikit-learn's digits, with the NumPy nets themselves "
        f"({v['digits_epochs']} epochs), the gap is **{present.points(v['cnn_minus_ann_points_digits'])}** "
        f"({present.points_interval(v['cnn_minus_ann_points_ci_low_digits'], v['cnn_minus_ann_points_ci_high_digits'])})."
    )


def _epochs(count: int) -> str:
    return f"{count} epoch" if count == 1 else f"{count} epochs"


def _trend(gaps) -> str:
    """Say whether the gap grows, shrinks or neither as the input grows."""
    steps = np.diff(gaps)
    if len(steps) and (steps > 0).all():
        return "The gap grows with the input size."
    if len(steps) and (steps < 0).all():
        return "The gap shrinks as the input grows."
    return "The gap does not move steadily with the input size."
