"""Frames per second of the shipped real-photo pipeline on one CPU core, on test photos at 640x480.

Each frame goes through the pipeline as a user runs it (``facemask.scene_model``, loaded from the
file the chapter ships): finding boxes (the own detector's backbone maps and head, or the
off-the-shelf detector, one TF Lite thread) and judging those that can still reach the cut
(crops, the backbone's pooled features, the logistic head), then the cut. The process is pinned to one core while the frames
run (``deploy.one_core``); medians over frames, so a pause caused by other work on a shared
machine does not count.
"""

from __future__ import annotations

import time

import numpy as np
from PIL import Image

from dlbook.core import logs
from dlbook.experiments.real_photos.study import Scenes
from dlbook.facemask import deploy
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


def _one_frame(pipeline, frame: np.ndarray) -> tuple[float, float, int]:
    """(milliseconds finding boxes, milliseconds judging them, boxes a user gets)."""
    start = time.perf_counter()
    candidates = pipeline.find_boxes(frame, pipeline.cut)
    middle = time.perf_counter()
    _, _, scores = pipeline.judge_boxes(frame, *candidates)
    end = time.perf_counter()
    return 1000 * (middle - start), 1000 * (end - middle), int((scores >= pipeline.cut).sum())


def frame_rate(run, sc: Scenes, pipeline) -> dict:
    """Time ``pipeline`` (the shipped ``ScenePipeline``) on ``speed_frames`` frames; saves
    ``real_photos_fps_one_core``, ``real_photos_detector_ms``, ``real_photos_classifier_ms``
    (medians per frame) and ``real_photos_boxes_per_frame``."""
    frames = frames_of(sc, run.settings["speed_frames"])
    with deploy.one_core() as core, logs.quiet_native_stderr():
        _one_frame(pipeline, frames[0])  # warm-up: loads the backbone, compiles its passes
        timings = np.array([_one_frame(pipeline, f) for f in frames])
    total = timings[:, 0] + timings[:, 1]
    saved = {
        "real_photos_fps_one_core": 1000 / float(np.median(total)),
        "real_photos_detector_ms": float(np.median(timings[:, 0])),
        "real_photos_classifier_ms": float(np.median(timings[:, 1])),
        "real_photos_boxes_per_frame": float(timings[:, 2].mean()),
        "real_photos_speed_frames": len(frames),
        "real_photos_speed_core": int(core),
        "real_photos_speed_pipeline": f"{pipeline.boxes} boxes, judged by {pipeline.judge}",
        "real_photos_target_fps": TARGET_FPS,
    }
    run.save(saved)
    return saved
