"""Figures as a reader counts them on harder generated layouts (see pdfgen.LAYOUTS).

Grids of panels, side captions, figures captioned overleaf, raster images with vector
overlays, and graphics that are no figures (banners, badges, icons, equation images).
"""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest

from medsim.config import ExtractParams
from medsim.pdf.captions import Caption
from medsim.pdf.extract import extract_pdf
from medsim.pdf.figures import _caption_side, _clear
from tests.pdf import groundtruth as gt
from tests.pdf import pdfgen

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("layouts")
    out = {}
    for name, (build, _) in pdfgen.LAYOUTS.items():
        out[name] = extract_pdf(build(folder / name), name, ExtractParams())
    return out


@pytest.mark.parametrize("name", sorted(pdfgen.LAYOUTS))
def test_one_row_per_captioned_figure(extracted, name):
    truth = pdfgen.LAYOUTS[name][1]
    rows = extracted[name].figures
    pairs = gt.match_figures(truth, rows)
    assert len(pairs) == len(truth) == len(rows), [(r["page"], r["bbox"]) for r in rows]
    for i, j in pairs:
        assert rows[j]["caption"].startswith(truth[i][1])


def test_grid_keeps_its_panels_in_one_row(extracted):
    first, second = extracted["grid.pdf"].figures
    assert len(first["panels"]) == 6  # the 2x3 plots
    assert len(second["panels"]) == 4  # the 2x2 micrographs, though the top row is nearer
    assert second["bbox"][1] < 470  # the top row (and its letters) belongs to Figure 2
    assert first["bbox"][3] < 432  # and not to Figure 1 above its caption


def test_overleaf_caption_goes_to_the_figure_page(extracted):
    rows = extracted["overleaf.pdf"].figures
    assert [(r["page"], r["caption"][:8]) for r in rows] == [(2, "Figure 1"), (4, "Figure 2")]
    assert [r["figure_id"] for r in rows] == ["overleaf.pdf:p2:f1", "overleaf.pdf:p4:f1"]


def test_uncaptioned_graphics_are_skipped_with_a_reason(extracted):
    skipped = {item: (reason, box) for item, reason, box in extracted["logos.pdf"].skipped}
    reasons = sorted(reason.split(":")[1].split("(")[0].strip() for reason, _ in skipped.values())
    # banner, badge and footer logo in the margins; the equation image in the text
    assert reasons == [
        "in the page margin",
        "in the page margin",
        "in the page margin",
        "small or thin",
    ]
    assert skipped["logos.pdf:p1:g4"][1] == "bbox 230,286,380,310 pt"
    (mixed_skip,) = extracted["mixed.pdf"].skipped
    assert mixed_skip[2] == "bbox 200,428,410,446 pt"  # the equation image, not a figure


def _caption(rect: tuple[float, float, float, float]) -> Caption:
    return Caption("figure", "Figure 1", "Figure 1. A caption.", pymupdf.Rect(rect))


def test_caption_side_flush_left_short_caption_counts_as_below():
    figure = pymupdf.Rect(150, 400, 460, 600)
    assert _caption_side(figure, _caption((50, 610, 186, 621))) == (10, "below")
    assert _caption_side(figure, _caption((470, 420, 560, 500))) == (10, "beside")
    assert _caption_side(figure, _caption((470, 610, 560, 620)))[1] is None  # right of it


def test_body_text_and_captions_separate_graphics():
    a, b = pymupdf.Rect(50, 100, 250, 200), pymupdf.Rect(50, 230, 250, 330)
    short = [pymupdf.Rect(40, 210, 52, 220)]  # a panel letter
    body = [pymupdf.Rect(50, 205, 250, 214), pymupdf.Rect(50, 216, 250, 225)]
    assert _clear(a, b, [], short)
    assert _clear(a, b, [], body[:1])  # one line: a sub-caption
    assert not _clear(a, b, [], body)
    assert not _clear(a, b, [_caption((50, 205, 250, 225))], [])


def test_real_framed_flow_chart(tmp_path):
    """BMC sets figure and caption in one frame: the frame is no caption background."""
    name = "cermine-web_example2.pdf"
    result = extract_pdf(FIXTURES / name, name, ExtractParams())
    truth = gt.LAYOUT_FIGURES[name]
    (row,) = result.figures
    assert gt.match_figures(truth, result.figures) == [(0, 0)]
    assert row["caption"].startswith("Figure 1 Patient flow pattern")
    assert row["bbox"][3] < 245  # cut above the caption inside the frame
