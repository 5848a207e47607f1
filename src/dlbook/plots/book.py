"""The reproducibility page: what a build ran on and how long each chapter took."""

from __future__ import annotations

import json
from pathlib import Path


def load_run(results_dir) -> dict:
    """The build record ``run.json`` of ``results_dir``, or {} when no build has run yet."""
    path = Path(results_dir) / "run.json"
    return json.loads(path.read_text()) if path.exists() else {}


def describe_run(run: dict) -> str:
    """A Markdown paragraph summarising a build record."""
    if not run:
        return (
            "No build record for this profile yet: run `python -m dlbook build` to make one. "
            "(Executing a single notebook by hand writes results, but not this record.)"
        )
    packages = ", ".join(f"{name} {version}" for name, version in sorted(run["packages"].items()))
    verified = (
        "verified file by file against the manifest"
        if run.get("data_verified")
        else "**not verified** against the manifest"
    )
    return (
        f"Profile **{run['profile']}**, seed {run['seed']}, started {run['started_at']} on "
        f"{run['cpu_count']} CPU cores ({run['platform']}); commit `{run.get('git_commit')}`. "
        f"Data: {run['data_dir']}, {verified}; manifest sha256 `{run['data_manifest_sha256'][:16]}…`. "
        f"Chapters executed in this build took {run.get('seconds_executing', 0):.0f} s. "
        f"Packages: {packages}."
    )


def chapter_table(run: dict):
    """One row per chapter, in book order: status, seconds, whether it was reused, error."""
    import pandas as pd

    from dlbook.build import CHAPTERS, PAGES

    order = {page.name: i for i, page in enumerate(CHAPTERS + PAGES)}
    chapters = sorted(
        run.get("chapters", {}).items(), key=lambda item: order.get(item[0], len(order))
    )
    rows = [
        {
            "chapter": name,
            "status": info["status"],
            "seconds": info["seconds"],
            "reused": bool(info.get("cached")),
            "error": info.get("error") or "",
        }
        for name, info in chapters
    ]
    return pd.DataFrame(rows, columns=["chapter", "status", "seconds", "reused", "error"])


def plot_chapter_seconds(run: dict):
    """Horizontal bars of each chapter's execution time; returns the matplotlib Axes."""
    import matplotlib.pyplot as plt

    table = chapter_table(run)
    fig, ax = plt.subplots(figsize=(7, 0.4 * max(len(table), 2) + 1))
    if table.empty:
        ax.text(0.5, 0.5, "no build record yet", ha="center", va="center")
        ax.set_axis_off()
        return ax
    colours = ["tab:green" if s == "ok" else "tab:red" for s in table["status"]]
    ax.barh(table["chapter"], table["seconds"], color=colours)
    ax.invert_yaxis()
    ax.set_xlabel("seconds (when the chapter last executed)")
    ax.set_title(f"Execution time per chapter, profile {run['profile']}")
    fig.tight_layout()
    return ax
