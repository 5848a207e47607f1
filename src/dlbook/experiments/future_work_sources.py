"""Chapter 7, federated learning across image sources: one client per source of face crops.

Clients differ by where their images come from, not only by label share:

- ``face_mask``: the face-mask crops (chapter 4's data); its train split trains, its test split
  is the client's test;
- ``scenes``: annotated faces (at least ``min_face_px`` wide) of the crowd photos of
  mask-scenes; the *train* photos train, the *validation* photos are the client's test (the
  scene test photos are left to chapter 4b, which scores them once); ``mask_weared_incorrect``
  counts as with mask;
- ``maskedfacenet``: FFHQ faces with masks drawn on (every one masked: a one-class client),
  split at random (one face per file, no face in two files).

Every crop runs once through EfficientNet-Lite0 up to its last convolution (``head_conv``); the
maps are cached by content. What trains is the top (``dlbook.methods.federated_top``): that
convolution, pooling and a softmax head, the same model for a client alone, central training on
the pooled train crops, FedAvg and FedProx on Flower. Each seed draws its own head and its own
minibatch order; every model is scored on each client's own test crops.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dlbook.book import claims, present
from dlbook.book.context import Run
from dlbook.core import cache, logs
from dlbook.experiments.future_work import Section
from dlbook.facemask import data
from dlbook.facemask import scene_pipeline as pipe
from dlbook.facemask.data import scene_split, voc
from dlbook.methods import backbones, metrics
from dlbook.methods import federated as fl
from dlbook.methods import federated_top as top

SOURCE_NAMES = {
    "face_mask": "face-mask crops",
    "scenes": "crowd-photo faces",
    "maskedfacenet": "MaskedFace-Net",
}
CLASS_NAMES = ("without_mask", "with_mask")
MODELS = ("alone", "central", "fedavg", "fedprox")
MODEL_NAMES = {"alone": "client alone", "central": "central (pooled)", "fedavg": "FedAvg",
               "fedprox": "FedProx"}  # fmt: skip
MAPS_BATCH = 64
MAPS_VERSION = 1
"""Bump when the way head maps are computed changes, so cached ones are not reused."""


@dataclass(frozen=True)
class Source:
    """One client's crops.

    Attributes
    ----------
    name : a key of ``SOURCE_NAMES``
    images : ndarray, shape (N, S, S, 3), uint8
    labels : ndarray, shape (N,), int64; 1 = with mask
    part : ndarray, shape (N,), str: "train" or "test"
    origin : ndarray, shape (N,), str: the file, or the photo a face was cropped from
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    part: np.ndarray
    origin: np.ndarray


# ---------------------------------------------------------------------------------------------
# The sources


def face_mask_source(settings, data_dir, seed: int) -> Source:
    """The face-mask crops of the train and test splits (validation and calibration unused)."""
    images = data.load_face_mask(
        data_dir=data_dir,
        image_size=settings["image_size"],
        limit=settings["face_mask_limit"],
        seed=seed,
        progress=False,
    )
    keep = np.isin(images.split, ("train", "test"))
    return Source(
        "face_mask",
        images.images[keep],
        images.labels[keep].astype(np.int64),
        images.split[keep].astype(str),
        np.asarray(images.paths, dtype=str)[keep],
    )


def _some(photos: list[voc.Photo], limit, rng: np.random.Generator) -> list[voc.Photo]:
    """``limit`` photos drawn at random, in their order (all when None)."""
    if limit is None or limit >= len(photos):
        return photos
    return [photos[k] for k in np.sort(rng.permutation(len(photos))[:limit])]


def scene_client_photos(
    photos: list[voc.Photo], split_path=scene_split.SCENE_SPLIT_PATH, limits=None, seed: int = 0
) -> dict[str, list[voc.Photo]]:
    """The scene client's photos: ``train`` from the split's train part, ``test`` from its
    validation part. The split's test photos are never returned.

    ``limits`` : ``{"train": n, "test": m}`` photos drawn at random (None: all).
    """
    parts = scene_split.photos_by_part(photos, split_path)
    rng = np.random.default_rng(seed)
    limits = limits or {}
    return {
        "train": _some(parts["train"], limits.get("train"), rng),
        "test": _some(parts["val"], limits.get("test"), rng),
    }


