"""Chapter 1, section 4: the CNN against the ANN over seeds, at several input sizes on the
face-mask images (Keras twins of the NumPy nets, trained to early stopping) and with the NumPy nets
themselves on scikit-learn's digits."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from functools import partial

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

STAGES = ("tune", "test")
"""A run either chooses a learning rate (validation only) or is scored once on test."""

RESTART_STRIDE = 1000
"""Restart ``k`` of a run with seed ``s`` draws its initial weights and batch order from
``s + k * RESTART_STRIDE``, a seed no other run uses."""


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


@dataclass(frozen=True)
class GapTask:
    """One training run of the face-mask study: a net (``model``, a name of ``MODELS``) at an
    input ``size`` and ``learning_rate``, on the split, subsample and initial weights of ``seed``.

    ``stage`` is "tune" (scored on validation only, to choose the learning rate) or "test"
    (validation for early stopping, then the test split once).
    """

    size: int
    model: str
    learning_rate: float
    seed: int
    stage: str


def split_by_seed(images: data.ImageSet, seed: int) -> data.ImageSet:
    """The images with their own duplicate-grouped train/val/test split drawn by ``seed``, so an
    interval over seeds covers the choice of split as well as the initial weights."""
    return replace(images, split=data.grouped_split(images.labels, images.groups, seed=seed))


def gap_task(images: data.ImageSet, settings: dict, task: GapTask) -> dict:
    """Train one net of the study (``task``) to early stopping on validation; a pure function of
    its arguments, so the tasks of a study can run in any order or in parallel.

    Parameters
    ----------
    images : ``data.ImageSet`` at the largest input size, labels 0/1; its split is redrawn by
        ``task.seed`` (``split_by_seed``).
    settings : ``cnn_ann_train_fraction``, ``cnn_ann_epoch_cap``, ``cnn_ann_patience``,
        ``batch_size``, ``cnn_ann_restarts`` and ``cnn_ann_failure_margin``: a run whose
        validation accuracy is below the majority-class share plus the margin has failed and
        restarts from fresh initial weights (validation decides; the test split is not read).

    Returns
    -------
    dict: the task's fields and ``val_accuracy``, ``test_accuracy`` (NaN for a "tune" task: the
    test split is not touched), ``epochs_used``, ``stopped_early``, ``converged``,
    ``train_images``, ``attempts`` (1 without a restart) and ``failed`` (still at chance after
    the last attempt).
    """
    if task.stage not in STAGES:
        raise ValueError(f"task.stage={task.stage!r} is unknown; use one of {STAGES}")
    split = split_by_seed(images, task.seed)
    train, val, test = (split.where(name) for name in ("train", "val", "test"))
    keep = train_subsample(train.labels, settings["cnn_ann_train_fraction"], task.seed)
    x_train, x_val, x_test = standardize(
        *(downscale(x, task.size) for x in (train.images[keep], val.images, test.images))
    )
    # A run left at chance on validation learnt nothing (a dead start): it gets fresh initial
    # weights and batch order, same split and subsample, up to ``cnn_ann_restarts`` times.
    chance = float(np.bincount(val.labels).max() / len(val.labels))
    for attempt in range(settings["cnn_ann_restarts"] + 1):
        init_seed = task.seed + RESTART_STRIDE * attempt
        net = dict(MODELS)[task.model](int(images.labels.max()) + 1, seed=init_seed)
        net = net.build(x_train.shape[1:])
        fit = convergence.fit_to_convergence(
            lambda net=net: keras_twin(net),
            (x_train, train.labels[keep]),
            (x_val, val.labels),
            epoch_cap=settings["cnn_ann_epoch_cap"],
            patience=settings["cnn_ann_patience"],
            batch_size=settings["batch_size"],
            learning_rate=task.learning_rate,
            seed=init_seed,
        )
        val_accuracy = training.accuracy(fit.model, x_val, val.labels, 512)
        failed = val_accuracy < chance + settings["cnn_ann_failure_margin"]
        if not failed:
            break
    tested = task.stage == "test"
    return {
        **asdict(task),
        "val_accuracy": val_accuracy,
        "test_accuracy": training.accuracy(fit.model, x_test, test.labels, 512) if tested
        else np.nan,
        "epochs_used": fit.epochs_used,
        "stopped_early": fit.stopped_early,
        "converged": fit.converged,
        "train_images": len(keep),
        "attempts": attempt + 1,
        "failed": bool(failed),
    }  # fmt: skip


def tuning_tasks(settings: dict, seed: int) -> list[GapTask]:
    """Every family at every rate of ``cnn_ann_learning_rates``, at the largest input size, on
    the split of ``seed`` (the tuning split)."""
    size = max(settings["cnn_ann_sizes"])
    return [GapTask(int(size), name, float(rate), int(seed), "tune")
            for name, _ in MODELS for rate in settings["cnn_ann_learning_rates"]]  # fmt: skip


def choose_learning_rates(tuning: pd.DataFrame) -> dict[str, float]:
    """Per family, the learning rate with the highest validation accuracy (ties: the smaller
    rate). Reads validation only: a ValueError refuses rows that hold a test score."""
    if tuning["test_accuracy"].notna().any():
        raise ValueError("tuning rows hold test scores; learning rates are chosen on validation")
    ranked = tuning.sort_values(["val_accuracy", "learning_rate"], ascending=[False, True])
    best = ranked.drop_duplicates("model").set_index("model")["learning_rate"]
    return {str(model): float(rate) for model, rate in best.items()}


def scored_tasks(settings: dict, seeds, rates: dict[str, float]) -> list[GapTask]:
    """Every family at every input size and seed, each at its chosen learning rate."""
    return [GapTask(int(size), name, rates[name], int(seed), "test")
            for size in settings["cnn_ann_sizes"] for seed in seeds
            for name, _ in MODELS]  # fmt: skip


def cnn_ann_runs(images, settings: dict, seeds, tuning_seed: int) -> tuple[pd.DataFrame, ...]:
    """The learning rate of each family chosen on the tuning split's validation images, then
    both nets at each input size and seed (each seed with its own split), scored once on test.

    Parameters
    ----------
    images : ``data.ImageSet`` at the largest of ``settings["cnn_ann_sizes"]``.
    settings : ``cnn_ann_sizes``, ``cnn_ann_learning_rates`` and ``gap_task``'s settings.
    seeds : a seed sets the split, the training subsample, the initial weights and the
        mini-batch order.
    tuning_seed : the split, subsample and weights of the tuning runs.

    Returns
    -------
    (tuning, runs): DataFrames of ``gap_task`` rows, one per (family, rate) and one per
    (size, seed, family).
    """
    task = partial(gap_task, images, settings)
    tuning = pd.DataFrame(list(map(task, tuning_tasks(settings, tuning_seed))))
    rates = choose_learning_rates(tuning)
    runs = pd.DataFrame(list(map(task, scored_tasks(settings, seeds, rates))))
    return tuning, runs


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
    values.update(largest_size_gap(runs))
    values["cnn_ann_sizes"] = ",".join(str(size) for size in sizes)
    values["cnn_ann_seeds"] = int(runs["seed"].nunique())
    values["cnn_ann_train_images"] = int(runs["train_images"].max())
    values["cnn_ann_converged_fraction"] = float(runs["converged"].mean())
    values["cnn_ann_stopped_early_fraction"] = float(runs["stopped_early"].mean())
    values["cnn_ann_epochs_used_mean"] = float(runs["epochs_used"].mean())
    values["cnn_ann_epochs_used_max"] = int(runs["epochs_used"].max())
    if "attempts" in runs:
        values["cnn_ann_restarted_runs"] = int((runs["attempts"] > 1).sum())
        values["cnn_ann_failed_runs"] = int(runs["failed"].sum())
        values["cnn_ann_runs"] = int(len(runs))
    return values


def largest_size_gap(runs: pd.DataFrame) -> dict:
    """The judged figure: the paired CNN-minus-ANN test gap in points at the largest input size,
    with its 95% and 90% t-intervals over seeds (each seed its own split, subsample and weights).
    """
    size = int(runs["size"].max())
    pivot = runs[runs["size"] == size].pivot(index="seed", columns="model", values="test_accuracy")
    gap = (100 * (pivot["CNN"] - pivot["ANN"])).to_numpy()
    mean, low, high = metrics.mean_confidence_interval(gap, 0.95)
    _, low90, high90 = metrics.mean_confidence_interval(gap, 0.90)
    return {
        "cnn_ann_gap_largest_px": size,
        "cnn_ann_gap_largest_points": mean,
        "cnn_ann_gap_largest_ci_low": low,
        "cnn_ann_gap_largest_ci_high": high,
        "cnn_ann_gap_largest_ci90_low": low90,
        "cnn_ann_gap_largest_ci90_high": high90,
        "cnn_ann_gap_largest_seeds": int(len(gap)),
    }


def tuning_values(tuning: pd.DataFrame, rates: dict[str, float]) -> dict:
    """The learning-rate choice as result keys: the grid, each family's validation accuracy at
    each rate (tuning split) and the rate chosen."""
    values = {
        "cnn_ann_learning_rates": ",".join(f"{r:g}" for r in sorted(tuning["learning_rate"].unique())),
        "cnn_ann_tuning_size": int(tuning["size"].max()),
        "cnn_ann_lr_selected_on": "validation",
    }  # fmt: skip
    for row in tuning.itertuples(index=False):
        values[f"cnn_ann_tuning_val_accuracy_{row.model}_{row.learning_rate:g}"] = row.val_accuracy
    for model, rate in rates.items():
        values[f"cnn_ann_learning_rate_{model}"] = rate
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

    Each family's learning rate is chosen on the validation images of the split of ``run.seed``
    (the tuning split); the scored seeds are ``run.seed + 1 + i`` for ``i < settings["seeds"]``,
    each with its own split. Returns ``tuning``, ``runs`` (face-mask), ``gaps`` (per size, for
    the figure), ``digits`` (NumPy runs), ``table`` and ``values`` (saved).
    """
    settings, seed = run.settings, run.seed
    seeds = [seed + 1 + i for i in range(settings["seeds"])]
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
    tuning, runs = cnn_ann_runs(images, settings, seeds, tuning_seed=seed)
    values = summarize_cnn_ann_sizes(runs)
    values.update(tuning_values(tuning, choose_learning_rates(tuning)))
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
    return {"tuning": tuning, "runs": runs, "gaps": gaps, "digits": digits,
            "table": gap_table(runs, gaps), "values": values}  # fmt: skip


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
    judged = (
        f"At the largest size, {v['cnn_ann_gap_largest_px']} px, the size the claim is judged at, "
        f"the gap is **{present.points(v['cnn_ann_gap_largest_points'])}** (90% CI "
        f"{v['cnn_ann_gap_largest_ci90_low']:+.1f} to {v['cnn_ann_gap_largest_ci90_high']:+.1f}). "
    )
    rates = (
        f"Each family's learning rate was chosen once, on the validation images of a separate "
        f"tuning split at {v['cnn_ann_tuning_size']} px, from "
        f"{v['cnn_ann_learning_rates'].replace(',', ', ')}: "
        f"{present.number(v['cnn_ann_learning_rate_ANN'])} for the ANN and "
        f"{present.number(v['cnn_ann_learning_rate_CNN'])} for the CNN. Every scored seed draws "
        f"its own split of the images as well as its subsample and initial weights, so the "
        f"intervals are over seeds and splits. "
    )
    if v.get("cnn_ann_restarted_runs"):
        rates += (
            f"{v['cnn_ann_restarted_runs']} of the {v['cnn_ann_runs']} scored runs ended at chance "
            f"on validation (a start that learnt nothing) and were restarted from fresh initial "
            f"weights, by a rule fixed before the runs; {v['cnn_ann_failed_runs']} stayed at "
            f"chance after the restarts. "
        )
    return (
        f"CNN minus ANN on the face-mask test split, mean over {v['cnn_ann_seeds']} seeds: "
        + "; ".join(gaps)
        + f". {trend} "
        + judged
        + rates
        + f"Each net trained on {v['cnn_ann_train_images']} images per seed until the "
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
