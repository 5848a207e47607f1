"""Compare two results folders: every non-timing value must be equal.

A reshaping of the code that claims to leave the book's numbers unchanged is checked by building
the book before and after and running ``python -m dlbook compare-results BEFORE AFTER``. Timing
values (seconds, rates, speed-ups, frame rates) differ from run to run and are ignored; so are the
build's own records (``run.json``, ``bench.json``), which hold timings and provenance.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

TIMING_KEY = re.compile(
    r"(seconds|_s$|_s_|_ms$|_ms_|_per_s|per_second|fps|frames_per|latency|throughput|speedup|"
    r"speed_up|wall|elapsed|timing|_time$|_time_|time_s|_over_keras|gflop_per_s|images_s|fastest)",
    re.IGNORECASE,
)
"""Key names whose values are measured durations or rates, or ratios of them."""
SKIPPED_FILES = ("run.json", "bench.json")


@dataclass
class Comparison:
    """What differs between two results folders (timing keys left out)."""

    changed: dict[str, tuple] = field(default_factory=dict)  # "chapter:key" -> (before, after)
    only_before: list[str] = field(default_factory=list)
    only_after: list[str] = field(default_factory=list)
    compared: int = 0
    timing_skipped: int = 0

    @property
    def equal(self) -> bool:
        return not (self.changed or self.only_before or self.only_after)

    def report(self) -> str:
        lines = [
            f"{self.compared} values compared, {self.timing_skipped} timing values ignored: "
            + ("all equal" if self.equal else "DIFFERENCES")
        ]
        lines += [
            f"changed {name}: {a!r} -> {b!r}" for name, (a, b) in sorted(self.changed.items())
        ]
        lines += [f"only before: {name}" for name in self.only_before]
        lines += [f"only after: {name}" for name in self.only_after]
        return "\n".join(lines)


def is_timing(key: str) -> bool:
    """True for a key that names a duration, a rate or a ratio of them."""
    return bool(TIMING_KEY.search(key))


def _same(a, b, rel_tol: float) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or math.isclose(a, b, rel_tol=rel_tol, abs_tol=0.0)
    return a == b


def flatten(value, prefix: str = "") -> dict:
    """Nested dicts and lists as one flat ``{dotted.key: scalar}`` dict; a list of dicts that
    carry an ``id`` (the claims file) is keyed by those ids, other lists by position."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        keyed = all(isinstance(v, dict) and "id" in v for v in value) and value
        items = ((v["id"], v) for v in value) if keyed else enumerate(value)
    else:
        return {prefix: value}
    flat = {}
    for key, item in items:
        flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _chapters(folder: Path) -> dict[str, dict]:
    return {
        p.stem: flatten(json.loads(p.read_text()))
        for p in sorted(folder.glob("*.json"))
        if p.name not in SKIPPED_FILES
    }


def compare(before: str | Path, after: str | Path, rel_tol: float = 0.0) -> Comparison:
    """Compare every ``<chapter>.json`` of two results folders, key by key.

    Parameters
    ----------
    before, after : folders such as ``results/full`` of two builds.
    rel_tol : relative tolerance for floats; 0 demands equality to the last bit.
    """
    old, new = _chapters(Path(before)), _chapters(Path(after))
    if not old:
        raise FileNotFoundError(f"{before} holds no chapter results (*.json)")
    found = Comparison()
    for chapter in sorted(set(old) | set(new)):
        a, b = old.get(chapter, {}), new.get(chapter, {})
        for key in sorted(set(a) | set(b)):
            name = f"{chapter}:{key}"
            if is_timing(key):
                found.timing_skipped += 1
            elif key not in b:
                found.only_before.append(name)
            elif key not in a:
                found.only_after.append(name)
            else:
                found.compared += 1
                if not _same(a[key], b[key], rel_tol):
                    found.changed[name] = (a[key], b[key])
    return found
