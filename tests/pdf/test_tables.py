"""Table regions camelot rejects are skip rows, with why, not silently lost."""

from pathlib import Path

import pandas as pd
import pymupdf
import pytest

from medsim.config import ExtractParams
from medsim.names import SkipReason
from medsim.pdf.extract import extract_pdf
from medsim.pdf.tables import ParsedTable, parse_region
from tests.pdf.pdfgen import caption, paragraph


class _Table:
    """What camelot returns per table: a DataFrame of cells and a parsing report."""

    def __init__(self, rows: list[list[str]]) -> None:
        self.df = pd.DataFrame(rows)
        self.parsing_report = {"accuracy": 99.0, "whitespace": 10.0}


@pytest.fixture
def page():
    doc = pymupdf.open()
    yield doc.new_page(width=595, height=842)
    doc.close()


def test_a_region_with_a_table_is_parsed(page) -> None:
    def reader(path, number, flavor, area):
        return [_Table([["dose", "n"], ["10 mg", "12"], ["", ""]])]

    parsed = parse_region(Path("x.pdf"), page, pymupdf.Rect(50, 50, 300, 200), False, reader)
    assert isinstance(parsed, ParsedTable)
    assert (parsed.cells, parsed.flavor) == ([["dose", "n"], ["10 mg", "12"]], "stream")


def test_a_rejected_region_says_why_for_each_flavor(page) -> None:
    def reader(path, number, flavor, area):
        if flavor == "lattice":
            raise ValueError("no grid")
        return [_Table([["only one column"], ["second row"]]), _Table([["a", "b", "c"]])]

    why = parse_region(Path("x.pdf"), page, pymupdf.Rect(50, 50, 300, 200), True, reader)
    assert why == (
        "camelot lattice failed (ValueError: no grid); "
        "camelot stream: no table of at least 2x2 cells (2x1, 1x3)"
    )
    assert "(none)" in parse_region(
        Path("x.pdf"), page, pymupdf.Rect(50, 50, 300, 200), False, lambda *a: []
    )


def test_a_captioned_region_camelot_rejects_is_a_skip_row(tmp_path: Path) -> None:
    # "Table 1" heads a list of single words: a table region by its caption, one column only
    doc = pymupdf.open()
    pdf_page = doc.new_page(width=595, height=842)
    paragraph(pdf_page, pymupdf.Rect(60, 60, 535, 200))
    caption(pdf_page, pymupdf.Rect(60, 230, 535, 250), "Table 1. Drugs given in the trial.")
    for i, word in enumerate(["cisplatin", "docetaxel", "gemcitabine", "pemetrexed"]):
        pdf_page.insert_text((60, 268 + 14 * i), word, fontsize=9, fontname="helv")
    paragraph(pdf_page, pymupdf.Rect(60, 400, 535, 560))
    path = tmp_path / "list.pdf"
    doc.save(path)
    doc.close()

    result = extract_pdf(path, "doc1", ExtractParams())
    assert result.tables == []
    rejected = [s for s in result.skipped if s[1] == SkipReason.TABLE_REJECTED]
    assert len(rejected) == 1
    item, reason, detail = rejected[0]
    assert (item, reason) == ("doc1:p1:r1", "table region rejected")
    assert detail.startswith("Table 1, bbox ")
    assert "camelot stream: no table of at least 2x2 cells" in detail
