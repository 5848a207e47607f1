"""What the dissertation states: the only place the book types its numbers and its words.

The dissertation gives no data set version, split or evaluation protocol for any of them; the
book's chapters supply their own (grouped splits, seeds, folds), and the claims page says so.
"""

from __future__ import annotations

DISSERTATION_MODELS = {
    "custom_cnn": {"accuracy": 0.96, "precision": 0.95, "recall": 0.96},
    "inception_v3": {"accuracy": 0.995, "precision": 0.99, "recall": 1.00},
    "mobilenet_v2": {"accuracy": 0.991, "precision": 0.99, "recall": 0.99},
}
"""The dissertation's reported test metrics per model."""
PERFECT_RECALL = 1.0
"""InceptionV3's "perfect recall": no masked face missed."""
CNN_MINUS_ANN_CLAIMED = 9.0
"""The dissertation's CNN-over-ANN margin, in accuracy points."""
LABEL_SAVING_CLAIMED = 0.30
"""Active learning's saving in labelled samples over random sampling."""
LEARNING_RATE_RANGE = (0.001, 0.6)
"""The learning rates the dissertation says it swept."""

TRANSFER_NETWORKS = ("resnet50", "vgg16", "inception_v3", "mobilenet_v2")
"""The ImageNet models the dissertation did transfer learning with, in its order."""
TRANSFER_WORDS = (
    "did transfer learning with the ImageNet models ResNet50, VGG16, InceptionV3 and MobileNetV2"
)
"""The dissertation's words for its transfer-learning experiment."""

PORTS = {
    "inception_v3": "inception_v3_fid",
    "mobilenet_v2": "mobilenet_v2_torchvision",
    "vgg16": "vgg16_torchvision",
}
"""The book's backbone that stands in for each network: a port of ImageNet weights that install
offline (Google's 2015 InceptionV3, torchvision's MobileNetV2 and VGG16)."""
NO_PORT = {"resnet50": "no ImageNet weights reachable offline"}
"""The dissertation's networks the book cannot run, and why."""
STAND_IN = "efficientnet_lite0"
"""The backbone the book adds: EfficientNet-Lite0, whose ImageNet weights install offline."""
