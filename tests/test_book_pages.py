"""The claims page's cards and the reproducibility page's record, as a reader sees them."""

from dlbook.book import claims
from dlbook.plots import book

RUN = {
    "profile": "full",
    "seed": 0,
    "started_at": "2026-11-25T12:00:00+00:00",
    "cpu_count": 2,
    "platform": "Linux",
    "git_commit": "0123456789abcdef0123-dirty",
    "packages": {"numpy": "2.4.0"},
    "data_dir": "/work/shared/data/face-mask",
    "data_verified": True,
    "data_manifest_sha256": "ab" * 32,
    "chapters": {
        "fundamentals": {"status": "ok", "seconds": 60.0, "cached": True},
        "conformal": {"status": "ok", "seconds": 22.0, "cached": False},
        "claims": {"status": "ok", "seconds": 2.0, "cached": False},
    },
}


def test_describe_run_hides_the_data_path_and_explains_reused_chapters():
    text = book.describe_run(RUN)
    assert "/work/" not in text and "face-mask images" in text
    assert "executed 2 pages (24 s of page time, added up)" in text and "reused 1 chapter" in text
    assert "uncommitted changes" in text


def test_chapter_table_is_formatted_by_present():
    table = book.show_chapter_table(RUN).data
    assert list(table["this build"]) == ["reused", "ran", "ran"]
    assert list(table["seconds"]) == ["60", "22", "2"]
    assert "error" not in table.columns


def test_budget_in_words():
    budget = {"images": 600, "pixels": "16,32,64", "epoch_cap": 80, "seeds": 5}
    assert (
        book.describe_budget(budget)
        == "600 images · 16, 32 and 64 px · at most 80 epochs · 5 seeds"
    )
    assert book.describe_budget({}) == "not recorded"


def test_claim_cards_link_to_the_chapter_section_and_escape_text():
    rows = claims.evaluate({})
    html = book.claim_cards(rows, kinds=[claims.FINDING]).data
    assert html.count('class="dlbook-claim"') == sum(r["kind"] == claims.FINDING for r in rows)
    assert 'href="01_fundamentals.html#ann-vs-cnn"' in html and "“ANN vs CNN”" in html
    assert "&quot;perfect recall&quot;" in html
    assert "dlbook-verdict-not-measured" in html


def test_a_claim_of_a_chapter_not_in_the_book_has_no_dead_link(monkeypatch):
    monkeypatch.setattr(book, "_chapters_in_book", lambda: {"fundamentals"})
    rows = claims.evaluate({})
    html = book.claim_cards(rows, kinds=[claims.FUTURE_WORK]).data
    assert "href" not in html and "not in this build of the book" in html
