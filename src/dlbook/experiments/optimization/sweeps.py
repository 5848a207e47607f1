"""Chapter 2's sweeps on one-hidden-layer networks: learning rate x optimiser x initialiser, batch
size against the linear-scaling rule, and schedules and clipping at the highest rates."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dlbook.book import claims, present
from dlbook.book.context import Run
from dlbook.experiments.optimization.images import splits_for
from dlbook.experiments.optimization.members import (
    INITIALIZERS,
    MemberTrainer,
    diverged,
    steps_for,
)
from dlbook.methods import metrics, optim

INITIALIZER_NAMES = {"he": "He", "xavier": "Xavier"}


def final_scores(result: dict, k: int) -> dict:
    """Member ``k``'s final-epoch ``val_acc`` and ``val_loss`` in a ``MemberTrainer.run`` result,
    and whether it ``diverged``."""
    final_loss = result["eval_loss"][-1, k]
    return {"val_acc": result["eval_acc"][-1, k], "val_loss": final_loss,
            "diverged": bool(diverged(final_loss))}  # fmt: skip


def learning_rate_values(low: float, high: float, count: int) -> np.ndarray:
    """``count`` log-spaced learning rates from ``low`` to ``high``, both included."""
    if not 0 < low < high or count < 2:
        raise ValueError(
            f"low={low!r}, high={high!r}, count={count!r}: need 0 < low < high and count >= 2"
        )
    return np.geomspace(low, high, count)


def sweep_learning_rates(settings: dict) -> np.ndarray:
    """The sweep's learning rates: ``lr_count`` log-spaced from ``lr_min`` to ``lr_max``."""
    return learning_rate_values(settings["lr_min"], settings["lr_max"], settings["lr_count"])


def learning_rate_sweep(
    splits,
    optimizers,
    learning_rates,
    seeds,
    initializers=INITIALIZERS,
    epochs=5,
    batch_size=64,
    hidden=32,
) -> tuple[pd.DataFrame, dict]:
    """Every optimiser x learning rate, each fit holding ``initializers x seeds`` members.

    Returns
    -------
    runs : DataFrame, one row per (optimizer, lr, initializer, seed): ``val_acc``, ``val_loss``
        (final epoch), ``diverged``, ``best_val_acc`` (best epoch).
    curves : ``{(optimizer, lr): ``MemberTrainer.run`` output}`` with member order
        ``[(init, seed) for init in initializers for seed in seeds]``.
    """
    members = [(init, seed) for init in initializers for seed in seeds]
    x_train = splits["train"][0]
    steps = steps_for(len(x_train), batch_size, epochs)
    rows, curves = [], {}
    for name in optimizers:
        trainer = MemberTrainer(
            x_train.shape[1],
            [s for _, s in members],
            name,
            steps,
            initializers=[i for i, _ in members],
            hidden=hidden,
        )
        for lr in learning_rates:
            result = trainer.run(
                splits["train"], splits["val"], np.full(steps, lr), epochs, batch_size
            )
            curves[(name, float(lr))] = result
            for k, (init, seed) in enumerate(members):
                rows.append({"optimizer": name, "lr": float(lr), "initializer": init, "seed": seed,
                             **final_scores(result, k),
                             "best_val_acc": np.nanmax(result["eval_acc"][:, k])})  # fmt: skip
    return pd.DataFrame(rows), curves


def best_learning_rates(runs: pd.DataFrame, by=("optimizer",)) -> pd.DataFrame:
    """Per group, the learning rate with the highest mean final validation accuracy over seeds,
    with that mean and its 95% interval. Rates at which half or more of the runs diverged are
    passed over unless every rate did."""
    by = list(by)
    means = (
        runs.groupby([*by, "lr"])
        .agg(mean=("val_acc", "mean"), diverged=("diverged", "mean"))
        .reset_index()
    )
    stable = means["diverged"] < 0.5
    any_stable = stable.groupby([means[c] for c in by]).transform("any")
    means["score"] = np.where(stable | ~any_stable, means["mean"], -np.inf)
    best = means.loc[means.groupby(by)["score"].idxmax()]
    rows = []
    for _, row in best.iterrows():
        mask = np.ones(len(runs), dtype=bool)
        for column in by:
            mask &= (runs[column] == row[column]).to_numpy()
        values = runs.loc[mask & (runs["lr"] == row["lr"]).to_numpy(), "val_acc"].to_numpy()
        mean, low, high = metrics.mean_confidence_interval(values)
        rows.append({**{c: row[c] for c in by}, "best_lr": row["lr"], "val_acc": mean,
                     "ci_low": low, "ci_high": high, "runs": len(values)})  # fmt: skip
    return pd.DataFrame(rows)


