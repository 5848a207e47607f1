"""Chapter 4b, real photographs: the shipped pipeline and one made for real photos, scored on
annotated crowd photos with the COCO evaluator.

- ``study``: the scenes and their split, the baseline rows and the external test;
- ``improved``: the real-photo classifier, "not a face" and box shapes, chosen on validation;
- ``own_detector``, ``own_rows``: (b), the book's own detector, and the pipeline chosen on
  validation among all;
- ``finding``: (b), finer tiles for the off-the-shelf detector against the own detector;
- ``fit_check``: (c), a fit head trained on maskedfacenet against today's, on real faces;
- ``shipping``: the chosen pipeline saved as the model ``predict --detect`` runs, and checked;
- ``speed``: its frames per second on one core at 640x480;
- ``story``: the tables and sentences of the page.
"""

from dlbook.experiments.real_photos.finding import finding_faces
from dlbook.experiments.real_photos.fit_check import fit_on_real_faces
from dlbook.experiments.real_photos.improved import improved
from dlbook.experiments.real_photos.own_rows import chosen_found, own_pipeline
from dlbook.experiments.real_photos.shipping import ship
from dlbook.experiments.real_photos.speed import frame_rate
from dlbook.experiments.real_photos.story import (
    PUBLISHED,
    TARGETS,
    confusion_table,
    finding_table,
    recall_table,
    rows_table,
    shown_rows,
    story_baseline,
    story_data,
    story_expectations,
    story_faces,
    story_finding,
    story_fit,
    story_for_claims,
    story_improved,
    story_own,
    story_shipped,
    story_targets,
    validation_table,
)
from dlbook.experiments.real_photos.study import MissingModelError, Scenes, baseline, scenes
from dlbook.facemask.scene_classifier import SCENE_LABELS

__all__ = [
    "PUBLISHED",
    "SCENE_LABELS",
    "MissingModelError",
    "Scenes",
    "baseline",
    "chosen_found",
    "confusion_table",
    "finding_faces",
    "finding_table",
    "fit_on_real_faces",
    "frame_rate",
    "improved",
    "own_pipeline",
    "TARGETS",
    "recall_table",
    "rows_table",
    "shown_rows",
    "scenes",
    "ship",
    "story_baseline",
    "story_data",
    "story_expectations",
    "story_faces",
    "story_finding",
    "story_fit",
    "story_improved",
    "story_for_claims",
    "story_own",
    "story_shipped",
    "story_targets",
    "validation_table",
]
