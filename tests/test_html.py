"""The rendered pages show no machinery: checked on small pages here and on ``_build/html``."""

from pathlib import Path

import pytest

from dlbook.book import build
from dlbook.core import paths

PAGE = """<html><head>{head}</head><body><main>{body}</main></body></html>"""
LOCAL_MATHJAX = '<script defer src="../_static/mathjax/tex-chtml.js"></script>'


def _check(tmp_path, body, head=LOCAL_MATHJAX, others=None):
    (tmp_path / "chapters").mkdir(exist_ok=True)
    (tmp_path / "chapters" / "page.html").write_text(PAGE.format(head=head, body=body))
    for name, text in (others or {}).items():
        (tmp_path / "chapters" / name).write_text(PAGE.format(head="", body=text))
    return build.check_html(tmp_path, checkout=Path("/work/checkout"))


def test_a_clean_page_has_no_problems(tmp_path):
    body = (
        "<p>Accuracy 98.2% (95% CI 97.1%-99.0%).</p>"
        "<table><tr><th>model</th><td>0.00249</td><td>not run</td><td>1.2e-05</td></tr></table>"
        '<a href="other.html#a-section">there</a> <a href="https://example.org/#x">out</a>'
    )
    others = {"other.html": '<section id="a-section"><h2>A section</h2></section>'}
    assert _check(tmp_path, body, others=others) == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("<pre>PosixPath('/x/results/full/a.json')</pre>", "Python path repr"),
        ("<pre>WARNING:tensorflow:5 out of the last 7 calls</pre>", "library warning"),
        ("<pre>Traceback (most recent call last):</pre>", "traceback"),
        ("<p>URLError: Name or service not known</p>", "network error"),
        ("<td>/root/.keras/models/x.h5</td>", "/root/.keras/models/x.h5"),
        ("<p>/work/checkout/results/smoke</p>", "path of the checkout"),
        ("<table><tr><td>nan</td></tr></table>", "reads 'nan'"),
        ("<table><tr><td>None</td></tr></table>", "reads 'None'"),
        ("<table><tr><td>0.849123</td></tr></table>", "5 or more decimals"),
        ('<a href="other.html#gone">x</a>', "missing section"),
        ('<a href="nowhere.html#x">x</a>', "missing page"),
    ],
)
def test_each_kind_of_machinery_is_found(tmp_path, body, expected):
    problems = _check(tmp_path, body, others={"other.html": "<h2 id='here'>Here</h2>"})
    assert len(problems) == 1 and expected in problems[0], problems
    assert problems[0].startswith("chapters/page.html: ")


def test_maths_only_from_the_network_is_a_problem(tmp_path):
    cdn = '<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>'
    assert "network" in _check(tmp_path, "<p>x</p>", head=cdn)[0]
    with_fallback = LOCAL_MATHJAX + cdn
    assert _check(tmp_path, "<p>x</p>", head=with_fallback) == []


def test_the_rendered_book_shows_no_machinery():
    html = paths.REPO_ROOT / "_build" / "html"
    if not html.is_dir():
        pytest.skip("no rendered book (_build/html); run python -m dlbook build first")
    problems = build.check_html(html)
    assert not problems, f"{len(problems)} problems on the rendered pages:\n" + "\n".join(problems)