def scene_source(settings, seed: int) -> Source:
    """Face crops of the scene client's photos (``scene_client_photos``), at least
    ``min_face_px`` wide, labelled masked (worn right or wrong) or not."""
    photos = voc.load_scenes(settings.get("scenes_dir"))
    chosen = scene_client_photos(photos, limits=settings["scene_photos"], seed=seed)
    pieces = []
    for part, part_photos in chosen.items():
        faces = pipe.face_crops(part_photos, settings["image_size"], settings["min_face_px"])
        stems = np.array([p.stem for p in part_photos], dtype=str)
        pieces.append((faces.images, pipe.masked_vs_not(faces.labels),
                       np.full(len(faces.labels), part), stems[faces.photo]))  # fmt: skip
    images, labels, part, origin = (np.concatenate(column) for column in zip(*pieces, strict=True))
    return Source("scenes", images, labels.astype(np.int64), part.astype(str), origin.astype(str))


def maskedfacenet_source(settings, seed: int) -> Source:
    """MaskedFace-Net faces, every one masked (label 1), ``maskedfacenet_test_share`` of them
    drawn at random for the client's test."""
    root = voc.maskedfacenet_dir(settings.get("maskedfacenet_dir"))
    paths = [
        p for folder in voc.MASKEDFACENET_FOLDERS for p in sorted((root / folder).glob("*.jpg"))
    ]
    if not paths:
        raise FileNotFoundError(f"{root}: no .jpg files in {voc.MASKEDFACENET_FOLDERS}")
    rng = np.random.default_rng(seed)
    limit = settings["maskedfacenet_limit"]
    if limit is not None and limit < len(paths):
        paths = [paths[k] for k in np.sort(rng.permutation(len(paths))[:limit])]
    images = np.stack([data.decode_image(p, settings["image_size"]) for p in paths])
    test = rng.random(len(paths)) < settings["maskedfacenet_test_share"]
    origin = np.array([f"{p.parent.name}/{p.name}" for p in paths], dtype=str)
    return Source("maskedfacenet", images, np.ones(len(paths), np.int64),
                  np.where(test, "test", "train"), origin)  # fmt: skip


def load_sources(settings, data_dir, seed: int) -> list[Source]:
    """The sources ``settings["sources"]`` names, in that order."""
    loaders = {
        "face_mask": lambda: face_mask_source(settings, data_dir, seed),
        "scenes": lambda: scene_source(settings, seed),
        "maskedfacenet": lambda: maskedfacenet_source(settings, seed),
    }
    unknown = [s for s in settings["sources"] if s not in loaders]
    if unknown:
        raise ValueError(f"sources {unknown} are unknown; use some of {tuple(loaders)}")
    return [loaders[name]() for name in settings["sources"]]


def assign_clients(sources: list[Source]) -> dict[str, np.ndarray]:
    """Where every crop goes, the sources' crops concatenated in order.

    Returns
    -------
    dict with ``client`` (N,) int64, the source's index (one client per source), and ``part``
    (N,) str, "train" or "test".
    """
    for source in sources:
        odd = sorted(str(p) for p in set(source.part) - {"train", "test"})
        if odd:
            raise ValueError(f"source {source.name!r} has parts {odd}; use train and test")
    client = np.concatenate([np.full(len(s.labels), k, np.int64) for k, s in enumerate(sources)])
    return {"client": client, "part": np.concatenate([s.part for s in sources])}


def class_counts(sources: list[Source]) -> pd.DataFrame:
    """Crops per client, part and class: one row per client."""
    rows = []
    for source in sources:
        row = {"client": SOURCE_NAMES[source.name]}
        for part in ("train", "test"):
            for c, name in enumerate(CLASS_NAMES):
                row[f"{part} {name.replace('_', ' ')}"] = int(
                    ((source.part == part) & (source.labels == c)).sum()
                )
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# The maps under the top, cached


