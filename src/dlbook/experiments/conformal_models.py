"""Chapter 6's subjects: the classifiers whose probabilities are conformed.

``choose_models`` takes chapter 4's best model and its custom CNN when chapter 4 has saved its
probabilities, and this chapter's own heads otherwise (``own_models``: a logistic head on the
shared backbone features, a deliberately weak one on 16 px pixels). ``shifted_probabilities``
re-runs the backbone head on corrupted images for the shift study.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlbook.facemask import corruptions, data, features
from dlbook.methods import conformal, heads


@dataclass
class ModelProbs:
    """One classifier's P(with_mask) on the calibration and test splits (the re-split pool)."""

    name: str
    p_with_mask: np.ndarray  # (N,) float64
    labels: np.ndarray  # (N,) int64
    split: np.ndarray  # (N,) str, "calib" or "test"
    source: str
    extra: dict = field(default_factory=dict)

    @property
    def probs(self) -> np.ndarray:
        return conformal.binary_probs(self.p_with_mask)

    @property
    def accuracy(self) -> float:
        return float(((self.p_with_mask >= 0.5) == self.labels).mean())


def _pool(split) -> np.ndarray:
    return np.isin(split, ("calib", "test"))


def own_models(feature_settings: Mapping, data_dir=None, seed: int = 0, c: float = 0.1) -> dict:
    """Two classifiers this chapter fits itself, so it runs without chapter 4's output.

    ``backbone_logreg``: logistic regression on the shared pooled backbone features (strong).
    ``pixel_logreg``: logistic regression on 16 px grayscale pixels (deliberately weak).
    Both are fitted on the train split of the images ``feature_settings`` (a ``profiles.FEATURES`` block)
    selects; returns ``{name: ModelProbs}``, the backbone head and pool paths in ``extra`` for
    the shift study.
    """
    feats = features.face_mask_features(feature_settings, data_dir, seed, progress=False)
    train = feats.split == "train"
    head = heads.fit_logistic(feats.features[train], feats.labels[train], c=c, seed=seed)
    pool = _pool(feats.split)
    strong = ModelProbs(
        "backbone_logreg",
        head.predict_proba(feats.features[pool])[:, 1],
        feats.labels[pool],
        feats.split[pool],
        f"logistic regression on {feats.backbone} features ({feats.image_size} px)",
        {"head": head, "paths": np.array(feats.paths)[pool]},
    )
    small = data.load_face_mask(
        data_dir,
        image_size=16,
        color_mode="grayscale",
        limit=feature_settings["limit"],
        seed=seed,
        progress=False,
    )
    wanted = set(feats.paths)
    keep = np.array([p in wanted for p in small.paths])
    pixels = small.images[keep].reshape(keep.sum(), -1).astype(np.float64) / 255.0
    labels, split = small.labels[keep], small.split[keep]
    pixel_head = heads.fit_logistic(pixels[split == "train"], labels[split == "train"], c=c)
    weak = ModelProbs(
        "pixel_logreg",
        pixel_head.predict_proba(pixels[_pool(split)])[:, 1],
        labels[_pool(split)],
        split[_pool(split)],
        "logistic regression on 16 px grayscale pixels",
    )
    return {"backbone_logreg": strong, "pixel_logreg": weak}


def chapter4_models(path: Path) -> dict:
    """Chapter 4's saved probabilities (``mask_probs.npz``) as ``{name: ModelProbs}``.

    Adds ``extra["val_accuracy"]`` (accuracy on the validation split, used to pick the best
    model without looking at the calibration or test points).
    """
    with np.load(path, allow_pickle=False) as archive:
        labels = archive["labels"].astype(np.int64)
        split = archive["split"].astype(str)
        names = [str(n) for n in archive["models"]]
        out = {}
        for name in names:
            p = archive[f"probs__{name}"].astype(np.float64)
            val = split == "val"
            val_acc = float(((p[val] >= 0.5) == labels[val]).mean()) if val.any() else np.nan
            pool = _pool(split)
            out[name] = ModelProbs(
                name, p[pool], labels[pool], split[pool], "chapter 4", {"val_accuracy": val_acc}
            )
    return out


def choose_models(feature_settings: Mapping, out_dir=None, data_dir=None, seed: int = 0) -> dict:
    """The chapter's two subjects: ``{"best": ModelProbs, "weak": ModelProbs, "own": {...}}``.

    Chapter 4's best model (by validation accuracy) and its custom CNN when
    ``<out_dir>/mask_probs.npz`` exists; otherwise this chapter's own backbone and pixel heads.
    The own heads are always returned too: the shift study needs a model it can re-run.
    """
    own = own_models(feature_settings, data_dir, seed)
    path = Path(out_dir) / "mask_probs.npz" if out_dir is not None else None
    if path is not None and path.exists():
        found = chapter4_models(path)
        if found:
            best = max(found.values(), key=lambda m: np.nan_to_num(m.extra["val_accuracy"]))
            weak = found.get("custom_cnn") or min(
                found.values(), key=lambda m: np.nan_to_num(m.extra["val_accuracy"])
            )
            if weak.name != best.name:
                return {"best": best, "weak": weak, "own": own}
            return {"best": best, "weak": own["pixel_logreg"], "own": own}
    return {"best": own["backbone_logreg"], "weak": own["pixel_logreg"], "own": own}


def shifted_probabilities(
    model: ModelProbs,
    kind: str,
    severity: int,
    feature_settings: Mapping,
    data_dir=None,
    seed: int = 0,
    limit: int | None = None,
) -> ModelProbs:
    """The backbone head's probabilities on corrupted copies of the pool's images.

    ``feature_settings`` is the ``profiles.FEATURES`` block the head was fitted under; ``limit`` keeps a
    random subset of the pool (the features of corrupted images are computed afresh, which is the
    slow part).
    """
    images = data.load_face_mask(
        data_dir,
        image_size=feature_settings["image_size"],
        limit=feature_settings["limit"],
        seed=seed,
        progress=False,
    )
    index = {p: i for i, p in enumerate(images.paths)}
    rows = np.array([index[p] for p in model.extra["paths"]])
    keep = np.arange(len(rows))
    if limit is not None and limit < len(rows):
        keep = np.sort(np.random.default_rng([seed, 6]).choice(len(rows), limit, replace=False))
    corrupted = corruptions.corrupt(images.images[rows[keep]], kind, severity, seed=seed)
    feats = features.extract(feature_settings["backbone"], corrupted, progress=False)
    return ModelProbs(
        f"{model.name}@{kind}{severity}",
        model.extra["head"].predict_proba(feats)[:, 1],
        model.labels[keep],
        model.split[keep],
        f"{model.source}, {kind} severity {severity}",
        {"keep": keep},
    )
