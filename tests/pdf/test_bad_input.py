"""Bad PDFs and images come back as skipped rows with a reason, never as an exception."""

from __future__ import annotations

import io
from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from medsim.config import ExtractParams
from medsim.pdf import extract as extract_module
from medsim.pdf.extract import corpus_figures, extract_pdf
from tests.pdf import pdfgen

ZERO_PAGES = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)


def _text_pdf(path: Path, pages: int = 1) -> Path:
    doc = pymupdf.open()
    for _ in range(pages):
        pdfgen.paragraph(doc.new_page(), pymupdf.Rect(72, 72, 500, 300))
    doc.save(path)
    return path


def _reason(path: Path, params: ExtractParams | None = None) -> tuple[str, str, str | None]:
    result = extract_pdf(path, "d", params or ExtractParams())
    assert result.figures == [] and result.tables == []
    (skip,) = result.skipped
    assert skip[0] == "d"
    return skip


def test_corrupt_and_missing(tmp_path):
    (tmp_path / "garbage.pdf").write_bytes(b"this is not a PDF at all" * 20)
    assert _reason(tmp_path / "garbage.pdf")[1] == "corrupt"
    truncated = _text_pdf(tmp_path / "t.pdf").read_bytes()[:200]
    (tmp_path / "truncated.pdf").write_bytes(truncated)
    assert _reason(tmp_path / "truncated.pdf")[1] == "corrupt"
    assert _reason(tmp_path / "absent.pdf")[1] == "missing file"


def test_encrypted(tmp_path):
    doc = pymupdf.open()
    pdfgen.paragraph(doc.new_page(), pymupdf.Rect(72, 72, 500, 300))
    path = tmp_path / "locked.pdf"
    doc.save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="user", owner_pw="owner")
    assert _reason(path)[1] == "encrypted"


def test_zero_pages(tmp_path):
    (tmp_path / "empty.pdf").write_bytes(ZERO_PAGES)
    assert _reason(tmp_path / "empty.pdf")[1] == "no pages"


def test_image_only_scan(tmp_path):
    doc = pymupdf.open()
    doc.new_page().insert_image(pymupdf.Rect(0, 0, 612, 792), stream=pdfgen.png(300, 400))
    doc.save(tmp_path / "scan.pdf")
    assert _reason(tmp_path / "scan.pdf")[1] == "image-only"


def test_too_many_pages(tmp_path):
    path = _text_pdf(tmp_path / "long.pdf", pages=3)
    _, reason, detail = _reason(path, ExtractParams(max_pages=2))
    assert reason == "too many pages" and "3 > extract.max_pages=2" in detail


def test_a_crashing_page_loses_only_that_page(tmp_path, monkeypatch):
    doc = pymupdf.open()
    for n in range(1, 4):
        page = doc.new_page()
        page.insert_image(pymupdf.Rect(100, 100, 400, 300), stream=pdfgen.png(300, 200))
        pdfgen.caption(page, pymupdf.Rect(100, 306, 500, 330), f"Figure {n}. A scan.")
    path = tmp_path / "a.pdf"
    doc.save(path)
    real = extract_module.find_figures

    def crash_on_page_two(page, *args):
        if page.number == 1:
            raise RuntimeError("parser bug")
        return real(page, *args)

    monkeypatch.setattr(extract_module, "find_figures", crash_on_page_two)
    result = extract_pdf(path, "a", ExtractParams())
    assert result.skipped == [("a:p2", "page error", "RuntimeError: parser bug")]
    assert {r["page"] for r in result.figures} == {1, 3}


def _image_bytes(size: tuple[int, int], fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (120, 30, 30)).save(buffer, format=fmt)
    return buffer.getvalue()


def test_corpus_images(tmp_path):
    raw = tmp_path / "data" / "raw" / "images"
    raw.mkdir(parents=True)
    (raw / "ct.jpg").write_bytes(_image_bytes((512, 400), "JPEG"))
    (raw / "mr.png").write_bytes(_image_bytes((300, 300), "PNG"))
    (raw / "tiny.png").write_bytes(_image_bytes((40, 300), "PNG"))
    (raw / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    rows = [
        {
            "image_id": name,
            "doc_id": "case1",
            "path": f"data/raw/images/{name}",
            "caption": f"caption of {name}",
            "modality": "CT",
            "modality_detail": "CT w/contrast",
            "plane": "Axial",
            "body_region": "Abdomen",
        }
        for name in ["ct.jpg", "mr.png", "tiny.png", "broken.jpg", "gone.png"]
    ]
    out = list(corpus_figures(rows, tmp_path, min_px=100))
    figures = {o["figure_id"]: o for o in out if isinstance(o, dict)}
    skipped = {o[0]: o[1] for o in out if isinstance(o, tuple)}
    assert skipped == {
        "tiny.png": "image too small",
        "broken.jpg": "undecodable image",
        "gone.png": "missing file",
    }
    ct = figures["ct.jpg"]
    assert ct["image"].startswith(b"\x89PNG")  # re-encoded
    assert Image.open(io.BytesIO(ct["image"])).size == (512, 400) == (ct["width"], ct["height"])
    assert (ct["origin"], ct["page"], ct["bbox"], ct["caption"]) == (
        "corpus",
        None,
        None,
        "caption of ct.jpg",
    )
    assert (ct["modality"], ct["plane"], ct["body_region"]) == ("CT", "Axial", "Abdomen")
    assert figures["mr.png"]["image"] == (raw / "mr.png").read_bytes()  # PNG kept as is


@pytest.mark.parametrize("mode", ["CMYK", "P", "I;16"])
def test_corpus_images_odd_modes_become_png(tmp_path, mode):
    image = Image.new(mode, (128, 128))
    path = tmp_path / "x.tif"
    image.save(path, format="TIFF")
    row = {"image_id": "x", "doc_id": "d", "path": "x.tif", "caption": "c"}
    (out,) = list(corpus_figures([row], tmp_path, min_px=100))
    assert isinstance(out, dict)
    assert Image.open(io.BytesIO(out["image"])).format == "PNG"


def test_a_failing_layout_model_keeps_captioned_content(tmp_path, monkeypatch):
    path = pdfgen.article(tmp_path / "a.pdf")

    def broken(page):
        raise RuntimeError("onnx session lost")

    monkeypatch.setattr(extract_module, "detect_layout", broken)
    result = extract_pdf(path, "a", ExtractParams())
    reasons = {s[1] for s in result.skipped if not s[1].startswith("uncaptioned graphic")}
    assert reasons == {"layout model failed"}
    assert len(result.figures) == 4  # all captioned
    assert {t["page"] for t in result.tables} == {1, 2, 3}  # regions from the caption down
