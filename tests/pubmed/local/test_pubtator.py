"""The ``pubtator`` local reader on the NCBI Disease corpus and on hand-made files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from medsim.config import LocalSourceParams, load_params
from medsim.pubmed.local import pubtator
from medsim.pubmed.records import Article, Skipped
from tests.conftest import REPO


def read(path: Path, rule: dict[str, list[str]], ambiguous: str = "drop") -> list:
    return list(pubtator.read(path, LocalSourceParams(mesh_labels=rule), None, ambiguous))


@pytest.fixture(scope="module")
def default_rule() -> dict[str, list[str]]:
    """The rule users get: ``fetch.local.mesh_labels`` in the repo's params.yaml."""
    return load_params(REPO / "params.yaml").fetch.local.mesh_labels


def test_default_rule_labels_on_ncbi_disease(shared_data: Path, default_rule) -> None:
    out = read(shared_data / "ncbi-disease", default_rule)
    articles = [r for r in out if isinstance(r, Article)]
    assert Counter(a.label for a in articles) == {
        "breast": 42,
        "colorectal": 27,
        "leukemia": 5,
        "prostate": 5,
        "melanoma": 4,
    }
    assert Counter(a.split for a in articles) == {"train": 50, "val": 17, "test": 16}
    assert Counter(r.reason for r in out if isinstance(r, Skipped)) == {
        "no class matched": 698,
        "ambiguous label": 12,
    }
    assert len(articles) + 698 + 12 == 793


def test_every_document_without_a_rule(shared_data: Path) -> None:
    out = read(shared_data / "ncbi-disease", {})
    assert all(isinstance(r, Article) for r in out)
    assert Counter(a.split for a in out) == {"train": 593, "val": 100, "test": 100}
    first = next(a for a in out if a.doc_id == "10192393")
    assert first.pmid == "10192393"
    assert first.split == "train"
    assert first.title == (
        "A common human skin tumour is caused by activating mutations in beta-catenin."
    )
    assert first.abstract.startswith("WNT signalling orchestrates a number of developmental")
    # mention ids in order of first mention, composite mentions split, nothing else in the text
    assert first.mesh == ["D012878", "D009369", "D003110", "D011125", "D018296"]
    assert "D012878" not in first.abstract


def test_a_lone_file_has_no_split(shared_data: Path) -> None:
    out = read(shared_data / "ncbi-disease/NCBItestset.txt", {})
    assert len(out) == 100
    assert {a.split for a in out} == {None}


def test_mention_id_forms() -> None:
    assert pubtator.mesh_ids("D001943|D010051") == ["D001943", "D010051"]
    assert pubtator.mesh_ids("D007153+D040181") == ["D007153", "D040181"]
    assert pubtator.mesh_ids("MESH:D001943") == ["D001943"]
    assert pubtator.mesh_ids("OMIM:114480") == []
    assert pubtator.mesh_ids("C538273+D001168") == ["C538273", "D001168"]


def test_document_without_abstract_and_malformed_lines(tmp_path: Path) -> None:
    path = tmp_path / "docs.txt"
    path.write_text(
        "1|t|Breast cancer genes\n"
        "1|a|BRCA1 mutations raise the risk of breast cancer.\n"
        "1\t34\t47\tbreast cancer\tSpecificDisease\tD001943\n"
        "\n"
        "2|t|A title only\n"
        "2\t0\t5\tcancer\tDiseaseClass\tD009369\n"
        "\n"
        "3|t|Lung cancer screening\n"
        "3|a|Low-dose CT finds lung cancer early.\n"
        "garbage line\n"
        "3\t19\t30\tlung cancer\tSpecificDisease\tD008175\n"
        "4|t|Prostate\n"  # no blank line before the next document
        "4|a|PSA screening for prostate cancer.\n"
        "4\t19\t34\tprostate cancer\tSpecificDisease\tMESH:D011471\n"
    )
    out = read(path, {"breast": ["D001943"], "lung": ["D008175"], "prostate": ["D011471"]})
    assert [(a.doc_id, a.label) for a in out if isinstance(a, Article)] == [
        ("1", "breast"),
        ("3", "lung"),
        ("4", "prostate"),
    ]
    assert [(s.item, s.reason) for s in out if isinstance(s, Skipped)] == [
        ("2", "no abstract"),
        ("3", "malformed line"),
    ]
