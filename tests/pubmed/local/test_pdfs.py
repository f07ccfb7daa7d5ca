"""The ``pdfs`` local reader on six real articles and on broken files."""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest

from medsim.config import LocalSourceParams
from medsim.pubmed.local import pdfs
from medsim.pubmed.raw import RawStore
from medsim.pubmed.records import Article, Skipped

# Checked by eye against page 1 of each PDF.
TITLES = {
    "cermine-impl_test1": "Complications related to deep venous thrombosis prophylaxis in "
    "trauma: a systematic review of the literature",
    "cermine-impl_test2": "Patient Experiences of Structured Heart Failure Programmes",
    "cermine-impl_test3": "Phytochemical and Biological investigations of Phoenix paludosa Roxb.",
    "cermine-impl_test6": "VESPA: Very large-scale Evolutionary and Selective Pressure Analyses",
    "cermine-web_example1": "Stressful life events are not associated with the development of "
    "dementia",
    "cermine-web_example3": "Fragment-based design for the development of N-domain-selective "
    "angiotensin-1-converting enzyme inhibitors",
}
ABSTRACTS = {  # (first words, last words) of the abstract printed on page 1
    "cermine-impl_test1": (
        "Deep venous thrombosis prophylaxis is essential",
        "they must be appropriately utilized.",
    ),
    "cermine-impl_test2": (
        "Objectives. Patient experiences of structured heart failure",
        "sustain patients' confidence in disease self-management.",
    ),
    "cermine-impl_test3": (
        "Lupeol (1), epilupeol (2) and",
        "bioactivities of P. paludosa.",
    ),
    "cermine-impl_test6": (
        "Background. Large-scale molecular evolutionary analyses",
        "http://www.mol-evol.org/VESPA.",
    ),
    "cermine-web_example1": (
        "Background: The impact of stressful life events",
        "trigger the onset of dementia diseases.",
    ),
    "cermine-web_example3": (
        "ACE (angiotensin-1-converting enzyme) is a zinc metallopeptidase",
        "employed in treatment of fibrosis disorders.",
    ),
}


def read(path: Path, store: RawStore) -> list:
    return list(pdfs.read(path, LocalSourceParams(), store, "drop"))


@pytest.fixture(scope="module")
def real(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list, RawStore]:
    store = RawStore(tmp_path_factory.mktemp("staging"))
    return read(shared_data / "pmc-pdfs", store), store


def test_titles_of_the_real_pdfs(real) -> None:
    out, _ = real
    assert all(isinstance(r, Article) for r in out)
    assert {a.doc_id: a.title for a in out} == TITLES


def test_abstracts_of_the_real_pdfs(real) -> None:
    out, _ = real
    for article in out:
        start, end = ABSTRACTS[article.doc_id]
        text = article.abstract.replace("\u2019", "'")
        assert text.startswith(start), article.doc_id
        assert text.endswith(end), article.doc_id
        assert "Introduction" not in text and "INTRODUCTION" not in text


def test_pdfs_are_copied_into_the_store_without_a_label(real) -> None:
    out, store = real
    for article in out:
        assert article.label is None  # one sub-folder ("pdf/") is not a class
        assert article.pdf_path == f"data/raw/pdfs/{article.doc_id}.pdf"
        assert (store.staging / "pdfs" / f"{article.doc_id}.pdf").is_file()


def make_pdf(path: Path, title: str, abstract: str) -> Path:
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 80), title, fontsize=20)
    page.insert_text((72, 120), "Abstract", fontsize=11)
    y = 140
    for line in abstract.split("\n"):
        page.insert_text((72, y), line, fontsize=10)
        y += 14
    page.insert_text((72, y + 20), "Introduction", fontsize=11)
    page.insert_text((72, y + 40), "Body text that is not part of the abstract.", fontsize=10)
    doc.set_metadata({"title": "Microsoft Word - draft3.docx"})
    path.parent.mkdir(parents=True, exist_ok=True)
    doc.save(path)
    return path


ABSTRACT = (
    "We measured the effect of a new drug on tumour growth in forty mice and\n"
    "found that the treated group grew slower than the control group over\n"
    "twelve weeks of treatment, with few side effects reported."
)


def test_labels_from_class_subfolders_and_broken_files(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    make_pdf(corpus / "breast" / "a.pdf", "Breast tumour growth in mice models", ABSTRACT)
    make_pdf(corpus / "lung" / "b.pdf", "Lung tumour growth in mice models", ABSTRACT)
    (corpus / "lung" / "notes.txt").write_text("ignored")
    (corpus / "lung" / "corrupt.pdf").write_bytes(b"%PDF-1.4 garbage")
    encrypted = pymupdf.open()
    encrypted.new_page().insert_text((72, 72), "secret")
    encrypted.save(
        corpus / "lung" / "locked.pdf",
        encryption=pymupdf.PDF_ENCRYPT_AES_256,
        user_pw="u",
        owner_pw="o",
    )
    (corpus / "lung" / "zero.pdf").write_bytes(
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
        b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
        b"trailer << /Root 1 0 R >>\n%%EOF\n"
    )
    blank = pymupdf.open()
    blank.new_page()
    blank.save(corpus / "lung" / "scan.pdf")
    store = RawStore(tmp_path / "staging")
    out = read(corpus, store)
    articles = [r for r in out if isinstance(r, Article)]
    assert [(a.doc_id, a.label, a.title) for a in articles] == [
        ("a", "breast", "Breast tumour growth in mice models"),
        ("b", "lung", "Lung tumour growth in mice models"),
    ]
    assert articles[0].abstract == " ".join(ABSTRACT.split("\n"))
    assert {(s.item, s.reason) for s in out if isinstance(s, Skipped)} == {
        ("lung/corrupt.pdf", "unreadable PDF"),
        ("lung/locked.pdf", "encrypted PDF"),
        ("lung/zero.pdf", "PDF without pages"),
        ("lung/scan.pdf", "no text in PDF"),
    }
    assert sorted(p.name for p in (store.staging / "pdfs").iterdir()) == ["a.pdf", "b.pdf"]


def test_a_single_pdf_file(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "one.pdf", "A single article about tumour growth", ABSTRACT)
    (article,) = read(path, RawStore(tmp_path / "staging"))
    assert article.doc_id == "one"
    assert article.label is None