def batch_size_sweep(
    splits, batch_sizes, base_lr, seeds, optimizer="sgd", base_batch=64, epochs=5, hidden=32
) -> pd.DataFrame:
    """For each batch size, a fixed learning rate vs the linear-scaling rule
    ``lr = base_lr * batch_size / base_batch``, with the same number of epochs (so fewer steps
    for larger batches)."""
    x_train = splits["train"][0]
    rows = []
    for batch_size in batch_sizes:
        steps = steps_for(len(x_train), int(batch_size), epochs)
        trainer = MemberTrainer(x_train.shape[1], seeds, optimizer, steps, hidden=hidden)
        for rule, lr in (("fixed", base_lr), ("linear", base_lr * batch_size / base_batch)):
            result = trainer.run(
                splits["train"], splits["val"], np.full(steps, lr), epochs, int(batch_size)
            )
            for k, seed in enumerate(seeds):
                rows.append({"batch_size": int(batch_size), "rule": rule, "lr": float(lr),
                             "steps": steps, "seed": seed, **final_scores(result, k)})  # fmt: skip
    return pd.DataFrame(rows)


def high_lr_study(
    splits, optimizers, learning_rates, variants, seeds, epochs=5, batch_size=64, hidden=32
) -> pd.DataFrame:
    """At the sweep's highest learning rates, each variant: a schedule name from
    ``optim.SCHEDULES`` (the rate is its peak) or ``"clipnorm"`` / ``"clipvalue"`` (constant rate,
    per-tensor norm clipped to 1 / elements clipped to 0.5)."""
    x_train = splits["train"][0]
    steps = steps_for(len(x_train), batch_size, epochs)
    clip_settings = {"clipnorm": {"clipnorm": 1.0}, "clipvalue": {"clipvalue": 0.5}}
    rows = []
    for name in optimizers:
        trainers = {}
        for variant in variants:
            clipping = clip_settings.get(variant)
            key = variant if clipping else "schedules"
            if key not in trainers:
                trainers[key] = MemberTrainer(
                    x_train.shape[1], seeds, name, steps, hidden=hidden, clipping=clipping
                )
            for lr in learning_rates:
                rates = optim.schedule_values("constant" if clipping else variant, steps, lr)
                result = trainers[key].run(
                    splits["train"], splits["val"], rates, epochs, batch_size
                )
                for k, seed in enumerate(seeds):
                    rows.append({"optimizer": name, "lr": float(lr), "variant": variant,
                                 "seed": seed, **final_scores(result, k)})  # fmt: skip
    return pd.DataFrame(rows)


def high_lr_table(study: pd.DataFrame) -> pd.DataFrame:
    """Mean validation accuracy and diverged share per (optimizer, lr, variant), with the gain
    over the constant rate at the same optimiser and learning rate."""
    table = (
        study.groupby(["optimizer", "lr", "variant"], sort=False)
        .agg(val_acc=("val_acc", "mean"), diverged=("diverged", "mean"))
        .reset_index()
    )
    constant = table[table["variant"] == "constant"].set_index(["optimizer", "lr"])["val_acc"]
    table["gain_vs_constant"] = table["val_acc"] - [
        constant.get((o, lr), np.nan) for o, lr in zip(table["optimizer"], table["lr"], strict=True)
    ]
    return table


# -- the sections ----------------------------------------------------------------------------


def _seeds(run: Run) -> list[int]:
    return [run.seed + i for i in range(run.settings["seeds"])]


def learning_rates(run: Run) -> dict:
    """The learning-rate sweep (every optimiser x rate x initialiser x seed), best rates chosen on
    validation."""
    settings = run.settings
    splits = splits_for(run)
    rates = sweep_learning_rates(settings)
    seeds = _seeds(run)
    runs, curves = learning_rate_sweep(
        splits, settings["sweep_optimizers"], rates, seeds, settings["initializers"],
        epochs=settings["epochs"], batch_size=settings["batch_size"], hidden=settings["hidden"],
    )  # fmt: skip
    best = best_learning_rates(runs)
    by_init = best_learning_rates(runs, by=("optimizer", "initializer"))
    values = {"lr_values": len(rates), "lr_min": float(rates.min()), "lr_max": float(rates.max()),
              "seeds": len(seeds), "sweep_runs": len(runs),
              "diverged_share": float(runs["diverged"].mean()), "selected_on": "validation"}  # fmt: skip
    for row in best.itertuples(index=False):
        values[f"best_lr_{row.optimizer}"] = float(row.best_lr)
        values[f"best_val_acc_{row.optimizer}"] = float(row.val_acc)
    for row in by_init.itertuples(index=False):
        values[f"best_lr_{row.optimizer}_{row.initializer}"] = float(row.best_lr)
    run.save(values)
    return {"runs": runs, "curves": curves, "best": best, "by_init": by_init, "rates": rates,
            "seeds": seeds, "run": run, "results": values}  # fmt: skip


def batch_sizes(run: Run) -> dict:
    """Plain SGD per batch size, fixed rate vs the linear-scaling rule."""
    settings = run.settings
    table = batch_size_sweep(splits_for(run), settings["batch_sizes"], settings["batch_base_lr"],
                             _seeds(run), epochs=settings["epochs"],
                             hidden=settings["hidden"])  # fmt: skip
    values = {
        f"batch_val_acc_{rule}_{size}": float(group["val_acc"].mean())
        for (rule, size), group in table.groupby(["rule", "batch_size"])
    }
    run.save(values)
    return {"table": table, "results": values}