def head_maps(backbone: str, images: np.ndarray) -> np.ndarray:
    """The maps entering ``backbone``'s last convolution, shape (N, h, w, c), float16 (cached
    by the weights and the images)."""
    key = cache.digest("head_maps", MAPS_VERSION, backbone, backbones.weights_sha256(backbone),
                       top.HEAD_LAYER, images)  # fmt: skip

    def compute() -> np.ndarray:
        below = top.cut_before_head(backbones.load(backbone))
        return np.concatenate(
            [
                np.asarray(
                    below.predict_on_batch(images[i : i + MAPS_BATCH].astype(np.float32)),
                    np.float16,
                )  # fmt: skip
                for i in range(0, len(images), MAPS_BATCH)
            ]
        )

    return cache.cached_array("head_maps", key, compute, name=f"{backbone}-{top.HEAD_LAYER}")


# ---------------------------------------------------------------------------------------------
# Training: alone and central (here), FedAvg and FedProx (on Flower)


def _fit(conv, maps, labels, seed: int, settings) -> list[np.ndarray]:
    """The top trained from seed ``seed``'s head for ``rounds * local_epochs`` epochs."""
    return top.train_top(
        top.init_top(conv, 2, np.random.default_rng(seed)),
        maps,
        labels,
        epochs=settings["rounds"] * settings["local_epochs"],
        learning_rate=settings["learning_rate"],
        batch_size=settings["batch_size"],
        rng=np.random.default_rng([seed, 1]),
    )


