"""The extract stage's core: one PDF in, its figure and table rows out.

:func:`extract_pdf` is pure with respect to the pipeline (it reads one file and returns rows),
so it can run in a worker process, under a time limit, or as a Ray ``map_batches`` body.
:func:`corpus_figures` does the same for the images a corpus brings (MedPix).
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymupdf
from PIL import Image, UnidentifiedImageError

from medsim.config import ExtractParams
from medsim.names import SkipReason
from medsim.pdf.captions import Caption, find_captions
from medsim.pdf.figures import Figure, PageFigures, find_figures, opening_caption, page_graphic
from medsim.pdf.graphics import is_formula, orphan_reason, render_png
from medsim.pdf.layout import LayoutRegions, detect_layout, page_bounds, ruling_lines, union
from medsim.pdf.tables import cells_json, is_candidate_page, linearize, parse_region, table_regions

__all__ = ["PdfResult", "SkipRow", "corpus_figures", "extract_pdf", "image_file_to_png"]

log = logging.getLogger(__name__)

SkipRow = tuple[str, str, str | None]  # item, reason, detail

pymupdf.TOOLS.mupdf_display_errors(False)  # MuPDF's repair chatter on stderr; errors still raise


@dataclass
class PdfResult:
    """Rows from one PDF: ``figures`` (FIGURES), ``tables`` (TABLES), ``skipped`` items."""

    doc_id: str
    pages: int = 0
    figures: list[dict[str, Any]] = field(default_factory=list)
    tables: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[SkipRow] = field(default_factory=list)
    layout_pages: int = 0  # pages the layout model ran on
    table_pages: int = 0  # pages camelot ran on


def _open(
    pdf_path: Path, doc_id: str, max_pages: int
) -> tuple[pymupdf.Document | None, SkipRow | None]:
    if not pdf_path.is_file():
        return None, (doc_id, SkipReason.MISSING_FILE, str(pdf_path))
    try:
        doc = pymupdf.open(pdf_path, filetype="pdf")
    except Exception as exc:  # MuPDF raises several types for broken files
        return None, (doc_id, "corrupt", f"{type(exc).__name__}: {exc}")
    if doc.needs_pass:
        doc.close()
        return None, (doc_id, "encrypted", "needs a password")
    if doc.page_count == 0:
        doc.close()
        return None, (doc_id, SkipReason.NO_PAGES, None)
    if doc.page_count > max_pages:
        count = doc.page_count
        doc.close()
        return None, (doc_id, SkipReason.TOO_MANY_PAGES, f"{count} > extract.max_pages={max_pages}")
    try:
        has_text = any(page.get_text("text").strip() for page in doc)
    except Exception as exc:
        doc.close()
        return None, (doc_id, "corrupt", f"{type(exc).__name__}: {exc}")
    if not has_text:
        doc.close()
        return None, (
            doc_id,
            SkipReason.IMAGE_ONLY,
            "no text layer (a scan): captions cannot be found",
        )
    return doc, None


def extract_pdf(pdf_path: Path, doc_id: str, params: ExtractParams) -> PdfResult:
    """Figures and tables of one PDF, with captions; bad files and pages come back as skipped.

    Never raises for bad input: an unreadable, encrypted, empty, image-only or too long PDF
    gives one skipped row for the document, a page that crashes a parser one for the page.
    """
    result = PdfResult(doc_id)
    doc, skip = _open(Path(pdf_path), doc_id, params.max_pages)
    if doc is None:
        assert skip is not None
        result.skipped.append(skip)
        return result
    with doc:
        result.pages = doc.page_count
        pending: _PageState | None = None  # the previous page, its figures not yet written
        for page in doc:
            try:
                state = _extract_page(Path(pdf_path), page, doc_id, params, result)
            except Exception as exc:  # one broken page must not lose the others
                result.skipped.append(
                    (
                        f"{doc_id}:p{page.number + 1}",
                        SkipReason.PAGE_ERROR,
                        f"{type(exc).__name__}: {exc}",
                    )
                )
                state = None
            if pending is not None and state is not None:
                _pair_across_pages(pending, state)
            if pending is not None:
                _write_figures(pending, doc_id, params, result)
            pending = state
        if pending is not None:
            _write_figures(pending, doc_id, params, result)
    return result


@dataclass
class _PageState:
    """One page's figures between finding them and writing them (a caption may come next)."""

    page: pymupdf.Page
    found: PageFigures
    text_lines: list[pymupdf.Rect]


