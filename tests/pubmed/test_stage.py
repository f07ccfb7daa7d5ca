"""The fetch orchestrator, with hand-made sources: ids, splits, skips, atomic outputs."""

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from medsim.config import params_from_dict
from medsim.errors import MedsimError
from medsim.io import SkipLog
from medsim.pubmed.raw import RawStore
from medsim.pubmed.records import Article, CorpusImage, Skipped
from medsim.pubmed.stage import run_fetch, write_articles


def _params(**fetch):
    return params_from_dict({"fetch": {"source": "local", **fetch}})


def _write_folder_corpus(root: Path) -> Path:
    corpus = root / "corpus"
    docs = {
        ("training", "C04", "d1"): "Tumour title\nA tumour abstract.",
        ("training", "C04", "d2"): "Second title\nMore about tumours.",
        ("training", "C14", "d3"): "Heart title\nA cardiac abstract.",
        ("test", "C14", "d4"): "Heart test\nAnother cardiac abstract.",
        ("test", "C04", "d5"): " \n\n",  # whitespace only
    }
    for (split, label, name), text in docs.items():
        path = corpus / split / label / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return corpus


def test_run_fetch_on_a_folder_corpus_writes_every_output(tmp_path: Path) -> None:
    corpus = _write_folder_corpus(tmp_path)
    summary = run_fetch(_params(local={"path": str(corpus)}), root=tmp_path)
    articles = pd.read_parquet(tmp_path / "data/articles.parquet")
    assert sorted(articles["doc_id"]) == ["d1", "d2", "d3", "d4"]
    assert articles.set_index("doc_id").loc["d4", "split"] == "test"
    assert set(articles.set_index("doc_id").loc[["d1", "d2", "d3"], "split"]) <= {"train", "val"}
    assert articles.set_index("doc_id").loc["d1", "title"] == "Tumour title"
    assert (articles["source"] == "local:folders").all()
    assert summary.labels == {"C04": 2, "C14": 2}
    skipped = pq.read_table(tmp_path / "data/skipped.parquet")
    assert skipped.to_pylist() == [
        {"stage": "fetch", "item": "test/C04/d5", "reason": "empty text", "detail": None}
    ]
    assert pd.read_parquet(tmp_path / "data/raw/images.parquet").empty


def test_relative_local_path_resolves_against_the_root(tmp_path: Path) -> None:
    _write_folder_corpus(tmp_path)
    summary = run_fetch(_params(local={"path": "corpus", "format": "folders"}), root=tmp_path)
    assert summary.articles == 4


def test_duplicates_and_empty_texts_are_skipped_not_written(tmp_path: Path) -> None:
    records = [
        Article("1", "t", "text one", "test", label="a"),
        Article("1", "t", "same id again", "test", label="a"),
        Article("2", "t", "   ", "test", label="a"),
        Skipped("3", "malformed record", "no PMID"),
        Article("4", "t", "text four", "test", label="b", split="test"),
    ]
    skips = SkipLog("fetch")
    store = RawStore(tmp_path / "raw")
    summary = write_articles(
        records, tmp_path / "a.parquet", store, skips, _params().fetch, seed=0, batch_size=2
    )
    assert summary.articles == 2
    assert skips.counts() == {"duplicate doc_id": 1, "empty text": 1, "malformed record": 1}
    assert pd.read_parquet(tmp_path / "a.parquet")["doc_id"].tolist() == ["1", "4"]


def test_corpus_images_land_in_the_store_with_their_labels(tmp_path: Path) -> None:
    image = tmp_path / "src.png"
    image.write_bytes(b"\x89PNG fake bytes")
    records = [
        Article("case1", "t", "history", "test", label="Head"),
        CorpusImage("img1", "case1", str(image), "Axial CT", modality="CT", plane="Axial"),
    ]
    store = RawStore(tmp_path / "staging")
    write_articles(records, tmp_path / "a.parquet", store, SkipLog("fetch"), _params().fetch, 0)
    assert store.images[0]["path"] == "data/raw/images/img1.png"
    assert store.images[0]["modality"] == "CT"
    assert (tmp_path / "staging/images/img1.png").read_bytes() == image.read_bytes()


def test_a_source_that_crashes_leaves_no_partial_output(tmp_path: Path, monkeypatch) -> None:
    import medsim.pubmed.stage as fetch

    def broken_source(params, root, store):
        yield Article("1", "t", "fine", "test")
        raise OSError("disk vanished")

    monkeypatch.setattr(fetch, "_open_source", broken_source)
    with pytest.raises(OSError, match="disk vanished"):
        run_fetch(_params(local={"path": "x"}), root=tmp_path)
    assert not (tmp_path / "data/articles.parquet").exists()
    assert not (tmp_path / "data/raw").exists()
    assert [p.name for p in (tmp_path / "data").iterdir()] == []


def test_a_source_with_nothing_usable_fails_with_the_reasons(tmp_path: Path, monkeypatch) -> None:
    import medsim.pubmed.stage as fetch

    monkeypatch.setattr(
        fetch, "_open_source", lambda params, root, store: [Skipped("a", "no class matched")]
    )
    with pytest.raises(MedsimError, match="no class matched"):
        run_fetch(_params(local={"path": "x"}), root=tmp_path)
    assert not (tmp_path / "data/articles.parquet").exists()
