"""The ``folders`` local reader on OHSUMED-23, and the fetch stage end to end on it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from medsim.config import LocalSourceParams, params_from_dict
from medsim.pubmed.local import folders
from medsim.pubmed.records import Article, Skipped
from medsim.pubmed.stage import run_fetch

CLASSES = {f"C{i:02d}" for i in range(1, 24)}


@pytest.fixture(scope="module")
def ohsumed(shared_data: Path) -> list:
    return list(folders.read(shared_data / "ohsumed-23", LocalSourceParams(), None, "drop"))


def test_ohsumed_documents_classes_and_kept_split(ohsumed: list) -> None:
    assert all(isinstance(r, Article) for r in ohsumed)
    assert len(ohsumed) == 7400
    assert len({a.doc_id for a in ohsumed}) == 7400
    assert {a.label for a in ohsumed} == CLASSES
    assert Counter(a.split for a in ohsumed) == {"train": 3357, "test": 4043}
    labels = Counter(a.label for a in ohsumed)
    assert labels["C04"] == 1030
    assert Counter(a.label for a in ohsumed if a.split == "train")["C22"] == 9


def test_title_is_the_first_line(ohsumed: list) -> None:
    doc = next(a for a in ohsumed if a.doc_id == "0000335")
    assert doc.title == (
        "Superficial cultures in neonatal sepsis evaluations. Impact on antibiotic decision making."
    )
    assert doc.abstract.startswith("The authors performed a retrospective analysis")
    assert "\n" not in doc.abstract


def test_empty_and_undecodable_files_are_skipped(tmp_path: Path) -> None:
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        (tmp_path / cls / "doc1").write_text(f"Title {cls}\nBody of {cls}.\n")
    (tmp_path / "a" / "empty").write_text(" \n\n")
    (tmp_path / "a" / "paragraph").write_text("One paragraph, no title line.\n")
    (tmp_path / "b" / "binary").write_bytes(b"\xff\xfe\x00bad")
    out = list(folders.read(tmp_path, LocalSourceParams(), None, "drop"))
    assert [(a.label, a.split, a.title, a.abstract) for a in out if isinstance(a, Article)] == [
        ("a", None, "Title a", "Body of a."),
        ("a", None, "", "One paragraph, no title line."),
        ("b", None, "Title b", "Body of b."),
    ]
    assert [(s.item, s.reason) for s in out if isinstance(s, Skipped)] == [
        ("a/empty", "empty text"),
        ("b/binary", "unreadable file"),
    ]


def test_fetch_end_to_end_on_ohsumed(tmp_path: Path, shared_data: Path) -> None:
    params = params_from_dict(
        {"fetch": {"source": "local", "local": {"path": str(shared_data / "ohsumed-23")}}}
    )
    summary = run_fetch(params, root=tmp_path)
    assert summary.articles == 7400
    table = pq.read_table(tmp_path / "data/articles.parquet").to_pandas()
    assert len(table) == 7400
    assert set(table["label"]) == CLASSES
    splits = Counter(table["split"])
    assert splits["test"] == 4043  # the corpus's test side is kept as it is
    assert splits["train"] + splits["val"] == 3357  # validation is carved from training
    assert 250 < splits["val"] < 420  # val_fraction 0.1 of 3,357
    assert (table["source"] == "local:folders").all()
    assert pq.read_table(tmp_path / "data/raw/images.parquet").num_rows == 0


def test_hallmarks_of_cancer_layout_is_refused_not_read_as_two_classes(shared_data: Path) -> None:
    from medsim.pubmed.local import LocalSourceError
    from medsim.pubmed.local.folders import read

    with pytest.raises(LocalSourceError, match="parallel-annotation layout"):
        next(iter(read(shared_data / "hoc", None, None, "drop")))
