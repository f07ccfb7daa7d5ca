"""The extract stage end to end on a small corpus built in tmp_path (PDFs, images, bad files)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from medsim.config import params_from_dict
from medsim.io import read_table, rows_to_table, write_table
from medsim.pdf.stage import run_extract
from medsim.schemas import ARTICLES, FIGURES, IMAGES, SKIPPED, TABLES
from tests.conftest import run_stage_script
from tests.pdf import pdfgen

REPO = Path(__file__).resolve().parents[2]


def _articles(root: Path, pdfs: dict[str, str | None]) -> None:
    rows = [
        {
            "doc_id": doc_id,
            "title": f"title {doc_id}",
            "abstract": "text",
            "split": "train",
            "source": "test",
            "pdf_path": path,
        }
        for doc_id, path in pdfs.items()
    ]
    write_table(rows_to_table(rows, ARTICLES), root / "data/articles.parquet", ARTICLES)


def test_stage_pdfs_images_and_bad_files(tmp_path):
    pdf_dir = tmp_path / "data/raw/pdfs"
    pdf_dir.mkdir(parents=True)
    pdfgen.article(pdf_dir / "good.pdf")
    (pdf_dir / "bad.pdf").write_bytes(b"%PDF-1.7 broken" * 10)
    _articles(
        tmp_path,
        {"good": "data/raw/pdfs/good.pdf", "bad": "data/raw/pdfs/bad.pdf", "textonly": None},
    )
    img_dir = tmp_path / "data/raw/images"
    img_dir.mkdir()
    buffer = io.BytesIO()
    Image.new("RGB", (256, 200), (10, 20, 30)).save(buffer, format="JPEG")
    (img_dir / "i1.jpg").write_bytes(buffer.getvalue())
    images = [
        {
            "image_id": "i1",
            "doc_id": "textonly",
            "path": "data/raw/images/i1.jpg",
            "caption": "Axial CT of the abdomen",
            "modality": "CT",
            "plane": "Axial",
        },
        {
            "image_id": "i2",
            "doc_id": "textonly",
            "path": "data/raw/images/i2.jpg",
            "caption": "lost",
            "modality": "MR",
        },
    ]
    write_table(rows_to_table(images, IMAGES), tmp_path / "data/raw/images.parquet", IMAGES)

    params = params_from_dict({"extract": {"workers": 2, "timeout_s": 120}})
    summary = run_extract(params, tmp_path)

    figures = read_table(tmp_path / "data/figures.parquet", FIGURES).to_pylist()
    tables = read_table(tmp_path / "data/tables.parquet", TABLES).to_pylist()
    skipped = read_table(tmp_path / "data/skipped.parquet/extract.parquet", SKIPPED).to_pylist()
    assert sorted(r["figure_id"] for r in figures if r["origin"] == "pdf") == [
        "good:p1:f1",
        "good:p1:f2",
        "good:p2:f1",
        "good:p3:f1",
    ]
    corpus = [r for r in figures if r["origin"] == "corpus"]
    assert [(r["figure_id"], r["caption"], r["modality"]) for r in corpus] == [
        ("i1", "Axial CT of the abdomen", "CT")
    ]
    assert sorted(r["table_id"] for r in tables) == ["good:p1:t1", "good:p2:t1", "good:p3:t1"]
    assert {(r["item"], r["reason"].split(":")[0]) for r in skipped} == {
        ("bad", "corrupt"),
        ("i2", "missing file"),
        ("good:p1:g1", "uncaptioned graphic"),  # the logo
    }
    assert (summary.pdfs, summary.figures, summary.tables) == (2, 5, 3)
    assert not list((tmp_path / "data").glob(".*tmp"))  # no half-written leftovers


def test_stage_script_on_a_text_only_corpus(tmp_path):
    """`python stages/extract.py` (what dvc runs) writes valid empty outputs for text only."""
    _articles(tmp_path, {"a": None, "b": None})
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    run = run_stage_script("extract", tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "text-only corpus" in run.stderr
    for name, schema in [("figures", FIGURES), ("tables", TABLES)]:
        table = pq.read_table(tmp_path / f"data/{name}.parquet")
        assert table.num_rows == 0 and table.schema.names == schema.names
    assert pq.read_table(tmp_path / "data/skipped.parquet/extract.parquet").num_rows == 0


def test_stage_script_reports_a_missing_input_in_one_line(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    run = run_stage_script("extract", tmp_path, timeout=120)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("medsim extract: ")
    assert "dvc repro fetch" in run.stderr


def test_ray_engine_extracts_what_the_local_pool_extracts(tmp_path, local_ray):
    """Same PDFs (two good, one corrupt), both engines: the same figure and table rows and the
    same skips (order aside: both write PDFs in completion order)."""
    outputs = {}
    for engine in ("local", "ray"):
        root = tmp_path / engine
        pdf_dir = root / "data/raw/pdfs"
        pdf_dir.mkdir(parents=True)
        pdfgen.article(pdf_dir / "good.pdf")
        pdfgen.article(pdf_dir / "again.pdf")
        (pdf_dir / "bad.pdf").write_bytes(b"%PDF-1.7 broken" * 10)
        _articles(root, {d: f"data/raw/pdfs/{d}.pdf" for d in ("good", "again", "bad")})
        params = params_from_dict(
            {"extract": {"workers": 2, "timeout_s": 120}, "compute": {"engine": engine}}
        )
        summary = run_extract(params, root)
        outputs[engine] = (
            sorted(read_table(root / "data/figures.parquet", FIGURES).to_pylist(), key=str),
            sorted(read_table(root / "data/tables.parquet", TABLES).to_pylist(), key=str),
            sorted(
                (r["item"], r["reason"])
                for r in read_table(
                    root / "data/skipped.parquet/extract.parquet", SKIPPED
                ).to_pylist()
            ),
            (summary.pdfs, summary.pages, summary.figures, summary.tables),
        )
    assert outputs["ray"] == outputs["local"]
    _, _, skipped, counts = outputs["local"]
    assert (counts[0], counts[2], counts[3]) == (3, 8, 6)  # two articles' figures and tables
    assert [reason.split(":")[0] for item, reason in skipped if item == "bad"] == ["corrupt"]
