"""Figures: raster images and vector drawings on a page, merged, captioned and rendered.

Candidates come from the page's image placements and from clusters of its vector drawings.
Fragments of one figure (tiles, panels, a raster with vector labels, the boxes of a flow
chart) are merged when they lie within a few points of each other or share one caption. A
figure without a "Figure N" caption is kept only if it is a line drawing (a structure
formula) or the layout model also sees a picture there: that drops logos, text boxes,
advertisements and shaded tables.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pymupdf

from medsim.pdf.captions import Caption, nearest_caption
from medsim.pdf.layout import (
    LayoutRegions,
    area_fraction,
    grow,
    merge_rects,
    page_bounds,
    to_display,
    union,
)

__all__ = ["Figure", "find_figures", "raster_candidates", "render_png", "vector_candidates"]

MARGIN = 0.06  # top and bottom bands of the page: running heads, footers, licence strips
MIN_FRAGMENT_PT = 10.0  # rules, underlines and bullets are no fragments of a figure
FRAGMENT_GAP = 8.0  # points between tiles, panels and drawing clusters of one figure
TEXT_BOX_COVER = 0.3  # text boxes measured 0.38-0.58 on real PDFs, figures at most 0.15
MAX_DRAWINGS = 20_000  # a page with more paths (a map, a scatter of 1e5 points) is one cluster


@dataclass
class Candidate:
    rect: pymupdf.Rect
    raster: bool
    vector: bool
    line_drawing: bool = False  # mostly oblique strokes: a structure formula, a line plot
    weak: bool = False  # a lone box or rule: joins a figure next to it, is none alone
    text_box: bool = False  # text covers much of it: an abstract or advertisement box
    members: list[pymupdf.Rect] = field(default_factory=list)


@dataclass
class Figure:
    """A figure found on a page: its region (points) and its caption, if any."""

    rect: pymupdf.Rect
    caption: Caption | None
    origin: str  # "raster", "vector" or "mixed"


def raster_candidates(page: pymupdf.Page) -> list[Candidate]:
    """Where the page's images are placed, clipped to the page."""
    bounds = page_bounds(page)
    out = []
    for info in page.get_image_info():
        r = pymupdf.Rect(info["bbox"]) & bounds
        if not r.is_empty:
            out.append(Candidate(r, raster=True, vector=False, members=[r]))
    return out


def _is_line_drawing(items: Sequence[tuple]) -> bool:
    """Mostly oblique straight strokes: not a logo (curves), a box or a table (axis-parallel)."""
    oblique = curves = 0
    for item in items:
        if item[0] == "l":
            a, b = item[1], item[2]
            oblique += abs(a.x - b.x) > 1 and abs(a.y - b.y) > 1
        elif item[0] == "c":
            curves += 1
    return oblique >= 10 and oblique >= 0.3 * len(items) and curves < 0.3 * len(items)


def vector_candidates(page: pymupdf.Page, drawings: Sequence[dict]) -> list[Candidate]:
    """Clusters of the page's vector graphics that can be figures (charts, diagrams).

    A lone box or rule (fewer than 3 path items) is marked weak: it may belong to a figure
    beside it (a flow chart's last box) but is no figure alone. A cluster of straight
    rules only may still be a flow chart: a caption or the layout model decides that later.
    """
    bounds = page_bounds(page)
    drawings = [
        d
        for d in drawings
        if pymupdf.Rect(d["rect"]).get_area() < 0.9 * bounds.get_area()  # page backgrounds
        and not (d.get("fill") == (1.0, 1.0, 1.0) and not d.get("color"))  # white-outs
    ]
    if not drawings:
        return []
    if len(drawings) > MAX_DRAWINGS:
        rect = union([pymupdf.Rect(d["rect"]) for d in drawings]) & bounds
        return [Candidate(rect, raster=False, vector=True, members=[rect])]
    out = []
    for cluster in page.cluster_drawings(drawings=drawings):
        rect = pymupdf.Rect(cluster) & bounds
        grown = grow(rect, 1.0)
        items = [i for d in drawings if pymupdf.Rect(d["rect"]) in grown for i in d["items"]]
        out.append(
            Candidate(
                rect,
                raster=False,
                vector=True,
                line_drawing=_is_line_drawing(items),
                weak=len(items) < 3,
                members=[rect],
            )
        )
    return out


def _text_cover(rect: pymupdf.Rect, lines: Sequence[pymupdf.Rect]) -> float:
    """The fraction of ``rect`` that text lines cover."""
    area = sum(line.get_area() for line in lines if area_fraction(line, rect) > 0.5)
    return area / max(rect.get_area(), 1e-6)


