from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medsim.io import (
    ParquetSink,
    SkipLog,
    atomic_dir,
    atomic_path,
    iter_batches,
    read_table,
    rows_to_table,
    stream_batches,
    write_table,
)
from medsim.schemas import ARTICLES, SKIPPED, SchemaError, embedding_schema, validate


def _article(doc_id: str, **extra) -> dict:
    return {
        "doc_id": doc_id,
        "title": "t",
        "abstract": "a",
        "split": "train",
        "source": "test",
        **extra,
    }


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    table = rows_to_table([_article("1", mesh=["D001943"], year=1999)], ARTICLES)
    write_table(table, tmp_path / "a.parquet", ARTICLES)
    back = read_table(tmp_path / "a.parquet", ARTICLES)
    assert back.to_pylist()[0]["mesh"] == ["D001943"]
    assert back.schema.field("year").type == pa.int32()


def test_validate_rejects_missing_extra_null_and_bad_split() -> None:
    good = rows_to_table([_article("1")], ARTICLES)
    with pytest.raises(SchemaError, match="missing columns"):
        validate(good.drop_columns(["title"]), ARTICLES)
    with pytest.raises(SchemaError, match="unexpected columns"):
        validate(good.append_column("x", pa.array([1])), ARTICLES)
    with pytest.raises(SchemaError, match="'doc_id' holds nulls"):
        validate(rows_to_table([_article(None)], ARTICLES), ARTICLES)
    with pytest.raises(SchemaError, match="unknown split"):
        validate(rows_to_table([_article("1", split="holdout")], ARTICLES), ARTICLES)


def test_embedding_schema_fixes_the_dimension() -> None:
    schema = embedding_schema(3)
    ok = pa.table(
        {"id": ["a"], "doc_id": ["a"], "content_hash": ["h"], "vector": [[0.1, 0.2, 0.3]]}
    )
    assert validate(ok, schema).schema.field("vector").type == pa.list_(pa.float32(), 3)
    bad = pa.table({"id": ["a"], "doc_id": ["a"], "content_hash": ["h"], "vector": [[0.1]]})
    with pytest.raises(SchemaError):
        validate(bad, schema)


def test_atomic_path_leaves_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_dir_swaps_whole_directory_or_nothing(tmp_path: Path) -> None:
    target = tmp_path / "raw"
    with atomic_dir(target) as staging:
        (staging / "a").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(target) as staging:
        (staging / "b").write_text("2")
        raise RuntimeError("crash")
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_sink_streams_batches_and_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    with ParquetSink(path, ARTICLES) as sink:
        sink.write_rows([_article("1"), _article("2")])
        sink.write_rows([])
        sink.write_rows([_article("3")])
        assert not path.exists()
    assert sink.rows == 3
    assert [t.num_rows for t in iter_batches(path, batch_size=2)] == [2, 1]
    with pytest.raises(SchemaError), ParquetSink(path, ARTICLES) as sink:
        sink.write_rows([_article("4")])
        sink.write_rows([_article(None)])
    assert pq.read_table(path).num_rows == 3  # the failed run left the old file alone


def test_skip_log_writes_its_stage_file_in_the_dataset(tmp_path: Path) -> None:
    log = SkipLog("fetch")
    log.add("x.pdf", "corrupt pdf", "no objects")
    log.add("y.xml", "malformed record")
    log.add("z.pdf", "corrupt pdf")
    path = log.write(tmp_path)
    assert path == tmp_path / "data/skipped.parquet/fetch.parquet"
    assert log.counts() == {"corrupt pdf": 2, "malformed record": 1}
    SkipLog("extract").write(tmp_path)  # an empty log still writes a valid file
    frame = pd.read_parquet(tmp_path / "data/skipped.parquet")
    assert len(frame) == 3 and set(frame["stage"]) == {"fetch"}
    assert read_table(path, SKIPPED).num_rows == 3


def test_stream_batches_crosses_row_groups_in_order(tmp_path: Path) -> None:
    """Row groups of 4 read in batches of 3: every row once, in order, batches of 3 (the last
    excepted), only the asked columns."""
    table = pa.table({"id": [f"r{i}" for i in range(10)], "x": list(range(10))})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=4)
    batches = list(stream_batches(tmp_path / "t.parquet", 3, ["id"]))
    assert [b.num_rows for b in batches] == [3, 3, 3, 1]
    assert all(b.schema.names == ["id"] for b in batches)
    assert [v for b in batches for v in b.column(0).to_pylist()] == table.column("id").to_pylist()


def test_release_unused_memory_trims_the_c_heap_where_it_can(monkeypatch):
    import medsim.io as io_module

    calls = []
    monkeypatch.setattr(io_module, "_malloc_trim", lambda: calls.append)
    io_module.release_unused_memory()
    assert calls == [0]  # malloc_trim(0): trim everything above the heap's needs
    monkeypatch.setattr(io_module, "_malloc_trim", lambda: None)
    io_module.release_unused_memory()  # musl, macOS: Arrow's pool only, no error
    assert calls == [0]
