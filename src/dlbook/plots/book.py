"""The book's own pages: the claims, checked, and how the book was built.

``claim_cards`` lays the judged claims (``dlbook.book.claims.write``) out as cards, two or three a row
on a desktop and one a row on a phone (``_static/dlbook.css``); ``describe_run``,
``chapter_table`` and ``plot_chapter_seconds`` show a build record ``run.json``.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from dlbook.book import present

SECTION_TITLES = {
    "01_fundamentals.html#ann-vs-cnn": "ANN vs CNN",
    "02_optimization.html#regularisation-which-one-wins": "Regularisation: which one wins?",
    "02_optimization.html#learning-rate-sweep": "Learning-rate sweep",
    "04_mask_detection.html#evaluation-on-the-test-split": "Evaluation on the test split",
    "05_active_learning.html#seven-strategies-and-a-variant-against-random-sampling": (
        "Seven strategies against random sampling"
    ),
    "06_conformal.html#coverage-over-many-re-splits": "Coverage over many re-splits",
}
"""Link text of the chapter sections the claims point at (anchors as Sphinx makes them)."""

CHAPTER_TITLES = {
    "fundamentals": "1. Fundamentals",
    "optimization": "2. Optimisation",
    "architectures": "3. Architectures",
    "mask_detection": "4. Face-mask detection",
    "active_learning": "5. Active learning",
    "conformal": "6. Conformal prediction",
    "future_work": "7. Future work",
    "claims": "The claims, checked",
    "reproducibility": "How this book was built",
}


# ---------------------------------------------------------------------------------------------
# The claims page


def _slug(verdict: str) -> str:
    return verdict.replace(" ", "-")


def describe_budget(budget: dict) -> str:
    """A budget in words: ``{"pixels": 64, "seeds": 3} -> "64 px · 3 seeds"``."""
    if not budget:
        return "not recorded"
    parts = []
    for key, value in budget.items():
        if key == "pixels":
            sizes = [s.strip() for s in str(value).split(",") if s.strip()]
            parts.append(
                (", ".join(sizes[:-1]) + " and " + sizes[-1] if len(sizes) > 1 else sizes[0])
                + " px"
            )
        elif key == "epoch_cap":
            parts.append(f"at most {present.number(value)} epochs")
        else:
            words = {
                "images": "images",
                "epochs": "epochs",
                "seeds": "seeds",
                "folds": "folds",
                "labels": "labels",
                "resplits": "re-splits",
                "learning_rates": "learning rates",
                "clients": "clients",
                "rounds": "rounds",
            }.get(key, key.replace("_", " "))
            parts.append(f"{present.number(value)} {words}")
    return " · ".join(parts)


def _chapters_in_book() -> set[str]:
    from dlbook.book.build import CHAPTERS

    return {chapter.name for chapter in CHAPTERS}


def _card(row: dict, texts: dict[str, str]) -> str:
    e = html.escape
    section = row.get("section") or ""
    title = SECTION_TITLES.get(section, "")
    where = CHAPTER_TITLES.get(row["chapter"], row.get("where", ""))
    link_text = f"Chapter {where}" + (f", “{title}”" if title else "")
    measured = row["measured"] != "-"
    fields = [("Measured", e(row["measured"]) if measured else "nothing")]
    if row.get("external"):
        fields.append(("External test", e(row["external"])))
    if measured:
        fields.append(("Budget", e(describe_budget(row.get("budget") or {}))))
    if row.get("margin"):
        declared = f"margin {row['margin']}; evidence: {row.get('evidence', '')}"
        fields.append(("Declared", e(declared.removesuffix("; evidence: "))))
    if row.get("read"):
        fields.append(("Rule read", e(row["read"])))
    if row.get("note"):
        fields.append(("Why", e(row["note"])))
    rule = e(row.get("rule", ""))
    fields.append(("Numbers", f"<details><summary>what is read</summary>{rule}</details>"))
    if section and row["chapter"] in _chapters_in_book():
        fields.append(("Where", f'<a href="{e(section)}">{e(link_text)}</a>'))
    else:
        fields.append(("Where", e(link_text) + " (not in this build of the book)"))
    body = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in fields)
    verdict = row["verdict"]
    counted = (
        '<p class="dlbook-claim-counted">Counted once, with the claim '
        f"“{e(texts.get(row['counted_with'], row['counted_with']))}”.</p>"
        if row.get("counted_with")
        else ""
    )
    return (
        f'<article class="dlbook-claim" id="claim-{e(row["id"])}">'
        f'<p class="dlbook-claim-head"><span class="dlbook-verdict '
        f'dlbook-verdict-{_slug(verdict)}">{e(verdict)}</span> '
        f"<strong>{e(row['text'])}</strong></p>{counted}<dl>{body}</dl></article>"
    )


def rule_table(table):
    """A verdict table (``claims.RULE_TABLE`` or ``claims.METHOD_TABLE``), read top to bottom,
    formatted for the page."""
    import pandas as pd

    frame = pd.DataFrame(table, columns=["verdict", "when (the first row that applies)"])
    # sentences, not numbers: wrapped and read from the left (``dlbook-prose`` in dlbook.css)
    return present.show(frame).set_table_attributes('class="dlbook-table dlbook-prose"')


def claim_cards(rows: list[dict], kinds=("finding",)):
    """The judged claims of ``kinds`` as HTML cards (an ``IPython.display.HTML``)."""
    from IPython.display import HTML

    chosen = [row for row in rows if row["kind"] in kinds]
    if not chosen:
        return HTML("<p>No claims of this kind.</p>")
    texts = {row["id"]: row["text"] for row in rows}
    cards = "".join(_card(row, texts) for row in chosen)
    return HTML('<div class="dlbook-claims">' + cards + "</div>")


# ---------------------------------------------------------------------------------------------
# The reproducibility page


def load_run(results_dir) -> dict:
    """The build record ``run.json`` of ``results_dir``, or {} when no build has run yet."""
    path = Path(results_dir) / "run.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _executed_and_reused(run: dict) -> tuple[list[str], list[str]]:
    chapters = run.get("chapters", {})
    executed = [n for n, c in chapters.items() if not c.get("cached") and c["status"] != "not run"]
    reused = [n for n, c in chapters.items() if c.get("cached")]
    return executed, reused


def describe_run(run: dict) -> str:
    """A Markdown paragraph summarising a build record (no path of the build machine)."""
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
    executed, reused = _executed_and_reused(run)
    seconds = sum(run["chapters"][n]["seconds"] for n in executed)
    timing = (
        f"This build executed {len(executed)} page{'s' if len(executed) != 1 else ''} "
        f"({present.number(seconds)} s of page time, added up)"
    )
    if reused:
        earlier = sum(run["chapters"][n]["seconds"] for n in reused)
        timing += (
            f" and reused {len(reused)} chapter{'s' if len(reused) != 1 else ''} executed by an "
            f"earlier build, unchanged since (they took {present.number(earlier)} s then; the "
            "table's seconds are each page's time when it last ran)"
        )
    commit = run.get("git_commit") or "unknown"
    return (
        f"Profile **{run['profile']}**, seed {run['seed']}, started {run['started_at']} on "
        f"{run['cpu_count']} CPU cores ({run['platform']}); commit `{commit[:12]}`"
        f"{' with uncommitted changes' if commit.endswith('-dirty') else ''}. "
        f"Data: the face-mask images, {verified} (manifest sha256 "
        f"`{run['data_manifest_sha256'][:16]}…`). {timing}.{describe_use(run)} "
        f"Packages: {packages}."
    )


def describe_use(run: dict) -> str:
    """How busy the build kept the machine: chapters at once, wall and CPU time, CPU use (a
    sentence with a leading space; empty for a record without them)."""
    first = _describe_prepare(run)
    if run.get("cpu_seconds") is None or not run.get("total_seconds"):
        return first  # the page runs inside the build, before its totals are written
    jobs = run.get("jobs", 1)
    at_once = "one chapter at a time" if jobs == 1 else f"up to {jobs} chapters at once"
    cores = run.get("cores_available") or run["cpu_count"]
    took = "took"
    if run.get("totals_cover") == "before the record page":
        took = "had taken, before this page and the rendering of the book,"
    return first + (
        f" It ran {at_once} and {took} {present.number(run['total_seconds'])} s of wall time for "
        f"{present.number(run['cpu_seconds'])} s of CPU time: a CPU use of "
        f"{present.percent(run['utilisation'], 0)} of one core, out of the "
        f"{present.percent(cores, 0)} that its {cores} cores allow."
    )


_STATUS_WORDS = {"ok": "ran", "failed": "failed", "not run": "not run"}


def chapter_table(run: dict):
    """One row per page, in book order, as a DataFrame: whether this build ran it or reused it
    unchanged, its wall seconds when it last ran and, where the build measured them, its CPU
    seconds (the kernel's process tree, user + system) and CPU use (CPU over wall seconds: 2.0
    is two cores busy throughout)."""
    import pandas as pd

    from dlbook.book.build import CHAPTERS, PAGES

    order = {page.name: i for i, page in enumerate(CHAPTERS + PAGES)}
    chapters = sorted(
        run.get("chapters", {}).items(), key=lambda item: order.get(item[0], len(order))
    )
    rows = [
        {
            "page": CHAPTER_TITLES.get(name, name.replace("_", " ")),
            "this build": (
                "reused"
                if info.get("cached")
                else _STATUS_WORDS.get(info["status"], info["status"])
            ),
            "seconds": info["seconds"] if info["status"] != "not run" else None,
            "CPU seconds": info.get("cpu_seconds") if info["status"] != "not run" else None,
            "CPU use": info.get("utilisation") if info["status"] != "not run" else None,
            "error": info.get("error") or "",
        }
        for name, info in chapters
    ]
    columns = ["page", "this build", "seconds", "CPU seconds", "CPU use", "error"]
    frame = pd.DataFrame(rows, columns=columns)
    if not frame["error"].astype(bool).any():
        frame = frame.drop(columns="error")
    if frame["CPU seconds"].isna().all():  # a record from before the build measured CPU time
        frame = frame.drop(columns=["CPU seconds", "CPU use"])
    return frame


def show_chapter_table(run: dict):
    """:func:`chapter_table` formatted for the page by ``dlbook.book.present``."""
    frame = chapter_table(run)
    missing = {"seconds": "never ran", "CPU seconds": "not measured", "CPU use": "not measured"}
    percent = ["CPU use"] if "CPU use" in frame else []
    return present.show(frame, missing=missing, percent_columns=percent)


def plot_chapter_seconds(run: dict):
    """Horizontal bars of each chapter's execution time; returns the matplotlib Axes."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    table = chapter_table(run)
    fig, ax = plt.subplots(figsize=(7, 0.4 * max(len(table), 2) + 1))
    if table.empty:
        ax.text(0.5, 0.5, "no build record yet", ha="center", va="center")
        ax.set_axis_off()
        return ax
    colours = {"ran": "tab:green", "reused": "tab:gray", "failed": "tab:red"}
    ax.barh(
        table["page"],
        table["seconds"].fillna(0),
        color=[colours.get(s, "white") for s in table["this build"]],
    )
    ax.invert_yaxis()
    ax.set_xlabel("seconds (when the page last executed)")
    ax.set_title(f"Execution time per page, profile {run['profile']}")
    shown = [s for s in colours if s in set(table["this build"])]
    labels = {"ran": "ran in this build", "reused": "reused, unchanged", "failed": "failed"}
    handles = [Patch(color=colours[s], label=labels[s]) for s in shown]
    ax.legend(handles=handles, loc="lower right")
    fig.tight_layout()
    return ax


def _describe_prepare(run: dict) -> str:
    """The prepare step of a parallel build (``dlbook.book.prepare``), as a sentence with a
    leading space (empty when the record has none)."""
    step = run.get("prepared")
    if not step:
        return ""
    what = (
        "the backbone features four chapters share, chapter 4's backbone features, "
        "fine-tuning maps and custom-CNN trainings, and chapter 4b's detected faces and "
        "detector maps of the scene photos"
    )
    if step.get("status") == "ok":
        count = f"{step['tasks']} runs: " if step.get("tasks") else ""
        return (
            f" Before the chapters started, the long runs they would otherwise make themselves "
            f"ran side by side on every core ({count}{what}; "
            f"{present.number(step['seconds'])} s, {present.number(step['cpu_seconds'])} CPU s; "
            "little when the cache had them)."
        )
    return (
        f" Before the chapters started, the long runs they share ({what}) were meant to run "
        f"on every core, but that step failed ({step.get('error')}): the chapters made them "
        "themselves."
    )
