"""Chapter 4's longest independent runs, as tasks a parallel build runs before the chapters.

Each task computes what the chapter computes, through the same functions, into the same cache
entries (backbone features and fine-tuning maps by image content, custom-CNN trainings by
``training.fit``'s key), so the chapter then reads them instead of computing them, and a
chapter run without this step computes them itself. A task depends on the profile's settings,
the data and the seed only: none waits for another, and the build spreads them over every core
while no chapter is running yet (``dlbook.book.prepare``).
"""

from __future__ import annotations

from dataclasses import dataclass

from dlbook.book import profiles
from dlbook.experiments.mask_detection.dataset import network_size

SECTION = "mask_detection"


@dataclass(frozen=True)
class Task:
    """One cache-filling run: ``kind`` ("features", "maps" or "cnn"), the backbone or split it
    is for, the repeat (CNN runs), and ``cost``, a rough CPU-seconds guess used only to start
    the longest first."""

    kind: str
    target: str
    repeat: int
    cost: float

    @property
    def label(self) -> str:
        if self.kind == "cnn":
            return f"chapter 4: custom CNN, {self.target} split, repeat {self.repeat}"
        what = "fine-tuning maps" if self.kind == "maps" else "features"
        return f"chapter 4: {self.target} {what}"


def tasks(profile: str) -> list[Task]:
    """The chapter's cache-filling runs under ``profile``: every available backbone's features
    at its size, the fine-tuning maps of each backbone it fine-tunes, and every custom-CNN
    training (the chapter's own, the grouped and the random repeats of its leakage section)."""
    from dlbook.methods import backbones

    s = profiles.get(profile, SECTION)
    available = [name for name in s["backbones"] if backbones.available(name)[0]]
    found = [Task("features", name, 0, 60.0) for name in available]
    if s["fine_tune_epochs"] >= 1:
        tuned = [s["fine_tune_backbone"], *s.get("fine_tune_ports", ())]
        found += [Task("maps", name, 0, 60.0) for name in tuned if name in available]
    repeats = {"grouped": s["cnn_seeds"], "random": s["cnn_random_seeds"]}
    found += [Task("cnn", kind, r, 150.0) for kind, count in repeats.items() for r in range(count)]
    return found


def run_task(task: Task, profile: str, data_dir, seed: int) -> str:
    """Compute ``task`` into the cache (a no-op when it is there); returns its label."""
    from dlbook.experiments.mask_detection import classifiers, leakage
    from dlbook.facemask import data, features

    s = profiles.get(profile, SECTION)
    size = s["cnn_image_size"] if task.kind == "cnn" else network_size(s, task.target)
    images = data.load_face_mask(data_dir, image_size=size, limit=s["limit"], seed=seed,
                                 progress=False)  # fmt: skip
    if task.kind == "features":
        features.extract(task.target, images.images, progress=False)
    elif task.kind == "maps":
        classifiers.fine_tune_maps(task.target, images.images, s)
    elif task.kind == "cnn":
        split = leakage.repeat_splits(images, task.repeat, seed)[task.target]
        classifiers.train_cnn(images, split, s, seed + task.repeat)
    else:
        raise ValueError(f"task.kind={task.kind!r}: use 'features', 'maps' or 'cnn'")
    return task.label
