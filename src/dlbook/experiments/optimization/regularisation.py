"""Chapter 2's regulariser study: a small CNN per seed in an over-fitting regime, every
regulariser and strength early-stopped on validation, strengths and the winner chosen on
validation, the chosen settings scored once on test."""

from __future__ import annotations

from functools import partial

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


def size_study(images: dict, settings: dict, seed: int, train_size: int) -> dict:
    """The whole study (``regularizer_study``) at one training-set size; a pure task of its
    arguments, so the sizes can run in any order or in parallel.

    Returns the study with ``table`` (``regularizer_table``), ``pick`` (``pick_regularizer``),
    ``gap`` (the unregularised train-minus-validation accuracy: mean, low, high over seeds) and
    ``versus_none`` ({method: mean, low, high of its test accuracy minus none's, paired by seed}).
    """
    study = regularizer_study(images, {**settings, "reg_train_size": int(train_size)}, seed)
    chosen = study["chosen"]
    none = chosen[chosen["method"] == "none"]
    by_seed = chosen.pivot_table(index="seed", columns="method", values="test_acc")
    versus_none = {
        method: _interval((by_seed[method] - by_seed["none"]).to_numpy(), floor=-1.0)
        for method in by_seed.columns if method != "none" and "none" in by_seed.columns
    }  # fmt: skip
    return {
        **study,
        "train_size": int(train_size),
        "table": regularizer_table(chosen),
        "pick": pick_regularizer(chosen),
        "gap": _interval(none["train_acc"] - none["val_acc"], floor=-1.0),
        "versus_none": versus_none,
    }


def size_keys(study: dict) -> dict:
    """One size's result keys, ``reg_n<size>_*``: the unregularised gap, the winner on
    validation, each method's validation and test accuracy (test with its 95% interval) and its
    test gain over no regulariser (paired by seed, 95% interval)."""
    prefix = f"reg_n{study['train_size']}_"
    gap, low, high = study["gap"]
    values = {f"{prefix}unregularized_gap": gap, f"{prefix}unregularized_gap_ci_low": low,
              f"{prefix}unregularized_gap_ci_high": high,
              f"{prefix}best_regularizer": study["pick"]["best_regularizer"],
              f"{prefix}best_regularizer_separated": study["pick"]["best_regularizer_separated"],
              f"{prefix}train_images": study["train_images"]}  # fmt: skip
    for row in study["table"].itertuples(index=False):
        values[f"{prefix}val_acc_{row.method}"] = row.val_acc
        values[f"{prefix}test_acc_{row.method}"] = row.test_acc
        values[f"{prefix}test_acc_{row.method}_ci_low"] = row.ci_low
        values[f"{prefix}test_acc_{row.method}_ci_high"] = row.ci_high
    for method, (gain, gain_low, gain_high) in study["versus_none"].items():
        values[f"{prefix}{method}_minus_none"] = gain
        values[f"{prefix}{method}_minus_none_ci_low"] = gain_low
        values[f"{prefix}{method}_minus_none_ci_high"] = gain_high
    return values


def by_size_table(studies: list[dict]) -> pd.DataFrame:
    """One row per (training-set size, method): test accuracy with its interval, the test gain
    over no regulariser with its interval, and the size's unregularised over-fitting gap."""
    rows = []
    for study in studies:
        for row in study["table"].itertuples(index=False):
            gain = study["versus_none"].get(row.method, (0.0, 0.0, 0.0))
            rows.append({"train_size": study["train_size"], "method": row.method,
                         "test_acc": row.test_acc, "ci_low": row.ci_low, "ci_high": row.ci_high,
                         "minus_none": gain[0], "minus_none_ci_low": gain[1],
                         "minus_none_ci_high": gain[2], "unregularized_gap": study["gap"][0]})  # fmt: skip
    return pd.DataFrame(rows)


