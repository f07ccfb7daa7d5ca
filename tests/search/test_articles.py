"""ArticleTable: the index stage's article fields by doc_id, titles streamed through a window."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medsim.search import articles as module
from medsim.search.articles import ArticleTable


def _write(path, doc_ids, row_group_size=4):
    n = len(doc_ids)
    table = pa.table(
        {
            "doc_id": doc_ids,
            "pmid": [str(100 + i) for i in range(n)],
            "title": [f"title {i}" for i in range(n)],
            "abstract": [f"abstract {i}" for i in range(n)],
            "label": ["a" if i % 2 else "b" for i in range(n)],
            "split": ["train"] * n,
        }
    )
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def test_rows_by_doc_id_last_repeat_wins_unknown_is_minus_one(tmp_path):
    table = ArticleTable(_write(tmp_path / "a.parquet", ["d0", "d1", "d2", "d1"]), batch_rows=2)
    assert table.positions(["d2", "d1", "nope", "d0"]).tolist() == [2, 3, -1, 0]
    fields = table.columns(["d1", "nope"], ["pmid", "title", "label"])
    assert fields == {"pmid": ["103", None], "title": ["title 3", None], "label": ["a", None]}


def test_hash_collisions_and_false_matches_are_resolved_by_the_ids(tmp_path, monkeypatch):
    real = module._hashes

    def colliding(ids):  # "d1" and "d2" share a hash; "ghost" hashes like "d0"
        mapped = ["d1" if i == "d2" else "d0" if i == "ghost" else i for i in ids]
        return real(mapped)

    monkeypatch.setattr(module, "_hashes", colliding)
    table = ArticleTable(_write(tmp_path / "a.parquet", ["d0", "d1", "d2", "d3"]), batch_rows=2)
    assert table.positions(["d2", "d1", "ghost", "d3"]).tolist() == [2, 1, -1, 3]


def test_titles_stream_forward_and_restart_when_asked_for_earlier_rows(tmp_path):
    ids = [f"d{i}" for i in range(20)]
    table = ArticleTable(_write(tmp_path / "a.parquet", ids), batch_rows=3)
    for start in range(0, 20, 3):  # forward, batch by batch, as the index stage asks
        chunk = ids[start : start + 3]
        got = table.columns(chunk, ["title", "abstract"])
        assert got["title"] == [f"title {d[1:]}" for d in chunk]
        assert got["abstract"] == [f"abstract {d[1:]}" for d in chunk]
        assert table._window.num_rows <= 2 * 3  # about one batch held, never the file
    backwards = ["d5", "d1", "d19"]
    assert table.columns(backwards, ["title"])["title"] == ["title 5", "title 1", "title 19"]


def test_an_empty_articles_file_knows_no_document(tmp_path):
    table = ArticleTable(_write(tmp_path / "a.parquet", []), batch_rows=2)
    assert table.positions(["d0"]).tolist() == [-1]
    assert table.columns(["d0"], ["title", "split"]) == {"title": [None], "split": [None]}


@pytest.mark.parametrize("n", [1, 7])
def test_every_row_is_found_whatever_the_batch(tmp_path, n):
    ids = [f"x{i}" for i in range(n)]
    table = ArticleTable(_write(tmp_path / "a.parquet", ids, row_group_size=2), batch_rows=3)
    assert np.array_equal(table.positions(ids[::-1]), np.arange(n)[::-1])
