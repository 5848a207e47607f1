"""The book's own one-stage mask detector: ``targets`` (boxes to per-cell targets and back,
NumPy only) and ``model`` (letterboxing, cached backbone maps, the Keras head, its loss and
training step, boxes in photo pixels)."""
