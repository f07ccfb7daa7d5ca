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


# --- Harder figure layouts (issue 12) ------------------------------------------------------
# Each builder writes one PDF and returns it; LAYOUTS maps a file name to (builder, truth),
# truth being the figures a reader counts: (page, caption label, bbox in points).

Box = tuple[float, float, float, float]


def plot_pdf(kind: str, seed: int, size: tuple[float, float] = (160, 120)) -> pymupdf.Document:
    """A matplotlib plot as a one-page vector PDF (axes, ticks, labels as paths and text)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rng = np.random.default_rng(seed)
    fig, ax = plt.subplots(figsize=(size[0] / 72, size[1] / 72))
    if kind == "line":
        x = np.linspace(0, 24, 30)
        ax.plot(x, np.cumsum(rng.normal(size=30)), color="C0")
        ax.plot(x, np.cumsum(rng.normal(size=30)), color="C1")
        ax.set_xlabel("months", fontsize=6)
    elif kind == "scatter":
        ax.scatter(rng.normal(size=40), rng.normal(size=40), s=4)
        ax.set_xlabel("log2 fold change", fontsize=6)
    else:
        ax.bar(range(5), rng.uniform(1, 5, 5), color="C2")
        ax.set_xticks(range(5), [f"G{i}" for i in range(5)])
    ax.tick_params(labelsize=5)
    fig.tight_layout(pad=0.2)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="pdf")
    plt.close(fig)
    return pymupdf.open("pdf", buffer.getvalue())


def micrograph(seed: int, width: int = 240, height: int = 180) -> bytes:
    """A noisy greyscale-and-colour PNG, like a stained tissue section (no flat decoration)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    base = rng.integers(120, 255, size=(height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    img = np.ascontiguousarray(np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))[:height, :width])
    pix = pymupdf.Pixmap(pymupdf.csRGB, width, height, img.tobytes(), False)
    return pix.tobytes("png")


def _image(page: pymupdf.Page, rect: pymupdf.Rect, seed: int) -> None:
    """A micrograph filling ``rect`` exactly (insert_image keeps the aspect ratio)."""
    page.insert_image(rect, stream=micrograph(seed, int(rect.width * 2), int(rect.height * 2)))


def _plot(page: pymupdf.Page, rect: pymupdf.Rect, kind: str, seed: int) -> None:
    with plot_pdf(kind, seed, (rect.width, rect.height)) as src:
        page.show_pdf_page(rect, src, 0)


def _letter(page: pymupdf.Page, x: float, y: float, letter: str) -> None:
    page.insert_text((x, y), letter, fontsize=10, fontname="hebo")


def _two_columns(page: pymupdf.Page, y0: float, y1: float) -> None:
    paragraph(page, pymupdf.Rect(50, y0, 295, y1))
    paragraph(page, pymupdf.Rect(317, y0, 562, y1))


def grid_figure(path: Path) -> Path:
    """A 2x3 grid of vector plots, panel letters a-f, one caption below; a raster 2x2 grid
    under the caption of another figure (its top row is nearer that caption than its own)."""
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    _two_columns(page, 60, 130)
    kinds = ["line", "scatter", "bar"]
    for i in range(6):
        row, col = divmod(i, 3)
        x, y = 60 + col * 170, 150 + row * 150
        _letter(page, x - 8, y - 4, "abcdef"[i])
        _plot(page, pymupdf.Rect(x, y, x + 150, y + 125), kinds[i % 3], i)
    caption(
        page,
        pymupdf.Rect(50, 432, 562, 456),
        "Figure 1. Tumour growth (a, d), expression (b, e) and response (c, f) in the two "
        "cohorts. Panels share axes within a row.",
    )
    for i in range(4):
        row, col = divmod(i, 2)
        x, y = 120 + col * 195, 470 + row * 120
        _letter(page, x - 10, y + 8, "ABCD"[i])
        _image(page, pymupdf.Rect(x, y, x + 180, y + 105), 10 + i)
    caption(
        page,
        pymupdf.Rect(50, 704, 562, 728),
        "Figure 2. Haematoxylin and eosin sections of four tumours (A-D), scale bar 100 um.",
    )
    doc.save(path)
    return path


