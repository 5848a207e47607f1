"""Figures for chapter 1; each takes the DataFrame an experiment returned and returns the figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns


def plot_gradient_checks(table: pd.DataFrame, threshold: float = 1e-7):
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
    fig, axes = plt.subplots(2, len(activations), figsize=(5 * len(activations), 7), squeeze=False)
    for col, act in enumerate(activations):
        part = stats[stats["activation"] == act]
        for row, (column, label) in enumerate(
            (("activation_std", "std of activations h"), ("gradient_std", "std of gradient dL/dh"))
        ):
            ax = axes[row, col]
            sns.lineplot(data=part, x="layer", y=column, hue="initializer", marker="o", ax=ax)
            ax.set_yscale("log")
            ax.set_ylabel(label)
            ax.set_title(f"{act}: {label} by layer")
            ax.legend(title="initialiser", fontsize=8)
    fig.suptitle("Initialisation through a deep fully connected network")
    fig.tight_layout()
    return fig


def plot_ann_vs_cnn(runs: pd.DataFrame, claimed_gap: float = 9.0):
    """Test accuracy per seed for each model and dataset (points) with the mean (bar)."""
    datasets = list(dict.fromkeys(runs["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for ax, name in zip(axes[0], datasets):
        part = runs[runs["dataset"] == name]
        sns.barplot(data=part, x="model", y="test_accuracy", errorbar=None, alpha=0.4, ax=ax)
        sns.stripplot(data=part, x="model", y="test_accuracy", color="black", size=5, ax=ax)
        low = part["test_accuracy"].min()
        ax.set_ylim(max(0.0, low - 0.1), 1.0)
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{name}: ANN vs CNN, one point per seed")
    fig.suptitle(f"NumPy ANN vs CNN (the dissertation claims a {claimed_gap:g}-point gap)")
    fig.tight_layout()
    return fig


def plot_throughput(bench: dict):
    """Training images per second, NumPy vs Keras, with the one-third target."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    names = ["NumPy (dlbook.nn)", "Keras (TensorFlow)"]
    values = [bench["numpy_cnn_images_per_s"], bench["keras_cnn_images_per_s"]]
    ax.bar(names, values, color=["tab:blue", "tab:orange"])
    ax.axhline(values[1] / 3, color="tab:red", linestyle="--", label="one third of Keras")
    ax.set_ylabel("training images / s")
    ax.set_title("Training throughput of the same CNN on this CPU")
    ax.legend()
    fig.tight_layout()
    return fig
