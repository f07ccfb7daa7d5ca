"""Figures and tables from JATS: exact cells, captions, images, and the stage's prefer switch."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from lxml import etree
from PIL import Image

from medsim.config import ExtractParams, params_from_dict
from medsim.io import read_table, rows_to_table, write_table
from medsim.pdf.jats import extract_jats, table_cells
from medsim.pdf.stage import run_extract
from medsim.schemas import ARTICLES, FIGURES, SKIPPED, TABLES
from tests.pdf import pdfgen
from tests.pubmed.fake_eutils import as_jpeg, graphic_names, recorded_fulltexts, recorded_images

PARAMS = ExtractParams()


def test_table_cells_expand_spans_exactly() -> None:
    table = etree.fromstring(
        "<table><thead><tr><th rowspan='2'>Gene</th><th colspan='2'>Expression</th></tr>"
        "<tr><th>tumour</th><th>normal</th></tr></thead>"
        "<tbody><tr><td>TP53 <italic>mut</italic></td><td>2.5</td><td>1.0</td></tr>"
        "<tr><td colspan='3'>n = 12</td></tr></tbody></table>"
    )
    assert table_cells(table) == [
        ["Gene", "Expression", ""],
        ["", "tumour", "normal"],
        ["TP53 mut", "2.5", "1.0"],
        ["n = 12", "", ""],
    ]


def _jpeg(size=(300, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_figures_tables_and_what_is_skipped(tmp_path) -> None:
    (tmp_path / "a.f001.jpg").write_bytes(_jpeg())
    (tmp_path / "a.f003.png").write_bytes(b"not an image")
    xml = tmp_path / "a.xml"
    xml.write_text(
        '<article xmlns:xlink="http://www.w3.org/1999/xlink"><body>'
        '<fig id="F1"><label>Figure 1</label><caption><title>Tumour.</title><p>H&amp;E, x40.'
        '</p></caption><graphic xlink:href="a.f001"/></fig>'
        '<fig id="F2"><label>Figure 2</label><graphic xlink:href="a.f002"/></fig>'
        '<fig id="F3"><label>Figure 3</label><graphic xlink:href="a.f003"/></fig>'
        '<table-wrap id="T1"><label>Table 1</label><caption><p>Cohort</p></caption>'
        "<table><tr><th>n</th></tr><tr><td>12</td></tr></table></table-wrap>"
        '<table-wrap id="T2"><label>Table 2</label><graphic xlink:href="t2"/></table-wrap>'
        "</body></article>"
    )
    result = extract_jats(xml, "d1", PARAMS)
    (figure,) = result.figures
    assert figure["figure_id"] == "d1:jats:F1" and figure["origin"] == "jats"
    assert figure["caption"] == "Figure 1. Tumour. H&E, x40."
    assert (figure["width"], figure["height"]) == (300, 200)
    assert figure["image"].startswith(b"\x89PNG")
    (table,) = result.tables
    assert table["caption"] == "Table 1. Cohort" and json.loads(table["cells"]) == [["n"], ["12"]]
    assert table["origin"] == "jats" and table["page"] is None
    assert {(i, r) for i, r, _ in result.skipped} == {
        ("d1:jats:F2", "figure image missing"),
        ("d1:jats:F3", "undecodable image"),
        ("d1:jats:T2", "table without cells"),
    }
    broken = tmp_path / "b.xml"
    broken.write_text("<article><body><fig>")
    assert [r for _, r, _ in extract_jats(broken, "d2", PARAMS).skipped] == ["malformed xml"]


def _place_recorded(shared: Path, folder: Path) -> list[tuple[Path, etree._Element]]:
    """The real JATS full texts, each in its folder with one real figure image per graphic."""
    images = [as_jpeg(p) for p in recorded_images(shared)]
    placed = []
    for i, path in enumerate(recorded_fulltexts(shared)):
        target = folder / path.stem / path.name
        target.parent.mkdir(parents=True)
        target.write_bytes(path.read_bytes())
        for j, name in enumerate(graphic_names(path.read_bytes())):
            (target.parent / f"{name}.jpg").write_bytes(images[(i + j) % len(images)])
        placed.append((target, etree.parse(str(path)).getroot()))
    return placed


def test_recorded_full_texts_give_one_figure_per_fig_and_one_table_per_table_wrap(
    shared_data, tmp_path
) -> None:
    figures = tables = 0
    for xml, root in _place_recorded(shared_data, tmp_path):
        result = extract_jats(xml, xml.stem, PARAMS)
        figs = list(root.iter("fig"))
        wraps = [w for w in root.iter("table-wrap") if w.find(".//table") is not None]
        assert len(result.figures) == len(figs), xml.name
        assert len(result.tables) == len(wraps), xml.name
        assert not result.skipped, result.skipped
        for row, fig in zip(result.figures, figs, strict=True):
            assert row["caption"].startswith(fig.findtext("label").strip().rstrip(".:"))
        for row, wrap in zip(result.tables, wraps, strict=True):
            rows = json.loads(row["cells"])
            assert len(rows) == len(wrap.findall(".//tr"))
            first = next(c for c in wrap.iter("td", "th"))
            assert rows[0][0] == " ".join("".join(first.itertext()).split())
        figures += len(result.figures)
        tables += len(result.tables)
    assert (figures, tables) == (17, 21)  # counted in the 8 XML files


@pytest.mark.parametrize("prefer", ["jats", "pdf"])
def test_stage_takes_one_source_per_article(tmp_path, prefer) -> None:
    (tmp_path / "data/raw/pdfs").mkdir(parents=True)
    pdfgen.article(tmp_path / "data/raw/pdfs/both.pdf")
    pdfgen.article(tmp_path / "data/raw/pdfs/pdfonly.pdf")
    folder = tmp_path / "data/raw/pmc/both"
    folder.mkdir(parents=True)
    (folder / "x.f1.jpg").write_bytes(_jpeg())
    (folder / "PMC1.1.xml").write_text(
        '<article xmlns:xlink="http://www.w3.org/1999/xlink"><body><fig id="F1">'
        '<label>Figure 1</label><caption><p>A.</p></caption><graphic xlink:href="x.f1"/></fig>'
        "<table-wrap id='T1'><label>Table 1</label><table><tr><td>1</td></tr></table>"
        "</table-wrap></body></article>"
    )
    rows = [
        {"doc_id": "both", "pdf_path": "data/raw/pdfs/both.pdf"},
        {"doc_id": "pdfonly", "pdf_path": "data/raw/pdfs/pdfonly.pdf"},
    ]
    for row in rows:
        row |= {"title": "t", "abstract": "a", "split": "train", "source": "entrez"}
    rows[0]["jats_path"] = "data/raw/pmc/both/PMC1.1.xml"
    write_table(rows_to_table(rows, ARTICLES), tmp_path / "data/articles.parquet", ARTICLES)
    params = params_from_dict({"extract": {"workers": 1, "prefer": prefer}})
    summary = run_extract(params, tmp_path)
    figures = read_table(tmp_path / "data/figures.parquet", FIGURES).to_pylist()
    tables = read_table(tmp_path / "data/tables.parquet", TABLES).to_pylist()
    origins = {(r["doc_id"], r["origin"]) for r in figures + tables}
    if prefer == "jats":
        assert origins == {("both", "jats"), ("pdfonly", "pdf")}
        assert (summary.jats, summary.pdfs) == (1, 1)
    else:
        assert origins == {("both", "pdf"), ("pdfonly", "pdf")}
        assert (summary.jats, summary.pdfs) == (0, 2)
    read_table(tmp_path / "data/skipped.parquet/extract.parquet", SKIPPED)


def test_pdf_vs_jats_benchmark_matches_by_caption_label(repo_root) -> None:
    import importlib.util

    path = repo_root / "benchmarks" / "pdf_vs_jats.py"
    spec = importlib.util.spec_from_file_location("pdf_vs_jats", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.label_key("Fig. 2: Survival") == ("figure", "2")
    assert bench.label_key("Table S1. Primers") == ("table", "S1")
    assert bench.label_key("A photograph") is None
    truth = ["Figure 1. A", "Figure 2. B", "Table 1. C"]
    found = ["FIGURE 2 B", "Fig 3. extra", "untitled", "Table 1 C"]
    assert bench.score(truth, found) == (2, 4, 3)  # 2 of 4 found are right, 2 of 3 found