def side_caption(path: Path) -> Path:
    """Side captions: a raster figure with its caption on the right (top-aligned), and a
    vector figure with its caption on the left (bottom-aligned), as Springer sets them."""
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    paragraph(page, pymupdf.Rect(50, 60, 562, 120))
    _image(page, pymupdf.Rect(50, 140, 220, 270), 20)
    _image(page, pymupdf.Rect(228, 140, 398, 270), 21)
    caption(
        page,
        pymupdf.Rect(414, 140, 562, 230),
        "Fig. 1 Computed tomography of the chest before (left) and after (right) three "
        "cycles of chemotherapy; the lesion shrank by half.",
    )
    paragraph(page, pymupdf.Rect(50, 290, 562, 380))
    caption(
        page,
        pymupdf.Rect(50, 480, 200, 560),
        "Fig. 2 Overall survival by treatment arm; ticks mark censored patients.",
    )
    _plot(page, pymupdf.Rect(216, 400, 562, 560), "line", 22)
    paragraph(page, pymupdf.Rect(50, 580, 562, 700))
    doc.save(path)
    return path


def figure_overleaf(path: Path) -> Path:
    """A figure filling page 2 with its caption opening page 3; a caption closing page 3
    with its figure filling page 4."""
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    paragraph(page, pymupdf.Rect(50, 60, 562, 700), LOREM * 12)
    page = doc.new_page(width=612, height=792)
    for i in range(4):
        row, col = divmod(i, 2)
        x, y = 50 + col * 262, 60 + row * 340
        _image(page, pymupdf.Rect(x, y, x + 250, y + 325), 30 + i)
    page = doc.new_page(width=612, height=792)
    caption(
        page,
        pymupdf.Rect(50, 60, 562, 96),
        "Figure 1. Immunohistochemistry of the four markers on consecutive sections "
        "(previous page); brown staining marks positive cells.",
    )
    paragraph(page, pymupdf.Rect(50, 110, 562, 650), LOREM * 10)
    caption(
        page,
        pymupdf.Rect(50, 660, 562, 700),
        "Figure 2. Kaplan-Meier estimates for all subgroups (overleaf).",
    )
    page = doc.new_page(width=612, height=792)
    for i in range(6):
        row, col = divmod(i, 2)
        x, y = 60 + col * 260, 60 + row * 225
        _plot(page, pymupdf.Rect(x, y, x + 240, y + 205), "line", 40 + i)
    doc.save(path)
    return path


def mixed_figure(path: Path) -> Path:
    """Raster images with vector overlays (arrows, a scale bar, labels) beside a vector plot,
    one caption; a figure captioned above; a caption-less wide equation image in the text."""
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    paragraph(page, pymupdf.Rect(50, 60, 562, 110))
    image = pymupdf.Rect(60, 130, 280, 300)
    _image(page, image, 50)
    page.draw_line((120, 180), (160, 210), color=(1, 1, 0), width=2)  # arrow on the image
    page.draw_line((160, 210), (150, 200), color=(1, 1, 0), width=2)
    page.draw_rect(pymupdf.Rect(230, 285, 270, 289), color=(1, 1, 1), fill=(1, 1, 1))
    page.insert_text((232, 282), "50 um", fontsize=6, color=(1, 1, 1))
    # a vector inset drawn partly outside the image, as authors annotate micrographs
    page.draw_rect(pymupdf.Rect(270, 140, 330, 190), color=(1, 0, 0), width=1.5)
    page.draw_line((330, 165), (345, 165), color=(1, 0, 0), width=1)
    _plot(page, pymupdf.Rect(360, 130, 560, 300), "scatter", 51)
    caption(
        page,
        pymupdf.Rect(50, 312, 562, 336),
        "Figure 1. A lesion on confocal microscopy (arrow; inset enlarged) and the expression "
        "of the marker genes in the same sample.",
    )
    paragraph(page, pymupdf.Rect(50, 350, 562, 420))
    page.insert_image(pymupdf.Rect(200, 428, 410, 446), stream=png(420, 36, (250, 250, 250)))
    paragraph(page, pymupdf.Rect(50, 454, 562, 500))
    caption(
        page,
        pymupdf.Rect(50, 520, 562, 544),
        "Figure 2. Dose-response curves of the three compounds, measured in triplicate.",
    )
    for i in range(3):
        x = 60 + i * 170
        _plot(page, pymupdf.Rect(x, 552, x + 150, 680), "line", 52 + i)
    paragraph(page, pymupdf.Rect(50, 700, 562, 740))
    doc.save(path)
    return path


