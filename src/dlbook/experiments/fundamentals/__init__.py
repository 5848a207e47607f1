"""Chapter 1 experiments: NumPy networks from first principles.

Each section is a call ``<section>(run)`` that computes, saves its numbers through ``run.save`` and
returns them; ``story_*`` words what a section returned, and ``*_table`` shapes it for the page.

- ``checks``: a worked forward and backward pass, every gradient check and the TensorFlow
  cross-check (sections ``worked_pass``, ``gradients``);
- ``init_study``: activation and gradient spread through a deep MLP per initialiser
  (``initialization``);
- ``cnn_ann_gap``: the CNN-ANN gap over seeds and input sizes, and on scikit-learn's digits
  (``cnn_vs_ann``);
- ``throughput``: training images per second of the NumPy CNN against its Keras twin (``speed``).

The networks themselves are ``dlbook.methods.nn`` (NumPy only); TensorFlow/Keras appears only to
check the NumPy gradients, to train the Keras twins and to time the same CNN.
"""

from dlbook.experiments.fundamentals.checks import (
    check_table,
    crosscheck_table,
    gradients,
    story_gradients,
    worked_pass,
)
from dlbook.experiments.fundamentals.cnn_ann_gap import cnn_vs_ann, story_cnn_vs_ann
from dlbook.experiments.fundamentals.init_study import (
    init_table,
    initialization,
    story_initialization,
)
from dlbook.experiments.fundamentals.throughput import speed, story_speed

__all__ = [
    "check_table",
    "cnn_vs_ann",
    "crosscheck_table",
    "gradients",
    "init_table",
    "initialization",
    "speed",
    "story_cnn_vs_ann",
    "story_gradients",
    "story_initialization",
    "story_speed",
    "worked_pass",
]
