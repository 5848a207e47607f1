"""Figures for the architecture families: accuracy against compute, and compute against latency."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _plain_log_ticks(axis):
    """Label a log axis with plain numbers (2, 5, 10, 20) instead of powers of ten."""
    from matplotlib.ticker import FuncFormatter

    formatter = FuncFormatter(lambda value, _: f"{value:g}")
    axis.set_major_formatter(formatter)
    axis.set_minor_formatter(formatter)


def plot_accuracy_vs_mflops(summary: pd.DataFrame, ax=None):
    """Test accuracy (mean over seeds, 95% interval) against MFLOPs per image, log scale.

    Parameters
    ----------
    summary : from ``experiments.architectures.summarize``: indexed by family, with ``mflops``,
        ``test_acc``, ``test_acc_low``, ``test_acc_high``, ``params`` and ``seeds``.

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.2))
    errors = np.vstack(
        [
            summary["test_acc"] - summary["test_acc_low"],
            summary["test_acc_high"] - summary["test_acc"],
        ]
    )
    # Marker area grows with the parameter count.
    sizes = 40 + 260 * np.sqrt(summary["params"] / summary["params"].max())
    ax.errorbar(
        summary["mflops"], summary["test_acc"], yerr=errors, fmt="none", ecolor="0.5", capsize=3
    )
    ax.scatter(
        summary["mflops"],
        summary["test_acc"],
        s=sizes,
        c=range(len(summary)),
        cmap="tab10",
        vmin=0,
        vmax=9,
        edgecolor="black",
        zorder=3,
    )
    for family, row in summary.iterrows():
        ax.annotate(
            f"{family}\n{row['params'] / 1e3:.0f}k params",
            (row["mflops"], row["test_acc"]),
            textcoords="offset points",
            xytext=(8, -4),
            fontsize=8,
        )
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis)
    ax.set_xlabel("MFLOPs per image (log scale)")
    ax.set_ylabel("test accuracy")
    seeds = int(summary["seeds"].min())
    ax.set_title(
        f"Accuracy against compute, trained from scratch ({seeds} seed(s), 95% t interval)"
    )
    ax.grid(alpha=0.3)
    return ax


def plot_cost_vs_latency(costs: pd.DataFrame, references: pd.DataFrame | None = None, ax=None):
    """CPU latency per image at batch 1 and batch 32 against MFLOPs per image, log-log.

    Parameters
    ----------
    costs : indexed by model, with ``mflops`` and ``latency_b1_ms`` (and optionally
        ``latency_b32_ms``) columns; the compact families.
    references : the same columns for the full-size models (rows without ``mflops`` are skipped).

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.2))
    tables = [("compact families", costs, "o")]
    if references is not None and "mflops" in references:
        tables.append(("full-size ImageNet models", references.dropna(subset=["mflops"]), "s"))
    for label, table, marker in tables:
        for column, colour in (("latency_b1_ms", "tab:blue"), ("latency_b32_ms", "tab:orange")):
            if column not in table or table[column].isna().all():
                continue
            batch = column.split("_")[1][1:]
            ax.scatter(
                table["mflops"],
                table[column],
                marker=marker,
                color=colour,
                alpha=0.8,
                label=f"{label}, batch {batch}",
            )
        for name, row in table.iterrows():
            ax.annotate(
                name,
                (row["mflops"], row["latency_b1_ms"]),
                textcoords="offset points",
                xytext=(5, 4),
                fontsize=8,
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("MFLOPs per image (log scale)")
    ax.set_ylabel("CPU latency, ms per image (log scale)")
    ax.set_title("Compute against measured CPU latency")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return ax