def logos_and_icons(path: Path) -> Path:
    """Graphics that are no figures: a journal banner, an open-access badge, ORCID icons,
    an equation image, a shaded text box; and one real figure among them."""
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    page.insert_image(pymupdf.Rect(50, 20, 250, 44), stream=png(400, 48, (0, 60, 120)))  # banner
    page.insert_image(pymupdf.Rect(520, 20, 560, 44), stream=png(80, 48, (240, 120, 0)))  # badge
    page.insert_text((50, 80), "A. Author", fontsize=10)
    page.insert_image(pymupdf.Rect(105, 71, 114, 80), stream=png(18, 18, (160, 200, 40)))  # orcid
    page.insert_text((130, 80), "B. Author", fontsize=10)
    page.insert_image(pymupdf.Rect(185, 71, 194, 80), stream=png(18, 18, (160, 200, 40)))
    box = pymupdf.Rect(50, 100, 562, 200)
    page.draw_rect(box, color=None, fill=(0.9, 0.92, 0.96))
    paragraph(page, grow_rect(box, -8), LOREM * 2)
    paragraph(page, pymupdf.Rect(50, 215, 562, 280))
    page.insert_image(pymupdf.Rect(230, 286, 380, 310), stream=png(300, 48, (245, 245, 245)))
    paragraph(page, pymupdf.Rect(50, 318, 562, 380))
    _image(page, pymupdf.Rect(150, 400, 460, 600), 60)
    caption(page, pymupdf.Rect(50, 610, 562, 634), "Figure 1. Dermoscopy of the lesion.")
    paragraph(page, pymupdf.Rect(50, 650, 562, 720))
    page.insert_image(pymupdf.Rect(50, 750, 140, 772), stream=png(180, 44, (90, 90, 90)))  # footer
    doc.save(path)
    return path


def two_columns(path: Path) -> Path:
    """Two figures side by side, one per column (a 20 pt gutter between them), each captioned
    in its column; under them a full-width figure whose panels carry one-line sub-captions."""
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    _two_columns(page, 60, 120)
    for col, x in enumerate((50, 317)):
        for row in range(2):
            y = 135 + row * 110
            _letter(page, x, y + 10, "AB"[row])
            _image(page, pymupdf.Rect(x + 12, y, x + 245, y + 100), 70 + 2 * col + row)
        caption(
            page,
            pymupdf.Rect(x, 352, x + 245, 380),
            f"Figure {col + 1}. Biopsy of patient {col + 1}: low (A) and high (B) magnification.",
        )
    paragraph(page, pymupdf.Rect(50, 395, 295, 450))
    paragraph(page, pymupdf.Rect(317, 395, 562, 450))
    for i, kind in enumerate(("bar", "line", "scatter")):
        x = 55 + i * 170
        _plot(page, pymupdf.Rect(x, 465, x + 160, 575), kind, 80 + i)
        text = f"({'abc'[i]}) {('Baseline', 'Follow-up', 'Correlation')[i]} in all patients"
        page.insert_text((x + 4, 588), text, fontsize=7)
    caption(
        page,
        pymupdf.Rect(50, 600, 562, 624),
        "Figure 3. Marker levels at baseline (a) and follow-up (b), and their correlation (c).",
    )
    paragraph(page, pymupdf.Rect(50, 640, 562, 720))
    doc.save(path)
    return path


def grow_rect(rect: pymupdf.Rect, points: float) -> pymupdf.Rect:
    return pymupdf.Rect(rect.x0 - points, rect.y0 - points, rect.x1 + points, rect.y1 + points)


LAYOUTS: dict[str, tuple] = {
    "grid.pdf": (
        grid_figure,
        [(1, "Figure 1", (52, 146, 550, 425)), (1, "Figure 2", (110, 470, 495, 695))],
    ),
    "side_caption.pdf": (
        side_caption,
        [(1, "Fig. 1", (50, 140, 398, 270)), (1, "Fig. 2", (216, 400, 562, 560))],
    ),
    "overleaf.pdf": (
        figure_overleaf,
        [(2, "Figure 1", (50, 60, 562, 725)), (4, "Figure 2", (60, 60, 560, 710))],
    ),
    "mixed.pdf": (
        mixed_figure,
        [(1, "Figure 1", (60, 130, 560, 300)), (1, "Figure 2", (60, 552, 530, 680))],
    ),
    "logos.pdf": (logos_and_icons, [(1, "Figure 1", (150, 400, 460, 600))]),
    "columns.pdf": (
        two_columns,
        [
            (1, "Figure 1", (50, 135, 295, 345)),
            (1, "Figure 2", (317, 135, 562, 345)),
            (1, "Figure 3", (55, 465, 555, 590)),
        ],
    ),
}
