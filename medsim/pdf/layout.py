"""Page geometry: rectangle merging, cheap page signals, and the layout model on demand.

Coordinates are PyMuPDF page points with the origin top-left. The extractor removes a page's
rotation first (in memory), so that these are the page as displayed: "above" and "below"
mean what a reader sees, and camelot (which reads rotated pages upright) agrees.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pymupdf

__all__ = [
    "LayoutRegions",
    "area_fraction",
    "detect_layout",
    "grow",
    "merge_rects",
    "page_bounds",
    "pdf_area",
    "ruling_lines",
    "to_display",
    "union",
]

log = logging.getLogger(__name__)

try:  # the ONNX layout model registers itself with PyMuPDF on import
    import pymupdf.layout

    HAS_LAYOUT_MODEL = callable(getattr(pymupdf, "_get_layout", None))
except ImportError:  # pragma: no cover - pymupdf_layout is a declared dependency
    HAS_LAYOUT_MODEL = False


def page_bounds(page: pymupdf.Page) -> pymupdf.Rect:
    """The page's own rectangle in unrotated coordinates."""
    return pymupdf.Rect(page.rect * page.derotation_matrix).normalize()


def to_display(page: pymupdf.Page, rect: pymupdf.Rect) -> pymupdf.Rect:
    """``rect`` (unrotated) in the displayed page's space, as ``get_pixmap(clip=...)`` wants."""
    return pymupdf.Rect(rect * page.rotation_matrix).normalize()


def pdf_area(page: pymupdf.Page, rect: pymupdf.Rect) -> str:
    """``rect`` as camelot's ``"x1,y1,x2,y2"`` (PDF user space: origin bottom-left, y up)."""
    height = page.rect.height  # camelot reads rotated pages upright, as displayed
    return f"{rect.x0:.1f},{height - rect.y0:.1f},{rect.x1:.1f},{height - rect.y1:.1f}"


def area_fraction(inner: pymupdf.Rect, outer: pymupdf.Rect) -> float:
    """The fraction of ``inner``'s area that lies inside ``outer`` (0 for an empty ``inner``)."""
    if inner.is_empty:
        return 0.0
    overlap = pymupdf.Rect(inner) & outer
    return 0.0 if overlap.is_empty else overlap.get_area() / inner.get_area()


def grow(rect: pymupdf.Rect, points: float) -> pymupdf.Rect:
    """``rect`` widened by ``points`` on every side."""
    return pymupdf.Rect(rect.x0 - points, rect.y0 - points, rect.x1 + points, rect.y1 + points)


def merge_rects(rects: Iterable[pymupdf.Rect], gap: float = 0.0) -> list[list[int]]:
    """Group indices of ``rects`` that overlap or lie within ``gap`` points (transitively)."""
    rects = [pymupdf.Rect(r) for r in rects]
    parent = list(range(len(rects)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(rects):
        grown = grow(a, gap)
        for j in range(i + 1, len(rects)):
            if grown.intersects(rects[j]) or grown.contains(rects[j]):
                parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(rects)):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def union(rects: Sequence[pymupdf.Rect]) -> pymupdf.Rect:
    out = pymupdf.Rect(rects[0])
    for r in rects[1:]:
        out |= r
    return out


def ruling_lines(
    drawings: Sequence[dict], min_length: float = 20.0, thickness: float = 2.0
) -> tuple[list[pymupdf.Rect], list[pymupdf.Rect]]:
    """Horizontal and vertical rules (lines, or rectangles thinner than ``thickness``)."""
    horizontal, vertical = [], []
    for drawing in drawings:
        for item in drawing["items"]:
            if item[0] == "l":
                r = pymupdf.Rect(item[1], item[2]).normalize()
            elif item[0] == "re":
                r = pymupdf.Rect(item[1]).normalize()
            else:
                continue
            # a hairline has no area, and PyMuPDF's intersects() ignores empty rectangles
            if r.height <= thickness and r.width >= min_length:
                horizontal.append(pymupdf.Rect(r.x0, r.y0 - 0.5, r.x1, r.y1 + 0.5))
            elif r.width <= thickness and r.height >= min_length:
                vertical.append(pymupdf.Rect(r.x0 - 0.5, r.y0, r.x1 + 0.5, r.y1))
    return horizontal, vertical


@dataclass
class LayoutRegions:
    """What the layout model classed as picture and table on one page (unrotated points)."""

    pictures: list[pymupdf.Rect] = field(default_factory=list)
    tables: list[pymupdf.Rect] = field(default_factory=list)


_MODEL: Any = None


def _layout_model() -> Any:
    """PyMuPDF's layout model, built once per process for this extractor's use.

    pymupdf.layout builds its own copy on import with ONNX Runtime's default thread pools (one
    thread per core) and a table-grid network. The extract stage already runs one worker per
    core, so those pools oversubscribe the CPU: on one core, one thread halves the model's
    time (6 pages: 4.5 s -> 2.4 s of CPU). And camelot parses the cells, so the grid network
    (0.4 s per table page) is dropped. pymupdf.layout has no options for either, so its
    private session factory is replaced while this copy is built; should that factory move
    in a later release, the library's own model is used unchanged.
    """
    global _MODEL
    if _MODEL is not None:
        return _MODEL
    import sys

    import onnxruntime as ort
    from pymupdf.layout import DocumentLayoutAnalyzer

    def make_session(model_path, providers=None):  # the signature of common_util.make_session
        options = ort.SessionOptions()
        options.enable_cpu_mem_arena = False  # as pymupdf.layout sets it: bounded memory
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        return ort.InferenceSession(model_path, sess_options=options, providers=providers)

    modules = [
        module
        for name, module in list(sys.modules.items())
        if name.startswith("pymupdf.layout.onnx") and hasattr(module, "make_session")
    ]
    if not modules:
        log.debug("pymupdf.layout has no make_session to replace; using its default model")
        _MODEL = False
        return _MODEL
    originals = [(module, module.make_session) for module in modules]
    try:
        for module in modules:
            module.make_session = make_session
        model = DocumentLayoutAnalyzer.get_model(n_workers=1)
    finally:
        for module, original in originals:
            module.make_session = original
    inner = getattr(model, "_model", None)
    if inner is not None and hasattr(inner, "table_grid_extractor"):
        inner.table_grid_extractor = None
    _MODEL = model
    return _MODEL


def detect_layout(page: pymupdf.Page) -> LayoutRegions | None:
    """Run PyMuPDF's layout model on ``page`` (0.2-0.5 s of CPU); ``None`` if it is absent.

    Expensive: callers run it only on pages that cheap signals (captions, images, drawings)
    mark.
    """
    if not HAS_LAYOUT_MODEL:
        return None
    model = _layout_model()
    if model is not False:
        boxes = model.predict(page)
    else:
        page.get_layout()
        boxes = page.layout_information or []
    regions = LayoutRegions()
    for *box, cls in boxes:
        if cls == "picture":
            regions.pictures.append(pymupdf.Rect(box))
        elif cls == "table":
            regions.tables.append(pymupdf.Rect(box))
    return regions
