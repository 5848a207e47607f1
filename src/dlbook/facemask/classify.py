"""The face-mask classifier: linear heads on backbone features, calibration, the shipped model.

The shipped model is one Keras file that takes RGB images (uint8 range, as ``dlbook.facemask.data``
decodes and resizes them) and returns calibrated P(with_mask): backbone (preprocessing inside)
-> linear head -> division by the temperature -> sigmoid. A JSON file beside it records the class
names, input size, temperature and how it was trained. The ``python -m dlbook predict`` command
lives in ``dlbook.facemask.predict``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from scipy import optimize

from dlbook.core import cache
from dlbook.facemask import data
from dlbook.methods import heads


class ModelLoadError(Exception):
    """The shipped model is missing or cannot be read."""


# ---------------------------------------------------------------------------------------------
# Heads on frozen features


def validation_part(
    labels: np.ndarray, groups: np.ndarray, pool: np.ndarray, parts: int = 8, seed: int = 0
) -> np.ndarray:
    """A grouped, stratified ``1 / parts`` of the ``pool`` items, to choose and stop on.

    Parameters
    ----------
    labels, groups : ndarray, shape (N,), int
    pool : ndarray, shape (N,), bool: the items available for training.

    Returns
    -------
    ndarray, shape (N,), bool: the validation items, a subset of ``pool`` that shares no
    near-duplicate group with the rest of it.
    """
    pool = np.asarray(pool, dtype=bool)
    index = np.flatnonzero(pool)
    folds = data.grouped_folds(labels[index], groups[index], parts, seed)
    chosen = np.zeros(len(pool), dtype=bool)
    chosen[index[folds == 0]] = True
    return chosen


def cross_validate_head(
    features: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    folds: np.ndarray,
    seed: int = 0,
) -> dict:
    """Out-of-fold P(with_mask) of ``heads.fit_logistic_chosen_on_validation`` under the given folds.

    For each fold, the head trains on the other folds, its strength chosen on a grouped
    validation part of them (``validation_part``), and predicts the held-out fold.

    Parameters
    ----------
    features : ndarray, shape (N, D), float32
    labels, groups : ndarray, shape (N,), int
    folds : ndarray, shape (N,), int: fold of each item (e.g. ``data.grouped_folds``).

    Returns
    -------
    dict with ``probs`` (N,) float64 out-of-fold, and per fold (lists, in fold order) ``heads``
    ((weights (D,), bias)), ``val`` (bool masks) and ``strength`` (the chosen ``C``).
    """
    probs = np.full(len(labels), np.nan)
    fold_heads, vals, strengths = [], [], []
    for fold in np.unique(folds):
        held_out = folds == fold
        val = validation_part(labels, groups, ~held_out, seed=seed + int(fold))
        train = ~held_out & ~val
        model, strength = heads.fit_logistic_chosen_on_validation(
            features[train], labels[train], features[val], labels[val], seed=seed
        )
        probs[held_out] = model.predict_proba(features[held_out])[:, 1]
        fold_heads.append(head_weights(model))
        vals.append(val)
        strengths.append(strength)
    return {"probs": probs, "heads": fold_heads, "val": vals, "strength": strengths}


def head_weights(model) -> tuple[np.ndarray, float]:
    """A fitted scikit-learn logistic head as (weights, shape (D,), float32; bias)."""
    return model.coef_[0].astype(np.float32), float(model.intercept_[0])


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, float64."""
    logits = np.asarray(logits, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -logits))


