"""A parallel build's first step: long independent runs that several chapters share, or that the
longest chapter would otherwise make one after another, spread over every core before any
chapter starts (``python -m dlbook prepare``).

Every task fills the cache with what a chapter computes, through the chapter's own functions
(same arguments, same cache keys), so the chapters then read it; a chapter run without this
step (``--jobs 1``, a notebook opened by hand) computes the same values itself. Tasks are
independent and start longest first, so the cores stay busy to the end of the step; each runs
with the build's thread sizes (``parallel.thread_environment``), which are part of the training
runs' cache keys.

Tasks: the backbone features chapters 4-7 share (``features.face_mask_features`` under
``profiles.FEATURES``); chapter 4's backbone features, fine-tuning maps and custom-CNN
trainings (``experiments.mask_detection.prepare``); chapter 4b's detected faces, tiled boxes and
own-detector maps of the scene photos (``experiments.real_photos.prepare``), which would
otherwise run at the very end of the build, after the chapters 4b waits for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

SHARED_FEATURE_READERS = ("mask_detection", "active_learning", "conformal", "future_work")
"""Chapters that read the shared backbone features (``features.face_mask_features`` under
``profiles.FEATURES``)."""


@dataclass(frozen=True)
class SharedFeatures:
    """The shared backbone features (one task)."""

    cost: float = 60.0
    label: str = "shared backbone features (chapters 4-7)"


def tasks(profile: str, chapters) -> list:
    """The tasks for a build of ``chapters`` (chapter names) under ``profile``, longest first."""
    from dlbook.experiments.mask_detection import prepare as mask_detection
    from dlbook.experiments.real_photos import prepare as real_photos

    chapters = set(chapters)
    found: list = [SharedFeatures()] if chapters & set(SHARED_FEATURE_READERS) else []
    if "mask_detection" in chapters:
        found += mask_detection.tasks(profile)
    if "real_photos" in chapters:
        found += real_photos.tasks(profile)
    return sorted(found, key=lambda task: -task.cost)


def run_task(task, profile: str, data_dir, seed: int) -> tuple[str, float]:
    """Run one task (a no-op when the cache has its result); returns its label and seconds."""
    from dlbook.book import profiles
    from dlbook.experiments.mask_detection import prepare as mask_detection
    from dlbook.experiments.real_photos import prepare as real_photos
    from dlbook.facemask import features

    start = time.perf_counter()
    if isinstance(task, SharedFeatures):
        features.face_mask_features(profiles.get(profile, "features"), data_dir, seed,
                                    progress=False)  # fmt: skip
    elif isinstance(task, real_photos.Task):
        real_photos.run_task(task, profile, seed)
    else:
        mask_detection.run_task(task, profile, data_dir, seed)
    return task.label, time.perf_counter() - start


def run(profile: str, data_dir, seed: int, chapters, jobs: int, log=print) -> int:
    """Run the tasks of ``chapters`` on ``jobs`` workers, one line each as it is gathered.

    Returns
    -------
    The number of tasks.

    Raises
    ------
    parallel.TaskFailures
        After every task ran, if any failed (each failure names the task).
    """
    from functools import partial

    from dlbook.core import parallel

    found = tasks(profile, chapters)
    work = partial(run_task, profile=profile, data_dir=data_dir, seed=seed)
    try:
        for label, seconds in parallel.map_tasks(work, found, jobs=jobs, chapter="prepare"):
            log(f"prepared {label} ({seconds:.1f} s)")
    finally:
        _release_workers()
    return len(found)


def _release_workers() -> None:
    """Wait for the worker processes to end, so their CPU time counts as this process's."""
    from joblib.externals.loky import reusable_executor

    executor = getattr(reusable_executor, "_executor", None)
    if executor is not None:
        executor.shutdown(wait=True)
