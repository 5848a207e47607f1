"""Chapter 2's experiments: optimisers, learning rates, batch sizes, schedules, regularisers.

The chapter is a sequence of sections, each a call ``<section>(run)`` that computes, saves its
numbers through ``run.save`` and returns them; the sentences on the page come from the
``story_*`` functions, which read what a section returned, and a sentence about one of the
dissertation's claims comes from ``dlbook.book.claims``.

- ``descent``: the NumPy optimisers shown equal to Keras's, their paths on 2-D test functions, the
  schedules (sections ``optimizers``, ``schedules``);
- ``numpy_nets``: chapter 1's NumPy network from scratch with every optimiser and regulariser
  (``from_scratch``);
- ``sweeps``: learning rate x optimiser x initialiser, batch sizes, schedules and clipping at high
  rates (``learning_rates``, ``batch_sizes``, ``high_learning_rates``), on Keras models of
  independent members (``members``);
- ``regularisation``: the regulariser study on small CNNs (``regularizers``), one per seed in one
  Keras model (``cnn_members``);
- ``images``: the face-mask images the sections train on (``data_summary``).
"""

from dlbook.experiments.optimization.descent import optimizers, schedules, story_optimizers
from dlbook.experiments.optimization.images import data_summary
from dlbook.experiments.optimization.numpy_nets import from_scratch, story_from_scratch
from dlbook.experiments.optimization.regularisation import (
    regularizers,
    story_regularizers,
    story_regularizers_by_size,
)
from dlbook.experiments.optimization.sweeps import (
    batch_sizes,
    high_learning_rates,
    learning_rates,
    story_batch_sizes,
    story_high_learning_rates,
    story_initializers,
    story_learning_rates,
)

__all__ = [
    "batch_sizes",
    "data_summary",
    "from_scratch",
    "high_learning_rates",
    "learning_rates",
    "optimizers",
    "regularizers",
    "schedules",
    "story_batch_sizes",
    "story_from_scratch",
    "story_high_learning_rates",
    "story_initializers",
    "story_learning_rates",
    "story_optimizers",
    "story_regularizers",
    "story_regularizers_by_size",
]