def probs_to_logits(probs: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """log(p / (1 - p)) with p clipped to [eps, 1 - eps], float64."""
    probs = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    return np.log(probs) - np.log1p(-probs)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature T > 0 minimising the log-loss of sigmoid(logits / T) (temperature scaling).

    Parameters
    ----------
    logits : ndarray, shape (N,), float: the model's log-odds of with_mask.
    labels : ndarray, shape (N,), 0 or 1.
    """
    logits = np.asarray(logits, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=np.float64).ravel()
    if logits.shape != labels.shape or logits.size == 0:
        raise ValueError(
            f"logits {logits.shape} and labels {labels.shape} must be equal, non-empty"
        )

    def loss(log_t):
        scaled = logits / np.exp(log_t)
        return float(np.mean(np.logaddexp(0.0, scaled) - labels * scaled))

    found = optimize.minimize_scalar(loss, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(found.x))


# ---------------------------------------------------------------------------------------------
# The shipped model


def build_shipped_model(
    backbone, weights: np.ndarray, bias: float, temperature: float, image_size: int
):
    """Backbone + linear head + temperature as one Keras model returning P(with_mask).

    Parameters
    ----------
    backbone : Keras model mapping (B, S, S, 3) uint8-range RGB to (B, D) features.
    weights : ndarray, shape (D,), the head's weights (e.g. logistic regression ``coef_[0]``).
    bias : the head's intercept.
    temperature : divides the logit before the sigmoid.
    image_size : S, the side of the square input.

    Returns
    -------
    keras.Model: (B, S, S, 3) float32 in [0, 255] -> (B, 1) float32 P(with_mask).
    """
    import keras

    if temperature <= 0:
        raise ValueError(f"temperature={temperature!r} must be positive")
    weights = np.asarray(weights, dtype=np.float32).reshape(-1, 1)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    features = backbone(inputs)
    if features.shape[-1] != weights.shape[0]:
        raise ValueError(
            f"the backbone gives {features.shape[-1]} features but weights has {weights.shape[0]}"
        )
    head = keras.layers.Dense(1, name="logit")
    logit = head(features)
    head.set_weights([weights, np.array([bias], dtype=np.float32)])
    scaled = keras.layers.Rescaling(1.0 / temperature, name="temperature")(logit)
    prob = keras.layers.Activation("sigmoid", name="prob_with_mask")(scaled)
    return keras.Model(inputs, prob, name="mask_classifier")


def save_shipped_model(model, path: str | os.PathLike, metadata: dict) -> tuple[Path, Path]:
    """Save ``model`` to ``path`` (``.keras``) and ``metadata`` to the JSON beside it.

    ``metadata`` must hold ``image_size`` and ``temperature``; class names are added.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"path={str(path)!r} must end in .keras")
    missing = {"image_size", "temperature"} - set(metadata)
    if missing:
        raise ValueError(f"metadata lacks {sorted(missing)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    meta_path = path.with_suffix(".json")
    full = {"class_names": list(data.CLASS_NAMES), "positive_class": data.CLASS_NAMES[1]}
    full.update(metadata)
    return path, cache.write_json(meta_path, full)


def load_shipped_model(path: str | os.PathLike):
    """Load a shipped model and its JSON.

    Returns
    -------
    (keras.Model, metadata dict)

    Raises
    ------
    ModelLoadError
        If the file is missing, not a Keras model, or its JSON is missing or malformed.
    """
    import keras

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model file {path} does not exist")
    meta_path = path.with_suffix(".json")
    if not meta_path.is_file():
        raise ModelLoadError(f"{meta_path} (the model's metadata) does not exist")
    try:
        metadata = json.loads(meta_path.read_text())
        image_size = int(metadata["image_size"])
    except (ValueError, KeyError, TypeError) as error:
        raise ModelLoadError(f"{meta_path} is not valid model metadata ({error})") from error
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for a bad file
        raise ModelLoadError(f"{path} is not a loadable Keras model ({error})") from error
    expected = (None, image_size, image_size, 3)
    if tuple(model.input_shape) != expected:
        raise ModelLoadError(
            f"{path} takes inputs of shape {model.input_shape}, but its metadata says {expected}"
        )
    return model, metadata


# ---------------------------------------------------------------------------------------------
# Prediction


def predict_images(model, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """P(with_mask) of images already at the model's input size, shape (N,) float64."""
    images = np.asarray(images)
    if len(images) == 0:
        return np.zeros(0, dtype=np.float64)
    out = model.predict(images.astype(np.float32), batch_size=batch_size, verbose=0)
    return np.asarray(out, dtype=np.float64).reshape(len(images), -1)[:, -1]
