"""End-to-end in a real browser: Debian's chromium, headless, driven by Playwright.

Playwright is told where chromium is (``executable_path``), so ``playwright install`` is never
needed. Without chromium these tests skip on a developer's machine but fail under CI
(``CI=true``), where ``.ci/run`` installs it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.search.corpus import DOCS

CHROMIUM = os.environ.get("MEDSIM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
D2_TEXT = f"{DOCS[1][4]} {DOCS[1][5]}"

pytestmark = pytest.mark.slow


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    if not Path(CHROMIUM).is_file():
        return f"chromium not found at {CHROMIUM} (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture(scope="module")
def browser():
    reason = _missing()
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"browser tests cannot run under CI: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    """A fresh page that records every URL it requests (all must stay on the server)."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(60_000)  # a shared 2-core machine can be slow to embed a query
    page.requested = []
    page.on("request", lambda request: page.requested.append(request.url))
    yield page
    assert all(url.startswith(live_server) for url in page.requested), page.requested
    context.close()


def _thumbnails_loaded(page) -> int:
    return page.eval_on_selector_all(
        ".card img.thumb", "imgs => imgs.filter(i => i.complete && i.naturalWidth > 0).length"
    )


def test_type_a_query_and_see_cards_with_thumbnails(page, live_server):
    page.goto(live_server)
    page.fill("input[name=q]", D2_TEXT)
    page.press("input[name=q]", "Enter")
    page.wait_for_selector(".results .card")
    cards = page.locator(".results .card")
    assert cards.count() == 10
    first = cards.first
    assert first.get_attribute("data-type") == "document"
    assert first.locator("h3").inner_text() == DOCS[1][4]
    assert "PMID 1002" in first.locator(".links").inner_text()
    assert first.locator("a", has_text="PMID 1002").get_attribute("href") == (
        "https://pubmed.ncbi.nlm.nih.gov/1002/"
    )
    page.wait_for_function(
        "() => [...document.querySelectorAll('.card img.thumb')].every(i => i.complete)"
    )
    figures = page.locator(".results .card.figure").count()
    assert figures >= 1 and page.locator(".card.figure img.thumb").count() == figures
    assert _thumbnails_loaded(page) == page.locator(".card img.thumb").count() >= figures


def test_filter_by_result_type(page, live_server):
    page.goto(f"{live_server}/?q=chest+CT")
    page.check("form.filter input[value=figure]")  # the page's script submits on change
    page.wait_for_url("**type=figure**")
    types = page.eval_on_selector_all(".results .card", "cs => cs.map(c => c.dataset.type)")
    assert types == ["figure"] * 3


def test_open_a_why_similar_view(page, live_server):
    page.goto(f"{live_server}/?q=" + D2_TEXT.replace(" ", "+"))
    page.locator(".results .card").first.locator("a.why").click()
    page.wait_for_selector(".why-view")
    assert "Why is this close" in page.locator("h2").inner_text()
    assert "Cosine in the shared space: 1.000" in page.locator(".cosine").inner_text()
    sentences = page.locator("ol.sentences li")
    # d2's three parts (title line and two sentences) toward the query, and the query's
    # two sentences (typed on one line, the title runs into the first) toward d2
    assert sentences.count() == 5
    assert page.locator("table.neighbours tr").count() >= 2
    page.click("text=back to the results")
    page.wait_for_selector(".results .card")


def test_upload_an_image(page, live_server, project):
    page.goto(live_server)
    page.set_input_files("input[name=image]", str(project / "figure1.png"))
    page.click("form.image-search button")
    page.wait_for_selector(".results .card")
    first = page.locator(".results .card").first
    assert first.get_attribute("data-type") == "figure"
    assert first.locator(".ident").inner_text() == "f2"
    assert "score 1.000" in first.locator(".meta").inner_text()
    # the why view of an image query finds the image again by its in-memory token
    first.locator("a.why").click()
    page.wait_for_selector(".why-view")
    assert "the uploaded image" in page.locator("h2").inner_text()


def test_unreadable_upload_shows_one_line(page, live_server, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    page.goto(live_server)
    page.set_input_files("input[name=image]", str(bad))
    page.click("form.image-search button")
    alert = page.locator(".error")
    assert "not a readable image" in alert.inner_text()


def test_document_page_lists_figures(page, live_server):
    page.goto(f"{live_server}/doc?id=1001")
    assert page.locator("h2").inner_text() == DOCS[0][4]
    assert page.locator(".figures figure").count() == 1
    page.wait_for_function("() => document.querySelector('.figures img').naturalWidth > 0")


def test_classify_a_pasted_text_and_see_the_evidence(page, live_server):
    page.goto(live_server)
    page.click("a.nav")
    page.wait_for_selector(".classify-view")
    page.fill("textarea[name=q]", D2_TEXT)
    page.click("form.classify-text button")
    page.wait_for_selector(".prediction")
    label = page.locator(".prediction .label strong").inner_text()
    assert label in {"breast", "lung", "melanoma"}
    classes = page.eval_on_selector_all(
        "table.classes tr td:first-child", "cells => cells.map(c => c.innerText)"
    )
    assert sorted(classes) == ["breast", "lung", "melanoma"]
    cards = page.locator(".results .card")
    assert cards.count() == 5  # every training document of the tiny corpus, nearest first
    first = cards.first
    assert first.locator("h3").inner_text() == DOCS[1][4]
    assert first.locator(".badge.class-label").inner_text().lower() == "breast"
    assert "score 1.000" in first.locator(".meta").inner_text()
    # the pasted text stays in the box, so it can be edited and classified again
    assert page.input_value("textarea[name=q]") == D2_TEXT


def test_classify_a_dropped_figure_and_a_bad_file(page, live_server, project, tmp_path):
    page.goto(f"{live_server}/classify")
    page.set_input_files("input[name=file]", str(project / "figure1.png"))
    page.click("form.classify-file button")
    page.wait_for_selector(".prediction")
    assert "image: figure1.png" in page.locator(".prediction .query").inner_text()
    assert page.locator(".results .card").count() == 5
    bad = tmp_path / "scan.pdf"
    bad.write_bytes(b"%PDF-1.4\nnot really a PDF")
    page.goto(f"{live_server}/classify")
    page.set_input_files("input[name=file]", str(bad))
    page.click("form.classify-file button")
    assert "cannot read PDF" in page.locator(".error").inner_text()
