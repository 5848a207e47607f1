"""Figures for chapter 1; each takes the DataFrame an experiment returned and returns the figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from dlbook.methods.nn import gradcheck, throughput


def plot_gradient_checks(table: pd.DataFrame, threshold: float = gradcheck.TARGET):
    """Horizontal bars of each check's relative error on a log axis, with the target line."""
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(table) + 1.2))
    ax.barh(table["check"], table["max_rel_error"], color="tab:blue")
    ax.axvline(threshold, color="tab:red", linestyle="--", label=f"target {threshold:g}")
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("relative error, analytic vs finite differences (float64)")
    ax.set_title("Gradient check of every layer, loss and penalty")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def plot_initialization(stats: pd.DataFrame):
    """Activation and gradient spread per layer: one column per activation function,
    one line per initialiser, log scale (vanishing goes down, exploding goes up)."""
    activations = list(dict.fromkeys(stats["activation"]))
    fig, axes = plt.subplots(
        2, len(activations), figsize=(4 * len(activations), 6.5), squeeze=False
    )
    for col, act in enumerate(activations):
        part = stats[stats["activation"] == act]
        for row, (column, label) in enumerate(
            (("activation_std", "std of activations h"), ("gradient_std", "std of gradient dL/dh"))
        ):
            ax = axes[row, col]
            sns.lineplot(data=part, x="layer", y=column, hue="initializer", marker="o", ax=ax)
            ax.set_yscale("log")
            ax.set_ylabel(label)
            ax.set_title(f"{act}: {label}", fontsize=10)
            ax.legend(title="initialiser", fontsize=9, title_fontsize=9)
    fig.suptitle("Initialisation through a deep fully connected network")
    fig.tight_layout()
    return fig


def _size_axis(ax, sizes) -> None:
    """A log-2 x-axis labelled at each input size."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_xlabel("input size (px)")


def plot_gap_by_size(runs: pd.DataFrame, gaps: pd.DataFrame, claimed_gap: float = 9.0):
    """Left: test accuracy of the ANN and the CNN at each input size (one point per seed, line
    through the means). Right: the paired CNN-minus-ANN gap in points with its 95% interval, against
    the dissertation's claimed gap and no gap.

    Parameters
    ----------
    runs : one row per (size, seed, model) with ``test_accuracy`` (``cnn_vs_ann(run)["runs"]``).
    gaps : one row per size with ``cnn_minus_ann_points`` and its ``_ci_low`` / ``_ci_high``
        (``cnn_vs_ann(run)["gaps"]``).
    """
    sizes = list(gaps["size"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.6))
    for model, colour in (("ANN", "tab:blue"), ("CNN", "tab:orange")):
        part = runs[runs["model"] == model]
        left.scatter(part["size"], part["test_accuracy"], color=colour, alpha=0.5, s=20)
        means = part.groupby("size")["test_accuracy"].mean()
        left.plot(means.index, means.to_numpy(), marker="o", color=colour, label=model)
    _size_axis(left, sizes)
    left.set_ylabel("test accuracy")
    left.set_title("Accuracy by input size")
    left.legend()
    gap = gaps["cnn_minus_ann_points"]
    errors = [gap - gaps["cnn_minus_ann_points_ci_low"], gaps["cnn_minus_ann_points_ci_high"] - gap]
    right.errorbar(sizes, gap, yerr=errors, fmt="o", color="black", capsize=4)
    right.axhline(claimed_gap, color="tab:red", linestyle="--", label=f"claimed {claimed_gap:g}")
    right.axhline(0, color="0.5", linewidth=1, label="no gap")
    _size_axis(right, sizes)
    right.set_ylabel("CNN - ANN (points)")
    right.set_title("Gap with 95% interval")
    right.legend(fontsize=9)
    fig.tight_layout()
    return fig


def plot_throughput(bench: dict):
    """Training images per second, NumPy vs Keras, with the one-third target."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    names = ["NumPy (dlbook.methods.nn)", "Keras (TensorFlow)"]
    values = [bench["numpy_cnn_images_per_s"], bench["keras_cnn_images_per_s"]]
    ax.bar(names, values, color=["tab:blue", "tab:orange"])
    target = throughput.TARGET * values[1]
    ax.axhline(target, color="tab:red", linestyle="--", label="one third of Keras")
    ax.set_ylabel("training images / s")
    ax.set_title("Training throughput of the same CNN on this CPU")
    ax.legend()
    fig.tight_layout()
    return fig
