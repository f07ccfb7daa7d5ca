"""Precision and recall of figures, tables and captions on the six real PDFs (truth by eye)."""

from __future__ import annotations

import pytest

from medsim.config import ExtractParams
from medsim.pdf.stage import extract_task
from medsim.pdf.worker import TimedPool
from tests.pdf import groundtruth as gt


@pytest.fixture(scope="module")
def results(shared_data):
    """Each real PDF extracted once, two at a time in worker processes (as the stage does)."""
    folder = shared_data / "pmc-pdfs" / "pdf"
    tasks = [(str(folder / name), name, ExtractParams()) for name in sorted(gt.FIGURES)]
    out = {}
    for outcome in TimedPool(extract_task, workers=2, timeout_s=240).imap_unordered(tasks):
        assert outcome.status == "ok", outcome.detail
        out[outcome.item[1]] = outcome.result
    return out


def _ratio(n: int, d: int) -> float:
    return n / d if d else 1.0


def test_figures_precision_recall(results):
    matched = found = truth = 0
    for name, expected in gt.FIGURES.items():
        rows = results[name].figures
        matched += len(gt.match_figures(expected, rows))
        found += len(rows)
        truth += len(expected)
    precision, recall = _ratio(matched, found), _ratio(matched, truth)
    print(
        f"figures: {matched} matched, {found} found, {truth} true; P={precision:.3f} R={recall:.3f}"
    )
    assert truth == 16
    assert precision >= 0.9 and recall >= 0.9


def test_figure_captions_precision_recall(results):
    correct = given = labelled = 0
    for name, expected in gt.FIGURES.items():
        rows = results[name].figures
        for i, j in gt.match_figures(expected, rows):
            label, caption = expected[i][1], rows[j]["caption"]
            if label is None:
                assert caption == "", f"{rows[j]['figure_id']} got a caption: {caption[:60]}"
            else:
                correct += caption.startswith(label) and len(caption) > len(label) + 10
        given += sum(1 for r in rows if r["caption"])
        labelled += sum(1 for t in expected if t[1])
    precision, recall = _ratio(correct, given), _ratio(correct, labelled)
    print(f"figure captions: P={precision:.3f} R={recall:.3f}")
    assert precision >= 0.9 and recall >= 0.9


def test_tables_precision_recall(results):
    matched = found = truth = captions_ok = 0
    for name, expected in gt.TABLES.items():
        rows = results[name].tables
        pairs = gt.match_tables(expected, rows)
        matched += len(pairs)
        captions_ok += sum(rows[j]["caption"].startswith(expected[i][1]) for i, j in pairs)
        found += len(rows)
        truth += len(expected)
    precision, recall = _ratio(matched, found), _ratio(matched, truth)
    print(
        f"tables: {matched} matched, {found} found, {truth} true; P={precision:.3f} R={recall:.3f}"
    )
    assert truth == 13
    assert precision >= 0.9 and recall >= 0.9
    assert captions_ok / truth >= 0.9


def test_rows_are_complete(results):
    """Figure PNGs have the size of their box at extract.dpi; table text starts with the caption."""
    dpi = ExtractParams().dpi
    for result in results.values():
        # only graphics that are no figures (logos, badges, banners), each with its reason
        assert all(reason.startswith("uncaptioned graphic") for _, reason, _ in result.skipped)
        for row in result.figures:
            assert row["image"].startswith(b"\x89PNG")
            x0, y0, x1, y1 = row["bbox"]
            assert abs(row["width"] - (x1 - x0) * dpi / 72) <= 2
            assert abs(row["height"] - (y1 - y0) * dpi / 72) <= 2
        for row in result.tables:
            assert row["text"].startswith(row["caption"])
            assert 0 <= row["accuracy"] <= 100


def test_layout_model_runs_only_on_marked_pages(results):
    pages = sum(r.pages for r in results.values())
    layout = sum(r.layout_pages for r in results.values())
    assert pages == 51
    assert layout <= 0.5 * pages
