"""Figures for chapter 5: learning curves, label savings, class balance and the first queries.

Every figure is at most 7.5 inches wide with at most 3 panels a row and text of at least 9 pt, so
it stays readable at the page's width.
"""

from __future__ import annotations

import numpy as np

FONT = 9  # points: the smallest text on a figure
WIDTH = 7.5  # inches: the page's width

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
LABEL_COLOURS = ((214, 39, 40), (44, 160, 44))  # without_mask red, with_mask green
SPLIT_NAMES = {"val": "validation (chooses)", "test": "test (scores)"}


def plot_learning_curves(bands: dict, target: float | None = None, title: str = ""):
    """Accuracy vs labels for each strategy, validation and test side by side: mean and 95% band
    over repeats.

    Parameters
    ----------
    bands : from ``experiments.active_learning_curves.curve_bands``: ``n_labels``, ``repeats``
        and ``bands`` {split: {strategy: (mean, low, high)}}.
    target : accuracy drawn as a dotted line, if given.
    """
    import matplotlib.pyplot as plt

    splits = list(bands["bands"])
    fig, axes = plt.subplots(
        1, len(splits), figsize=(WIDTH, 3.6), sharey=True, squeeze=False, layout="constrained"
    )
    n = bands["n_labels"]
    for ax, split in zip(axes[0], splits, strict=True):
        for strategy, (mean, low, high) in bands["bands"][split].items():
            style = STYLES.get(strategy, {})
            ax.plot(n, mean, label=strategy, **style)
            ax.fill_between(n, low, high, color=style.get("color"), alpha=0.12)
        if target is not None:
            ax.axhline(target, color="gray", ls=":", lw=1.2, label="target")
        ax.set_title(SPLIT_NAMES.get(split, split), fontsize=FONT + 1)
        ax.set_xlabel("labelled images", fontsize=FONT)
        ax.tick_params(labelsize=FONT)
    axes[0, 0].set_ylabel("accuracy", fontsize=FONT)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=5, fontsize=FONT, frameon=False)
    fig.suptitle(
        title or f"Learning curves: mean and 95% band over {bands['repeats']} repeats",
        fontsize=FONT + 1,
    )
    return fig


def plot_savings(summary, claimed: float = 0.30, chosen: str | None = None, title: str = ""):
    """Label saving vs random per strategy with its bootstrap 95% interval, against the claim;
    ``chosen`` (the strategy picked on validation) is outlined."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(WIDTH, 3.4), layout="constrained")
    rows = summary.drop(index="random")
    y = np.arange(len(rows))
    saving = rows["label_saving_vs_random"].astype(float).to_numpy()
    low = rows["label_saving_ci_low"].astype(float).to_numpy()
    high = rows["label_saving_ci_high"].astype(float).to_numpy()
    colors = [STYLES.get(s, {}).get("color", "gray") for s in rows.index]
    widths = [2.5 if s == chosen else 0.0 for s in rows.index]
    ax.barh(y, saving * 100, color=colors, alpha=0.7, edgecolor="black", linewidth=widths)
    ax.errorbar(
        saving * 100,
        y,
        xerr=[np.maximum(saving - low, 0) * 100, np.maximum(high - saving, 0) * 100],
        fmt="none",
        ecolor="black",
        capsize=3,
    )
    ax.axvline(claimed * 100, color="tab:red", ls="--", label=f"claimed {claimed:.0%}")
    ax.axvline(0, color="black", lw=0.8)
    names = [f"{s} (chosen)" if s == chosen else s for s in rows.index]
    ax.set_yticks(y, names, fontsize=FONT)
    ax.tick_params(labelsize=FONT)
    split = summary.attrs.get("split", "test")
    ax.set_xlabel(f"labels saved vs random to reach the target, {split} set (%)", fontsize=FONT)
    ax.set_title(title or "Label saving vs random sampling (bootstrap 95% CI)", fontsize=FONT + 1)
    ax.legend(fontsize=FONT)
    return fig


def plot_saving_by_target(table, best: str, declared: float, claimed: float = 0.30):
    """The chosen strategy's test saving vs random (bootstrap 95% band) against the target, as a
    fraction of the validation ceiling; the declared target and the claimed saving are marked.
    ``table``: ``savings_by_target``'s rows."""
    import matplotlib.pyplot as plt

    rows = table[table["strategy"] == best].sort_values("target_fraction")
    x = 100 * rows["target_fraction"].astype(float).to_numpy()
    saving = 100 * rows["label_saving_vs_random"].astype(float).to_numpy()
    low = 100 * rows["label_saving_ci_low"].astype(float).to_numpy()
    high = 100 * rows["label_saving_ci_high"].astype(float).to_numpy()
    fig, ax = plt.subplots(figsize=(WIDTH, 3.4), layout="constrained")
    color = STYLES.get(best, {}).get("color", "tab:blue")
    ax.plot(x, saving, marker="o", color=color, label=f"{best} (chosen on validation)")
    ax.fill_between(x, low, high, color=color, alpha=0.2, label="bootstrap 95% CI")
    ax.axhline(100 * claimed, color="tab:red", ls="--", label=f"claimed {claimed:.0%}")
    ax.axhline(0, color="black", lw=0.8)
    ax.axvline(100 * declared, color="gray", ls=":", label="declared target")
    ax.set_xlabel("target (% of the full-pool validation accuracy)", fontsize=FONT)
    ax.set_ylabel("labels saved vs random, test (%)", fontsize=FONT)
    ax.tick_params(labelsize=FONT)
    ax.set_title("The saving depends on the target", fontsize=FONT + 1)
    ax.legend(fontsize=FONT - 1)
    return fig


