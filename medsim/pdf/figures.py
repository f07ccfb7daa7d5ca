"""Figures as a reader counts them: one per caption, with all its panels, rendered as one box.

Candidates come from the page's image placements and from clusters of its vector drawings.
Fragments that touch (tiles, a raster with vector labels, the boxes of a flow chart) merge
first. Then every "Figure N" caption collects its figure: the candidates next to it (below,
above or beside it), then every candidate within a panel gap of those, as long as neither
another caption nor body text lies between them. That makes a grid of plots with panel
letters one figure, and a side caption the caption of the graphics beside it.

Graphics left without a caption are no figures: logos, icons, banners, equations set as
images are dropped with a reason. Two exceptions: a page-sized graphic whose caption opens
the next page (or closes the previous one) is paired across the page break by the caller
(see :func:`pair_across_pages`), and an uncaptioned vector line drawing (a structure formula
labelled only by a compound number) is kept without a caption.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pymupdf

from medsim.names import SkipReason
from medsim.pdf.captions import Caption, caption_gap
from medsim.pdf.graphics import (
    Candidate,
    candidate_origin,
    merge_candidates,
    raster_candidates,
    vector_candidates,
)
from medsim.pdf.layout import (
    area_fraction,
    grow,
    page_bounds,
)

__all__ = [
    "Figure",
    "PageFigures",
    "find_figures",
    "opening_caption",
    "page_graphic",
]

MARGIN = 0.06  # top and bottom bands of the page: running heads, footers, licence strips
MIN_FRAGMENT_PT = 10.0  # rules, underlines and bullets are no fragments of a figure
FRAGMENT_GAP = 8.0  # points between tiles, panels and drawing clusters of one figure
TEXT_BOX_COVER = 0.3  # text boxes measured 0.38-0.58 on real PDFs, figures at most 0.15
NEAR_GAP = 60.0  # points from a figure to its caption; the next paragraph is further off
FAR_GAP = 150.0  # a caption's figure past a key or legend, with no body text in between
PANEL_GAP = 40.0  # between panels of one figure: gutters with panel letters and titles
BODY_LINE_PT = 100.0  # text lines at least this wide, two or more, separate figures
PAGE_FIGURE_COVER = 0.3  # uncaptioned graphics this much of a page: a figure page


@dataclass
class Figure:
    """A figure found on a page: its region (points) and its caption, if any."""

    rect: pymupdf.Rect
    caption: Caption | None
    origin: str  # "raster", "vector" or "mixed"
    panels: list[pymupdf.Rect] = field(default_factory=list)  # the graphics it unites


def _text_cover(rect: pymupdf.Rect, lines: Sequence[pymupdf.Rect]) -> float:
    """The fraction of ``rect`` that text lines cover."""
    area = sum(line.get_area() for line in lines if area_fraction(line, rect) > 0.5)
    return area / max(rect.get_area(), 1e-6)


def _with_labels(
    rect: pymupdf.Rect, lines: Sequence[pymupdf.Rect], captions: Sequence[Caption]
) -> pymupdf.Rect:
    """Grow a vector figure over its own text (axis labels, box texts), not over body text."""
    return _grow_over_lines(rect, lines, captions, lambda width: width < rect.width)


def _grow_over_lines(
    rect: pymupdf.Rect,
    lines: Sequence[pymupdf.Rect],
    captions: Sequence[Caption],
    narrow: Callable[[float], bool],
) -> pymupdf.Rect:
    """``rect`` grown over every ``narrow`` text line lying (80%) within 12 pt of it.

    Caption lines are never taken: a caption belongs beside its figure, not inside it.
    """
    grown = grow(rect, 12.0)
    out = pymupdf.Rect(rect)
    for line in lines:
        if not narrow(line.width) or area_fraction(line, grown) <= 0.8:
            continue
        if not any(c.rect.intersects(line) for c in captions):
            out |= line
    return out


def _distance(a: pymupdf.Rect, b: pymupdf.Rect) -> float:
    dx = max(0.0, b.x0 - a.x1, a.x0 - b.x1)
    dy = max(0.0, b.y0 - a.y1, a.y0 - b.y1)
    return (dx * dx + dy * dy) ** 0.5


def _bridge(a: pymupdf.Rect, b: pymupdf.Rect) -> pymupdf.Rect:
    """The strip between two boxes (their overlap, where they overlap on an axis), widened 1 pt."""
    if min(a.x1, b.x1) > max(a.x0, b.x0):
        x0, x1 = max(a.x0, b.x0), min(a.x1, b.x1)
    else:
        x0, x1 = min(a.x1, b.x1), max(a.x0, b.x0)
    if min(a.y1, b.y1) > max(a.y0, b.y0):
        y0, y1 = max(a.y0, b.y0), min(a.y1, b.y1)
    else:
        y0, y1 = min(a.y1, b.y1), max(a.y0, b.y0)
    return grow(pymupdf.Rect(x0, y0, x1, y1), 1.0)


def _clear(
    a: pymupdf.Rect,
    b: pymupdf.Rect,
    captions: Sequence[Caption],
    lines: Sequence[pymupdf.Rect],
    ignore: Caption | None = None,
) -> bool:
    """Nothing that separates figures lies between ``a`` and ``b``: no caption, no body text.

    Body text is two or more lines of at least BODY_LINE_PT; panel letters, panel titles and
    one-line sub-captions are shorter or alone.
    """
    bridge = _bridge(a, b)
    if any(c is not ignore and c.rect.intersects(bridge) for c in captions):
        return False
    body = [
        line
        for line in lines
        if line.width >= BODY_LINE_PT
        and area_fraction(line, bridge) > 0.5
        and area_fraction(line, a) < 0.5
        and area_fraction(line, b) < 0.5
    ]
    return len(body) < 2


@dataclass
class PageFigures:
    """What :func:`find_figures` makes of one page.

    ``figures`` are captioned; ``orphans`` are uncaptioned graphics (kept so that a caption on
    the next or previous page can still claim a page-sized one; then structure formulas are
    kept without a caption and the rest dropped, see :func:`is_formula`);
    ``free_captions`` are figure captions that found no graphics on their page; ``dropped``
    are graphics that are no figures, with the reason.
    """

    figures: list[Figure] = field(default_factory=list)
    orphans: list[Candidate] = field(default_factory=list)
    free_captions: list[Caption] = field(default_factory=list)
    dropped: list[tuple[pymupdf.Rect, str]] = field(default_factory=list)


def _page_candidates(
    page: pymupdf.Page,
    drawings: Sequence[dict],
    captions: Sequence[Caption],
    text_lines: Sequence[pymupdf.Rect],
) -> list[Candidate]:
    """Raster and vector candidates of ``page``, vector ones grown over their labels."""
    candidates = raster_candidates(page)
    for cand in vector_candidates(page, drawings):
        if any(
            area_fraction(c.rect, cand.rect) > 0.8
            and c.rect.get_area() > 0.5 * cand.rect.get_area()
            for c in captions
        ):
            continue  # the shaded box behind a caption (a frame around figure and caption stays)
        cand.rect = _with_labels(cand.rect, text_lines, captions)
        cand.text_box = _text_cover(cand.rect, text_lines) >= TEXT_BOX_COVER
        candidates.append(cand)
    return candidates


def _kept_candidates(
    candidates: list[Candidate],
    bounds: pymupdf.Rect,
    table_rects: Sequence[pymupdf.Rect],
    dropped: list[tuple[pymupdf.Rect, str]],
) -> list[Candidate]:
    """Candidates that are no fragment, table part or margin banner (those go to ``dropped``
    with the reason), fragments merged."""
    head = bounds.y0 + MARGIN * bounds.height
    foot = bounds.y1 - MARGIN * bounds.height
    kept = []
    for c in candidates:
        if min(c.rect.width, c.rect.height) < MIN_FRAGMENT_PT:
            continue  # rules, underlines, bullets: not worth a skip row
        if any(area_fraction(c.rect, t) > 0.5 for t in table_rects):
            continue  # part of a table
        if c.rect.y1 <= head or c.rect.y0 >= foot:
            if c.raster:
                dropped.append((c.rect, SkipReason.UNCAPTIONED_IN_MARGIN))
            continue
        kept.append(c)
    return [c for c in merge_candidates(kept, FRAGMENT_GAP) if not c.weak]


def _caption_side(rect: pymupdf.Rect, caption: Caption) -> tuple[float, str | None]:
    """:func:`caption_gap`, also for a short caption set flush left under (or over) a centred
    figure: it counts as running the figure's width from its left edge."""
    gap, side = caption_gap(rect, caption)
    if side is None and gap == 0.0:
        return 0.0, "below"  # a caption inside the candidate's box
    if side is not None:
        return gap, side
    c = caption.rect
    reach = _overlap(rect.x0, rect.x1, c.x0, c.x0 + max(c.width, rect.width))
    if reach > 0.3 * rect.width:
        if c.y0 >= rect.y1 - 4:
            return c.y0 - rect.y1, "below"
        if c.y1 <= rect.y0 + 4:
            return rect.y0 - c.y1, "above"
    return float("inf"), None


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def _seed(
    cands: Sequence[Candidate],
    owner: list[Caption | None],
    captions: Sequence[Caption],
    lines: Sequence[pymupdf.Rect],
    sides: tuple[str, ...],
    max_gap: float,
    min_long: float = 0.0,
    only: Sequence[Caption] | None = None,
) -> None:
    """Give each unowned candidate the nearest figure caption (of ``only``, if given) on one of
    ``sides`` within ``max_gap``, with no other caption and no body text between them."""
    for i, cand in enumerate(cands):
        if owner[i] is not None or max(cand.rect.width, cand.rect.height) < min_long:
            continue
        best: tuple[float, Caption] | None = None
        for caption in only if only is not None else captions:
            if caption.kind != "figure":
                continue
            gap, side = _caption_side(cand.rect, caption)
            if side not in sides or gap > max_gap:
                continue
            if gap > 4 and not _clear(cand.rect, caption.rect, captions, lines, ignore=caption):
                continue
            score = gap + (0.0 if side == "below" else 12.0)
            if best is None or score < best[0]:
                best = (score, caption)
        if best:
            owner[i] = best[1]


