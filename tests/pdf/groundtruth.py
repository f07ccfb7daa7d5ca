"""Figures and tables of the six real PDFs in ../shared/data/pmc-pdfs/pdf, counted by eye.

Every page was rendered to PNG and looked at. Figures: (page, caption label or None, bbox in
points as displayed); uncaptioned figures are the three structure formulas of test3 (drawn
with vector paths, labelled only "1", "2", "3"). The bboxes are the image placements (raster
figures) or the drawing's extent (vector ones), checked on the renders. Logos, the BioMed
Central advertisement box, the shaded abstract box, the PeerJ badge, licence strips and the
images inside Table 3 of example3 are not figures. Tables: (page, caption label, a cell value
that must be parsed); test6's Table 2 spans pages 8-10 ("Table 2 (continued)"), one region
per page.
"""

FIGURES: dict[str, list[tuple[int, str | None, tuple[float, float, float, float]]]] = {
    "cermine-impl_test1.pdf": [],
    "cermine-impl_test2.pdf": [],
    "cermine-impl_test3.pdf": [
        (3, None, (113, 298, 268, 434)),
        (3, None, (113, 469, 269, 604)),
        (3, None, (328, 267, 528, 394)),
    ],
    "cermine-impl_test6.pdf": [
        (4, "Figure 1", (184, 86, 406, 626)),
        (5, "Figure 2", (184, 86, 569, 579)),
    ],
    "cermine-web_example1.pdf": [(4, "Figure 1", (139, 62, 455, 391))],
    "cermine-web_example3.pdf": [
        (2, "Figure 1", (350, 210, 491, 266)),
        (5, "Figure 2", (157, 82, 441, 128)),
        (5, "Figure 3", (129, 169, 469, 283)),
        (5, "Figure 4", (352, 316, 494, 477)),
        (6, "Figure 5", (89, 81, 257, 291)),
        (6, "Figure 6", (98, 491, 495, 667)),
        (7, "Figure 7", (63, 81, 534, 216)),
        (12, "Figure S1", (107, 337, 490, 454)),
        (12, "Scheme S1", (114, 486, 483, 683)),
        (13, "Figure S2", (74, 81, 272, 253)),
    ],
}

# Real PDFs beyond the six (issue 12): tests/pdf/fixtures (committed, see its PROVENANCE.md)
# and, when a copy is at hand, PDFs whose licence forbids committing them. Boxes by eye on
# renders at 150 dpi: the graphics a caption names, panels included, caption excluded.
LAYOUT_FIGURES: dict[str, list[tuple[int, str | None, tuple[float, float, float, float]]]] = {
    "cermine-web_example2.pdf": [(7, "Figure 1", (61, 94, 287, 240))],
    "cermine_test5.pdf": [
        (2, "Figure 1", (307, 57, 553, 222)),
        (3, "Figure 2", (196, 56, 553, 307)),
        (4, "Figure 3", (196, 56, 553, 463)),
        (5, "Figure 4", (196, 56, 553, 484)),
    ],
}

TABLES: dict[str, list[tuple[int, str, str]]] = {
    "cermine-impl_test1.pdf": [],
    "cermine-impl_test2.pdf": [],
    "cermine-impl_test3.pdf": [(4, "Table 1", "0.28 ± 1.25")],
    "cermine-impl_test6.pdf": [
        (3, "Table 1", "Data preparation"),
        (8, "Table 2", "Sample_MSA"),
        (9, "Table 2", "Sample_MSA_Chimp"),
        (10, "Table 2", "Sample_MSA_Human"),
        (11, "Table 3", "ATG16L1"),
    ],
    "cermine-web_example1.pdf": [
        (3, "Table 1", "25.8"),
        (5, "Table 2", "0.99 (0.96–1.03)"),
    ],
    "cermine-web_example3.pdf": [
        (2, "Table 1", "N-Acetyl-SDKP"),
        (3, "Table 2", "4BXK"),
        (4, "Table 3", "RXP407"),
        (5, "Table 4", "N-domain"),
        (6, "Table 5", "Tyr498"),
    ],
}


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


def match_figures(truth, found, min_iou: float = 0.5) -> list[tuple[int, int]]:
    """Greedy one-to-one matches (truth index, found index): same page, IoU >= ``min_iou``.

    ``found`` rows carry ``page`` and ``bbox`` as in data/figures.parquet.
    """
    pairs = sorted(
        (
            (iou(t[2], tuple(f["bbox"])), i, j)
            for i, t in enumerate(truth)
            for j, f in enumerate(found)
            if f["page"] == t[0]
        ),
        reverse=True,
    )
    used_t, used_f, out = set(), set(), []
    for score, i, j in pairs:
        if score >= min_iou and i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
            out.append((i, j))
    return out


def match_tables(truth, found) -> list[tuple[int, int]]:
    """Matches (truth index, found index): same page, caption label, and the cell value parsed.

    ``found`` rows carry ``page``, ``caption`` and ``cells`` (JSON) as in data/tables.parquet;
    a row without a caption matches on page and cell value alone.
    """
    used, out = set(), []
    for i, (page, label, cell) in enumerate(truth):
        for j, f in enumerate(found):
            if j in used or f["page"] != page or cell not in f["cells"]:
                continue
            if f.get("caption") and not f["caption"].startswith(label):
                continue
            used.add(j)
            out.append((i, j))
            break
    return out