def _pair_across_pages(prev: _PageState, cur: _PageState) -> None:
    """A figure page captioned overleaf: graphics without a caption on one page, and a caption
    without graphics opening the next page (or closing the previous one), become one figure."""
    for fig_state, cap_state, first in [(prev, cur, True), (cur, prev, False)]:
        graphic = page_graphic(fig_state.page, fig_state.found, fig_state.text_lines)
        if graphic is None:
            continue
        caption = opening_caption(cap_state.page, cap_state.found, cap_state.text_lines, first)
        if caption is None:
            continue
        members = [c for c in fig_state.found.orphans if not c.text_box]
        panels = [c.rect for c in members]
        kinds = ("raster" if graphic.raster else "") + ("vector" if graphic.vector else "")
        origin = "mixed" if kinds == "rastervector" else kinds
        fig_state.found.figures.append(Figure(graphic.rect, caption, origin, panels))
        fig_state.found.orphans = [c for c in fig_state.found.orphans if c.text_box]
        cap_state.found.free_captions.remove(caption)


def _write_figures(
    state: _PageState, doc_id: str, params: ExtractParams, result: PdfResult
) -> None:
    """Render a page's figures into rows; log its uncaptioned graphics as skipped."""
    page, found = state.page, state.found
    number = page.number + 1
    min_size_pt = params.min_figure_px * 72.0 / params.dpi
    figures = list(found.figures)
    dropped = list(found.dropped)
    for cand in found.orphans:
        if is_formula(cand, min_size_pt):
            figures.append(Figure(cand.rect, None, "vector", [cand.rect]))
        else:
            dropped.append((cand.rect, orphan_reason(cand, min_size_pt)))
    for k, (rect, reason) in enumerate(dropped, start=1):
        box = f"bbox {rect.x0:.0f},{rect.y0:.0f},{rect.x1:.0f},{rect.y1:.0f} pt"
        result.skipped.append((f"{doc_id}:p{number}:g{k}", reason, box))
    figures.sort(key=lambda f: (round(f.rect.y0 / 20), f.rect.x0))
    for n, figure in enumerate(figures, start=1):
        png, width, height, sha = render_png(page, figure.rect, params.dpi)
        r = figure.rect
        result.figures.append(
            {
                "figure_id": f"{doc_id}:p{number}:f{n}",
                "doc_id": doc_id,
                "caption": figure.caption.text if figure.caption else "",
                "image": png,
                "width": width,
                "height": height,
                "origin": "pdf",
                "page": number,
                "bbox": [r.x0, r.y0, r.x1, r.y1],
                "sha256": sha,
                "modality": None,
                "plane": None,
                "body_region": None,
                "panels": [[p.x0, p.y0, p.x1, p.y1] for p in figure.panels],
            }
        )


def _page_tables(
    pdf_path: Path,
    page: pymupdf.Page,
    regions: list[tuple[pymupdf.Rect, Caption | None]],
    drawings: list[dict],
    doc_id: str,
    result: PdfResult,
) -> list[pymupdf.Rect]:
    """Parse each table region with camelot into ``result.tables``; return the tables' boxes.

    A region camelot finds no table in is a skip row (``"table region rejected"``).
    """
    number = page.number + 1
    horizontal, vertical = ruling_lines(drawings)
    table_rects: list[pymupdf.Rect] = []
    for k, (rect, caption) in enumerate(regions, start=1):
        h_rules = [r for r in horizontal if rect.intersects(r)]
        v_rules = [r for r in vertical if rect.intersects(r)]
        ruled = len(h_rules) >= 2 and len(v_rules) >= 2
        if ruled:  # lattice needs the whole grid, which the layout box may cut
            rect = union([rect, *h_rules, *v_rules])
        if caption is None and not ruled:
            continue  # without a caption only a ruled grid is trusted as a table
        parsed = parse_region(pdf_path, page, rect, ruled)
        if isinstance(parsed, str):
            box = f"bbox {rect.x0:.0f},{rect.y0:.0f},{rect.x1:.0f},{rect.y1:.0f} pt"
            label = caption.label if caption else "uncaptioned ruled grid"
            detail = f"{label}, {box}: {parsed}"
            result.skipped.append((f"{doc_id}:p{number}:r{k}", SkipReason.TABLE_REJECTED, detail))
            continue
        table_rects.append(rect)
        caption_text = caption.text if caption else ""
        result.tables.append(
            {
                "table_id": f"{doc_id}:p{number}:t{len(table_rects)}",
                "doc_id": doc_id,
                "caption": caption_text,
                "cells": cells_json(parsed.cells),
                "text": linearize(caption_text, parsed.cells),
                "origin": "pdf",
                "page": number,
                "bbox": [rect.x0, rect.y0, rect.x1, rect.y1],
                "flavor": parsed.flavor,
                "accuracy": parsed.accuracy,
                "whitespace": parsed.whitespace,
            }
        )
    return table_rects


