"""Figure of chapter 4b's own detector: how its training went, and where validation chose to stop.

It draws the ``history`` and ``epochs`` that
``dlbook.experiments.real_photos.own_detector.train_and_score`` returns.
"""

from __future__ import annotations

import matplotlib.pyplot as plt


def training_curves(history: list[dict], chosen_epoch: int):
    """Training loss (focal and box parts) per epoch, and validation mAP@0.5 where scored;
    the dotted line marks the epoch whose weights were kept."""
    epochs = [row["epoch"] for row in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    for key, label in (("loss", "total"), ("focal", "heatmap (focal)"), ("box", "size + offset")):
        left.plot(epochs, [row[key] for row in history], label=label, lw=1.5)
    left.set(xlabel="epoch", ylabel="training loss per face", yscale="log")
    left.legend(fontsize=8)
    scored = [row for row in history if "val_map50" in row]
    right.plot([r["epoch"] for r in scored], [r["val_map50"] for r in scored], "o-", lw=1.5)
    right.set(xlabel="epoch", ylabel="validation mAP@0.5", ylim=(0, 1))
    for ax in (left, right):
        ax.axvline(chosen_epoch, ls=":", c="grey", lw=1)
    fig.tight_layout()
    return fig
