"""Fine-tuning any backbone the same way: a frozen base, a trainable top, a linear head.

Nothing here knows layer names. ``cut_points`` reads the model's graph: after which layers does
one tensor carry everything the rest of the network needs (between residual blocks, after an
Inception module's concatenation, between VGG's layers)? ``split`` cuts the backbone at the cut
point that leaves a chosen share of its parameters in the top part, giving a frozen ``bottom``
(whose outputs can be computed once and cached) and a trainable ``top``. ``classifier`` puts a
backbone with its bottom frozen and a sigmoid head in one model that saves and reloads with
``safe_mode=True``.
"""

from __future__ import annotations

import numpy as np


def _tensors(value) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tensors(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tensors(item)]
    return [value]


def _layer_inputs(layer) -> list:
    try:
        return _tensors(layer.input)
    except (AttributeError, ValueError):  # an input layer has no input
        return []


def cut_points(model) -> list[int]:
    """Indices ``i`` of ``model.layers`` after which only ``model.layers[i].output`` is still needed.

    ``model.layers`` of a functional model is in topological order; a layer is a cut point when no
    later layer reads a tensor made before it, except through its output.

    Returns
    -------
    Sorted indices, excluding the input layer and the last layer.
    """
    layers = model.layers
    made_at = {}
    for index, layer in enumerate(layers):
        for tensor in _tensors(layer.output):
            made_at[id(tensor)] = index
    last_read = {}
    for index, layer in enumerate(layers):
        for tensor in _layer_inputs(layer):
            last_read[id(tensor)] = max(last_read.get(id(tensor), -1), index)
    for tensor in _tensors(model.output):
        last_read[id(tensor)] = len(layers)
    points = []
    for index in range(1, len(layers) - 1):
        outputs = {id(t) for t in _tensors(layers[index].output)}
        if len(outputs) != 1:
            continue
        crossing = {
            tensor_id
            for tensor_id, made in made_at.items()
            if made <= index and last_read.get(tensor_id, -1) > index
        }
        if crossing == outputs:
            points.append(index)
    return points


def _params(layer) -> int:
    return int(sum(np.prod(w.shape) for w in layer.weights))


def choose_cut(model, top_fraction: float) -> int:
    """The cut point leaving the share of parameters in the top closest to ``top_fraction``."""
    if not 0 < top_fraction < 1:
        raise ValueError(f"top_fraction={top_fraction!r} must be between 0 and 1")
    points = cut_points(model)
    if not points:
        raise ValueError(f"{model.name} has no single-tensor cut point to split at")
    sizes = np.array([_params(layer) for layer in model.layers], dtype=np.float64)
    total = sizes.sum()
    shares = np.array([sizes[i + 1 :].sum() / total for i in points])
    return points[int(np.argmin(np.abs(shares - top_fraction)))]


def split(model, top_fraction: float = 0.25):
    """Cut a functional backbone into a bottom and a top that share its layers.

    Parameters
    ----------
    model : a functional keras.Model (images -> features), e.g. from ``backbones.build``.
    top_fraction : share of the parameters to leave in the top (the part to fine-tune).

    Returns
    -------
    (bottom, top, boundary): ``bottom`` maps the model's input to the tensor at the cut, ``top``
    maps that tensor to the model's output, ``boundary`` names the last layer of the bottom.
    Training ``top`` updates ``model``.
    """
    import keras

    cut = choose_cut(model, top_fraction)
    boundary = model.layers[cut]
    bottom = keras.Model(model.input, boundary.output, name=f"{model.name}_bottom")
    top = keras.Model(boundary.output, model.output, name=f"{model.name}_top")
    return bottom, top, boundary.name


def freeze_bottom(model, top_fraction: float = 0.25) -> str:
    """Freeze the layers up to the cut (and every batch norm); return the boundary layer's name."""
    import keras

    cut = choose_cut(model, top_fraction)
    for index, layer in enumerate(model.layers):
        layer.trainable = index > cut and not isinstance(layer, keras.layers.BatchNormalization)
    return model.layers[cut].name


def classifier(backbone, top_fraction: float = 0.25, head: tuple | None = None):
    """Backbone (bottom frozen) + a sigmoid unit: images (N, H, W, 3) in [0, 255] -> P (N, 1).

    Parameters
    ----------
    backbone : from ``backbones.build`` or ``backbones.load``.
    head : optional (weights (D,), bias) to start the head from, e.g. a logistic regression
        fitted on frozen features.

    Returns
    -------
    keras.Model, ready to compile and fit; batch norms run in inference mode.
    """
    import keras

    freeze_bottom(backbone, top_fraction)
    inputs = keras.Input(backbone.input_shape[1:], name="image")
    features = backbone(inputs, training=False)
    dense = keras.layers.Dense(1, name="logit")
    logit = dense(features)
    if head is not None:
        weights, bias = head
        dense.set_weights(
            [np.asarray(weights, np.float32).reshape(-1, 1), np.array([bias], np.float32)]
        )
    prob = keras.layers.Activation("sigmoid", name="prob_with_mask")(logit)
    return keras.Model(inputs, prob, name=f"{backbone.name}_classifier")
