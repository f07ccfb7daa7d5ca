"""The embed stage: batch function with a fake encoder, whole runs on a tiny corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from medsim.encoders.cache import EmbeddingCache, content_hash
from medsim.encoders.embed import SOURCES, embed_batch
from medsim.io import SkipLog
from medsim.schemas import ARTICLES, embedding_schema


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
