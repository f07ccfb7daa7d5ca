"""Figure and table captions: which text blocks are captions, and which region each labels.

A caption is a text block whose first line starts with a label ("Figure 3", "Fig. 2b",
"Table S1", "Scheme 1", "Table 2 (continued)") followed by caption punctuation, a capital or
nothing: "Table 1 shows the results" in running text is no caption.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pymupdf

__all__ = ["Caption", "caption_gap", "find_captions", "nearest_caption"]

Kind = Literal["figure", "table"]

_NUMBER = r"(?:S?\d+[A-Za-z]?|[IVXL]+)"
_TAIL = r"(?=\s*$|\s*[.:|—–-]|\s+\(?[A-Z(]|\s*\((?:cont|Cont))"
_PATTERNS: dict[Kind, re.Pattern[str]] = {
    "figure": re.compile(
        rf"^\s*(?P<label>(?:Figure|FIGURE|Fig\.?|FIG\.?|Scheme|SCHEME|Chart|Plate)\s*{_NUMBER}){_TAIL}"
    ),
    "table": re.compile(rf"^\s*(?P<label>(?:Table|TABLE)\s*{_NUMBER}){_TAIL}"),
}


@dataclass(frozen=True)
class Caption:
    """A caption block: its kind, label ("Figure 3"), whole text and box (unrotated points)."""

    kind: Kind
    label: str
    text: str
    rect: pymupdf.Rect


@dataclass(frozen=True)
class _Line:
    block: int
    rect: pymupdf.Rect
    text: str
    size: float
    bold: bool


def _lines(text_dict: dict) -> list[_Line]:
    out = []
    for b, block in enumerate(text_dict["blocks"]):
        for line in block.get("lines", []):
            spans = [s for s in line["spans"] if s["text"].strip()]
            if not spans:
                continue
            text = re.sub(r"\s+", " ", "".join(s["text"] for s in line["spans"])).strip()
            size = max(s["size"] for s in spans)
            bold = any(s["flags"] & 16 or "Bold" in s["font"] for s in spans[:1])
            out.append(_Line(b, pymupdf.Rect(line["bbox"]), text, size, bold))
    return out


def _starts_caption(line: _Line, prev: _Line | None) -> bool:
    """A label line begins a caption where it begins a block or breaks from the text above."""
    if prev is None or prev.block != line.block:
        return True
    if abs(prev.size - line.size) > 0.5 or prev.bold != line.bold:
        return True
    return line.rect.y0 - prev.rect.y1 > 0.6 * line.rect.height


def _continues(line: _Line, last: _Line, first: _Line) -> bool:
    """Whether ``line`` is the next line of the caption that ``first`` starts and ``last`` ends."""
    if any(p.match(line.text) for p in _PATTERNS.values()):
        return False
    same_row = min(line.rect.y1, last.rect.y1) - max(line.rect.y0, last.rect.y0)
    if same_row > 0.5 * min(line.rect.height, last.rect.height):
        # the rest of the label's row, often a separate line in a bold/regular split
        return 0 <= line.rect.x0 - last.rect.x1 + 1 <= 30
    gap = line.rect.y0 - last.rect.y1
    if not -2.0 <= gap <= 0.8 * last.rect.height:
        return False
    if line.rect.x1 < first.rect.x0 or line.rect.x0 > max(first.rect.x1, last.rect.x1):
        return False
    if line.block == last.block:
        return True
    # a new block continues the caption only in the caption's font, left-aligned with it
    return abs(line.size - last.size) <= 0.5 and abs(line.rect.x0 - first.rect.x0) <= 3


def find_captions(page: pymupdf.Page, text_dict: dict | None = None) -> list[Caption]:
    """Every figure and table caption on ``page``, whole (all its lines, across blocks).

    A caption may start inside a text block (PDF producers often glue it to the paragraph
    above); it then starts at the label line if that line breaks from the previous one
    (another font size or weight, or a gap).
    """
    text_dict = text_dict or page.get_text("dict", flags=pymupdf.TEXTFLAGS_TEXT)
    lines = _lines(text_dict)
    captions = []
    for i, line in enumerate(lines):
        for kind, pattern in _PATTERNS.items():
            match = pattern.match(line.text)
            if match and _starts_caption(line, lines[i - 1] if i else None):
                taken = [line]
                for nxt in lines[i + 1 :]:
                    if not _continues(nxt, taken[-1], line):
                        break
                    taken.append(nxt)
                text = " ".join(t.text for t in taken)
                text = re.sub(r"(?<=[a-z])- (?=[a-z])", "", text)
                rect = pymupdf.Rect(taken[0].rect)
                for t in taken[1:]:
                    rect |= t.rect
                label = re.sub(r"\s+", " ", match.group("label"))
                captions.append(Caption(kind, label, text, rect))
                break
    return captions


def _overlap_1d(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


Side = Literal["below", "above", "beside"]


def caption_gap(rect: pymupdf.Rect, caption: Caption) -> tuple[float, Side | None]:
    """Points from ``rect`` to ``caption`` and the caption's side of it (``None``: unrelated).

    A caption relates to a region above or below it when they share some horizontal extent,
    and beside it (a side caption) when they share vertical extent instead. A caption inside
    the region (a side panel's text) has gap 0 and side ``None`` left to the caller's choice.
    """
    c = caption.rect
    h_overlap = _overlap_1d(rect.x0, rect.x1, c.x0, c.x1)
    v_overlap = _overlap_1d(rect.y0, rect.y1, c.y0, c.y1)
    if h_overlap > 0.3 * min(rect.width, c.width):
        if c.y0 >= rect.y1 - 4:
            return c.y0 - rect.y1, "below"
        if c.y1 <= rect.y0 + 4:
            return rect.y0 - c.y1, "above"
        return 0.0, None
    if v_overlap > 0.3 * min(rect.height, c.height):
        return min(abs(c.x0 - rect.x1), abs(rect.x0 - c.x1)), "beside"
    return float("inf"), None


def nearest_caption(
    rect: pymupdf.Rect,
    captions: Sequence[Caption],
    kind: Kind,
    max_gap: float = 72.0,
    prefer: Literal["below", "above"] = "below",
) -> Caption | None:
    """The caption of ``kind`` nearest to ``rect``: above, below or beside it, within ``max_gap``.

    Captions that share no horizontal extent with the region count only when they sit beside
    it (side captions overlap it vertically). The side named by ``prefer`` wins near-ties,
    because figures are captioned below and tables above.
    """
    best: tuple[float, Caption] | None = None
    for caption in captions:
        if caption.kind != kind:
            continue
        gap, side = caption_gap(rect, caption)
        if gap > max_gap:
            continue
        side = side or prefer  # caption inside the region (e.g. a side panel)
        score = max(gap, 0.0) + (0.0 if side == prefer else 12.0)
        if best is None or score < best[0]:
            best = (score, caption)
    return best[1] if best else None
