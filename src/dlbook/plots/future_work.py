"""Figures of chapter 7 (federated learning on Flower, mask fit), drawn from a ``Section`` of
``dlbook.experiments.future_work``: its saved values and its frames."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

STRATEGY_COLOURS = {"fedavg": "tab:blue", "fedprox": "tab:orange", "fedadam": "tab:green"}


def partitions(section):
    """Each client's label counts under every partitioning: skew and unequal sizes at a glance."""
    label_counts = section.frames["label_counts"]
    fig, axes = plt.subplots(
        1, len(label_counts), figsize=(3.4 * len(label_counts), 2.8), sharey=True
    )
    for ax, (name, counts) in zip(np.atleast_1d(axes), label_counts.items(), strict=True):
        k = len(counts)
        ax.bar(range(k), counts[:, 0], color="tab:red", label="without mask")
        ax.bar(range(k), counts[:, 1], bottom=counts[:, 0], color="tab:green", label="with mask")
        ax.set_title(name)
        ax.set_xlabel("client")
    np.atleast_1d(axes)[0].set_ylabel("training images")
    np.atleast_1d(axes)[-1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def accuracy_per_round(section):
    """Test accuracy after each round, one panel per partitioning, one line per strategy."""
    curves = section.frames["curves"]
    curves = curves[curves["dp"].isna()]
    central = section.values["central_accuracy"]
    names = list(dict.fromkeys(curves["partitioning"]))
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3), sharey=True)
    for ax, name in zip(np.atleast_1d(axes), names, strict=True):
        for strategy, rows in curves[curves["partitioning"] == name].groupby("strategy"):
            ax.plot(rows["round"], rows["test_accuracy"], marker="o", ms=3,
                    color=STRATEGY_COLOURS.get(strategy), label=strategy)  # fmt: skip
        ax.axhline(central, color="black", ls="--", lw=1, label="central")
        ax.set_title(name)
        ax.set_xlabel("round")
        ax.set_ylim(0.5, 1.005)
    np.atleast_1d(axes)[0].set_ylabel("test accuracy")
    np.atleast_1d(axes)[-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def client_spread(section):
    """Per-client accuracy: each model on a test set with that client's label mix, and the
    clients trained alone on the shared test set."""
    clients = section.frames["clients"]
    names = list(dict.fromkeys(clients["partitioning"]))
    models = list(dict.fromkeys(clients["model"]))
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3), sharey=True)
    rng = np.random.default_rng(0)
    for ax, name in zip(np.atleast_1d(axes), names, strict=True):
        rows = clients[clients["partitioning"] == name]
        for i, model in enumerate(models):
            acc = rows.loc[rows["model"] == model, "own_mix_accuracy"].to_numpy()
            ax.scatter(i + rng.uniform(-0.12, 0.12, len(acc)), acc, s=14,
                       color=STRATEGY_COLOURS.get(model, "tab:grey"))  # fmt: skip
        alone = rows.loc[rows["model"] == "alone", "test_accuracy"].to_numpy()
        ax.scatter(len(models) + rng.uniform(-0.12, 0.12, len(alone)), alone, s=14, color="tab:red")
        ax.set_xticks(range(len(models) + 1), [*models, "alone,\nshared test"], fontsize=7)
        ax.set_title(name)
        ax.set_ylim(0, 1.02)
    np.atleast_1d(axes)[0].set_ylabel("accuracy on the client's label mix")
    fig.tight_layout()
    return fig


def communication(section):
    """Test accuracy against the megabytes of model arrays moved so far, every run."""
    curves = section.frames["curves"]
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for run, rows in curves.groupby("run", sort=False):
        style = ":" if rows["dp"].notna().any() else "-"
        ax.plot(
            rows["bytes"].cumsum() / 1e6, rows["test_accuracy"], style, marker="o", ms=2, label=run
        )
    ax.set_xlabel("model arrays moved so far (MB, both directions)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0.5, 1.005)
    ax.legend(fontsize=6, ncol=2, loc="lower right")
    fig.tight_layout()
    return fig


def privacy(section):
    """Accuracy per round of FedAvg on IID clients with and without DP noise, and epsilon."""
    curves = section.frames["curves"]
    rows = curves[curves["partitioning"] == "iid"]
    fig, ax = plt.subplots(figsize=(5.5, 3))
    for _, part in rows.groupby("run", sort=False):
        z = part["dp"].iloc[0]
        label = "no noise" if np.isnan(z) else (
            f"z = {z:g}, epsilon = {section.values[f'fl_dp_epsilon_z{z:g}']:.3g}"
        )  # fmt: skip
        ax.plot(part["round"], part["test_accuracy"], marker="o", ms=3, label=label)
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0.4, 1.005)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def mask_fit_examples(section):
    """Synthetic fits on a few test-split faces: one row per face, one column per fit."""
    fits = section.values["mask_fit_classes"].split(",")
    examples = section.frames["examples"]
    fig, axes = plt.subplots(len(examples), 3, figsize=(5.4, 1.9 * len(examples)), squeeze=False)
    for row, images in zip(axes, examples, strict=True):
        for ax, image, fit in zip(row, images, fits, strict=True):
            ax.imshow(image)
            ax.set_axis_off()
            ax.set_title(fit, fontsize=8)
    fig.tight_layout()
    return fig


def confusion(section):
    """Confusion matrix of the fit classifier on the test split's synthetic masks."""
    fits = section.values["mask_fit_classes"].split(",")
    counts = section.frames["confusion"]
    fig, ax = plt.subplots(figsize=(3.8, 3.2))
    ax.imshow(counts, cmap="Blues")
    for (i, j), value in np.ndenumerate(counts):
        ax.text(j, i, str(value), ha="center", va="center",
                color="white" if value > counts.max() / 2 else "black")  # fmt: skip
    ax.set_xticks(range(len(fits)), fits, fontsize=8)
    ax.set_yticks(range(len(fits)), fits, fontsize=8)
    ax.set_xlabel("predicted fit")
    ax.set_ylabel("drawn fit")
    fig.tight_layout()
    return fig


def flagged_gallery(section, columns: int = 6):
    """Real with-mask test images the fit classifier calls badly worn, with its call."""
    gallery = section.frames["gallery"]
    if not gallery:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.text(0.5, 0.5, "no real image was flagged", ha="center", va="center")
        ax.set_axis_off()
        return fig
    rows = int(np.ceil(len(gallery) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.8 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, (image, fit, prob) in zip(axes.ravel(), gallery, strict=False):
        ax.imshow(image)
        ax.set_title(f"{fit} {prob:.2f}", fontsize=7)
    fig.tight_layout()
    return fig


def source_examples(section):
    """A row of training crops per image source, each titled with its label."""
    examples = section.frames["examples"]
    columns = max(len(shown) for shown in examples.values())
    fig, axes = plt.subplots(len(examples), columns, figsize=(1.3 * columns, 1.5 * len(examples)),
                             squeeze=False)  # fmt: skip
    for row, (name, shown) in zip(axes, examples.items(), strict=True):
        for ax in row:
            ax.set_axis_off()
        for ax, (image, label) in zip(row, shown, strict=False):
            ax.imshow(image)
            ax.set_title("with mask" if label else "without mask", fontsize=7)
        row[0].text(-0.15, 0.5, section.frames["source_names"][name], transform=row[0].transAxes,
                    ha="right", va="center", fontsize=8)  # fmt: skip
    fig.tight_layout()
    return fig
