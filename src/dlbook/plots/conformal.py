"""Figures of chapter 6 (conformal prediction).

Every figure is at most 7.5 inches wide with at most 3 panels a row and text of at least 9 pt, so
it stays readable at the page's width. Each method has its own colour, line style and marker, so a
method whose line coincides with another's (APS and RAPS on two classes) stays visible.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

FONT = 9  # points: the smallest text on a figure
WIDTH = 7.5  # inches: the page's width
METHOD_STYLES = {
    "lac": dict(color="tab:blue", ls="-", marker="o", ms=6),
    "aps": dict(color="tab:orange", ls="-", marker="s", ms=9, mfc="none", mew=1.5, lw=2.5),
    "aps_rand": dict(color="tab:green", ls=":", marker="^", ms=6),
    "raps": dict(color="tab:red", ls="--", marker="x", ms=7, mew=1.5),
    "mondrian_lac": dict(color="tab:purple", ls="-.", marker="v", ms=6),
    "mondrian_aps_rand": dict(color="tab:brown", ls=(0, (5, 1, 1, 1, 1, 1)), marker="D", ms=5),
}


def _style(method: str) -> dict:
    return METHOD_STYLES.get(method, dict(marker="o"))


def _axes_text(ax) -> None:
    ax.tick_params(labelsize=FONT)
    ax.xaxis.label.set_size(FONT)
    ax.yaxis.label.set_size(FONT)
    ax.title.set_size(FONT + 1)


def coverage_distributions(draws: dict, laws: dict, method: str = "lac", alphas=None):
    """Histogram of per-re-split coverage for one method, one panel per alpha (3 a row), against
    the Beta-Binomial law of coverage and its 1%-99% band.

    Parameters
    ----------
    draws : ``{(method, alpha): coverage per re-split (R,)}``.
    laws : ``{alpha: {"coverage", "density", "band"}}`` from
        ``experiments.conformal_studies.coverage_laws``.
    """
    alphas = alphas or sorted({a for (m, a) in draws if m == method})
    columns = min(3, len(alphas))
    rows = -(-len(alphas) // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(WIDTH, 2.4 * rows + 0.5), squeeze=False, layout="constrained"
    )
    for ax in axes.flat[len(alphas) :]:
        ax.axis("off")
    for ax, alpha in zip(axes.flat, alphas):
        law = laws[alpha]
        ax.hist(draws[(method, alpha)], bins=20, density=True, alpha=0.6, label="re-splits")
        ax.plot(law["coverage"], law["density"], color="black", lw=1.2, label="Beta-Binomial")
        for edge in law["band"]:
            ax.axvline(edge, color="grey", ls=":", lw=1)
        ax.axvline(1 - alpha, color="red", lw=1.2, label="1 - alpha")
        ax.set_title(f"alpha = {alpha:g}")
        ax.set_xlabel("test coverage")
        ax.xaxis.set_major_locator(plt.MaxNLocator(4))
        _axes_text(ax)
    for ax in axes[:, 0]:
        ax.set_ylabel("density", fontsize=FONT)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=FONT, frameon=False)
    fig.suptitle(f"{method}: coverage per re-split against its law", fontsize=FONT + 1)
    return fig


def coverage_gap(table: pd.DataFrame, tolerance: float, title: str):
    """Mean coverage minus its target per method and alpha, with the Monte-Carlo tolerance."""
    fig, ax = plt.subplots(figsize=(WIDTH, 3.6), layout="constrained")
    for method, rows in table.groupby("method", sort=False):
        ax.errorbar(
            rows["alpha"],
            rows["coverage"] - rows["target"],
            yerr=3 * rows["coverage_se"],
            capsize=3,
            label=method,
            **_style(method),
        )
    ax.axhline(0, color="black", lw=1)
    ax.axhline(-tolerance, color="red", ls="--", lw=1, label="- tolerance")
    ax.set_xscale("log")
    ax.set_xlabel("alpha (target miscoverage)")
    ax.set_ylabel("mean coverage - (1 - alpha)")
    ax.set_title(title)
    _axes_text(ax)
    ax.legend(fontsize=FONT, ncol=3)
    return fig


def efficiency(table: pd.DataFrame, title: str):
    """Mean set size and class-conditional coverage minimum per method against alpha."""
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 3.6), layout="constrained")
    for method, rows in table.groupby("method", sort=False):
        style = _style(method)
        axes[0].plot(rows["alpha"], rows["set_size"], label=method, **style)
        axes[1].plot(rows["alpha"], rows["class_coverage_min"] - rows["target"], **style)
    axes[0].set_ylabel("mean set size")
    axes[1].axhline(0, color="black", lw=1)
    axes[1].set_ylabel("worst class coverage - (1 - alpha)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("alpha")
        _axes_text(ax)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=FONT, frameon=False)
    fig.suptitle(title, fontsize=FONT + 1)
    return fig


def operating_curves(curves: dict):
    """Review rate against auto-accept accuracy, one line per model, each point labelled by its
    alpha (labels kept inside the figure)."""
    fig, ax = plt.subplots(figsize=(WIDTH, 4.2), layout="constrained")
    markers = ("o", "s", "^", "D")
    for k, (name, curve) in enumerate(curves.items()):
        ax.plot(curve["review_rate"], curve["auto_accuracy"], marker=markers[k % 4], label=name)
        for _, row in curve.iterrows():
            ax.annotate(
                f"{row['alpha']:g}",
                (row["review_rate"], row["auto_accuracy"]),
                fontsize=FONT,
                xytext=(4, 4 if k % 2 == 0 else -12),
                textcoords="offset points",
                annotation_clip=False,
            )
    ax.margins(x=0.12, y=0.12)
    ax.set_xlabel("review rate (sets that are not a single label)")
    ax.set_ylabel("accuracy on auto-accepted singletons")
    ax.set_title("Operating curve: LAC at each alpha (point labels)")
    _axes_text(ax)
    ax.legend(fontsize=FONT)
    return fig


def shift_coverage(table: pd.DataFrame):
    """LAC coverage on corrupted test images, calibrated on clean vs corrupted images."""
    fig, ax = plt.subplots(figsize=(WIDTH, 3.6), layout="constrained")
    labels = [
        f"{c}\nalpha = {a:g}" for c, a in table[["corruption", "alpha"]].drop_duplicates().values
    ]
    width = 0.38
    for j, (name, rows) in enumerate(table.groupby("calibration", sort=False)):
        x = np.arange(len(rows)) + (j - 0.5) * width
        ax.bar(x, rows["coverage"], width=width, label=name)
        ax.scatter(x, rows["target"], color="black", marker="_", s=200, zorder=3)
    ax.set_xticks(np.arange(len(labels)), labels)
    ax.set_ylim(max(0.0, table["coverage"].min() - 0.1), 1.0)
    ax.set_ylabel("coverage on corrupted test images")
    ax.set_title("Distribution shift: black ticks are the targets 1 - alpha")
    _axes_text(ax)
    ax.legend(fontsize=FONT, loc="lower right")
    return fig
