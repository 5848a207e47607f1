"""Chapter 4b's longest runs that need no other chapter's model, as tasks a parallel build runs
before the chapters (``dlbook.book.prepare``).

Chapter 4b waits for chapters 4 and 7 (it reads their models), so whatever it computes itself
runs at the end of the build, on one core. These tasks compute, through the chapter's own
functions and into the same cache entries, the parts that depend on the photos and the
settings only: the default detector's boxes on each part, the finding study's tiled boxes on
the validation photos, and the own detector's backbone maps of each part.
"""

from __future__ import annotations

from dataclasses import dataclass

from dlbook.book import profiles

SECTION = "real_photos"


@dataclass(frozen=True)
class Task:
    """One cache-filling run: ``kind`` ("detections", "tiles" or "maps"), the part of the photos,
    the tile share or input size it is for, and a rough CPU-seconds ``cost`` (the longest start
    first)."""

    kind: str
    part: str
    size: float
    cost: float

    @property
    def label(self) -> str:
        if self.kind == "detections":
            return f"chapter 4b: detected faces, {self.part} photos"
        if self.kind == "tiles":
            return f"chapter 4b: tiles {self.size:g}, {self.part} photos"
        return f"chapter 4b: own detector maps at {self.size:g} px, {self.part} photos"


def tasks(profile: str) -> list[Task]:
    """The chapter's cache-filling runs under ``profile``."""
    s = profiles.get(profile, SECTION)
    parts = ("train", "val", "test")
    found = [Task("detections", part, 0, 60.0) for part in parts]
    found += [Task("tiles", "val", share, 60.0) for share in s["tile_shares"]]
    sizes = s["own_detector"]["input_sizes"]
    found += [Task("maps", part, size, 30.0) for part in parts for size in sizes]
    return found


def run_task(task: Task, profile: str, seed: int) -> str:
    """Compute ``task`` into the cache (a no-op when it is there); returns its label."""
    from dlbook.experiments.real_photos import finding, own_detector, study
    from dlbook.facemask import scene_pipeline as pipe

    s = profiles.get(profile, SECTION)
    photos = study.scene_parts(s, seed)[1][task.part]
    if task.kind == "detections":
        pipe.detect_photos(photos, progress=False)
    elif task.kind == "tiles":
        finding.boxes_with_tiles(photos, task.size)
    elif task.kind == "maps":
        own_detector.prepare(photos, int(task.size), s["own_detector"]["backbone"])
    else:
        raise ValueError(f"task.kind={task.kind!r}: use 'detections', 'tiles' or 'maps'")
    return task.label
