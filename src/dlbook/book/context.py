"""The run context a chapter makes in its first cell: profile, seed, settings, folders and save.

Every chapter starts the same way::

    run = context.start(profile, "conformal", seed, data_dir, results_dir)
    models = cf.classifiers(run)

and every experiment takes ``run``: its settings (``run.settings``, from ``dlbook.book.profiles``),
its seed, the data folder and the one place its numbers go (``run.save``). Work worth keeping
between builds goes through ``dlbook.core.cache`` (``cached_array``, keyed by content). Nothing
else writes files. Independent runs (seeds, folds, grid points) go through ``run.map``, which
runs them in parallel (``dlbook.core.parallel``) with the results of a plain loop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from dlbook.book import profiles
from dlbook.core import parallel, paths, results


@dataclass(frozen=True)
class Run:
    """One chapter's execution: what it runs with and where its numbers go.

    Attributes
    ----------
    profile : "smoke" or "full".
    chapter : the results name (``results/<profile>/<chapter>.json``).
    seed : the chapter's base seed; experiments derive their own from it.
    data_dir : the face-mask folder as given (None: resolved by ``dlbook.facemask.data``).
    results_dir : the folder of this profile's results, created.
    settings : a copy of the chapter's settings under ``profile``.
    """

    profile: str
    chapter: str
    seed: int
    data_dir: str | None
    results_dir: Path
    settings: dict = field(repr=False)

    def save(self, values: dict) -> Path:
        """Merge ``values`` into this chapter's results file and return its path."""
        return results.save(self.results_dir, self.chapter, values)

    def load(self, chapter: str | None = None) -> dict:
        """The saved results of ``chapter`` (default: this one), ``{}`` when there are none."""
        return results.load(self.results_dir, chapter or self.chapter)

    def load_all(self) -> dict[str, dict]:
        """``{chapter: results}`` of every chapter saved so far under this profile."""
        return results.load_all(self.results_dir)

    def map(self, function, tasks, jobs: int | None = None) -> list:
        """``[function(task) for task in tasks]``, the tasks in parallel, results in task order.

        Through ``parallel.map_tasks``: worker processes here, or the Ray cluster the build was
        given; ``jobs`` defaults to ``$DLBOOK_JOBS`` (which the build sets to this chapter's
        share of the cores) or the cores available. A failing task is reported naming this
        chapter and the task's parameters; the others finish, then ``parallel.TaskFailures``
        lists every failure. Each task must carry its own seed.
        """
        return parallel.map_tasks(function, tasks, jobs=jobs, chapter=self.chapter)

    def part(self, section: str) -> Run:
        """The same run with another section's settings (``profiles.get(profile, section)``).

        Chapter 4's detection study, for one, has its own block of settings but saves into the
        chapter's results.
        """
        return replace(self, settings=profiles.get(self.profile, section))


def start(
    profile: str,
    chapter: str,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    results_dir: str | os.PathLike | None = None,
    section: str | None = None,
) -> Run:
    """Make a chapter's run context; ``section`` names its settings block (default: ``chapter``).

    Raises
    ------
    ValueError
        If the profile or the settings block is unknown; the message lists the accepted names.
    """
    settings = profiles.get(profile, section or chapter)
    folder = paths.results_dir(profile, results_dir)
    return Run(
        profile, chapter, int(seed), None if data_dir is None else str(data_dir), folder, settings
    )
