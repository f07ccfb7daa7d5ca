"""The embed stage: batch function with a fake encoder, whole runs on a tiny corpus."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medsim.config import params_from_dict
from medsim.encoders.cache import EmbeddingCache, content_hash
from medsim.encoders.embed import SOURCES, embed_batch, run_embed
from medsim.errors import MedsimError
from medsim.io import SkipLog, read_table, skipped_path
from medsim.schemas import ARTICLES, SKIPPED, embedding_schema
from tests.encoders.conftest import ARTICLE_ROWS, write_articles


class CountingEncoder:
    """Vector = (length of text, number of 'a's); counts what it is asked to encode."""

    spec = "fake"
    dim = 2
    weight_hash = "w"
    fingerprint = "fake-fingerprint"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, items: list[str]) -> np.ndarray:
        self.seen.extend(items)
        return np.array([[len(t), t.count("a")] for t in items], dtype=np.float32)


def _articles(rows) -> pa.Table:
    return pa.Table.from_pylist(
        [{"doc_id": d, "title": t, "abstract": a} for d, t, a in rows],
        schema=pa.schema([ARTICLES.field(c) for c in ("doc_id", "title", "abstract")]),
    )


def test_embed_batch_by_hand(tmp_path: Path):
    batch = _articles([("x", "ab", "a"), ("y", "", ""), ("z", "ab", "a"), ("w", "b", "")])
    encoder = CountingEncoder()
    skips = SkipLog("embed")
    cache = EmbeddingCache(tmp_path, encoder.fingerprint, 2)
    out = embed_batch(batch, SOURCES["text"], encoder, cache=cache, skips=skips)

    assert out.schema == embedding_schema(2)
    assert out.column("id").to_pylist() == ["x", "z", "w"]
    assert out.column("vector").to_pylist() == [[4.0, 2.0], [4.0, 2.0], [1.0, 0.0]]
    assert out.column("content_hash").to_pylist()[0] == content_hash("fake-fingerprint", "ab\na")
    assert encoder.seen == ["ab\na", "b"]  # identical texts encoded once
    assert [(r["item"], r["reason"]) for r in skips.rows] == [("text:y", "empty text")]

    again = embed_batch(batch, SOURCES["text"], encoder, cache=cache)
    assert encoder.seen == ["ab\na", "b"]  # all from the cache
    assert again.equals(out)


def _vectors(path: Path) -> dict[str, list[float]]:
    table = pq.read_table(path)
    return dict(
        zip(table.column("id").to_pylist(), table.column("vector").to_pylist(), strict=True)
    )


def test_stage_on_a_tiny_corpus(tiny_corpus: Path, minilm, lite0):
    params = params_from_dict({"embed": {"batch_size": 4}})
    summary = run_embed(params, tiny_corpus)
    out = tiny_corpus / "data/embeddings"
    assert sorted(p.name for p in out.iterdir()) == [
        "captions.parquet",
        "images.parquet",
        "tables.parquet",
        "text.parquet",
    ]
    text = read_table(out / "text.parquet", embedding_schema(384))
    assert text.column("id").to_pylist() == ["d1", "d2", "d3"]
    meta = pq.read_schema(out / "text.parquet").metadata
    assert meta[b"model_spec"] == b"packaged:all-MiniLM-L6-v2"
    assert meta[b"weight_hash"].decode() == minilm.weight_hash
    assert meta[b"dim"] == b"384"
    expected = minilm.encode([f"{t}\n{a}" for _, t, a, _ in ARTICLE_ROWS[:3]])
    np.testing.assert_allclose(np.array(text.column("vector").to_pylist()), expected, atol=1e-5)

    captions = _vectors(out / "captions.parquet")
    assert sorted(captions) == ["f1", "f2", "f3"]  # f4 has no caption
    np.testing.assert_allclose(captions["f2"], captions["f3"])  # same caption text
    tables = read_table(out / "tables.parquet", embedding_schema(384))
    assert tables.column("id").to_pylist() == ["t1"]
    assert tables.column("doc_id").to_pylist() == ["d1"]

    images = read_table(out / "images.parquet", embedding_schema(1280))
    assert images.column("id").to_pylist() == ["f1", "f2"]
    assert pq.read_schema(out / "images.parquet").metadata[b"weight_hash"].decode() == (
        lite0.weight_hash
    )

    skipped = read_table(skipped_path("embed", tiny_corpus), SKIPPED).to_pylist()
    reasons = {(r["item"], r["reason"]) for r in skipped}
    assert reasons == {
        ("text:d4", "empty text"),
        ("captions:f4", "empty text"),
        ("images:f3", "image too small"),
        ("images:f4", "undecodable image"),
    }
    assert summary.encoded["text"] == 3 and summary.encoded["captions"] == 2

    # DVC deletes the outputs before a re-run; the cache outside them makes it encode nothing
    shutil.rmtree(out)
    rerun = run_embed(params, tiny_corpus)
    assert sum(rerun.encoded.values()) == 0
    assert _vectors(out / "captions.parquet") == captions

    # a grown corpus: only the new document is encoded
    write_articles(tiny_corpus, [*ARTICLE_ROWS, ("d5", "Prostate cancer", "PSA testing.", "b")])
    grown = run_embed(params, tiny_corpus)
    assert grown.encoded["text"] == 1 and grown.encoded["images"] == 0
    assert sorted(_vectors(out / "text.parquet")) == ["d1", "d2", "d3", "d5"]

    # a stricter size limit applies to cached images as well
    strict = params_from_dict({"embed": {"batch_size": 4, "min_image_px": 60}})
    assert run_embed(strict, tiny_corpus).encoded["images"] == 0
    assert list(_vectors(out / "images.parquet")) == ["f1"]  # f2 is 48 px
    skipped = read_table(skipped_path("embed", tiny_corpus), SKIPPED).to_pylist()
    assert ("images:f2", "image too small") in {(r["item"], r["reason"]) for r in skipped}


def test_text_only_corpus_gets_empty_files_with_the_right_dims(tmp_path: Path, monkeypatch):
    write_articles(tmp_path)

    def no_image_model(*args, **kwargs):
        raise AssertionError("no image model should be loaded without images")

    monkeypatch.setattr("medsim.encoders.embed.load_image_encoder", no_image_model)
    run_embed(params_from_dict({}), tmp_path)
    out = tmp_path / "data/embeddings"
    for name, dim in [("captions", 384), ("tables", 384), ("images", 1280)]:
        table = read_table(out / f"{name}.parquet", embedding_schema(dim))
        assert table.num_rows == 0
    assert pq.read_table(out / "text.parquet").num_rows == 3


def test_missing_articles_is_a_clear_error(tmp_path: Path):
    with pytest.raises(MedsimError, match="fetch stage"):
        run_embed(params_from_dict({}), tmp_path)
    assert not (tmp_path / "data/embeddings").exists()


def test_embed_records_is_pure_and_returns_skips_as_rows(tmp_path: Path):
    from medsim.encoders.embed import embed_records, records_schema, split_records

    batch = _articles([("x", "ab", "a"), ("y", "", ""), ("z", "b", "")])
    encoder = CountingEncoder()
    known = {content_hash("fake-fingerprint", "b"): np.array([9.0, 9.0], np.float32)}
    records = embed_records(batch, SOURCES["text"], encoder, known=known)

    assert records.schema == records_schema(2)
    assert records.column("id").to_pylist() == ["x", "y", "z"]  # one row per input, in order
    assert records.column("vector").to_pylist() == [[4.0, 2.0], None, [9.0, 9.0]]
    assert records.column("reason").to_pylist() == [None, "empty text", None]
    assert encoder.seen == ["ab\na"]  # the known vector is not encoded again
    assert list(tmp_path.iterdir()) == []  # nothing written

    skips = SkipLog("embed")
    cache = EmbeddingCache(tmp_path, encoder.fingerprint, 2)
    out = split_records(records, SOURCES["text"], 2, cache=cache, skips=skips)
    assert out.column("id").to_pylist() == ["x", "z"]
    assert [(r["item"], r["reason"]) for r in skips.rows] == [("text:y", "empty text")]
    assert len(cache) == 2  # the edge stores both vectors
