"""Figures and tables for chapter 2: optimiser paths, schedules, sweeps, regularisers.

Each function takes what a section of ``dlbook.experiments.optimization`` returns. Figures are at
most 3 panels a row and about 10.8 inches wide at most, with text of at least 10 pt, so that they
stay readable at the page's width (about 780 px); tables go through ``dlbook.book.present``.
"""

from __future__ import annotations

import functools

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import NullFormatter, NullLocator

from dlbook.book import present
from dlbook.methods import optim

PAGE_WIDTH = 10.8
"""Inches of the widest figure (three panels)."""
STYLE = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
}


def _styled(plot):
    """Draw ``plot`` with the chapter's font sizes."""

    @functools.wraps(plot)
    def wrapper(*args, **kwargs):
        with plt.rc_context(STYLE):
            figure = plot(*args, **kwargs)
            interactive = matplotlib.is_interactive()
        # The first figure may set up Jupyter's inline backend, which turns interactive mode on;
        # leaving the context would turn it off again and hide every later figure.
        matplotlib.interactive(interactive)
        return figure

    return wrapper


def _plain_log_ticks(ax, values) -> None:
    """A log x-axis labelled only at ``values``, as plain numbers (no ``3×10¹`` minor labels)."""
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(list(values))
    ax.set_xticklabels([present.number(v) for v in values])


def _panels(count: int, panel_height: float, margin: float, **options):
    """A page-wide grid of ``count`` panels, 3 a row at most, the cells left over switched off;
    each row ``panel_height`` inches tall plus ``margin`` for the whole figure."""
    cols = min(count, 3)
    rows = int(np.ceil(count / cols))
    fig, axes = plt.subplots(
        rows, cols, figsize=(PAGE_WIDTH, panel_height * rows + margin), squeeze=False, **options
    )
    for ax in list(axes.flat)[count:]:
        ax.axis("off")
    return fig, axes


# ---------------------------------------------------------------------------------------------
# Optimisers and schedules


@_styled
def paths(section: dict, grid: int = 200):
    """One panel per test function (3 a row): its contours and every optimiser's path, with one
    legend for all panels below them."""
    by_function = section["paths"]
    fig, axes = _panels(len(by_function), 3.8, 0.5)
    height = fig.get_figheight()
    for ax, (function, by_name) in zip(axes.flat, by_function.items(), strict=False):
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
            ax.plot(path[:, 0], path[:, 1], lw=1.6, label=name)
        ax.plot(*start, "ko")
        ax.set(title=function.replace("_", " "), xlabel="x", ylabel="y")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 7), frameon=False)
    fig.suptitle("Optimiser paths from the same start (black dot)")
    fig.tight_layout(rect=(0, 0.45 / height, 1, 1))
    return fig


def path_table(section: dict):
    """Distance to the nearest minimum after the last step, optimiser x function."""
    table = section["path_table"].pivot(
        index="optimizer", columns="function", values="distance_to_minimum"
    )
    table.columns = [c.replace("_", " ") for c in table.columns]
    # below 1e-4 the path has reached the minimum for the eye; the exact tiny value says nothing
    table = table.map(lambda d: "< 0.0001" if d < 1e-4 else d)
    return present.show(table, index=True)


def match_table(section: dict):
    """Per optimiser: the largest NumPy-vs-Keras difference and how far the parameters moved."""
    table = section["match"].rename(
        columns={"max_abs_diff": "largest difference", "max_abs_change": "largest move"}
    )
    return present.show(table)


@_styled
def schedules(section: dict):
    """Every learning-rate schedule against the step."""
    table = section["table"]
    fig, ax = plt.subplots(figsize=(8, 4))
    for column in table.columns:
        ax.plot(table.index, table[column], label=column.replace("_", " "))
    ax.set(title="Learning-rate schedules (peak 0.1)", xlabel="step", ylabel="learning rate")
    ax.legend(ncol=2)
    fig.tight_layout()
    return fig


