"""What a Keras model costs: floating-point operations per image and CPU latency.

``count_flops`` counts the multiply-accumulates of one forward pass per image (2 FLOPs each),
``measure_latency`` times inference on the CPU, and ``model_cost`` gathers parameters, MFLOPs and
latency at several batch sizes.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import keras
import numpy as np
from keras import layers


def _layer_macs(layer) -> int:
    """Multiply-accumulates of one call of ``layer`` on one image (0 for layers without weights)."""
    if isinstance(
        layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.SeparableConv2D, layers.Dense)
    ):
        if len(layer._inbound_nodes) != 1:
            raise ValueError(
                f"layer {layer.name!r} is called {len(layer._inbound_nodes)} times; "
                "count_flops needs every weighted layer called exactly once"
            )
    if isinstance(layer, layers.DepthwiseConv2D):
        _, out_h, out_w, out_c = layer.output.shape
        kh, kw = layer.kernel_size
        return out_h * out_w * out_c * kh * kw
    if isinstance(layer, layers.SeparableConv2D):
        in_c = layer.input.shape[-1]
        _, out_h, out_w, out_c = layer.output.shape
        kh, kw = layer.kernel_size
        depthwise = out_h * out_w * in_c * layer.depth_multiplier * kh * kw
        pointwise = out_h * out_w * in_c * layer.depth_multiplier * out_c
        return depthwise + pointwise
    if isinstance(layer, layers.Conv2D):
        in_c = layer.input.shape[-1]
        _, out_h, out_w, out_c = layer.output.shape
        kh, kw = layer.kernel_size
        return out_h * out_w * out_c * kh * kw * in_c // layer.groups
    if isinstance(layer, layers.Dense):
        in_shape = layer.input.shape
        positions = int(np.prod(in_shape[1:-1])) if len(in_shape) > 2 else 1
        return positions * in_shape[-1] * layer.units
    return 0


def count_flops(model: keras.Model, image_shape=None) -> int:
    """Floating-point operations of one forward pass on one image, at inference.

    Counts the multiply-accumulates of every convolution (standard, grouped, depthwise,
    separable) and dense layer, 2 FLOPs each; biases, batch norm, activations, pooling and
    additions are left out (together a few percent of the total for these networks).
    Augmentation layers are identities at inference and cost nothing. Nested models are counted
    through. Note that papers often quote multiply-accumulates as "FLOPs": divide by 2 to compare.

    Parameters
    ----------
    model : a Keras model.
    image_shape : (H, W, C) to count at; needed when the model's input size is not fixed (a
        functional model is then rebuilt at that size from its configuration, without weights).

    Raises
    ------
    ValueError
        If a weighted layer is shared (called more than once), or the input size is not fixed
        and no ``image_shape`` is given.
    """
    if image_shape is not None:
        model = _at_input_shape(model, tuple(int(d) for d in image_shape))
    if any(dim is None for dim in model.inputs[0].shape[1:]):
        raise ValueError(
            f"model {model.name!r} has input shape {model.inputs[0].shape}; "
            "count_flops needs a fixed height, width and channels (give image_shape)"
        )
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += count_flops(layer) // 2
        else:
            total += _layer_macs(layer)
    return 2 * int(total)


def _at_input_shape(model: keras.Model, image_shape: tuple[int, int, int]) -> keras.Model:
    """The functional ``model`` rebuilt from its configuration for (H, W, C) inputs."""
    config = model.get_config()
    first = config.get("layers", [{}])[0]
    if first.get("class_name") != "InputLayer":
        raise ValueError(
            f"model {model.name!r} is not a functional model with one input; "
            "image_shape needs one to rebuild it at another size"
        )
    first["config"]["batch_shape"] = (None, *image_shape)
    return keras.Model.from_config(config)


def measure_latency(
    model: keras.Model,
    batch_size: int = 1,
    min_repeats: int = 5,
    max_repeats: int = 50,
    max_seconds: float = 2.0,
    warmup: int = 2,
    seed: int = 0,
) -> dict[str, float]:
    """Time inference (``training=False``) on random pixels in a compiled ``tf.function``.

    Runs ``warmup`` untimed calls, then at least ``min_repeats`` and at most ``max_repeats`` timed
    calls, stopping early once ``max_seconds`` have been spent timing.

    Parameters
    ----------
    model : a model with a fixed input shape (H, W, C).
    batch_size : images per call.
    seed : seed of the random input, shape (batch_size, H, W, C), float32 in [0, 255).

    Returns
    -------
    dict with ``ms_per_batch`` (median over the timed calls), ``ms_per_image``
    (``ms_per_batch / batch_size``), ``repeats`` and ``batch_size``.
    """
    import tensorflow as tf

    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
    if not isinstance(min_repeats, (int, np.integer)) or min_repeats < 1:
        raise ValueError(f"min_repeats={min_repeats!r} must be a positive integer")
    if max_repeats < min_repeats:
        raise ValueError(f"max_repeats={max_repeats!r} must be at least min_repeats={min_repeats}")
    shape = tuple(model.inputs[0].shape[1:])
    rng = np.random.default_rng(seed)
    pixels = tf.constant(rng.uniform(0, 255, size=(batch_size, *shape)).astype(np.float32))
    forward = tf.function(lambda x: model(x, training=False))
    for _ in range(warmup):
        forward(pixels).numpy()
    times = []
    spent = 0.0
    while len(times) < max_repeats and (len(times) < min_repeats or spent < max_seconds):
        start = time.perf_counter()
        forward(pixels).numpy()
        elapsed = time.perf_counter() - start
        times.append(elapsed)
        spent += elapsed
    ms_per_batch = 1000 * statistics.median(times)
    return {
        "ms_per_batch": ms_per_batch,
        "ms_per_image": ms_per_batch / batch_size,
        "repeats": len(times),
        "batch_size": int(batch_size),
    }


def model_cost(
    model: keras.Model, batch_sizes: Sequence[int] = (1, 32), **latency_options
) -> dict[str, float]:
    """Parameters, MFLOPs per image and CPU latency per image at each batch size.

    Returns
    -------
    dict with ``params``, ``mflops`` and ``latency_b<k>_ms`` (milliseconds per image at batch
    size k) for each k in ``batch_sizes``.
    """
    cost = {"params": int(model.count_params()), "mflops": count_flops(model) / 1e6}
    for batch_size in batch_sizes:
        timing = measure_latency(model, batch_size=batch_size, **latency_options)
        cost[f"latency_b{batch_size}_ms"] = timing["ms_per_image"]
    return cost
