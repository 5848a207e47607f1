"""Chapter 4: the face-mask classifier, evaluated honestly.

The chapter is a sequence of sections; each is one function that computes, saves its numbers
through the run context (``run.save``) and returns what the page shows. In the order the
chapter calls them, by module:

- ``dataset``: ``load`` (the images at both sizes) and ``audit_data`` (duplicates, leakage,
  shortcuts).
- ``classifiers``: ``train_models`` (frozen-backbone heads, the custom CNN, a fine-tuned
  backbone).
- ``evaluation``: ``evaluate_test_split``, ``cross_validate`` and ``calibrate_best``.
- ``nested``: ``nested_cross_validate`` (backbone and head strength chosen inside each outer
  fold, the figure the transfer claim is judged on).
- ``networks``: ``network_costs`` (each transfer network's input size, FLOPs, extraction and
  fine-tuning time, and what the dissertation's networks add to a cold build).
- ``leakage``: ``measure_leakage`` (grouped against random splits), ``probe_leakage``
  (nearest training images in feature space, a hash-threshold sweep, near against far test
  accuracy) and ``claims_table``.
- ``label_audit``: ``audit_labels`` (every test error, suspected label issues).
- ``shipping``: ``ship_best`` (one Keras file) and ``export_tflite``.
- ``inspection``: ``look_inside`` (occlusion saliency) and ``stress_test`` (corruptions).

Sentences quoting numbers come from each module's ``story_*`` functions, and any sentence
about a dissertation claim from ``dlbook.book.claims``. The face detector's sections live in
``dlbook.experiments.detection``.
"""
