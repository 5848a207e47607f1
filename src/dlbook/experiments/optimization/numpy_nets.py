"""Chapter 1's NumPy network trained from scratch with every optimiser and every regulariser."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dlbook.book import present
from dlbook.book.context import Run
from dlbook.experiments.optimization.images import splits_for, subsample
from dlbook.methods import nn

NUMPY_LEARNING_RATES = {"sgd": 0.05, "momentum": 0.01, "nesterov": 0.01, "rmsprop": 1e-3,
                        "adagrad": 0.05, "adam": 1e-3, "adamw": 1e-3}  # fmt: skip
"""A standard learning rate per optimiser for the from-scratch demonstration (not tuned)."""
NUMPY_REGULARIZERS = {"none": {}, "l1": {"l1": 1e-3}, "l2": {"l2": 1e-3},
                      "dropout": {"dropout": 0.5}, "batchnorm": {"batchnorm": True}}  # fmt: skip
"""Fixed strengths for the from-scratch demonstration (the tuned study is ``regularizer_study``)."""


def numpy_mlp(hidden: int, seed: int, dropout: float = 0.0, batchnorm: bool = False, **fit):
    """``dlbook.methods.nn.Sequential``: Dense(hidden) - (BatchNorm) - ReLU - (Dropout) - Dense(2)."""
    layers = [nn.Dense(hidden, initializer="he_normal")]
    layers += [nn.BatchNorm(momentum=0.9)] if batchnorm else []
    layers += [nn.Activation("relu")]
    layers += [nn.Dropout(dropout)] if dropout else []
    return nn.Sequential([*layers, nn.Dense(2)], seed=seed, **fit)


def numpy_training(splits, settings: dict, seed: int = 0) -> dict:
    """The chapter-1 NumPy network trained from scratch: once per optimiser on the whole train
    split (``numpy_epochs`` epochs), and once per regulariser on a ``reg_train_size`` subsample
    with Adam (``numpy_reg_epochs`` epochs). Scores are on the validation split.

    Returns
    -------
    dict with ``optimizers`` (DataFrame: optimizer, lr, epoch, loss, val_acc) and
    ``regularizers`` (DataFrame: method, train_acc, val_acc).
    """
    (x, y), (x_val, y_val) = splits["train"], splits["val"]
    y, y_val = y.astype(np.int64), y_val.astype(np.int64)
    rows = []
    for name in settings["numpy_optimizers"]:
        lr = NUMPY_LEARNING_RATES[name]
        model = numpy_mlp(settings["hidden"], seed, optimizer=name, learning_rate=lr,
                          epochs=settings["numpy_epochs"], batch_size=settings["batch_size"])  # fmt: skip
        for record in model.fit(x, y, x_val, y_val).history_:
            rows.append({"optimizer": name, "lr": lr, "epoch": record["epoch"],
                         "loss": record["loss"], "val_acc": record["val_accuracy"]})  # fmt: skip
    x_small, y_small = subsample(x, y, settings["reg_train_size"], seed)
    regs = []
    for method, options in NUMPY_REGULARIZERS.items():
        penalties = {k: v for k, v in options.items() if k in ("l1", "l2")}
        model = numpy_mlp(settings["reg_hidden"], seed, options.get("dropout", 0.0),
                          options.get("batchnorm", False), optimizer="adam", learning_rate=1e-3,
                          epochs=settings["numpy_reg_epochs"], batch_size=32, **penalties)  # fmt: skip
        model.fit(x_small, y_small)
        regs.append({"method": method, "train_acc": model.score(x_small, y_small),
                     "val_acc": model.score(x_val, y_val)})  # fmt: skip
    return {"optimizers": pd.DataFrame(rows), "regularizers": pd.DataFrame(regs)}


def from_scratch(run: Run) -> dict:
    """``numpy_training`` on the chapter's images; saves ``numpy_val_acc_<optimizer>`` and
    ``numpy_reg_val_acc_<method>``, ``numpy_reg_train_acc_<method>``."""
    settings = run.settings
    out = numpy_training(splits_for(run), settings, run.seed)
    last = out["optimizers"].groupby("optimizer", sort=False).last()
    values = {f"numpy_val_acc_{name}": float(row["val_acc"]) for name, row in last.iterrows()}
    for row in out["regularizers"].itertuples(index=False):
        values[f"numpy_reg_val_acc_{row.method}"] = float(row.val_acc)
        values[f"numpy_reg_train_acc_{row.method}"] = float(row.train_acc)
    values["numpy_epochs"] = settings["numpy_epochs"]
    run.save(values)
    return {**out, "settings": settings, "results": values}


def story_from_scratch(section: dict) -> str:
    """The spread of the NumPy optimisers' validation accuracy and the regularisers'
    train-minus-validation gaps."""
    curves, regs = section["optimizers"], section["regularizers"]
    last = curves.groupby("optimizer", sort=False).last()
    best, worst = last["val_acc"].idxmax(), last["val_acc"].idxmin()
    epochs = int(curves["epoch"].max())
    regs = regs.set_index("method")
    gaps = regs["train_acc"] - regs["val_acc"]
    return (
        f"After {epochs} epochs from scratch in NumPy, validation accuracy ranges from "
        f"{present.percent(last.loc[worst, 'val_acc'])} ({worst}) to "
        f"{present.percent(last.loc[best, 'val_acc'])} ({best}), each optimiser at one standard "
        "rate, untuned. On the small training subset, the unregularised network's training "
        f"accuracy exceeds its validation accuracy by {present.points(100 * gaps['none'])}; "
        f"the smallest gap is {present.points(100 * gaps.min())} ({gaps.idxmin()}), the largest "
        f"{present.points(100 * gaps.max())} ({gaps.idxmax()})."
    )
