"""Chapter 2's regulariser study: a small CNN per seed in an over-fitting regime, every
regulariser and strength early-stopped on validation, strengths and the winner chosen on
validation, the chosen settings scored once on test."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dlbook.book import claims, present
from dlbook.book.context import Run
from dlbook.experiments.optimization.cnn_members import CnnMemberTrainer, _logits
from dlbook.experiments.optimization.images import load_images
from dlbook.experiments.optimization.members import REGULARIZERS
from dlbook.facemask import data
from dlbook.methods import metrics

STRENGTH_METHODS = ("l1", "l2", "dropout")
"""Methods with a strength (penalty or rate) picked on validation; BatchNorm and none have none."""


def regularizer_configs(methods, grid: dict) -> list[tuple[str, float]]:
    """``(method, strength)`` for every method and every strength of its grid (0 for methods
    without one)."""
    unknown = set(methods) - set(REGULARIZERS)
    if unknown:
        raise ValueError(f"methods has unknown names {sorted(unknown)}; use {REGULARIZERS}")
    configs = []
    for method in methods:
        values = grid.get(method, ()) if method in STRENGTH_METHODS else (0.0,)
        if not values:
            raise ValueError(f"grid has no strengths for {method!r}; give at least one")
        configs += [(method, float(v)) for v in values]
    return configs


def regularizer_study(images: dict, settings: dict, seed: int = 0) -> dict:
    """Every regulariser x strength on ``reg_seeds`` small CNNs (``CnnMemberTrainer``), early
    stopped on validation, then the chosen settings scored once on test.

    Each seed draws its own stratified training subsample of ``reg_train_size`` images from the
    train split, its own order of it (mini-batches) and its own initial kernels; all
    configurations share them (paired by seed). Strengths are chosen on validation
    (``choose_strengths``); the test images then pass once through each method's chosen members.

    Returns
    -------
    dict with ``runs`` (DataFrame, one row per (method, strength, seed): train_acc, val_acc,
    val_loss, best_epoch, stopped_early), ``chosen`` (the rows at each method's chosen strength,
    with test_acc), ``seeds``, ``train_images``.
    """
    seeds = [seed + i for i in range(settings["reg_seeds"])]
    configs = regularizer_configs(settings["reg_methods"], settings["reg_grid"])
    x_train, y_train = images["train"]
    picks = []
    for s in seeds:
        index = data.stratified_subset(y_train, settings["reg_train_size"], s)
        picks.append(np.random.default_rng(s).permutation(index))
    size = min(len(p) for p in picks)
    train = (np.stack([x_train[p[:size]] for p in picks], axis=1),
             np.stack([y_train[p[:size]] for p in picks], axis=1).astype(np.float32))  # fmt: skip

    def tiled(split):
        xs, ys = images[split]
        return np.repeat(xs[:, None], len(seeds), axis=1), ys.astype(np.float64)

    val = tiled("val")
    trainers, kept, rows = {}, {}, []
    for method, strength in configs:
        batchnorm = method == "batchnorm"
        if batchnorm not in trainers:
            trainers[batchnorm] = CnnMemberTrainer(x_train.shape[1:], seeds, batchnorm, settings)
        result = trainers[batchnorm].run(method, strength, train, val, shuffle_seed=seed)
        kept[(method, strength)] = result["snapshots"]
        for k, s in enumerate(seeds):
            rows.append({"method": method, "strength": strength, "seed": s,
                         "train_acc": result["train_acc"][k], "val_acc": result["val_acc"][k],
                         "val_loss": result["val_loss"][k], "best_epoch": result["best_epoch"][k],
                         "stopped_early": bool(result["stopped_early"][k])})  # fmt: skip
    runs = pd.DataFrame(rows)
    strengths = choose_strengths(runs)
    x_test, y_test = tiled("test")
    chosen = []
    for method, strength in strengths.items():
        trainer = trainers[method == "batchnorm"]
        trainer.restore(kept[(method, strength)])
        correct = (_logits(trainer.model, x_test) > 0) == (y_test[:, None] > 0.5)
        part = runs[(runs["method"] == method) & (runs["strength"] == strength)].copy()
        part["test_acc"] = correct.mean(axis=0)
        chosen.append(part)
    chosen = pd.concat(chosen, ignore_index=True)
    return {"runs": runs, "chosen": chosen, "seeds": seeds, "train_images": size}


def choose_strengths(runs: pd.DataFrame) -> dict[str, float]:
    """Per method, the strength with the highest mean validation accuracy over seeds (ties: the
    lower mean validation loss). Reads validation columns only."""
    if "test_acc" in runs.columns:
        raise ValueError("runs holds test scores; strengths are chosen on validation only")
    means = runs.groupby(["method", "strength"], sort=False)[["val_acc", "val_loss"]].mean()
    means = means.reset_index().sort_values(["val_acc", "val_loss"], ascending=[False, True])
    return {str(m): float(s) for m, s in means.drop_duplicates("method")[["method", "strength"]]
            .itertuples(index=False)}  # fmt: skip


def _interval(values, floor: float) -> tuple[float, float, float]:
    """Mean with its 95% Student-t interval over seeds, the interval clipped to ``[floor, 1]``
    (``floor`` 0 for accuracies, -1 for differences of accuracies)."""
    mean, low, high = metrics.mean_confidence_interval(np.asarray(values, dtype=np.float64))
    return mean, max(low, floor), min(high, 1.0)


def regularizer_table(chosen: pd.DataFrame) -> pd.DataFrame:
    """Per method at its chosen strength: mean validation and test accuracy over seeds with 95%
    intervals, train minus validation accuracy, epochs; sorted by validation accuracy."""
    rows = []
    for method, group in chosen.groupby("method", sort=False):
        val, val_low, val_high = _interval(group["val_acc"], floor=0.0)
        test, low, high = _interval(group["test_acc"], floor=0.0)
        rows.append({"method": method, "strength": float(group["strength"].iloc[0]),
                     "val_acc": val, "val_ci_low": val_low, "val_ci_high": val_high,
                     "test_acc": test, "ci_low": low, "ci_high": high,
                     "train_minus_val": float((group["train_acc"] - group["val_acc"]).mean()),
                     "best_epoch": float(group["best_epoch"].mean()), "seeds": len(group)})  # fmt: skip
    table = pd.DataFrame(rows).sort_values(["val_acc"], ascending=False, kind="stable")
    return table.reset_index(drop=True)


def pick_regularizer(chosen: pd.DataFrame) -> dict:
    """The winner on validation and whether it is separated from the runner-up: the 95% interval
    of the per-seed validation-accuracy difference (winner minus runner-up, paired by seed: same
    subsample, order and initial kernels) lies above zero."""
    if "test_acc" in chosen.columns:
        chosen = chosen.drop(columns="test_acc")
    means = chosen.groupby("method")["val_acc"].mean().sort_values(ascending=False, kind="stable")
    winner = str(means.index[0])
    out = {"best_regularizer": winner, "best_regularizer_separated": False,
           "runner_up": None, "margin": 0.0, "margin_ci_low": 0.0, "margin_ci_high": 0.0}  # fmt: skip
    if len(means) > 1:
        runner_up = str(means.index[1])
        by_seed = chosen.pivot_table(index="seed", columns="method", values="val_acc")
        diff = (by_seed[winner] - by_seed[runner_up]).dropna().to_numpy()
        margin, low, high = _interval(diff, floor=-1.0)
        out.update(runner_up=runner_up, margin=margin, margin_ci_low=low, margin_ci_high=high,
                   best_regularizer_separated=bool(len(diff) > 1 and low > 0))  # fmt: skip
    if "batchnorm" in means.index and winner != "batchnorm":
        # The claim under test is about BatchNorm: how far behind the winner is it, paired by seed?
        behind = (by_seed[winner] - by_seed["batchnorm"]).dropna().to_numpy()
        gap, low, high = _interval(behind, floor=-1.0)
        out.update(winner_minus_batchnorm=gap, winner_minus_batchnorm_ci_low=low,
                   winner_minus_batchnorm_ci_high=high)  # fmt: skip
    return out


# -- the section -----------------------------------------------------------------------------


def regularizers(run: Run) -> dict:
    """The regulariser study on a small CNN (``regularizer_study``); strengths and the winner
    chosen on validation, the chosen settings scored once on test."""
    settings = run.settings
    images = load_images(run.data_dir, settings["reg_image_size"], run.seed)
    study = regularizer_study(images, settings, run.seed)
    table = regularizer_table(study["chosen"])
    pick = pick_regularizer(study["chosen"])
    none = study["chosen"][study["chosen"]["method"] == "none"]
    gap, gap_low, gap_high = _interval(none["train_acc"] - none["val_acc"], floor=-1.0)
    values = {
        "reg_methods": ",".join(settings["reg_methods"]),
        "reg_unregularized_gap": gap, "reg_unregularized_gap_ci_low": gap_low,
        "reg_unregularized_gap_ci_high": gap_high,
        "best_regularizer": pick["best_regularizer"],
        "best_regularizer_separated": pick["best_regularizer_separated"],
        "reg_runner_up": pick["runner_up"] or "",
        "reg_winner_margin": pick["margin"], "reg_winner_margin_ci_low": pick["margin_ci_low"],
        "reg_winner_margin_ci_high": pick["margin_ci_high"],
        **{f"reg_{key}": value for key, value in pick.items() if "minus_batchnorm" in key},
        "reg_seeds": len(study["seeds"]), "reg_image_size": settings["reg_image_size"],
        "reg_train_images": study["train_images"], "reg_epoch_cap": settings["reg_epochs"],
        "reg_patience": settings["reg_patience"], "reg_bn_momentum": settings["reg_bn_momentum"],
        "reg_converged_fraction": float(study["chosen"]["stopped_early"].mean()),
        "reg_epochs_used_mean": float(study["chosen"]["best_epoch"].mean()),
        "selected_on": "validation",
    }  # fmt: skip
    for row in table.itertuples(index=False):
        values[f"reg_test_acc_{row.method}"] = row.test_acc
        values[f"reg_test_acc_{row.method}_ci_low"] = row.ci_low
        values[f"reg_test_acc_{row.method}_ci_high"] = row.ci_high
        values[f"reg_val_acc_{row.method}"] = row.val_acc
        if row.method in STRENGTH_METHODS:
            values[f"reg_strength_{row.method}"] = row.strength
    run.save(values)
    return {**study, "table": table, "pick": pick, "settings": settings, "run": run,
            "results": values}  # fmt: skip


def _points_interval(low: float, high: float) -> str:
    """A 95% interval of a difference of fractions, in points: '95% CI -1.2 to +3.4 points'."""
    return present.points_interval(100 * low, 100 * high, " points")


def story_regularizers(section: dict) -> str:
    """The over-fitting regime, the chosen strengths, the winner with its test score and lead,
    and the claim's sentence."""
    values, table = section["results"], section["table"].set_index("method")
    winner, runner_up = values["best_regularizer"], values["reg_runner_up"]
    gap = values["reg_unregularized_gap"]
    regime = ("the unregularised network over-fits" if gap >= claims.MIN_OVERFIT_GAP
              else "the unregularised network hardly over-fits, so this setting cannot rank "
              "regularisers")  # fmt: skip
    text = (
        f"{values['reg_seeds']} seeds, each with its own {values['reg_train_images']} training "
        f"images at {values['reg_image_size']} px, mini-batch order and initial kernels; at most "
        f"{values['reg_epoch_cap']} epochs with early stopping on validation (it fired before the "
        f"cap in {present.percent(values['reg_converged_fraction'], 0)} of the chosen runs). "
        f"Without regularisation, training accuracy exceeds validation accuracy by "
        f"{present.points(100 * gap)} "
        f"({_points_interval(values['reg_unregularized_gap_ci_low'], values['reg_unregularized_gap_ci_high'])}): "
        f"{regime}. "
    )  # fmt: skip
    chosen = [f"{m} {present.number(table.loc[m, 'strength'])}" for m in STRENGTH_METHODS
              if m in table.index]  # fmt: skip
    if chosen:
        text += "Strengths chosen on validation: " + ", ".join(chosen) + ". "
    row = table.loc[winner]
    text += (
        f"The best on validation is **{winner}** ({present.percent(row['val_acc'])}); on the test "
        f"set, scored once, it reaches {present.percent(row['test_acc'])} "
        f"({present.interval(row['ci_low'], row['ci_high'])})."
    )
    if runner_up:
        margin = present.points(100 * values["reg_winner_margin"])
        interval = _points_interval(
            values["reg_winner_margin_ci_low"], values["reg_winner_margin_ci_high"]
        )
        separated = "excludes" if values["best_regularizer_separated"] else "includes"
        text += (
            f" Its validation lead over {runner_up}, paired by seed, is {margin} ({interval}), "
            f"an interval that {separated} zero."
        )
    if section.get("run") is not None:
        text += " " + claims.sentence("batchnorm_best", section["run"].load_all())
    return text
