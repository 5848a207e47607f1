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
    summary : from ``experiments.architectures_training.summarize``: indexed by family, with
        ``mflops``, ``test_acc``, ``test_acc_low``, ``test_acc_high``, ``params`` and ``seeds``.

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
            fontsize=9,
        )
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis)
    ax.set_xlabel("MFLOPs per image (log scale)")
    ax.set_ylabel("test accuracy")
    seeds = int(summary["seeds"].min())
    ax.set_title(
        "Test accuracy against compute (95% t interval)"
        if seeds > 1
        else "Test accuracy against compute (one seed)"
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
        _, ax = plt.subplots(figsize=(7, 5))
    labels = []
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
        labels.extend((name, row["mflops"], row["latency_b1_ms"]) for name, row in table.iterrows())
    ax.set_xscale("log")
    ax.set_yscale("log")
    place_labels(ax, labels)
    ax.set_xlabel("MFLOPs per image (log scale)")
    ax.set_ylabel("CPU latency, ms per image (log scale)")
    ax.set_title("Compute against measured CPU latency")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=9, loc="upper left")
    return ax


_OFFSETS = [(6, 4), (6, -12), (-6, 4), (-6, -12), (6, 14), (-6, 14), (6, -22), (-6, -22)]


def place_labels(ax, labels, fontsize: int = 9):
    """Annotate points ``(text, x, y)`` so that no two labels overlap: each label tries a few
    offsets around its point and keeps the first whose box is clear of the labels placed so far
    (the last candidate when none is)."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    placed = []
    for text, x, y in labels:
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        for dx, dy in _OFFSETS:
            note = ax.annotate(
                text,
                (x, y),
                textcoords="offset points",
                xytext=(dx, dy),
                ha="left" if dx > 0 else "right",
                fontsize=fontsize,
            )
            box = note.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                break
            note.remove()
        else:
            note = ax.annotate(text, (x, y), textcoords="offset points", xytext=(6, 4),
                               fontsize=fontsize)  # fmt: skip
            box = note.get_window_extent(renderer)
        placed.append(box)


def plot_accuracy_vs_time(timelines: dict, seconds: float, ax=None):
    """Validation accuracy against training seconds for every run (one colour per family, the
    best-so-far accuracy a run stopped then would keep), with the equal-time mark.

    Parameters
    ----------
    timelines : ``{(family, seed): (seconds, accuracy, best so far)}`` per epoch, from
        ``experiments.architectures_training.accuracy_timelines``.
    seconds : the equal training time every family is scored at.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2))
    families = list(dict.fromkeys(family for family, _ in timelines))
    colours = dict(zip(families, plt.get_cmap("tab10").colors))
    for (family, seed), (times, accuracy, best) in timelines.items():
        ax.step(times, best, where="post", color=colours[family], alpha=0.8,
                label=family if seed == min(s for f, s in timelines if f == family) else None)  # fmt: skip
        ax.plot(times, accuracy, "o", color=colours[family], markersize=3, alpha=0.5)
    ax.axvline(seconds, color="black", linestyle="--", label=f"equal time, {seconds:.0f} s")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("training seconds (log scale, graph tracing left out)")
    ax.set_ylabel("validation accuracy (best so far)")
    ax.set_title("Accuracy against training time, one line per run")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="lower right")
    return ax
