"""Figures for chapter 5: learning curves, label savings, class balance and the first queries."""

from __future__ import annotations

import numpy as np
from scipy import stats

# least_confidence and entropy coincide with margin on two classes; dashes keep all three visible.
STYLES = {
    "random": dict(color="black", lw=2.2),
    "least_confidence": dict(color="tab:blue", ls="--"),
    "margin": dict(color="tab:blue"),
    "entropy": dict(color="tab:cyan", ls=":"),
    "bald": dict(color="tab:purple"),
    "coreset": dict(color="tab:green"),
    "badge": dict(color="tab:red"),
    "margin_diverse": dict(color="tab:orange"),
}


def _band(values: np.ndarray, level: float = 0.95):
    """Mean and t-interval half-width over the first axis (repeats)."""
    mean = values.mean(0)
    if len(values) < 2:
        return mean, np.zeros_like(mean)
    return mean, stats.t.ppf((1 + level) / 2, len(values) - 1) * stats.sem(values, axis=0)


def plot_learning_curves(curves: dict, target: float | None = None, title: str = "", ax=None):
    """Test accuracy vs labels for each strategy: mean and 95% band over repeats.

    Parameters
    ----------
    curves : the dict from ``experiments.active_learning.run_curves``.
    target : accuracy drawn as a dotted line, if given.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2))
    n = curves["n_labels"]
    for strategy, acc in curves["accuracy"].items():
        mean, half = _band(acc)
        style = STYLES.get(strategy, {})
        ax.plot(n, mean, label=strategy, **style)
        ax.fill_between(n, mean - half, mean + half, color=style.get("color"), alpha=0.12)
    if target is not None:
        ax.axhline(target, color="gray", ls=":", lw=1, label=f"target {target:.3f}")
    repeats = len(next(iter(curves["accuracy"].values())))
    ax.set(
        xlabel="labelled images",
        ylabel="test accuracy",
        title=title or f"Learning curves (mean and 95% band over {repeats} seed sets)",
    )
    ax.legend(fontsize=8, ncol=2)
    return ax.figure


def plot_savings(summary, claimed: float = 0.30, title: str = "", ax=None):
    """Label saving vs random per strategy with its bootstrap 95% interval, against the claim."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.6))
    rows = summary.drop(index="random")
    y = np.arange(len(rows))
    saving = rows["label_saving_vs_random"].astype(float).to_numpy()
    low = rows["label_saving_ci_low"].astype(float).to_numpy()
    high = rows["label_saving_ci_high"].astype(float).to_numpy()
    colors = [STYLES.get(s, {}).get("color", "gray") for s in rows.index]
    ax.barh(y, saving * 100, color=colors, alpha=0.7)
    ax.errorbar(
        saving * 100,
        y,
        xerr=[(saving - low) * 100, (high - saving) * 100],
        fmt="none",
        ecolor="black",
        capsize=3,
    )
    ax.axvline(claimed * 100, color="tab:red", ls="--", label=f"claimed {claimed:.0%}")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, rows.index)
    ax.set(
        xlabel="labels saved vs random to reach the target (%)",
        title=title or "Label saving vs random sampling (bootstrap 95% CI)",
    )
    ax.legend(fontsize=8)
    return ax.figure


def plot_class_balance(curves: dict, ax=None):
    """Share of ``with_mask`` (label 1) among the labels bought, per strategy (mean over repeats)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.6))
    n = curves["n_labels"]
    for strategy, share in curves["positive_fraction"].items():
        ax.plot(n, np.nanmean(share, axis=0), label=strategy, **STYLES.get(strategy, {}))
    ax.set(
        xlabel="labelled images",
        ylabel="share labelled with_mask",
        title="Class balance of the labelled set",
        ylim=(0, 1),
    )
    ax.legend(fontsize=8, ncol=2)
    return ax.figure


def plot_first_queries(images: dict, labels: dict, n: int = 8, class_names=None):
    """A grid: one row per strategy, its first ``n`` queried images with their true labels.

    Parameters
    ----------
    images : strategy -> uint8 array (n, H, W, C) of the queried images, in query order.
    labels : strategy -> int (n,) true labels.
    """
    import matplotlib.pyplot as plt

    if not images:
        raise ValueError("images is empty; pass {strategy: array of queried images}")
    fig, axes = plt.subplots(len(images), n, figsize=(1.3 * n, 1.45 * len(images)), squeeze=False)
    for row, (strategy, batch) in enumerate(images.items()):
        for col in range(n):
            ax = axes[row, col]
            ax.axis("off")
            if col >= len(batch):
                continue
            img = batch[col]
            ax.imshow(img.squeeze(), cmap="gray" if img.shape[-1] == 1 else None)
            label = labels[strategy][col]
            name = class_names[label] if class_names else str(label)
            ax.set_title(name.replace("_", " "), fontsize=6)
        axes[row, 0].text(
            -0.1,
            0.5,
            strategy,
            transform=axes[row, 0].transAxes,
            ha="right",
            va="center",
            fontsize=8,
        )
    fig.suptitle("The first images each strategy asks for (one seed set)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_sensitivity(table, ax=None):
    """AULC per strategy for each (initial size, batch size) setting of ``sensitivity``."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.6))
    settings = table[["initial_size", "batch_size"]].drop_duplicates().to_numpy()
    x = np.arange(len(settings))
    strategies = list(dict.fromkeys(table["strategy"]))
    width = 0.8 / len(strategies)
    for k, strategy in enumerate(strategies):
        rows = table[table["strategy"] == strategy]
        values = [
            float(rows[(rows.initial_size == i) & (rows.batch_size == b)]["aulc"].iloc[0])
            for i, b in settings
        ]
        ax.bar(
            x + (k - (len(strategies) - 1) / 2) * width,
            values,
            width,
            label=strategy,
            color=STYLES.get(strategy, {}).get("color"),
        )
    ax.set_xticks(x, [f"seed {i}\nbatch {b}" for i, b in settings])
    low = float(table["aulc"].min())
    ax.set(
        ylim=(max(0.0, low - 0.05), 1.0),
        ylabel="AULC (mean accuracy over the budget)",
        title="Sensitivity to the seed-set size and the batch size",
    )
    ax.legend(fontsize=8)
    return ax.figure