@_styled
def from_scratch(section: dict):
    """Left: the NumPy network's validation accuracy per epoch, one line per optimiser. Right:
    training and validation accuracy per regulariser on the small training subset."""
    curves, regs = section["optimizers"], section["regularizers"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(PAGE_WIDTH, 4.2))
    for name, group in curves.groupby("optimizer", sort=False):
        left.plot(
            group["epoch"], group["val_acc"], marker="o", label=f"{name} ({group['lr'].iloc[0]:g})"
        )
    left.set(title="NumPy network, one optimiser each", xlabel="epoch",
             ylabel="validation accuracy")  # fmt: skip
    left.legend()
    positions = np.arange(len(regs))
    right.bar(positions - 0.2, regs["train_acc"], 0.4, label="training")
    right.bar(positions + 0.2, regs["val_acc"], 0.4, label="validation")
    right.set_xticks(positions)
    right.set_xticklabels(regs["method"])
    low = max(0.0, float(min(regs["val_acc"].min(), regs["train_acc"].min())) - 0.1)
    right.set(ylim=(low, 1.0), title="NumPy network, one regulariser each", ylabel="accuracy")
    right.legend(loc="lower right")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# Sweeps


@_styled
def lr_sweep(section: dict):
    """Left: final validation accuracy against learning rate per optimiser (mean over members,
    crosses where at least half the members diverged). Right: mean validation loss per epoch at
    each optimiser's best learning rate."""
    runs, curves, best = section["runs"], section["curves"], section["best"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(PAGE_WIDTH, 4.4))
    summary = runs.groupby(["optimizer", "lr"], sort=False).agg(
        val_acc=("val_acc", "mean"), diverged=("diverged", "mean")
    )
    best_lr = best.set_index("optimizer")["best_lr"]
    for name in runs["optimizer"].unique():
        part = summary.loc[name]
        (line,) = left.plot(part.index, part["val_acc"], marker="o", label=name)
        bad = part[part["diverged"] >= 0.5]
        left.plot(bad.index, bad["val_acc"], "x", color=line.get_color(), ms=11, mew=2)
        loss = curves[(name, float(best_lr[name]))]["eval_loss"]
        epochs = np.arange(1, len(loss) + 1)
        right.plot(epochs, np.nanmean(loss, axis=1), color=line.get_color(),
                   label=f"{name} ({present.number(best_lr[name])})")  # fmt: skip
    left.set(xscale="log", title="Final validation accuracy (x: diverged)",
             xlabel="learning rate", ylabel="validation accuracy")  # fmt: skip
    right.set(title="Validation loss at the best rate", xlabel="epoch",
              ylabel="cross-entropy", yscale="log")  # fmt: skip
    left.legend(fontsize=9)
    right.legend(fontsize=9)
    fig.tight_layout()
    return fig


def best_rates_table(section: dict):
    """Best learning rate per optimiser, chosen on validation, with its accuracy and interval."""
    table = section["best"].rename(
        columns={"best_lr": "best rate", "val_acc": "validation accuracy",
                 "ci_low": "95% CI low", "ci_high": "95% CI high"}
    )  # fmt: skip
    return present.show(table, percent_columns=["validation accuracy", "95% CI low", "95% CI high"])


@_styled
def init_sweep(section: dict):
    """Validation accuracy against learning rate, He vs Xavier, one panel per optimiser (3 a
    row)."""
    runs = section["runs"]
    names = list(runs["optimizer"].unique())
    fig, axes = _panels(len(names), 3.2, 0.4, sharey=True)
    for ax, name in zip(axes.flat, names, strict=False):
        part = runs[runs["optimizer"] == name]
        for init, group in part.groupby("initializer"):
            means = group.groupby("lr")["val_acc"].mean()
            ax.plot(means.index, means.values, marker="o", label=init)
        ax.set(xscale="log", title=name, xlabel="learning rate", ylabel="val. accuracy")
    axes.flat[0].legend()
    fig.suptitle("Initialisation x optimiser: He vs Xavier")
    fig.tight_layout()
    return fig


def init_table(section: dict):
    """Best rate and validation accuracy per optimiser and initialiser."""
    table = section["by_init"].pivot(
        index="optimizer", columns="initializer", values=["best_lr", "val_acc"]
    )
    names = {"best_lr": "best rate", "val_acc": "validation accuracy"}
    table.columns = [f"{names[a]} ({b})" for a, b in table.columns]
    percent = [c for c in table.columns if c.startswith("validation")]
    return present.show(table, index=True, percent_columns=percent)


@_styled
def batch_sizes(section: dict):
    """Validation accuracy against batch size, fixed learning rate vs linear scaling."""
    table = section["table"]
    fig, ax = plt.subplots(figsize=(7, 4))
    for rule, group in table.groupby("rule"):
        stats = group.groupby("batch_size")["val_acc"].agg(["mean", "std"])
        ax.errorbar(stats.index, stats["mean"], yerr=stats["std"], marker="o", capsize=3,
                    label=f"{rule} learning rate")  # fmt: skip
    _plain_log_ticks(ax, sorted(table["batch_size"].unique()))
    ax.set(title="Batch size and the learning rate", xlabel="batch size",
           ylabel="validation accuracy (mean ± sd)")  # fmt: skip
    ax.legend()
    fig.tight_layout()
    return fig


def batch_table(section: dict):
    """Mean learning rate, steps and validation accuracy per batch size and rule."""
    table = (
        section["table"]
        .groupby(["batch_size", "rule"])[["lr", "steps", "val_acc"]]
        .mean()
        .reset_index()
        .rename(columns={"batch_size": "batch size", "lr": "learning rate",
                         "val_acc": "validation accuracy"})
    )  # fmt: skip
    return present.show(table, percent_columns=["validation accuracy"])


# ---------------------------------------------------------------------------------------------
# Regularisers and high learning rates


@_styled
def regularizers(section: dict):
    """Left: per regulariser at its chosen strength, validation and test accuracy with 95%
    intervals over seeds. Right: validation accuracy against strength, per method with a grid."""
    table, runs = section["table"], section["runs"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(PAGE_WIDTH, 0.45 * len(table) + 3.2))
    order = table.iloc[::-1].reset_index(drop=True)
    rows = np.arange(len(order))
    for offset, column, low, high, label in (
        (0.15, "val_acc", "val_ci_low", "val_ci_high", "validation (selects)"),
        (-0.15, "test_acc", "ci_low", "ci_high", "test (chosen only)"),
    ):
        left.errorbar(order[column], rows + offset,
                      xerr=[order[column] - order[low], order[high] - order[column]],
                      fmt="o", capsize=4, label=label)  # fmt: skip
    left.set_yticks(rows)
    left.set_yticklabels(order["method"])
    left.set(title="Small CNN, chosen strengths", xlabel="accuracy (95% CI over seeds)")
    left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    means = runs.groupby(["method", "strength"], sort=False)["val_acc"].mean()
    for method in ("l1", "l2", "dropout"):
        if method in means.index.get_level_values(0):
            part = means.loc[method]
            right.plot(part.index, part.values, marker="o", label=method)
    if "none" in means.index.get_level_values(0):
        right.axhline(means.loc["none"].iloc[0], color="grey", ls="--", label="none")
    if "batchnorm" in means.index.get_level_values(0):
        right.axhline(means.loc["batchnorm"].iloc[0], color="black", ls=":", label="batchnorm")
    right.set(xscale="log", title="Strength grid (validation)", xlabel="strength (penalty or rate)",
              ylabel="validation accuracy (mean)")  # fmt: skip
    right.legend()
    fig.tight_layout()
    return fig


