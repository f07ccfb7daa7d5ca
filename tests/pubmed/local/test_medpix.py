"""The ``medpix`` local reader, and the fetch stage end to end on the MedPix subset."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from medsim.config import LocalSourceParams, params_from_dict
from medsim.pubmed.local import medpix
from medsim.pubmed.records import Article, CorpusImage, Skipped
from medsim.pubmed.stage import run_fetch


def read(path: Path) -> list:
    return list(medpix.read(path, LocalSourceParams(), None, "drop"))


@pytest.fixture(scope="module")
def corpus(shared_data: Path) -> list:
    return read(shared_data / "medpix")


def test_cases_are_documents_labelled_by_body_region(corpus: list) -> None:
    articles = [r for r in corpus if isinstance(r, Article)]
    assert len(articles) == 245
    assert not [r for r in corpus if isinstance(r, Skipped)]
    assert Counter(a.label for a in articles) == {
        "Spine and Muscles": 70,
        "Abdomen": 49,
        "Thorax": 45,
        "Head": 41,
        "Reproductive and Urinary System": 40,
    }
    case = next(a for a in articles if a.doc_id == "MPX1009")
    assert case.title == "Bladder Diverticulum"
    assert case.abstract == (
        "HISTORY: 73-year-old male with hematuria and numerous white blood cells found on UA\n"
        "FINDINGS: Bladder with thickened wall and diverticulum on the right. Diverticulum is "
        "mostly likely secondary to chronic outflow obstruction. Prostate enlargement."
    )
    assert case.label == "Reproductive and Urinary System"
    assert case.split is None  # drawn from a hash of U_id by the fetch stage


def test_text_is_history_and_findings_only(corpus: list, tmp_path: Path) -> None:
    for article in (r for r in corpus if isinstance(r, Article)):
        assert all(
            line.startswith(("HISTORY: ", "FINDINGS: ")) for line in article.abstract.split("\n")
        )
    case = {
        "U_id": "X",
        "Case": {
            "Title": "T",
            "History": "H.",
            "Findings": "F.",
            "Case Diagnosis": "SECRETDIAG",
            "Differential Diagnosis": "SECRETDIFF",
            "Discussion": "SECRETDISC",
        },
        "Topic": {"Disease Discussion": "SECRETTOPIC", "Category": "SECRETCAT"},
    }
    assert medpix.case_text(case) == "HISTORY: H.\nFINDINGS: F."


def test_images_with_their_labels(corpus: list) -> None:
    images = [r for r in corpus if isinstance(r, CorpusImage)]
    assert len(images) == 596
    assert len({i.image_id for i in images}) == 596
    assert all(i.caption and Path(i.source_path).is_file() for i in images)
    assert Counter(i.modality for i in images) == {"CT": 350, "MR": 246}
    first = next(i for i in images if i.image_id == "MPX1056_synpic41083")
    assert first.doc_id == "MPX1056"
    assert first.caption.startswith("Large, diffusely infiltrated fatty liver")
    assert (first.modality, first.modality_detail, first.plane, first.body_region) == (
        "CT",
        "CT w/contrast (IV)",
        "Axial",
        "Abdomen",
    )


def test_each_image_follows_its_own_case(corpus: list) -> None:
    current = None
    for record in corpus:
        if isinstance(record, Article):
            current = record.doc_id
        else:
            assert record.doc_id == current


def _desc(image: str, uid: str, region: str, caption: str = "A caption.") -> dict:
    return {
        "Type": "CT",
        "U_id": uid,
        "image": image,
        "Description": {"Caption": caption, "Modality": "CT", "Plane": "Axial"},
        "Location Category": region,
    }


def test_missing_files_empty_captions_and_majority_regions(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    for name in ("a1", "a2", "a3", "b1"):
        (tmp_path / "images" / f"{name}.png").write_bytes(b"\x89PNG fake")
    cases = [
        {"U_id": "A", "Case": {"Title": "Case A", "History": "Pain.", "Findings": "N/A"}},
        {"U_id": "B", "Case": {"Title": "Case B", "History": "", "Findings": ""}},
        {"U_id": "C", "Case": {"Title": "Case C", "History": "Cough."}},
    ]
    descriptions = [
        _desc("a1", "A", "Thorax"),
        _desc("a2", "A", "Abdomen"),
        _desc("a3", "A", "Abdomen", caption="  "),
        _desc("a4", "A", "Thorax"),  # no file
        _desc("b1", "B", "Head"),
        _desc("z1", "Z", "Head"),  # no case
    ]
    (tmp_path / "Case_topic.json").write_text(json.dumps(cases))
    # JSON Lines works as well as a JSON array
    (tmp_path / "Descriptions.json").write_text("\n".join(json.dumps(d) for d in descriptions))
    out = read(tmp_path)
    articles = [r for r in out if isinstance(r, Article)]
    assert [(a.doc_id, a.abstract, a.label) for a in articles] == [
        ("A", "HISTORY: Pain.", "Thorax"),  # Thorax 2, Abdomen 2: a tie goes to the first image
        ("C", "HISTORY: Cough.", None),
    ]
    assert [i.image_id for i in out if isinstance(i, CorpusImage)] == ["a1", "a2"]
    assert [(s.item, s.reason) for s in out if isinstance(s, Skipped)] == [
        ("a3", "empty caption"),
        ("a4", "missing image file"),
        ("B", "empty text"),
        ("b1", "case skipped"),
        ("z1", "no case record"),
    ]


def test_fetch_end_to_end_writes_articles_and_the_image_manifest(
    tmp_path: Path, shared_data: Path
) -> None:
    params = params_from_dict(
        {"fetch": {"source": "local", "local": {"path": str(shared_data / "medpix")}}}
    )
    summary = run_fetch(params, root=tmp_path)
    assert summary.articles == 245
    assert summary.images == 596
    articles = pq.read_table(tmp_path / "data/articles.parquet").to_pandas()
    images = pq.read_table(tmp_path / "data/raw/images.parquet").to_pandas()
    assert len(articles) == 245 and articles["label"].nunique() == 5
    assert len(images) == 596 and images["caption"].str.len().min() > 0
    assert all((tmp_path / p).is_file() for p in images["path"])
    assert set(images["doc_id"]) == set(articles["doc_id"])
    assert set(articles["split"]) == {"train", "val", "test"}
    assert articles["abstract"].str.startswith("HISTORY: ").all()
