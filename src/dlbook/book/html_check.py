"""What a reader should never see on the rendered pages: ``check_html``.

The build runs it on the HTML that ``jupyter-book build`` wrote and logs each problem it finds:
machinery (a path repr, a library warning, a traceback), unformatted table cells, maths that
needs the network, links to sections that do not exist.
"""

from __future__ import annotations

import re
from pathlib import Path

from dlbook.core import paths

MACHINERY = (
    ("PosixPath(", "a Python path repr"),
    ("WARNING:", "a library warning"),
    ("Traceback", "a traceback"),
    ("URLError", "a network error"),
)
MISSING_CELLS = {"nan", "NaN", "None", "<NA>", "NaT"}
LONG_DECIMALS = re.compile(r"(?<![\w.])-?\d+\.\d{5,}(?![\w.])")
"""A number with 5 or more decimals; flagged when it also has more than 4 significant digits."""
ROOT_PATH = re.compile(r"/root/[\w.~/-]+")
NETWORK = re.compile(r"^(https?:)?//", re.IGNORECASE)


def _too_precise(number: str) -> bool:
    """5 or more decimals, more than 4 significant digits: ``0.849123`` is, ``0.00249`` is not."""
    return len(number.lstrip("-").lstrip("0").replace(".", "").lstrip("0")) > 4


def _page_problems(text_html: str, name: str, checkout: Path, ids_of) -> list[str]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text_html, "html.parser")
    problems = []
    maths = [
        tag.get("src", "")
        for tag in soup.find_all("script")
        if re.search(r"mathjax|katex", tag.get("src", ""), re.IGNORECASE)
    ]
    if maths and all(NETWORK.match(src) for src in maths):
        problems.append(f"{name}: maths is loaded only from the network ({maths[0]})")
    body = soup.find("main") or soup.body or soup
    for tag in body.find_all(["script", "style"]):
        tag.decompose()
    text = body.get_text(" ")
    for needle, what in MACHINERY:
        if needle in text:
            problems.append(f"{name}: {what} ({needle!r}) on the page")
    for path in sorted(set(ROOT_PATH.findall(text))):
        problems.append(f"{name}: a path of the build machine ({path})")
    if str(checkout) in text:
        problems.append(f"{name}: a path of the checkout ({checkout})")
    for cell in body.find_all(["td", "th"]):
        value = cell.get_text(" ", strip=True)
        if value in MISSING_CELLS:
            problems.append(f"{name}: a table cell reads {value!r}")
        elif any(_too_precise(number) for number in LONG_DECIMALS.findall(value)):
            problems.append(f"{name}: a table cell with 5 or more decimals ({value!r})")
    for link in body.find_all("a", href=True):
        href = link["href"]
        if NETWORK.match(href) or "#" not in href or href.startswith(("#", "mailto:")):
            continue
        target, anchor = href.split("#", 1)
        ids = ids_of(target)
        if ids is None:
            problems.append(f"{name}: a link to a missing page ({href})")
        elif anchor and anchor not in ids:
            problems.append(f"{name}: a link to a missing section ({href})")
    return problems


def check_html(folder, checkout=None) -> list[str]:
    """What a reader should never see on the rendered pages under ``folder``, one line each.

    Looks for machinery (a ``PosixPath(`` repr, ``WARNING:``, a ``Traceback``, a ``URLError``, a
    path under ``/root/`` or of the ``checkout``), table cells reading nan or None or with 5 or
    more decimals, maths (MathJax or KaTeX) loaded only from the network, and links to a section
    of another page that does not exist. The theme's own pages (search, index) are skipped.
    """
    from bs4 import BeautifulSoup

    folder = Path(folder)
    checkout = Path(checkout or paths.REPO_ROOT)
    cache: dict[Path, set[str] | None] = {}
    problems = []
    skipped = {"search.html", "genindex.html", "py-modindex.html"}
    for page in sorted(folder.rglob("*.html")):
        relative = page.relative_to(folder)
        if page.name in skipped or relative.parts[0].startswith("_"):
            continue

        def ids_of(target: str, page=page) -> set[str] | None:
            path = (page.parent / target).resolve() if target else page.resolve()
            if path not in cache:
                cache[path] = (
                    {
                        tag["id"]
                        for tag in BeautifulSoup(path.read_text(), "html.parser").find_all(id=True)
                    }
                    if path.is_file()
                    else None
                )
            return cache[path]

        problems += _page_problems(page.read_text(), relative.as_posix(), checkout, ids_of)
    return problems
