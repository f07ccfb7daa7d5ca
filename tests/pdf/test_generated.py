"""Figures and tables from a generated article with known content (see pdfgen.article)."""

from __future__ import annotations

import json

import pytest

from medsim.config import ExtractParams
from medsim.pdf.extract import extract_pdf
from tests.pdf import pdfgen


@pytest.fixture(scope="module")
def article(tmp_path_factory):
    path = pdfgen.article(tmp_path_factory.mktemp("gen") / "article.pdf")
    return extract_pdf(path, "doc1", ExtractParams())


def test_every_figure_found_once_with_its_caption(article):
    expected = pdfgen.ARTICLE_TRUTH["figures"]
    assert len(article.figures) == len(expected)
    for page, label in expected:
        hits = [r for r in article.figures if r["page"] == page and r["caption"].startswith(label)]
        assert len(hits) == 1, (page, label)
    (logo,) = article.skipped  # the 20 pt logo on page 1, logged as no figure
    assert logo[0] == "doc1:p1:g1" and logo[1].startswith("uncaptioned graphic: small")
    assert logo[2] == "bbox 540,60,560,80 pt"


def test_logo_dropped_and_tiles_merged(article):
    page1 = [r for r in article.figures if r["page"] == 1]
    assert all(r["bbox"][0] < 500 for r in page1)  # the 20 pt logo at x=540 is no figure
    tiled = next(r for r in article.figures if r["caption"].startswith("Figure 3"))
    assert tiled["bbox"] == pytest.approx([70, 220, 270, 380], abs=1)  # four tiles, one figure


def test_vector_chart_includes_its_tick_labels(article):
    chart = next(r for r in article.figures if r["caption"].startswith("Fig. 2"))
    x0, y0, x1, y1 = chart["bbox"]
    assert x0 <= 150 and x1 >= 450 and y0 <= 390
    assert y1 > 522  # the G1..G5 labels under the axis
    assert y1 < 540  # but not the caption


def test_figure_rows_render_their_box(article):
    dpi = ExtractParams().dpi
    first = next(r for r in article.figures if r["caption"].startswith("Figure 1"))
    assert first["bbox"] == pytest.approx([150, 120, 450, 300], abs=0.5)
    assert first["width"] == pytest.approx(300 * dpi / 72, abs=1.5)  # MuPDF rounds outwards
    assert first["height"] == pytest.approx(180 * dpi / 72, abs=1.5)
    assert first["image"].startswith(b"\x89PNG")
    assert first["figure_id"] == "doc1:p1:f1"
    assert len({r["sha256"] for r in article.figures}) == len(article.figures)


def test_rotated_page_figure_is_upright(article):
    row = next(r for r in article.figures if r["page"] == 3)
    assert row["caption"].startswith("Figure 4")
    assert row["width"] > row["height"]  # a 300 x 180 pt landscape image, rendered upright


def test_tables_ruled_unruled_and_rotated(article):
    by_page = {row["page"]: row for row in article.tables}
    assert sorted(by_page) == [1, 2, 3]
    for page, label, cells in pdfgen.ARTICLE_TRUTH["tables"]:
        row = by_page[page]
        assert row["caption"].startswith(label)
        assert json.loads(row["cells"]) == cells
        assert row["text"].splitlines()[1] == " | ".join(cells[0])
    assert by_page[1]["flavor"] == "lattice"  # ruled grid
    assert by_page[2]["flavor"] == "stream"  # whitespace only, in a two-column page
    assert by_page[3]["flavor"] == "lattice"  # ruled, on a /Rotate 90 page
    assert by_page[2]["table_id"] == "doc1:p2:t1"
