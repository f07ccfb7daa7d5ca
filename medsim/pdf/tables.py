"""Tables: cheap candidate pages, regions from the layout model, cells from camelot.

camelot alone either misses unruled tables (lattice) or calls most text pages a table
(stream). So a page becomes a candidate only on a cheap signal (a "Table N" caption, or a
grid of ruling lines); the layout model locates the table there, and camelot parses only
inside that region: lattice where the region is ruled, stream otherwise.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import pymupdf

from medsim.pdf.captions import Caption, nearest_caption
from medsim.pdf.layout import LayoutRegions, area_fraction, pdf_area, ruling_lines, union

__all__ = ["ParsedTable", "is_candidate_page", "linearize", "parse_region", "table_regions"]

log = logging.getLogger(__name__)

# A table must have at least this shape to count: a single column is a list, a single row a
# line of text.
MIN_ROWS, MIN_COLS = 2, 2


@dataclass
class ParsedTable:
    """One table parsed by camelot, with the region (unrotated points) it was parsed from."""

    rect: pymupdf.Rect
    cells: list[list[str]]
    flavor: str
    accuracy: float
    whitespace: float


def is_candidate_page(
    captions: Sequence[Caption], drawings: Sequence[dict], bounds: pymupdf.Rect
) -> bool:
    """Cheap test: a table caption, or three rules of one width at three heights (a grid).

    Rules in the top and bottom 6% of the page (running heads, footers) do not count, nor do
    the two edges of a box (a shaded caption or text box).
    """
    if any(c.kind == "table" for c in captions):
        return True
    horizontal, _ = ruling_lines(drawings, min_length=72.0)
    head, foot = bounds.y0 + 0.06 * bounds.height, bounds.y1 - 0.06 * bounds.height
    heights: dict[tuple[int, int], list[float]] = {}
    for r in horizontal:
        if head < r.y0 < foot:
            heights.setdefault((round(r.x0 / 4), round(r.width / 4)), []).append(r.y0)
    for ys in heights.values():
        ys.sort()
        distinct = 1 + sum(b - a > 3 for a, b in pairwise(ys))
        if distinct >= 3:  # a box drawn twice has two heights, a grid three or more
            return True
    return False


def table_regions(
    captions: Sequence[Caption],
    layout: LayoutRegions | None,
    text_lines: Sequence[pymupdf.Rect],
    bounds: pymupdf.Rect,
) -> list[tuple[pymupdf.Rect, Caption | None]]:
    """Table regions on a candidate page, each with its caption.

    A layout-model table box is kept when a table caption labels it (or, on a page without
    table captions, when it is ruled: checked by the caller through lattice). Its width grows
    to its caption's when the caption is wider (the model trims sparse last columns), and it
    grows to cover text lines it cuts. A caption left without a box gets the text below it,
    down to the next caption or large gap, as its region.
    """
    table_captions = [c for c in captions if c.kind == "table"]
    regions: list[tuple[pymupdf.Rect, Caption | None]] = []
    used: set[int] = set()
    for box in layout.tables if layout else []:
        caption = nearest_caption(box, table_captions, "table", max_gap=60.0, prefer="above")
        if caption is None and table_captions:
            continue  # an uncaptioned "table" on a page with captioned ones: a list, references
        rect = pymupdf.Rect(box)
        if caption is not None:
            used.add(id(caption))
            rect = _without_caption(rect, caption.rect)
            if caption.rect.y1 <= rect.y0 + 4 or caption.rect.y0 >= rect.y1 - 4:
                rect.x0, rect.x1 = min(rect.x0, caption.rect.x0), max(rect.x1, caption.rect.x1)
        rect = _cover_cut_lines(rect, text_lines, caption)
        regions.append((rect, caption))
    for caption in table_captions:
        if id(caption) not in used and not any(r.contains(caption.rect) for r, _ in regions):
            rect = _region_below(caption, captions, text_lines, bounds)
            if rect is not None:
                regions.append((rect, caption))
    return regions


def _without_caption(rect: pymupdf.Rect, caption: pymupdf.Rect) -> pymupdf.Rect:
    """Cut a caption that the layout model put inside the table box off that box."""
    if not rect.intersects(caption):
        return rect
    out = pymupdf.Rect(rect)
    if caption.y0 - rect.y0 < rect.y1 - caption.y1:  # caption at the top
        out.y0 = max(out.y0, caption.y1 + 0.5)
    else:
        out.y1 = min(out.y1, caption.y0 - 0.5)
    return out if not out.is_empty else rect


def _cover_cut_lines(
    rect: pymupdf.Rect, lines: Sequence[pymupdf.Rect], caption: Caption | None
) -> pymupdf.Rect:
    out = pymupdf.Rect(rect)
    for line in lines:
        if caption is not None and caption.rect.intersects(line):
            continue
        if 0.3 < area_fraction(line, rect) < 1.0:
            out |= line
    return out


def _region_below(
    caption: Caption,
    captions: Sequence[Caption],
    lines: Sequence[pymupdf.Rect],
    bounds: pymupdf.Rect,
    max_gap: float = 24.0,
) -> pymupdf.Rect | None:
    """Text under ``caption`` (from its left edge rightwards) until a gap or another caption.

    Only used when the layout model found no table box for a caption; a caption is often
    narrower than its table, so the region is not limited to the caption's width.
    """
    c = caption.rect
    stops = [o.rect.y0 for o in captions if o is not caption and o.rect.y0 > c.y1]
    limit = min([*stops, bounds.y1])
    below = [ln for ln in lines if ln.y0 >= c.y1 - 1 and ln.y1 <= limit and ln.x0 >= c.x0 - 5]
    below.sort(key=lambda r: r.y0)
    picked: list[pymupdf.Rect] = []
    bottom = c.y1
    for line in below:
        if line.y0 - bottom > max_gap:
            break
        picked.append(line)
        bottom = max(bottom, line.y1)
    if len(picked) < MIN_ROWS:
        return None
    rect = union(picked)
    rect.x0 = min(rect.x0, c.x0)
    return rect


def _clean(cell: Any) -> str:
    return re.sub(r"\s+", " ", str(cell)).strip()


def _drop_empty(cells: list[list[str]]) -> list[list[str]]:
    """Without empty rows and columns (a table area wider than its grid makes them)."""
    cells = [row for row in cells if any(row)]
    if not cells:
        return []
    keep = [j for j in range(len(cells[0])) if any(row[j] for row in cells)]
    return [[row[j] for j in keep] for row in cells]


def _camelot_read(pdf_path: Path, page_number: int, flavor: str, area: str) -> list[Any]:
    import camelot  # heavy import, only where a table is parsed

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no tables found in table area" is a normal outcome
        return list(
            camelot.read_pdf(
                str(pdf_path), pages=str(page_number), flavor=flavor, table_areas=[area]
            )
        )


def parse_region(
    pdf_path: Path,
    page: pymupdf.Page,
    rect: pymupdf.Rect,
    ruled: bool,
    reader: Callable[[Path, int, str, str], list[Any]] = _camelot_read,
) -> ParsedTable | str:
    """Parse the table inside ``rect`` with camelot: lattice if ``ruled``, else (or then) stream.

    Returns the table, or, when no flavor finds one of at least 2 x 2 cells there, why not
    (per flavor), for the skipped log.
    """
    area = pdf_area(page, pymupdf.Rect(rect.x0 - 2, rect.y0 - 2, rect.x1 + 2, rect.y1 + 2))
    flavors = ("lattice", "stream") if ruled else ("stream",)
    why: list[str] = []
    for flavor in flavors:
        try:
            found = reader(pdf_path, page.number + 1, flavor, area)
        except Exception as exc:  # camelot fails on some regions; another flavor may not
            log.debug("camelot %s failed on page %d: %s", flavor, page.number + 1, exc)
            why.append(f"camelot {flavor} failed ({type(exc).__name__}: {exc})")
            continue
        best = None
        for table in found:
            cells = _drop_empty([[_clean(c) for c in row] for row in table.df.values.tolist()])
            if len(cells) < MIN_ROWS or len(cells[0]) < MIN_COLS:
                continue
            if best is None or len(cells) * len(cells[0]) > len(best.cells) * len(best.cells[0]):
                report = table.parsing_report
                best = ParsedTable(
                    rect=rect,
                    cells=cells,
                    flavor=flavor,
                    accuracy=float(report.get("accuracy", 0.0)),
                    whitespace=float(report.get("whitespace", 0.0)),
                )
        if best is not None:
            return best
        shapes = ", ".join(f"{len(t.df)}x{len(t.df.columns)}" for t in found) or "none"
        why.append(f"camelot {flavor}: no table of at least {MIN_ROWS}x{MIN_COLS} cells ({shapes})")
    return "; ".join(why)


def linearize(caption: str, cells: Sequence[Sequence[str]]) -> str:
    """Text for the text encoder: the caption, then one line per row, cells joined by " | "."""
    rows = [" | ".join(c for c in row if c) for row in cells]
    return "\n".join([caption, *[r for r in rows if r]]).strip()


def cells_json(cells: Sequence[Sequence[str]]) -> str:
    """The cells as a JSON list of rows (the ``cells`` column)."""
    return json.dumps([list(row) for row in cells], ensure_ascii=False)