def _grow(
    cands: Sequence[Candidate],
    owner: list[Caption | None],
    captions: Sequence[Caption],
    lines: Sequence[pymupdf.Rect],
) -> None:
    """Hand each unowned candidate to the figure of its nearest owned neighbour (panels, keys).

    Repeats until nothing changes, so that a grid of panels joins its caption row by row.
    Text boxes (an abstract, an advertisement) join no figure this way.
    """
    changed = True
    while changed:
        changed = False
        for i, cand in enumerate(cands):
            if owner[i] is not None or cand.text_box:
                continue
            best: tuple[float, Caption] | None = None
            for j, other in enumerate(cands):
                caption = owner[j]
                if caption is None:
                    continue
                dist = _distance(cand.rect, other.rect)
                if dist > PANEL_GAP or (best and dist >= best[0]):
                    continue
                if _clear(cand.rect, other.rect, captions, lines):
                    best = (dist, caption)
            if best:
                owner[i] = best[1]
                changed = True


def _without_caption(rect: pymupdf.Rect, caption: Caption) -> pymupdf.Rect:
    """Cut a caption set inside the figure's frame (BMC, some Elsevier) off the figure box."""
    c = caption.rect
    if area_fraction(c, rect) < 0.8:
        return rect
    if (c.y0 + c.y1) / 2 > (rect.y0 + rect.y1) / 2:
        return pymupdf.Rect(rect.x0, rect.y0, rect.x1, c.y0 - 1)
    return pymupdf.Rect(rect.x0, c.y1 + 1, rect.x1, rect.y1)


