"""Frames per second of the real-photo pipeline on one CPU core, on test photos resized to 640x480.

Each frame: the default detector (one TF Lite thread), the chosen box shape, crops, the backbone's
features (one compiled batch of ``speed_batch`` crops at a time) and the logistic head. The process
is pinned to one core while the frames run (``deploy.one_core``); medians over frames, so a pause
caused by other work on a shared machine does not count.
"""

from __future__ import annotations

import time

import numpy as np
from PIL import Image

from dlbook.core import logs
from dlbook.experiments.real_photos.improved import head_probs
from dlbook.experiments.real_photos.study import Scenes
from dlbook.facemask import deploy, detect, features, runtime
from dlbook.facemask import scene_classifier as head
from dlbook.facemask import scene_pipeline as pipe
from dlbook.facemask.data import decode_image

FRAME_SIZE = (640, 480)
TARGET_FPS = 10.0


def frames_of(sc: Scenes, count: int) -> list[np.ndarray]:
    """The first ``count`` test photos resized to ``FRAME_SIZE``, RGB uint8."""
    return [
        np.asarray(
            Image.fromarray(decode_image(p.image_path, None)).resize(
                FRAME_SIZE, Image.Resampling.BILINEAR
            )
        )
        for p in sc.parts["test"][:count]
    ]


def _one_frame(detector, backbone, model, shape, image_size: int, frame: np.ndarray) -> tuple:
    start = time.perf_counter()
    boxes, _ = pipe.detect_photo(detector, frame)
    boxes = shape.apply(boxes, FRAME_SIZE)
    middle = time.perf_counter()
    if len(boxes):
        crops = detect.crop_faces(frame, pipe.xyxy_to_xywh(boxes), image_size)
        head.head_verdicts(head_probs(model, backbone(crops)))
    end = time.perf_counter()
    return 1000 * (middle - start), 1000 * (end - middle), len(boxes)


def frame_rate(run, sc: Scenes, imp: dict) -> dict:
    """Time the chosen pipeline on ``speed_frames`` frames; saves ``real_photos_fps_one_core``,
    ``real_photos_detector_ms``, ``real_photos_classifier_ms`` (medians per frame)."""
    model = imp["fitted"][imp["best"]["head"]]["model"]
    chosen = imp["best"]
    size = run.settings["image_size"]
    frames = frames_of(sc, run.settings["speed_frames"])
    with deploy.one_core() as core, logs.quiet_native_stderr():
        detector = detect.load_detector(None, num_threads=1)
        backbone = features.runner(
            run.settings["backbone"],
            (size, size, 3),
            runtime.FAST_RUNTIME,
            run.settings["speed_batch"],
        )
        _one_frame(detector, backbone, model, chosen["shape"], size, frames[0])  # warm-up
        timings = np.array(
            [_one_frame(detector, backbone, model, chosen["shape"], size, f) for f in frames]
        )
    total = timings[:, 0] + timings[:, 1]
    saved = {
        "real_photos_fps_one_core": 1000 / float(np.median(total)),
        "real_photos_detector_ms": float(np.median(timings[:, 0])),
        "real_photos_classifier_ms": float(np.median(timings[:, 1])),
        "real_photos_boxes_per_frame": float(timings[:, 2].mean()),
        "real_photos_speed_frames": len(frames),
        "real_photos_speed_core": int(core),
        "real_photos_target_fps": TARGET_FPS,
    }
    run.save(saved)
    return saved
