"""Figures of chapter 6 (conformal prediction)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats

from dlbook import conformal


def coverage_distributions(draws: dict, n_cal: int, n_test: int, method: str = "lac", alphas=None):
    """Histogram of per-re-split coverage for one method, one panel per alpha, against the
    Beta-Binomial law of coverage (Beta(r, n + 1 - r) for the calibration draw, binomial for the
    finite test set) and its 1%-99% band."""
    alphas = alphas or sorted({a for (m, a) in draws if m == method})
    fig, axes = plt.subplots(1, len(alphas), figsize=(3.2 * len(alphas), 3), squeeze=False)
    for ax, alpha in zip(axes[0], alphas, strict=True):
        values = draws[(method, alpha)]
        rank = conformal.conformal_rank(n_cal, alpha)
        law = stats.betabinom(n_test, rank, n_cal + 1 - rank)
        grid = np.arange(law.ppf(0.0005), law.ppf(0.9995) + 1)
        ax.hist(values, bins=20, density=True, alpha=0.6, label="re-splits")
        ax.plot(grid / n_test, law.pmf(grid) * n_test, color="black", lw=1.2, label="Beta-Binomial")
        for q in (0.01, 0.99):
            ax.axvline(law.ppf(q) / n_test, color="grey", ls=":", lw=1)
        ax.axvline(1 - alpha, color="red", lw=1.2, label="1 - alpha")
        ax.set_title(f"{method}, alpha = {alpha:g}")
        ax.set_xlabel("test coverage")
    axes[0][0].set_ylabel("density")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def coverage_gap(table: pd.DataFrame, tolerance: float, title: str):
    """Mean coverage minus its target per method and alpha, with the Monte-Carlo tolerance."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for method, rows in table.groupby("method", sort=False):
        ax.errorbar(
            rows["alpha"],
            rows["coverage"] - rows["target"],
            yerr=3 * rows["coverage_se"],
            marker="o",
            capsize=3,
            label=method,
        )
    ax.axhline(0, color="black", lw=1)
    ax.axhline(-tolerance, color="red", ls="--", lw=1, label="- tolerance")
    ax.set_xscale("log")
    ax.set_xlabel("alpha (target miscoverage)")
    ax.set_ylabel("mean coverage - (1 - alpha)")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def efficiency(table: pd.DataFrame, title: str):
    """Mean set size and class-conditional coverage minimum per method against alpha."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for method, rows in table.groupby("method", sort=False):
        axes[0].plot(rows["alpha"], rows["set_size"], marker="o", label=method)
        axes[1].plot(rows["alpha"], rows["class_coverage_min"] - rows["target"], marker="o")
    axes[0].set_ylabel("mean set size")
    axes[1].axhline(0, color="black", lw=1)
    axes[1].set_ylabel("worst class coverage - (1 - alpha)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("alpha")
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def operating_curves(curves: dict):
    """Review rate against auto-accept accuracy, one line per model, labelled by alpha."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        ax.plot(curve["review_rate"], curve["auto_accuracy"], marker="o", label=name)
        for _, row in curve.iterrows():
            ax.annotate(
                f"{row['alpha']:g}",
                (row["review_rate"], row["auto_accuracy"]),
                fontsize=6,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.set_xlabel("review rate (sets that are not a single label)")
    ax.set_ylabel("accuracy on auto-accepted singletons")
    ax.set_title("Operating curve: LAC at each alpha (labels)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def shift_coverage(table: pd.DataFrame):
    """LAC coverage on corrupted test images, calibrated on clean vs corrupted images."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    labels = [
        f"{c}\nalpha={a:g}" for c, a in table[["corruption", "alpha"]].drop_duplicates().values
    ]
    width = 0.38
    for j, (name, rows) in enumerate(table.groupby("calibration", sort=False)):
        x = np.arange(len(rows)) + (j - 0.5) * width
        ax.bar(x, rows["coverage"], width=width, label=name)
        ax.scatter(x, rows["target"], color="black", marker="_", s=200, zorder=3)
    ax.set_xticks(np.arange(len(labels)), labels, fontsize=7)
    ax.set_ylim(max(0.0, table["coverage"].min() - 0.1), 1.0)
    ax.set_ylabel("coverage on corrupted test images")
    ax.set_title("Distribution shift: black ticks are the targets 1 - alpha")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig
