"""Figures for chapter 2: optimiser paths, schedules, sweeps, regularisers."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from dlbook import optim


def plot_paths(paths: dict[str, dict[str, np.ndarray]], grid: int = 200):
    """One panel per test function: its contours and every optimiser's path."""
    fig, axes = plt.subplots(1, len(paths), figsize=(5 * len(paths), 4.4))
    axes = np.atleast_1d(axes)
    for ax, (function, by_name) in zip(axes, paths.items(), strict=True):
        func, _, start, _ = optim.TEST_FUNCTIONS[function]
        finite = np.concatenate([p[np.isfinite(p).all(axis=1)] for p in by_name.values()])
        low = np.minimum(finite.min(axis=0), -0.5) - 0.3
        high = np.maximum(finite.max(axis=0), 0.5) + 0.3
        xs, ys = np.linspace(low[0], high[0], grid), np.linspace(low[1], high[1], grid)
        xx, yy = np.meshgrid(xs, ys)
        values = func(np.stack([xx, yy], axis=-1))
        levels = np.quantile(values, np.linspace(0.0, 0.95, 25))
        ax.contour(xx, yy, values, levels=np.unique(levels), cmap="Greys", linewidths=0.6)
        for name, path in by_name.items():
            ax.plot(path[:, 0], path[:, 1], lw=1.3, label=name)
        ax.plot(*start, "ko")
        ax.set(title=function.replace("_", " "), xlabel="x", ylabel="y")
    axes[0].legend(fontsize=8)
    fig.suptitle("Optimiser paths from the same start")
    fig.tight_layout()
    return fig


def plot_schedules(table: pd.DataFrame):
    """Every learning-rate schedule against the step."""
    fig, ax = plt.subplots(figsize=(8, 4))
    for column in table.columns:
        ax.plot(table.index, table[column], label=column.replace("_", " "))
    ax.set(title="Learning-rate schedules (peak 0.1)", xlabel="step", ylabel="learning rate")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return fig


def plot_lr_sweep(runs: pd.DataFrame, curves: dict):
    """Left: final validation accuracy against learning rate per optimiser (mean over members,
    crosses where at least half the members diverged). Right: mean validation loss per epoch at
    each optimiser's best learning rate."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.4))
    summary = runs.groupby(["optimizer", "lr"], sort=False).agg(
        val_acc=("val_acc", "mean"), diverged=("diverged", "mean")
    )
    for name in runs["optimizer"].unique():
        part = summary.loc[name]
        (line,) = left.plot(part.index, part["val_acc"], marker="o", label=name)
        bad = part[part["diverged"] >= 0.5]
        left.plot(bad.index, bad["val_acc"], "x", color=line.get_color(), ms=11, mew=2)
        stable = part[part["diverged"] < 0.5]
        best_lr = (stable if len(stable) else part)["val_acc"].idxmax()
        loss = curves[(name, best_lr)]["eval_loss"]
        epochs = np.arange(1, len(loss) + 1)
        right.plot(epochs, np.nanmean(loss, axis=1), color=line.get_color(),
                   label=f"{name} (lr {best_lr:.3g})")  # fmt: skip
    left.set(xscale="log", title="Final validation accuracy (x: diverged)",
             xlabel="learning rate", ylabel="validation accuracy")  # fmt: skip
    right.set(title="Validation loss at each optimiser's best rate", xlabel="epoch",
              ylabel="cross-entropy", yscale="log")  # fmt: skip
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_init_sweep(runs: pd.DataFrame):
    """Validation accuracy against learning rate, He vs Xavier, one panel per optimiser."""
    names = list(runs["optimizer"].unique())
    cols = min(len(names), 4)
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.2 * rows), sharey=True,
                             squeeze=False)  # fmt: skip
    for ax, name in zip(axes.flat, names, strict=False):
        part = runs[runs["optimizer"] == name]
        for init, group in part.groupby("initializer"):
            means = group.groupby("lr")["val_acc"].mean()
            ax.plot(means.index, means.values, marker="o", label=init)
        ax.set(xscale="log", title=name, xlabel="learning rate", ylabel="val. accuracy")
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("Initialisation x optimiser: He vs Xavier")
    fig.tight_layout()
    return fig


def plot_batch_sizes(table: pd.DataFrame):
    """Validation accuracy against batch size, fixed learning rate vs linear scaling."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for rule, group in table.groupby("rule"):
        stats = group.groupby("batch_size")["val_acc"].agg(["mean", "std"])
        ax.errorbar(stats.index, stats["mean"], yerr=stats["std"], marker="o", capsize=3,
                    label=f"{rule} learning rate")  # fmt: skip
    ax.set(xscale="log", title="Batch size and the learning rate", xlabel="batch size",
           ylabel="validation accuracy (mean +- sd)")  # fmt: skip
    ax.set_xticks(sorted(table["batch_size"].unique()))
    ax.set_xticklabels(sorted(table["batch_size"].unique()))
    ax.legend()
    fig.tight_layout()
    return fig


def plot_regularizers(table: pd.DataFrame):
    """Mean test accuracy per regulariser with its 95% interval (``regularizer_table`` output)."""
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(table) + 1.5))
    order = table.iloc[::-1]
    ax.errorbar(order["test_acc"], np.arange(len(order)),
                xerr=[order["test_acc"] - order["ci_low"], order["ci_high"] - order["test_acc"]],
                fmt="o", capsize=4)  # fmt: skip
    ax.set_yticks(np.arange(len(order)))
    ax.set_yticklabels(order["method"])
    ax.set(title="Regularisers on a reduced training set", xlabel="test accuracy (95% CI)")
    fig.tight_layout()
    return fig


def plot_high_lr(table: pd.DataFrame):
    """Validation accuracy of each schedule / clipping variant at the highest learning rates."""
    summary = table.groupby(["optimizer", "lr", "variant"], sort=False)["val_acc"].mean()
    frame = summary.unstack("variant")
    fig, ax = plt.subplots(figsize=(9, 4))
    frame.index = [f"{opt} @ {lr:.3g}" for opt, lr in frame.index]
    frame.plot.bar(ax=ax, rot=0, width=0.85)
    ax.set(title="Schedules and clipping at the highest learning rates", xlabel="",
           ylabel="validation accuracy (mean)")  # fmt: skip
    ax.set_ylim(
        max(0.0, float(np.nanmin(frame.values)) - 0.05),
        min(1.0, float(np.nanmax(frame.values)) + 0.04),
    )
    ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    return fig