def _extract_page(
    pdf_path: Path, page: pymupdf.Page, doc_id: str, params: ExtractParams, result: PdfResult
) -> _PageState:
    """Tables of ``page`` into ``result``; its figures found but not yet written (see
    :func:`_pair_across_pages`)."""
    if page.rotation:
        page.remove_rotation()  # work in displayed coordinates (see medsim.pdf.layout)
    text_dict = page.get_text("dict", flags=pymupdf.TEXTFLAGS_TEXT)
    captions = find_captions(page, text_dict)
    text_lines = [
        pymupdf.Rect(line["bbox"])
        for block in text_dict["blocks"]
        for line in block.get("lines", [])
        if "".join(s["text"] for s in line["spans"]).strip()
    ]
    drawings = page.get_drawings()
    table_rects: list[pymupdf.Rect] = []
    if is_candidate_page(captions, drawings, page_bounds(page)):
        layout = _page_layout(page, f"{doc_id}:p{page.number + 1}", result)
        regions = table_regions(captions, layout, text_lines, page_bounds(page))
        if regions:
            result.table_pages += 1
        table_rects = _page_tables(pdf_path, page, regions, drawings, doc_id, result)
    min_size_pt = params.min_figure_px * 72.0 / params.dpi
    found = find_figures(page, drawings, captions, text_lines, table_rects, min_size_pt)
    return _PageState(page, found, text_lines)


def _page_layout(page: pymupdf.Page, item: str, result: PdfResult) -> LayoutRegions | None:
    """The layout model's regions of ``page``; None (and a skip row) when the model fails."""
    result.layout_pages += 1
    try:
        return detect_layout(page)
    except Exception as exc:  # the page still gets caption-led tables and figures
        detail = f"{type(exc).__name__}: {exc}"
        result.skipped.append((item, SkipReason.LAYOUT_MODEL_FAILED, detail))
        return None


def image_file_to_png(path: Path) -> tuple[bytes, int, int]:
    """An image file as PNG bytes with its width and height; PNG files are kept byte for byte.

    Raises ``FileNotFoundError``, or PIL's ``UnidentifiedImageError``/``OSError`` for a file that
    does not decode; callers turn those into skip rows.
    """
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        width, height = image.size
        if image.format != "PNG":
            buffer = io.BytesIO()
            converted = image if image.mode in ("RGB", "L", "RGBA", "LA") else image.convert("RGB")
            converted.save(buffer, format="PNG")
            data = buffer.getvalue()
    return data, width, height


def corpus_figures(
    rows: Iterable[Mapping[str, Any]], root: Path, min_px: int
) -> Iterator[dict[str, Any] | SkipRow]:
    """Figure rows for a corpus's own images (``data/raw/images.parquet`` rows).

    Each image is decoded (a file that does not decode is skipped), re-encoded to PNG unless it
    is one already, and skipped when a side is below ``min_px``. Caption and labels carry over.
    """
    for row in rows:
        image_id = row["image_id"]
        path = root / row["path"]
        try:
            data, width, height = image_file_to_png(path)
        except FileNotFoundError:
            yield (image_id, SkipReason.MISSING_FILE, str(row["path"]))
            continue
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            yield (image_id, SkipReason.UNDECODABLE_IMAGE, f"{type(exc).__name__}: {exc}")
            continue
        if min(width, height) < min_px:
            yield (
                image_id,
                SkipReason.IMAGE_TOO_SMALL,
                f"{width}x{height} < extract.min_figure_px={min_px}",
            )
            continue
        yield {
            "figure_id": image_id,
            "doc_id": row["doc_id"],
            "caption": row["caption"],
            "image": data,
            "width": width,
            "height": height,
            "origin": "corpus",
            "page": None,
            "bbox": None,
            "sha256": hashlib.sha256(data).hexdigest(),
            "modality": row.get("modality"),
            "plane": row.get("plane"),
            "body_region": row.get("body_region"),
        }
