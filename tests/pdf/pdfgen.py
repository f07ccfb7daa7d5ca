"""PDFs with known content, written with PyMuPDF for the extraction tests."""

from __future__ import annotations

from pathlib import Path

import pymupdf

LOREM = (
    "Clinical trials of targeted therapies enrolled patients with advanced disease and "
    "measured progression free survival over two years of follow up in several centres."
)


def png(width: int, height: int, rgb: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A solid-colour PNG with a darker diagonal, so that it is not a flat decoration."""
    pix = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, width, height), False)
    pix.set_rect(pix.irect, rgb)
    for i in range(min(width, height)):
        pix.set_pixel(i, i, (0, 0, 0))
    return pix.tobytes("png")


def paragraph(
    page: pymupdf.Page, rect: pymupdf.Rect, text: str = LOREM * 3, size: float = 9
) -> None:
    page.insert_textbox(rect, text, fontsize=size, fontname="helv")


def caption(page: pymupdf.Page, rect: pymupdf.Rect, text: str, size: float = 8) -> None:
    page.insert_textbox(rect, text, fontsize=size, fontname="hebo")


def bar_chart(page: pymupdf.Page, rect: pymupdf.Rect, bars: int = 5) -> None:
    """Axes, ticks and filled bars drawn as vector paths, with tick labels."""
    x0, y0, x1, y1 = rect
    page.draw_line((x0, y1), (x1, y1), color=(0, 0, 0), width=1)
    page.draw_line((x0, y0), (x0, y1), color=(0, 0, 0), width=1)
    step = (x1 - x0) / bars
    for i in range(bars):
        top = y0 + (y1 - y0) * (0.2 + 0.6 * ((i * 37) % 7) / 7)
        bar = pymupdf.Rect(x0 + i * step + 6, top, x0 + (i + 1) * step - 6, y1)
        page.draw_rect(bar, color=(0, 0, 0.5), fill=(0.2, 0.4, 0.8))
        page.draw_line((x0 - 3, top), (x0, top), color=(0, 0, 0), width=0.5)
        page.insert_text((x0 + i * step + 8, y1 + 10), f"G{i + 1}", fontsize=7)


def table(
    page: pymupdf.Page,
    origin: tuple[float, float],
    cells: list[list[str]],
    ruled: bool,
    col_width: float = 80,
    row_height: float = 16,
    size: float = 8,
) -> pymupdf.Rect:
    """Cells as text at a grid; with ``ruled`` every cell border is drawn. Returns the box."""
    x0, y0 = origin
    rows, cols = len(cells), len(cells[0])
    box = pymupdf.Rect(x0, y0, x0 + cols * col_width, y0 + rows * row_height)
    for r, row in enumerate(cells):
        for c, text in enumerate(row):
            page.insert_text(
                (x0 + c * col_width + 4, y0 + r * row_height + 11), text, fontsize=size
            )
    if ruled:
        for r in range(rows + 1):
            y = y0 + r * row_height
            page.draw_line((box.x0, y), (box.x1, y), color=(0, 0, 0), width=0.8)
        for c in range(cols + 1):
            x = x0 + c * col_width
            page.draw_line((x, box.y0), (x, box.y1), color=(0, 0, 0), width=0.8)
    return box


RULED = [
    ["Drug", "Dose", "Response"],
    ["Tamoxifen", "20 mg", "0.41"],
    ["Letrozole", "2.5 mg", "0.52"],
    ["Placebo", "0 mg", "0.12"],
]
UNRULED = [
    ["Gene", "Cases", "Rate"],
    ["BRCA1", "112", "0.31"],
    ["BRCA2", "87", "0.24"],
    ["TP53", "45", "0.13"],
    ["PTEN", "12", "0.03"],
]


def article(path: Path) -> Path:
    """A 3-page article: what it holds is listed in ``ARTICLE_TRUTH``.

    Page 1 (one column): a logo, a raster figure, a vector bar chart, a ruled table.
    Page 2 (two columns): a figure of four raster tiles, an unruled table.
    Page 3 (rotated 90 degrees): a raster figure and a ruled table.
    """
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    page.insert_image(pymupdf.Rect(540, 60, 560, 80), stream=png(40, 40, (0, 120, 0)))  # logo
    paragraph(page, pymupdf.Rect(72, 60, 530, 110))
    page.insert_image(pymupdf.Rect(150, 120, 450, 300), stream=png(600, 360))
    caption(
        page,
        pymupdf.Rect(72, 306, 540, 330),
        "Figure 1. Tumour cells stained for HER2 under the microscope.",
    )
    paragraph(page, pymupdf.Rect(72, 340, 540, 380))
    bar_chart(page, pymupdf.Rect(150, 390, 450, 520))
    caption(page, pymupdf.Rect(72, 540, 540, 560), "Fig. 2: Response rates by group in the trial.")
    caption(page, pymupdf.Rect(72, 580, 540, 594), "Table 1. Doses and responses.")
    table(page, (150, 600), RULED, ruled=True)
    paragraph(page, pymupdf.Rect(72, 690, 540, 740))

    page = doc.new_page(width=612, height=792)
    paragraph(page, pymupdf.Rect(50, 60, 295, 200))
    paragraph(page, pymupdf.Rect(317, 60, 562, 200))
    for i, (dx, dy) in enumerate([(0, 0), (100, 0), (0, 80), (100, 80)]):
        tile = pymupdf.Rect(70 + dx, 220 + dy, 170 + dx, 300 + dy)
        page.insert_image(tile, stream=png(200, 160, (40 * i, 90, 160)))
    caption(page, pymupdf.Rect(50, 390, 295, 420), "Figure 3 Four panels of one scan, tiled.")
    paragraph(page, pymupdf.Rect(50, 430, 295, 700))
    caption(page, pymupdf.Rect(317, 220, 562, 234), "Table 2 Mutation rates by gene")
    table(page, (330, 245), UNRULED, ruled=False, col_width=70)
    paragraph(page, pymupdf.Rect(317, 360, 562, 700))

    # A landscape table page as journals print it: a portrait page turned by /Rotate 90 whose
    # content is drawn turned the other way, so that it reads upright on screen.
    landscape = pymupdf.open()
    src = landscape.new_page(width=792, height=612)
    src.insert_image(pymupdf.Rect(100, 80, 400, 260), stream=png(500, 300, (30, 30, 200)))
    caption(src, pymupdf.Rect(72, 266, 540, 290), "Figure 4. A figure on a landscape page.")
    caption(src, pymupdf.Rect(72, 320, 540, 334), "Table 3. Landscape doses.")
    table(src, (100, 340), RULED, ruled=True)
    paragraph(src, pymupdf.Rect(72, 450, 700, 540))
    page = doc.new_page(width=612, height=792)
    page.show_pdf_page(page.rect, landscape, 0, rotate=90)
    page.set_rotation(90)
    doc.save(path)
    return path


ARTICLE_TRUTH = {
    "figures": [(1, "Figure 1"), (1, "Fig. 2"), (2, "Figure 3"), (3, "Figure 4")],
    "tables": [(1, "Table 1", RULED), (2, "Table 2", UNRULED), (3, "Table 3", RULED)],
}
