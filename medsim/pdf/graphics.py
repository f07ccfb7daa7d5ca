"""The graphics of a PDF page before any caption is read: image placements and clusters of
vector drawings as candidate figures, merged when they touch; what an uncaptioned graphic is
(a formula kept, or a skip reason); and rendering a region to PNG.

:mod:`medsim.pdf.figures` gives the candidates their captions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import pymupdf

from medsim.names import SkipReason
from medsim.pdf.layout import grow, merge_rects, page_bounds, to_display, union

__all__ = [
    "Candidate",
    "candidate_origin",
    "is_formula",
    "merge_candidates",
    "orphan_reason",
    "raster_candidates",
    "render_png",
    "vector_candidates",
]


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


def merge_candidates(candidates: Sequence[Candidate], gap: float) -> list[Candidate]:
    """Candidates within ``gap`` points of each other as one (``inf``: all of them as one)."""
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


def candidate_origin(cand: Candidate) -> str:
    """``"raster"``, ``"vector"`` or ``"mixed"``: what the graphic is made of."""
    return "mixed" if cand.raster and cand.vector else ("raster" if cand.raster else "vector")


def is_formula(cand: Candidate, min_size_pt: float) -> bool:
    """An uncaptioned graphic kept as a figure: a vector line drawing (a structure formula,
    labelled by a compound number only) at least ``min_size_pt`` on both sides."""
    big = min(cand.rect.width, cand.rect.height) >= min_size_pt
    return big and cand.line_drawing and not cand.raster and not cand.text_box


def orphan_reason(cand: Candidate, min_size_pt: float) -> str:
    """Why an uncaptioned graphic is no figure, for the skip log."""
    if min(cand.rect.width, cand.rect.height) < min_size_pt:
        return SkipReason.UNCAPTIONED_SMALL
    if cand.text_box:
        return SkipReason.UNCAPTIONED_TEXT_BOX
    return SkipReason.UNCAPTIONED_NO_CAPTION


def render_png(page: pymupdf.Page, rect: pymupdf.Rect, dpi: int) -> tuple[bytes, int, int, str]:
    """Render ``rect`` of ``page`` upright at ``dpi``: PNG bytes, width, height, sha256."""
    pix = page.get_pixmap(dpi=dpi, clip=to_display(page, rect), alpha=False)
    png = pix.tobytes("png")
    return png, pix.width, pix.height, hashlib.sha256(png).hexdigest()