def _with_labels(
    rect: pymupdf.Rect, lines: Sequence[pymupdf.Rect], captions: Sequence[Caption]
) -> pymupdf.Rect:
    """Grow a vector figure over its own text (axis labels, box texts), not over body text."""
    grown = grow(rect, 12.0)
    out = pymupdf.Rect(rect)
    for line in lines:
        if any(c.rect.intersects(line) for c in captions):
            continue
        if area_fraction(line, grown) > 0.8 and line.width < rect.width:
            out |= line
    return out


def find_figures(
    page: pymupdf.Page,
    drawings: Sequence[dict],
    captions: Sequence[Caption],
    text_lines: Sequence[pymupdf.Rect],
    table_rects: Sequence[pymupdf.Rect],
    min_size_pt: float,
    layout: Callable[[], LayoutRegions | None],
) -> list[Figure]:
    """Figures on ``page``, in reading order (top to bottom, left to right).

    ``min_size_pt`` is extract.min_figure_px at extract.dpi, in points: an uncaptioned figure
    must reach it on both sides, a captioned one (which may be a wide strip, a reaction
    scheme) on its long side and a quarter of it on the short one. ``layout`` runs the layout
    model on demand, only for uncaptioned candidates that are not line drawings.
    """
    bounds = page_bounds(page)
    head = bounds.y0 + MARGIN * bounds.height
    foot = bounds.y1 - MARGIN * bounds.height
    candidates = raster_candidates(page)
    for cand in vector_candidates(page, drawings):
        if any(area_fraction(c.rect, cand.rect) > 0.8 for c in captions):
            continue  # the shaded box behind a caption
        cand.rect = _with_labels(cand.rect, text_lines, captions)
        cand.text_box = _text_cover(cand.rect, text_lines) >= TEXT_BOX_COVER
        candidates.append(cand)
    candidates = [
        c
        for c in candidates
        if min(c.rect.width, c.rect.height) >= MIN_FRAGMENT_PT
        and c.rect.y1 > head
        and c.rect.y0 < foot
        and not any(area_fraction(c.rect, t) > 0.5 for t in table_rects)
    ]
    candidates = [c for c in _merge(candidates, FRAGMENT_GAP) if not c.weak]

    groups: dict[int, tuple[Caption, list[Candidate]]] = {}
    uncaptioned: list[Candidate] = []
    for cand in candidates:
        caption = nearest_caption(cand.rect, captions, "figure", max_gap=60.0, prefer="below")
        if caption is None:
            uncaptioned.append(cand)
        else:
            groups.setdefault(id(caption), (caption, []))[1].append(cand)

    figures = []
    for caption, group in groups.values():
        merged = _merge(group, gap=float("inf"))[0]
        long_side = max(merged.rect.width, merged.rect.height)
        short_side = min(merged.rect.width, merged.rect.height)
        if long_side >= min_size_pt and short_side >= min_size_pt / 4:
            figures.append(Figure(merged.rect, caption, _origin(merged)))

    # Without a caption: a line drawing is a figure, a text box is none, the rest is up to
    # the layout model.
    big = [
        c
        for c in uncaptioned
        if min(c.rect.width, c.rect.height) >= min_size_pt and (c.raster or not c.text_box)
    ]
    unsure = [c for c in big if not (c.line_drawing and not c.raster)]
    pictures = []
    if unsure:
        regions = layout()
        pictures = regions.pictures if regions else []
    for cand in big:
        seen = any(area_fraction(cand.rect, p) >= 0.3 for p in pictures)
        if (cand.line_drawing and not cand.raster) or seen:
            figures.append(Figure(cand.rect, None, _origin(cand)))
    figures.sort(key=lambda f: (round(f.rect.y0 / 20), f.rect.x0))
    return figures


def _origin(cand: Candidate) -> str:
    return "mixed" if cand.raster and cand.vector else ("raster" if cand.raster else "vector")


def _merge(candidates: Sequence[Candidate], gap: float) -> list[Candidate]:
    if not candidates:
        return []
    if gap == float("inf"):
        groups = [list(range(len(candidates)))]
    else:
        groups = merge_rects([c.rect for c in candidates], gap=gap)
    out = []
    for group in groups:
        members = [candidates[i] for i in group]
        out.append(
            Candidate(
                union([m.rect for m in members]),
                raster=any(m.raster for m in members),
                vector=any(m.vector for m in members),
                line_drawing=all(m.line_drawing for m in members),
                weak=all(m.weak for m in members),
                text_box=all(m.text_box for m in members),
                members=[r for m in members for r in m.members],
            )
        )
    return out


def render_png(page: pymupdf.Page, rect: pymupdf.Rect, dpi: int) -> tuple[bytes, int, int, str]:
    """Render ``rect`` of ``page`` upright at ``dpi``: PNG bytes, width, height, sha256."""
    pix = page.get_pixmap(dpi=dpi, clip=to_display(page, rect), alpha=False)
    png = pix.tobytes("png")
    return png, pix.width, pix.height, hashlib.sha256(png).hexdigest()
