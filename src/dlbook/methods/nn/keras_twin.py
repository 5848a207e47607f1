"""The Keras twin of a built NumPy ``Sequential``: the same layers with the same weights.

Chapter 1 uses it to check the NumPy networks against TensorFlow, to train them in Keras where
many runs are needed, and to time the two libraries on the same network. Keras is imported
inside the functions, so the NumPy package stays free of TensorFlow.
"""

from __future__ import annotations

from dlbook.methods.nn.model import (
    Activation,
    BatchNorm,
    Conv2D,
    Dense,
    Flatten,
    MaxPool2D,
    Sequential,
)


def keras_equivalent(model: Sequential, dtype: str = "float32"):
    """A Keras model with the same layers as a built ``Sequential`` and its weights copied in."""
    import keras

    if model.input_shape_ is None:
        raise ValueError("model is not built; call model.build(input_shape) first")
    k_layers = [keras.Input(shape=model.input_shape_, dtype=dtype)]
    for layer in model.layers:
        if isinstance(layer, Dense):
            k_layers.append(keras.layers.Dense(layer.units, dtype=dtype))
        elif isinstance(layer, Conv2D):
            k_layers.append(
                keras.layers.Conv2D(
                    layer.filters,
                    layer.kernel_size,
                    strides=layer.stride,
                    padding=layer.padding,
                    dtype=dtype,
                )
            )
        elif isinstance(layer, MaxPool2D):
            k_layers.append(keras.layers.MaxPooling2D(layer.pool_size, layer.stride, dtype=dtype))
        elif isinstance(layer, Flatten):
            k_layers.append(keras.layers.Flatten(dtype=dtype))
        elif isinstance(layer, BatchNorm):
            k_layers.append(
                keras.layers.BatchNormalization(
                    momentum=layer.momentum, epsilon=layer.eps, dtype=dtype
                )
            )
        elif isinstance(layer, Activation):
            if layer.function == "leaky_relu":  # Keras's default slope is 0.2, ours 0.01
                k_layers.append(keras.layers.LeakyReLU(negative_slope=0.01, dtype=dtype))
            else:
                k_layers.append(keras.layers.Activation(layer.function, dtype=dtype))
        else:
            raise ValueError(
                f"layer {layer.name!r} ({type(layer).__name__}) has no Keras equivalent here"
            )
    k_model = keras.Sequential(k_layers)
    for layer, k_layer in zip(model.layers, k_model.layers):
        if isinstance(layer, (Dense, Conv2D)):
            k_layer.set_weights([layer.params["W"], layer.params["b"]])
        elif isinstance(layer, BatchNorm):
            k_layer.set_weights(
                [
                    layer.params["gamma"],
                    layer.params["beta"],
                    layer.running["mean"],
                    layer.running["var"],
                ]
            )
    return k_model


def keras_twin(model: Sequential):
    """The Keras twin of a built NumPy classifier (same layers and weights) with a softmax on its
    logits, ready for ``training.fit``."""
    import keras

    return keras.Sequential([keras_equivalent(model), keras.layers.Softmax()])
