"""Dense and convolutional networks from first principles, in NumPy only.

- ``layers``: forward/backward pairs with an explicit cache (dense, conv2d, max-pool, flatten,
  dropout, batch-norm, activations);
- ``losses``: softmax and binary cross-entropy, MSE, L1/L2 penalties;
- ``init``: zeros, normal, Glorot/Xavier and He initialisers;
- ``model``: layer objects and ``Sequential`` with ``fit`` (any ``dlbook.methods.optim`` optimiser, L1 / L2
  penalties) / ``predict`` / ``predict_proba``;
- ``gradcheck``: analytic gradients against centred finite differences;
- ``networks``: the ANN and the CNN chapter 1 compares;
- ``keras_twin``: the same network in Keras, weights copied (imports Keras when called);
- ``throughput``: training images per second of the NumPy CNN and its Keras twin.
"""

from dlbook.methods.nn.model import (
    Activation,
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    MaxPool2D,
    Sequential,
)

__all__ = [
    "Activation",
    "BatchNorm",
    "Conv2D",
    "Dense",
    "Dropout",
    "Flatten",
    "MaxPool2D",
    "Sequential",
]