def regularizers(run: Run) -> dict:
    """The regulariser study on a small CNN at each of ``reg_train_sizes`` training-set sizes
    (``size_study``); strengths and the winner chosen on validation, the chosen settings scored
    once on test. The headline keys (``reg_*`` without a size) are those of ``reg_train_size``,
    declared in the profile; each size's are ``reg_n<size>_*``."""
    settings = run.settings
    sizes = tuple(int(n) for n in settings["reg_train_sizes"])
    if settings["reg_train_size"] not in sizes:
        raise ValueError(
            f"reg_train_size={settings['reg_train_size']!r} must be one of reg_train_sizes={sizes}"
        )
    images = load_images(run.data_dir, settings["reg_image_size"], run.seed)
    # the sizes are independent studies: they run as tasks, side by side
    studies = run.map(partial(size_study, images, settings, run.seed), sizes)
    headline = studies[sizes.index(settings["reg_train_size"])]
    table, pick = headline["table"], headline["pick"]
    gap, gap_low, gap_high = headline["gap"]
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
        "reg_seeds": len(headline["seeds"]), "reg_image_size": settings["reg_image_size"],
        "reg_train_images": headline["train_images"], "reg_epoch_cap": settings["reg_epochs"],
        "reg_patience": settings["reg_patience"], "reg_bn_momentum": settings["reg_bn_momentum"],
        "reg_converged_fraction": float(headline["chosen"]["stopped_early"].mean()),
        "reg_epochs_used_mean": float(headline["chosen"]["best_epoch"].mean()),
        "selected_on": "validation",
        "reg_train_sizes": ",".join(str(n) for n in sizes),
        "reg_overfit_sizes": ",".join(str(s["train_size"]) for s in studies
                                      if s["gap"][0] >= claims.MIN_OVERFIT_GAP),
    }  # fmt: skip
    for row in table.itertuples(index=False):
        values[f"reg_test_acc_{row.method}"] = row.test_acc
        values[f"reg_test_acc_{row.method}_ci_low"] = row.ci_low
        values[f"reg_test_acc_{row.method}_ci_high"] = row.ci_high
        values[f"reg_val_acc_{row.method}"] = row.val_acc
        if row.method in STRENGTH_METHODS:
            values[f"reg_strength_{row.method}"] = row.strength
    for study in studies:
        values.update(size_keys(study))
    run.save(values)
    return {**headline, "by_size": by_size_table(studies), "studies": studies,
            "settings": settings, "run": run, "results": values}  # fmt: skip


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


def story_regularizers_by_size(section: dict) -> str:
    """Per training-set size: how much the unregularised network over-fits, the winner on
    validation, and BatchNorm's test gain over no regulariser (paired by seed)."""
    values = section["results"]
    parts = []
    for size in str(values["reg_train_sizes"]).split(","):
        prefix = f"reg_n{size}_"
        text = (
            f"at {size} images the unregularised gap is "
            f"{present.points(100 * values[prefix + 'unregularized_gap'])} and "
            f"{values[prefix + 'best_regularizer']} is best on validation"
        )
        if f"{prefix}batchnorm_minus_none" in values:
            gain = values[f"{prefix}batchnorm_minus_none"]
            interval = _points_interval(
                values[f"{prefix}batchnorm_minus_none_ci_low"],
                values[f"{prefix}batchnorm_minus_none_ci_high"],
            )
            text += f" (BatchNorm minus none on test: {present.points(100 * gain)}, {interval})"
        parts.append(text)
    overfit = values["reg_overfit_sizes"]
    regime = (
        f"Over-fitting is visible (at least {present.points(100 * claims.MIN_OVERFIT_GAP)}) at "
        f"{overfit.replace(',', ', ')} images."
        if overfit
        else "At none of these sizes does the unregularised network over-fit enough to rank "
        "regularisers."
    )
    return (
        f"The same study at {len(parts)} training-set sizes, {values['reg_seeds']} seeds each: "
        + "; ".join(parts)
        + f". {regime} The headline above is the {values['reg_train_images']}-image study, "
        "the size declared before the runs."
    )