@_styled
def regularizers_by_size(section: dict):
    """Left: the unregularised network's train-minus-validation gap at each training-set size.
    Right: each regulariser's test gain over none, paired by seed, with 95% intervals."""
    table = section["by_size"]
    sizes = sorted(table["train_size"].unique())
    fig, (left, right) = plt.subplots(1, 2, figsize=(PAGE_WIDTH, 3.6))
    gaps = table.drop_duplicates("train_size").set_index("train_size").loc[sizes]
    left.plot(sizes, 100 * gaps["unregularized_gap"], marker="o", color="black")
    left.set(xscale="log", title="Over-fitting without a regulariser", xlabel="training images",
             ylabel="train minus validation (points)")  # fmt: skip
    methods = [m for m in table["method"].unique() if m != "none"]
    for k, method in enumerate(methods):
        part = table[table["method"] == method].set_index("train_size").loc[sizes]
        x = np.asarray(sizes, dtype=float) * (1 + 0.04 * (k - (len(methods) - 1) / 2))
        gain = 100 * part["minus_none"]
        right.errorbar(x, gain, yerr=[gain - 100 * part["minus_none_ci_low"],
                                      100 * part["minus_none_ci_high"] - gain],
                       marker="o", capsize=3, label=method)  # fmt: skip
    right.axhline(0, color="grey", lw=0.8)
    right.set(xscale="log", title="Test gain over no regulariser", xlabel="training images",
              ylabel="points (95% CI over seeds)")  # fmt: skip
    for ax in (left, right):
        _plain_log_ticks(ax, sizes)
    right.legend(fontsize="small")
    fig.tight_layout()
    return fig


def regularizer_table(section: dict):
    """Per regulariser at its chosen strength: validation and test accuracy, intervals, gap."""
    table = section["table"][
        ["method", "strength", "val_acc", "test_acc", "ci_low", "ci_high", "train_minus_val",
         "best_epoch", "seeds"]
    ].rename(columns={"val_acc": "validation accuracy", "test_acc": "test accuracy",
                      "ci_low": "test 95% CI low", "ci_high": "test 95% CI high",
                      "train_minus_val": "train minus validation", "best_epoch": "best epoch"})  # fmt: skip
    table.loc[~table["method"].isin(["l1", "l2", "dropout"]), "strength"] = np.nan
    return present.show(
        table,
        percent_columns=["validation accuracy", "test accuracy", "test 95% CI low",
                         "test 95% CI high", "train minus validation"],
        missing={"strength": "no strength"},
    )  # fmt: skip


@_styled
def high_lr(section: dict):
    """Validation accuracy of each schedule / clipping variant at the highest learning rates."""
    table = section["table"]
    frame = table.set_index(["optimizer", "lr", "variant"])["val_acc"].unstack("variant")
    frame = frame[[v for v in table["variant"].unique() if v in frame.columns]]
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH, 4.2))
    frame.index = [f"{opt} @ {present.number(lr)}" for opt, lr in frame.index]
    frame.plot.bar(ax=ax, rot=0, width=0.85)
    ax.set(title="Schedules and clipping at the highest learning rates", xlabel="",
           ylabel="validation accuracy (mean)")  # fmt: skip
    ax.set_ylim(
        max(0.0, float(np.nanmin(frame.values)) - 0.05),
        min(1.0, float(np.nanmax(frame.values)) + 0.08),
    )
    ax.legend(ncol=4, loc="upper left")
    fig.tight_layout()
    return fig


def high_lr_table(section: dict):
    """Mean validation accuracy, diverged share and gain over the constant rate per setting."""
    table = section["table"].assign(gain=lambda t: 100 * t["gain_vs_constant"])
    table.loc[table["variant"] == "constant", "gain"] = np.nan
    table = table.drop(columns="gain_vs_constant").rename(
        columns={"lr": "learning rate", "val_acc": "validation accuracy",
                 "diverged": "diverged share", "gain": "gain over constant (points)"}
    )  # fmt: skip
    return present.show(
        table,
        percent_columns=["validation accuracy", "diverged share"],
        missing={"gain over constant (points)": "(the constant rate)"},
    )