def client_scores(params, tests: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Accuracy of ``params`` on each client's test crops, shape (K,)."""
    return np.array([top.top_accuracy(params, maps, labels) for maps, labels in tests])


def local_and_central(seed: int, conv, maps, labels, owner, tests, settings) -> dict:
    """One seed's central top and each client's own (a ``run.map`` task): accuracy on every
    client's test, ``{"central": (K,), "alone": (K,)}`` (a client alone on its own test)."""
    central = _fit(conv, maps, labels, seed, settings)
    alone = [
        top.top_accuracy(
            _fit(conv, maps[owner == k], labels[owner == k], seed, settings), *tests[k]
        )
        for k in range(len(tests))
    ]
    return {"central": client_scores(central, tests), "alone": np.array(alone)}


def _federation_file(maps, labels, owner) -> str:
    """The federation's data file (what the simulated sites read), kept in the cache."""
    path = cache.entry("federated", cache.digest("sources", maps, labels, owner), ".npz")
    if not path.exists():
        cache.write_atomically(
            path,
            lambda tmp: fl.write_federation(tmp, maps, labels, {"sources": owner}, normalise=False),
        )
    return str(path)


def federated_runs(seeds, conv, maps, labels, owner, settings) -> list[fl.History]:
    """FedAvg and FedProx on Flower, one run per strategy and seed, each seed's head the one
    central training starts from."""
    experiments = [
        fl.Experiment(f"{strategy} seed {s}", "sources", strategy, seed=s,
                      proximal_mu=settings["proximal_mu"] if strategy == "fedprox" else 0.0)
        for s in seeds
        for strategy in settings["strategies"]
    ]  # fmt: skip
    return fl.simulate(
        experiments,
        _federation_file(maps, labels, owner),
        {},
        n_clients=int(owner.max()) + 1,
        rounds=settings["rounds"],
        local_epochs=settings["local_epochs"],
        learning_rate=settings["learning_rate"],
        batch_size=settings["batch_size"],
        num_cpus=settings["ray_cpus"],
        client_cpus=settings["client_cpus"],
        model="top",
        initial=lambda e: top.init_top(conv, 2, np.random.default_rng(e.seed)),
    )


# ---------------------------------------------------------------------------------------------
# The section


def _interval_keys(prefix: str, values, bounds=(-np.inf, np.inf)) -> dict:
    """``prefix``, ``prefix_ci_low``, ``prefix_ci_high``: mean and 95% t-interval over seeds,
    the interval cut to ``bounds`` (an accuracy's lies in [0, 1])."""
    mean, low, high = metrics.mean_confidence_interval(values)
    low, high = np.clip([low, high], *bounds)
    return {prefix: mean, f"{prefix}_ci_low": float(low), f"{prefix}_ci_high": float(high)}


def source_keys(names: list[str], scores: dict[str, np.ndarray]) -> dict:
    """The saved keys from ``scores[model]``, shape (seeds, clients), accuracy on each client's
    own test: each client, the mean and the worst client, central minus FedAvg in points."""
    values = {}
    for model, table in scores.items():
        for k, name in enumerate(names):
            values.update(_interval_keys(f"fl_src_acc_{model}_{name}", table[:, k], (0, 1)))
        values.update(_interval_keys(f"fl_src_mean_{model}", table.mean(1), (0, 1)))
        values.update(_interval_keys(f"fl_src_worst_{model}", table.min(1), (0, 1)))
    central, fedavg = scores["central"], scores["fedavg"]
    values.update(_interval_keys("fl_src_gap_mean_points", 100 * (central - fedavg).mean(1)))
    values.update(_interval_keys("fl_src_gap_worst_points", 100 * (central.min(1) - fedavg.min(1))))
    return values


def sources_section(run: Run) -> Section:
    """Train and score every model on the sources; save the ``fl_src_*`` keys; return them with
    the frames the page draws (``counts``, ``examples``, ``source_names``)."""
    settings, seed = run.settings["sources"], run.seed
    started = time.perf_counter()
    logs.quiet_tensorflow()
    sources = load_sources(settings, run.data_dir, seed)
    where = assign_clients(sources)
    images = np.concatenate([s.images for s in sources])
    labels = np.concatenate([s.labels for s in sources])
    maps = head_maps(settings["backbone"], images)
    conv = top.backbone_top(backbones.load(settings["backbone"]))
    train = where["part"] == "train"
    tests = [
        (maps[(where["client"] == k) & ~train], labels[(where["client"] == k) & ~train])
        for k in range(len(sources))
    ]
    seeds = [seed + k for k in range(settings["seeds"])]
    task = functools.partial(local_and_central, conv=conv, maps=maps[train], labels=labels[train],
                             owner=where["client"][train], tests=tests, settings=settings)  # fmt: skip
    local = run.map(task, seeds)
    histories = federated_runs(seeds, conv, maps[train], labels[train], where["client"][train],
                               settings)  # fmt: skip
    scores = {model: np.stack([r[model] for r in local]) for model in ("alone", "central")}
    for strategy in settings["strategies"]:
        scores[strategy] = np.stack(
            [client_scores(h.arrays, tests) for h in histories if h.experiment.strategy == strategy]
        )
    names = [s.name for s in sources]
    values = source_keys(names, scores)
    counts = class_counts(sources)
    for source in sources:
        for part in ("train", "test"):
            for c, name in enumerate(CLASS_NAMES):
                values[f"fl_src_{part}_{source.name}_{name}"] = int(
                    ((source.part == part) & (source.labels == c)).sum()
                )
    values.update({
        "fl_src_sources": ",".join(names),
        "fl_src_models": ",".join(scores),
        "fl_src_seeds": len(seeds),
        "fl_src_rounds": settings["rounds"],
        "fl_src_local_epochs": settings["local_epochs"],
        "fl_src_image_size": settings["image_size"],
        "fl_src_min_face_px": settings["min_face_px"],
        "fl_src_backbone": settings["backbone"],
        "fl_src_top_weights": int(sum(p.size for p in top.init_top(conv, 2, np.random.default_rng(0)))),
        "fl_src_bytes_per_round": float(np.mean([np.mean(h.bytes_per_round) for h in histories])),
        "fl_src_seconds": time.perf_counter() - started,
    })  # fmt: skip
    run.save(values)
    frames = {"counts": counts, "examples": examples(sources, settings["examples"]),
              "source_names": {s.name: SOURCE_NAMES[s.name] for s in sources}}  # fmt: skip
    return Section(values, frames)


def examples(sources: list[Source], count: int) -> dict[str, list[tuple[np.ndarray, int]]]:
    """Up to ``count`` train crops per source, alternating the classes it has: (image, label)."""
    shown = {}
    for source in sources:
        rows = [np.flatnonzero((source.part == "train") & (source.labels == c)) for c in (1, 0)]
        picked = [r for pair in zip(*(list(r[:count]) for r in rows if len(r)), strict=False)
                  for r in pair]  # fmt: skip
        shown[source.name] = [(source.images[r], int(source.labels[r])) for r in picked[:count]]
    return shown


# ---------------------------------------------------------------------------------------------
# Words and tables


def counts_table(section: Section):
    """Crops per client, part and class, for the page."""
    return present.show(section.frames["counts"])


def accuracy_table(values: dict):
    """Each client's test accuracy under each model, mean over seeds with its 95% interval, and
    the worst client's; rows are clients, columns models."""
    names = values["fl_src_sources"].split(",")
    models = values["fl_src_models"].split(",")
    rows = []
    for label, key in [(SOURCE_NAMES[n], f"acc_{{m}}_{n}") for n in names] + [
        ("mean of clients", "mean_{m}"),
        ("worst client", "worst_{m}"),
    ]:
        row = {"client (own test)": label}
        for m in models:
            k = "fl_src_" + key.format(m=m)
            row[MODEL_NAMES[m]] = (
                f"{present.percent(values[k])} "
                f"({present.percent(values[k + '_ci_low'])}-{present.percent(values[k + '_ci_high'])})"
            )
        rows.append(row)
    return present.show(pd.DataFrame(rows))


def _joining(values: dict, names: list[str]) -> str:
    """A sentence on the client that gains most and the one that loses most by joining the
    federation (FedAvg against the client alone, each on its own test)."""
    change = {n: values[f"fl_src_acc_fedavg_{n}"] - values[f"fl_src_acc_alone_{n}"] for n in names}
    gains, loses = max(change, key=change.get), min(change, key=change.get)
    return (
        f"Joining the federation moves the {SOURCE_NAMES[gains]} client from "
        f"{present.percent(values[f'fl_src_acc_alone_{gains}'])} alone to "
        f"{present.percent(values[f'fl_src_acc_fedavg_{gains}'])} under FedAvg, and the "
        f"{SOURCE_NAMES[loses]} client from {present.percent(values[f'fl_src_acc_alone_{loses}'])} "
        f"to {present.percent(values[f'fl_src_acc_fedavg_{loses}'])}. "
    )


def story_sources(values: dict) -> str:
    """Sentences on the by-source federation, from the chapter's saved values, and the claims
    page's verdict."""
    names = values["fl_src_sources"].split(",")
    sizes = ", ".join(
        f"{SOURCE_NAMES[n]} "
        f"{values[f'fl_src_train_{n}_with_mask'] + values[f'fl_src_train_{n}_without_mask']}"
        for n in names
    )
    gap, worst = "fl_src_gap_mean_points", "fl_src_gap_worst_points"
    return (
        f"Over {values['fl_src_seeds']} seeds ({values['fl_src_rounds']} rounds of "
        f"{values['fl_src_local_epochs']} local epoch{'s' if values['fl_src_local_epochs'] != 1 else ''}; "
        f"central training and each client alone get as many epochs), with {len(names)} clients "
        f"holding {sizes} training crops, FedAvg's worst client scores "
        f"{present.percent(values['fl_src_worst_fedavg'])} "
        f"({present.interval(values['fl_src_worst_fedavg_ci_low'], values['fl_src_worst_fedavg_ci_high'])}) "
        f"against {present.percent(values['fl_src_worst_central'])} for central training and "
        f"{present.percent(values['fl_src_worst_alone'])} for the worst client trained alone. "
        f"Central minus FedAvg: {present.points(values[gap])} on the mean of the clients "
        f"({present.points_interval(values[gap + '_ci_low'], values[gap + '_ci_high'])}), "
        f"{present.points(values[worst])} on the worst client "
        f"({present.points_interval(values[worst + '_ci_low'], values[worst + '_ci_high'])}). "
        + _joining(values, names)
        + f"The top that trains has {values['fl_src_top_weights']:,} weights; a round moves "
        f"{present.number(values['fl_src_bytes_per_round'] / 1e6)} MB of arrays. "
        + claims.sentence("federated_learning", {"future_work": values})
    )