def _with_panel_labels(
    rect: pymupdf.Rect, lines: Sequence[pymupdf.Rect], captions: Sequence[Caption]
) -> pymupdf.Rect:
    """Grow a figure over the short text at its edge: panel letters, panel titles, keys."""
    limit = max(0.5 * rect.width, 40.0)
    return _grow_over_lines(rect, lines, captions, lambda width: width <= limit)


def _assign_captions(
    cands: Sequence[Candidate],
    captions: Sequence[Caption],
    text_lines: Sequence[pymupdf.Rect],
    min_size_pt: float,
) -> list[Caption | None]:
    """The figure caption each candidate belongs to (``None``: uncaptioned)."""
    owner: list[Caption | None] = [None] * len(cands)
    # Figures are captioned below or beside: those claims first, so that the panels of a
    # figure under another figure's caption are not given to that caption.
    _seed(cands, owner, captions, text_lines, ("below", "beside"), NEAR_GAP)
    _grow(cands, owner, captions, text_lines)
    _seed(cands, owner, captions, text_lines, ("above",), NEAR_GAP)
    _grow(cands, owner, captions, text_lines)
    # A caption still without graphics may sit further off, past a key or legend lines.
    claimed = {id(c) for c in owner if c is not None}
    far = [c for c in captions if c.kind == "figure" and id(c) not in claimed]
    if far:
        sides = ("below", "beside", "above")
        _seed(cands, owner, captions, text_lines, sides, FAR_GAP, min_long=min_size_pt, only=far)
        _grow(cands, owner, captions, text_lines)
    return owner


