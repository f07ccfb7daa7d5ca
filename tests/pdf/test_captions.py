"""Caption detection and caption-to-region association, on tiny generated pages."""

from __future__ import annotations

import pymupdf
import pytest

from medsim.pdf.captions import Caption, find_captions, nearest_caption


def _page(lines: list[tuple[float, str, float]]) -> pymupdf.Page:
    doc = pymupdf.open()
    page = doc.new_page()
    for y, text, size in lines:
        page.insert_text((72, y), text, fontsize=size, fontname="helv")
    page.doc_ref = doc  # keep the document alive with the page
    return page


@pytest.mark.parametrize(
    ("text", "kind", "label"),
    [
        ("Figure 3. Kaplan-Meier curves", "figure", "Figure 3"),
        ("Fig. 2: Dose response", "figure", "Fig. 2"),
        ("FIGURE 1 Flow chart", "figure", "FIGURE 1"),
        ("Figure S2 GRID fields", "figure", "Figure S2"),
        ("Scheme 1 Synthesis", "figure", "Scheme 1"),
        ("Table 2 (continued)", "table", "Table 2"),
        ("Table IV. Baseline characteristics", "table", "Table IV"),
        ("TABLE 1 Summary", "table", "TABLE 1"),
    ],
)
def test_caption_labels(text, kind, label):
    (caption,) = find_captions(_page([(100, text, 9)]))
    assert (caption.kind, caption.label, caption.text) == (kind, label, text)


@pytest.mark.parametrize(
    "text", ["Table 1 shows the results of the trial", "Figures were drawn", "Tablet doses"]
)
def test_running_text_is_no_caption(text):
    assert find_captions(_page([(100, text, 9)])) == []


def test_caption_is_whole_and_stops_at_the_paragraph():
    page = _page(
        [
            (100, "Figure 1. Survival by stage", 8),
            (110, "for all patients treated.", 8),
            (150, "The next paragraph is body text.", 10),
        ]
    )
    (caption,) = find_captions(page)
    assert caption.text == "Figure 1. Survival by stage for all patients treated."


def test_caption_glued_to_the_paragraph_above_is_found():
    page = pymupdf.open().new_page()
    page.insert_textbox(
        pymupdf.Rect(72, 90, 400, 200),
        "body text that ends here.\nTable 1. Doses given",
        fontsize=10,
    )
    captions = find_captions(page)
    assert [c.label for c in captions] == []  # same font, no gap: it is running text
    page.insert_text((72, 130), "Table 2. Doses given", fontsize=7, fontname="hebo")
    assert [c.label for c in find_captions(page)] == ["Table 2"]


def _cap(kind, x0, y0, x1, y1, label="Figure 1"):
    return Caption(kind, label, label, pymupdf.Rect(x0, y0, x1, y1))


def test_nearest_caption_prefers_below_and_respects_the_gap():
    region = pymupdf.Rect(100, 100, 300, 200)
    below = _cap("figure", 100, 210, 300, 220, "Figure 2")
    above = _cap("figure", 100, 85, 300, 95, "Figure 1")
    assert nearest_caption(region, [above, below], "figure").label == "Figure 2"
    assert nearest_caption(region, [above], "figure").label == "Figure 1"
    far = _cap("figure", 100, 400, 300, 410)
    assert nearest_caption(region, [far], "figure", max_gap=72) is None
    other_column = _cap("figure", 350, 210, 550, 220)
    assert nearest_caption(region, [other_column], "figure") is None
    assert nearest_caption(region, [below], "table") is None
