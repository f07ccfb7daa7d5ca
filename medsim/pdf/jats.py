"""Figures and tables from a JATS full text (PMC's XML), exact: what the publisher tagged.

One ``<fig>`` gives one figure row: its ``<label>`` and ``<caption>`` as the caption ("Figure
1. Title. Text"), the image its ``<graphic xlink:href>`` names, read from the XML's folder
(PMC's hrefs usually omit the suffix: ``x.f001`` is ``x.f001.jpg``). One ``<table-wrap>``
gives one table row: label and caption, and the cells of its ``<table>`` elements row by row
(``thead``, ``tbody``, ``tfoot``), a spanned cell's text in its first position and ``""`` in
the positions it covers, so every row has the table's width. Rows use the same FIGURES and
TABLES schemas as the PDF path, with ``origin="jats"``.

Like :func:`medsim.pdf.extract.extract_pdf` this is a pure function of one file, never
raising for bad input: a malformed XML skips the document, a figure whose image is missing or
does not decode, and a table given only as an image, skip that item.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lxml import etree
from PIL import UnidentifiedImageError

from medsim.config import ExtractParams
from medsim.names import SkipReason
from medsim.pdf.extract import PdfResult, image_file_to_png
from medsim.pdf.tables import cells_json, linearize

__all__ = ["extract_jats", "table_cells"]

XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
IMAGE_SUFFIXES = ("", ".jpg", ".jpeg", ".png", ".gif", ".tif", ".tiff")
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _text(element: etree._Element | None) -> str:
    return " ".join("".join(element.itertext()).split()) if element is not None else ""


def _children(element: etree._Element, name: str) -> list[etree._Element]:
    return [child for child in element if _local(child.tag) == name]


def _blocks(element: etree._Element | None) -> str:
    """Text of a ``<caption>``: its ``<title>`` and each ``<p>`` as separate sentences."""
    if element is None:
        return ""
    parts = [element.text or ""] + [f" {_text(child)} {child.tail or ''}" for child in element]
    return " ".join("".join(parts).split())


def _caption(element: etree._Element) -> str:
    """``"<label>. <caption title> <caption text>"``, whitespace collapsed."""
    label = _text(next(iter(_children(element, "label")), None))
    caption = _blocks(next(iter(_children(element, "caption")), None))
    if label and caption:
        return f"{label.rstrip('.:')}. {caption}"
    return label or caption


def _span(value: str | None) -> int:
    try:
        return max(1, int(value or 1))
    except ValueError:
        return 1


def table_cells(table: etree._Element) -> list[list[str]]:
    """The rows of a JATS/XHTML ``<table>``; spans expanded with ``""`` so rows are rectangular."""
    rows = [r for r in table.iter() if _local(r.tag) == "tr"]
    grid: dict[tuple[int, int], str] = {}
    for r, row in enumerate(rows):
        c = 0
        for cell in (x for x in row if _local(x.tag) in ("td", "th")):
            while (r, c) in grid:  # covered by a rowspan from above
                c += 1
            across, down = _span(cell.get("colspan")), _span(cell.get("rowspan"))
            for dr in range(min(down, len(rows) - r)):
                for dc in range(across):
                    grid[(r + dr, c + dc)] = _text(cell) if dr == dc == 0 else ""
            c += across
    width = 1 + max((c for _, c in grid), default=-1)
    return [[grid.get((r, c), "") for c in range(width)] for r in range(len(rows))]


def _image_file(folder: Path, href: str) -> Path | None:
    name = Path(href).name
    for suffix in IMAGE_SUFFIXES:
        candidate = folder / f"{name}{suffix}"
        if suffix == "" and not Path(name).suffix:
            continue  # a bare name is never the file itself
        if candidate.is_file():
            return candidate
    return None


def _figures(
    root: etree._Element, folder: Path, doc_id: str, params: ExtractParams, result: PdfResult
) -> Iterator[dict[str, Any]]:
    for n, fig in enumerate((f for f in root.iter() if _local(f.tag) == "fig"), start=1):
        figure_id = f"{doc_id}:jats:{fig.get('id') or f'f{n}'}"
        graphic = next((g for g in fig.iter() if _local(g.tag) == "graphic"), None)
        href = graphic.get(XLINK_HREF) if graphic is not None else None
        image = _image_file(folder, href) if href else None
        if image is None:
            result.skipped.append(
                (figure_id, SkipReason.FIGURE_IMAGE_MISSING, href or "no <graphic>")
            )
            continue
        try:
            png, width, height = image_file_to_png(image)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            result.skipped.append(
                (figure_id, SkipReason.UNDECODABLE_IMAGE, f"{type(exc).__name__}: {exc}")
            )
            continue
        if min(width, height) < params.min_figure_px:
            detail = f"{width}x{height} < extract.min_figure_px={params.min_figure_px}"
            result.skipped.append((figure_id, SkipReason.IMAGE_TOO_SMALL, detail))
            continue
        yield {
            "figure_id": figure_id,
            "doc_id": doc_id,
            "caption": _caption(fig),
            "image": png,
            "width": width,
            "height": height,
            "origin": "jats",
            "page": None,
            "bbox": None,
            "sha256": hashlib.sha256(png).hexdigest(),
            "modality": None,
            "plane": None,
            "body_region": None,
        }


def _tables(root: etree._Element, doc_id: str, result: PdfResult) -> Iterator[dict[str, Any]]:
    wraps = (w for w in root.iter() if _local(w.tag) == "table-wrap")
    for n, wrap in enumerate(wraps, start=1):
        table_id = f"{doc_id}:jats:{wrap.get('id') or f't{n}'}"
        cells = [row for t in wrap.iter() if _local(t.tag) == "table" for row in table_cells(t)]
        if not any(any(cell for cell in row) for row in cells):
            result.skipped.append(
                (table_id, SkipReason.TABLE_WITHOUT_CELLS, "given as an image only")
            )
            continue
        caption = _caption(wrap)
        yield {
            "table_id": table_id,
            "doc_id": doc_id,
            "caption": caption,
            "cells": cells_json(cells),
            "text": linearize(caption, cells),
            "origin": "jats",
            "page": None,
            "bbox": None,
            "flavor": None,
            "accuracy": None,
            "whitespace": None,
        }


def extract_jats(xml_path: Path, doc_id: str, params: ExtractParams) -> PdfResult:
    """Figures (with their image files from the XML's folder) and tables of one JATS file."""
    result = PdfResult(doc_id)
    try:
        root = etree.parse(str(xml_path), _PARSER).getroot()
    except OSError as exc:
        result.skipped.append((doc_id, SkipReason.MISSING_FILE, f"{xml_path}: {exc}"))
        return result
    except etree.XMLSyntaxError as exc:
        result.skipped.append((doc_id, SkipReason.MALFORMED_XML, str(exc)))
        return result
    result.figures = list(_figures(root, Path(xml_path).parent, doc_id, params, result))
    result.tables = list(_tables(root, doc_id, result))
    return result