def find_figures(
    page: pymupdf.Page,
    drawings: Sequence[dict],
    captions: Sequence[Caption],
    text_lines: Sequence[pymupdf.Rect],
    table_rects: Sequence[pymupdf.Rect],
    min_size_pt: float,
) -> PageFigures:
    """Figures on ``page`` (in reading order), its uncaptioned graphics and free captions.

    ``min_size_pt`` is extract.min_figure_px at extract.dpi, in points: a figure must reach it
    on its long side and a quarter of it on the short one (a wide strip, a reaction scheme).
    """
    out = PageFigures()
    cands = _page_candidates(page, drawings, captions, text_lines)
    cands = _kept_candidates(cands, page_bounds(page), table_rects, out.dropped)
    owner = _assign_captions(cands, captions, text_lines, min_size_pt)
    groups: dict[int, tuple[Caption, list[Candidate]]] = {}
    for cand, caption in zip(cands, owner, strict=True):
        if caption is not None:
            groups.setdefault(id(caption), (caption, []))[1].append(cand)
    for caption, group in groups.values():
        merged = merge_candidates(group, gap=float("inf"))[0]
        rect = _without_caption(_with_panel_labels(merged.rect, text_lines, captions), caption)
        if max(rect.width, rect.height) >= min_size_pt and min(rect.width, rect.height) >= (
            min_size_pt / 4
        ):
            panels = [c.rect for c in group]
            out.figures.append(Figure(rect, caption, candidate_origin(merged), panels))
        else:
            out.dropped.append((rect, f"{SkipReason.CAPTIONED_TOO_SMALL} ({caption.label})"))
    out.free_captions = [c for c in captions if c.kind == "figure" and id(c) not in groups]
    out.orphans = [cand for cand, caption in zip(cands, owner, strict=True) if caption is None]
    out.figures.sort(key=lambda f: (round(f.rect.y0 / 20), f.rect.x0))
    return out


def _page_body(page: pymupdf.Page) -> pymupdf.Rect:
    bounds = page_bounds(page)
    return pymupdf.Rect(
        bounds.x0,
        bounds.y0 + MARGIN * bounds.height,
        bounds.x1,
        bounds.y1 - MARGIN * bounds.height,
    )


def page_graphic(
    page: pymupdf.Page, found: PageFigures, text_lines: Sequence[pymupdf.Rect]
) -> Candidate | None:
    """The page's uncaptioned graphics as one figure, if they make a figure page.

    A figure page: the graphics cover at least PAGE_FIGURE_COVER of the page body, or hardly
    any text lies outside them (a figure on a page of its own).
    """
    graphics = [c for c in found.orphans if not c.text_box]
    if not graphics:
        return None
    merged = merge_candidates(graphics, gap=float("inf"))[0]
    body = _page_body(page)
    cover = merged.rect.get_area() / max(body.get_area(), 1e-6)
    outside = [
        line
        for line in text_lines
        if area_fraction(line, body) > 0.5 and area_fraction(line, merged.rect) < 0.5
    ]
    alone = len(outside) <= 5 and cover >= PAGE_FIGURE_COVER / 2  # a figure page, part empty
    return merged if cover >= PAGE_FIGURE_COVER or alone else None


def opening_caption(
    page: pymupdf.Page, found: PageFigures, text_lines: Sequence[pymupdf.Rect], first: bool
) -> Caption | None:
    """A free figure caption that opens the page (``first``) or closes it: no body text before
    (after) it. A figure on a page of its own is often captioned overleaf this way."""
    body = _page_body(page)
    for caption in found.free_captions:
        others = [
            line
            for line in text_lines
            if area_fraction(line, body) > 0.5 and area_fraction(line, caption.rect) < 0.5
        ]
        if first and all(line.y1 > caption.rect.y0 for line in others):
            return caption
        if not first and all(line.y0 < caption.rect.y1 for line in others):
            return caption
    return None