def high_learning_rates(run: Run) -> dict:
    """Schedules and clipping at the sweep's highest learning rates (validation scores)."""
    settings = run.settings
    rates = sweep_learning_rates(settings)[-settings["high_lr_count"] :]
    study = high_lr_study(splits_for(run), settings["high_lr_optimizers"], rates,
                          settings["high_lr_variants"], _seeds(run), epochs=settings["epochs"],
                          hidden=settings["hidden"])  # fmt: skip
    table = high_lr_table(study)
    values = {
        f"high_lr_val_acc_{row.optimizer}_{row.lr:.3g}_{row.variant}": float(row.val_acc)
        for row in table.itertuples(index=False)
    }
    run.save(values)
    return {"study": study, "table": table, "results": values}


# -- sentences for the page ------------------------------------------------------------------


def story_learning_rates(section: dict) -> str:
    """The best optimiser and rate on validation, the diverged share, and the claim's sentence."""
    best, runs, rates = section["best"], section["runs"], section["rates"]
    top = best.sort_values("val_acc", ascending=False).iloc[0]
    shares = runs.groupby("optimizer", sort=False)["diverged"].mean()
    text = (
        f"{runs['optimizer'].nunique()} optimisers at {len(rates)} learning rates from "
        f"{present.number(rates.min())} to {present.number(rates.max())}, {len(runs)} trained "
        f"networks. On validation, the best setting is **{top['optimizer']} at "
        f"{present.number(top['best_lr'])}** ({present.percent(top['val_acc'])} validation "
        f"accuracy, {present.interval(top['ci_low'], top['ci_high'])}). Share of diverged runs "
        "per optimiser: " + ", ".join(f"{n} {present.percent(s, 0)}" for n, s in shares.items())
        + "."
    )  # fmt: skip
    if section.get("run") is not None:
        text += " " + claims.sentence("learning_rate_range", section["run"].load_all())
    return text


def story_initializers(section: dict) -> str:
    """Whether He and Xavier pick the same best rates, and how far their accuracies differ."""
    by_init, runs = section["by_init"], section["runs"]
    table = by_init.pivot(index="optimizer", columns="initializer", values=["best_lr", "val_acc"])
    inits = list(table["best_lr"].columns)
    same = int((table["best_lr"].nunique(axis=1) == 1).sum())
    text = (
        f"{' and '.join(INITIALIZER_NAMES.get(i, i) for i in inits)} pick the same best learning rate for **{same} of "
        f"{len(table)}** optimisers."
    )
    if len(inits) == 2:
        gap = (table["val_acc"][inits[0]] - table["val_acc"][inits[1]]).abs()
        half = (by_init["ci_high"] - by_init["ci_low"]).max() / 2
        relation = "within" if gap.max() <= half else "beyond"
        text += (
            f" At each initialiser's best rate the accuracies differ by at most "
            f"{present.points(100 * gap.max()).lstrip('+')} ({gap.idxmax()}), {relation} the "
            f"widest half-width of a cell's 95% interval ({present.points(100 * half).lstrip('+')}"
            f"; {runs['seed'].nunique()} seeds per cell)."
        )
    return text


def story_batch_sizes(section: dict) -> str:
    """Where each learning-rate rule does best and worst across batch sizes."""
    means = section["table"].groupby(["rule", "batch_size"])["val_acc"].mean()
    parts = []
    for rule in ("fixed", "linear"):
        if rule in means.index.get_level_values(0):
            by_size = means.loc[rule]
            parts.append(
                f"with the {rule} rule, validation accuracy is highest at batch size "
                f"{by_size.idxmax()} ({present.percent(by_size.max())}) and lowest at "
                f"{by_size.idxmin()} ({present.percent(by_size.min())})"
            )
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + "."


def story_high_learning_rates(section: dict) -> str:
    """The schedule or clipping that gains most over a constant high rate without diverging."""
    table = section["table"]
    fixes = table[(table["variant"] != "constant") & (table["diverged"] < 0.5)]
    tried = int((table["variant"] != "constant").sum())
    better = int((fixes["gain_vs_constant"] > 0).sum())
    if fixes.empty:
        return (f"None of the {tried} schedule or clipping settings kept half of its runs from "
                "diverging at these rates.")  # fmt: skip
    best = fixes.sort_values("gain_vs_constant", ascending=False).iloc[0]
    return (
        f"Among the settings where fewer than half of the runs diverged, the largest gain on "
        f"validation over a constant rate is **{best['variant']}** for {best['optimizer']} at "
        f"{present.number(best['lr'])} ({present.points(100 * best['gain_vs_constant'])}); "
        f"{better} of {tried} schedule or clipping settings beat the constant rate without "
        "diverging."
    )