def plot_class_balance(balance: dict):
    """Share of ``with_mask`` among the labels bought, per strategy (mean over repeats).

    ``balance`` is from ``experiments.active_learning_curves.class_balance``.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(WIDTH, 3.4), layout="constrained")
    for strategy, share in balance["share"].items():
        ax.plot(balance["n_labels"], share, label=strategy, **STYLES.get(strategy, {}))
    ax.set_xlabel("labelled images", fontsize=FONT)
    ax.set_ylabel("share labelled with_mask", fontsize=FONT)
    ax.set_title("Class balance of the labelled set", fontsize=FONT + 1)
    ax.set_ylim(0, 1)
    ax.tick_params(labelsize=FONT)
    ax.legend(fontsize=FONT, ncol=2)
    return fig


def _mosaic(images: np.ndarray, labels, columns: int, frame: int = 3) -> np.ndarray:
    """Images tiled ``columns`` a row, each framed in its label's colour; uint8 (H, W, 3)."""
    n, h, w = images.shape[:3]
    rows = -(-n // columns)
    tile_h, tile_w = h + 2 * frame, w + 2 * frame
    out = np.full((rows * tile_h, columns * tile_w, 3), 255, dtype=np.uint8)
    for k in range(n):
        r, c = divmod(k, columns)
        top, left = r * tile_h, c * tile_w
        out[top : top + tile_h, left : left + tile_w] = LABEL_COLOURS[int(labels[k])]
        img = images[k]
        img = np.repeat(img, 3, axis=-1) if img.ndim == 3 and img.shape[-1] == 1 else img
        out[top + frame : top + frame + h, left + frame : left + frame + w] = img
    return out


def plot_first_queries(images: dict, labels: dict, class_names=("without_mask", "with_mask")):
    """One panel per strategy (3 a row): its first queried images in query order, each framed
    in its true label's colour.

    Parameters
    ----------
    images : strategy -> uint8 array (n, H, W, C) of the queried images, in query order.
    labels : strategy -> int (n,) true labels.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if not images:
        raise ValueError("images is empty; pass {strategy: array of queried images}")
    columns = min(3, len(images))
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(WIDTH, 1.75 * rows + 0.6), squeeze=False, layout="constrained"
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, (strategy, batch) in zip(axes.flat, images.items()):
        per_row = max(1, -(-len(batch) // 2))
        ax.imshow(_mosaic(batch, labels[strategy], per_row))
        ax.set_title(strategy, fontsize=FONT + 1)
    fig.legend(
        [Patch(color=np.array(c) / 255) for c in LABEL_COLOURS],
        [name.replace("_", " ") for name in class_names],
        loc="outside lower center",
        ncol=2,
        fontsize=FONT,
        frameon=False,
    )
    fig.suptitle(
        "The first images each strategy asks for (one repeat), framed by their true label",
        fontsize=FONT + 1,
    )
    return fig


def plot_sensitivity(table):
    """Validation AULC per strategy for each (initial size, batch size) setting of
    ``sensitivity``."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(WIDTH, 3.4), layout="constrained")
    grid = table[["initial_size", "batch_size"]].drop_duplicates().to_numpy()
    x = np.arange(len(grid))
    strategies = list(dict.fromkeys(table["strategy"]))
    width = 0.8 / len(strategies)
    for k, strategy in enumerate(strategies):
        rows = table[table["strategy"] == strategy]
        values = [
            float(rows[(rows.initial_size == i) & (rows.batch_size == b)]["aulc"].iloc[0])
            for i, b in grid
        ]
        ax.bar(
            x + (k - (len(strategies) - 1) / 2) * width,
            values,
            width,
            label=strategy,
            color=STYLES.get(strategy, {}).get("color"),
        )
    ax.set_xticks(x, [f"seed set {i}\nbatch {b}" for i, b in grid], fontsize=FONT)
    low = float(table["aulc"].min())
    ax.set_ylim(max(0.0, low - 0.05), 1.0)
    ax.set_ylabel("validation AULC", fontsize=FONT)
    ax.set_title("Sensitivity to the seed-set size and the batch size", fontsize=FONT + 1)
    ax.tick_params(labelsize=FONT)
    ax.legend(fontsize=FONT, ncol=2)
    return fig
