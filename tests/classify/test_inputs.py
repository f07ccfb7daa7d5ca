"""Inputs as vectors: a PDF's parts fused by the index's rule, stored documents by id."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pymupdf
from PIL import Image

from medsim.classify.cli import session
from medsim.classify.inputs import pdf_parts

CAPTION = "Figure 1. Chest CT showing a spiculated nodule in the right upper lobe."


def figure_pdf(path: Path) -> Path:
    """A one-page paper: a title line, a 300 px figure and its caption below it."""
    pixels = (np.random.default_rng(0).random((300, 300, 3)) * 255).astype(np.uint8)
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, format="PNG")
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 72), "Low-dose CT screening for lung cancer in heavy smokers.")
    page.insert_image(pymupdf.Rect(72, 120, 372, 420), stream=png.getvalue())
    page.insert_text((72, 440), CAPTION)
    doc.save(path)
    doc.close()
    return path


def test_a_pdf_is_its_text_figures_and_captions_fused(search_project, tmp_path):
    root = search_project
    _, inputs = session(root / "data/index", root / "data/model", root, None)
    path = figure_pdf(tmp_path / "paper.pdf")
    parts = pdf_parts(path)
    assert [c for _, c in parts.figures] == [CAPTION]
    assert parts.text.startswith("Low-dose CT screening")
    query = inputs.pdf(path)
    text = inputs.texts([parts.text])
    caption = inputs.texts([CAPTION], "caption")
    image = inputs.encoder.image_bytes(parts.figures[0][0])
    expected = (text + caption + image) / 3  # the mean over the modalities the document has
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(query.vector, expected, atol=1e-5)
    assert query.source == "pdf" and query.label.startswith("paper.pdf: Low-dose CT")


def test_stored_documents_by_pmid_or_doc_id(search_project):
    root = search_project
    _, inputs = session(root / "data/index", root / "data/model", root, None)
    by_pmid, by_id = inputs.stored("1003"), inputs.stored("d3")
    assert by_pmid.exclude == by_id.exclude == "d3"
    np.testing.assert_array_equal(by_pmid.vector, by_id.vector)
    assert inputs.stored("d6").exclude == "d6"  # no PMID: found by its doc id
    assert inputs.stored("nope") is None
