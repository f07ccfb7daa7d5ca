"""I/O at the edges: atomic Parquet writes, batch readers and the skipped-items log."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from medsim.paths import SKIPPED_DIR
from medsim.schemas import SKIPPED, validate

__all__ = [
    "ParquetSink",
    "SkipLog",
    "atomic_dir",
    "atomic_path",
    "iter_batches",
    "read_table",
    "release_unused_memory",
    "rows_to_table",
    "skipped_path",
    "stream_batches",
    "write_table",
]

log = logging.getLogger(__name__)

READ_BUFFER = 1 << 20  # bytes a streaming Parquet read fetches at a time
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    A crash or exception leaves the previous file (or nothing) behind, never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs should read like any file
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Like :func:`atomic_path` for a directory: build it aside, then swap it in."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def rows_to_table(rows: Iterable[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Build a table of ``schema`` from dict rows; absent keys become nulls."""
    rows = list(rows)
    columns = {f.name: [row.get(f.name) for row in rows] for f in schema}
    return pa.Table.from_pydict(columns, schema=schema)


def write_table(table: pa.Table, path: str | Path, schema: pa.Schema) -> pa.Table:
    """Validate ``table`` against ``schema`` and write it atomically; return what was written."""
    table = validate(table, schema, name=str(path))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return table


def read_table(path: str | Path, schema: pa.Schema, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet file and validate it against ``schema`` (or a column subset of it)."""
    table = pq.read_table(path, columns=columns)
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in columns])
    return validate(table, schema, name=str(path))


def iter_batches(
    path: str | Path, batch_size: int = 10_000, columns: list[str] | None = None
) -> Iterator[pa.Table]:
    """Stream a Parquet file as tables of at most ``batch_size`` rows (memory bound by batch)."""
    for batch in stream_batches(path, batch_size, columns):
        yield pa.Table.from_batches([batch])


def stream_batches(
    path: str | Path, batch_size: int, columns: list[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """A Parquet file's record batches, holding one batch (and its row group) at a time.

    ``pre_buffer`` is off: with it (pyarrow's default) the reader keeps every column chunk it
    has fetched until the file is closed, so memory grows with the file (measured: reading a
    1.5 GB embeddings file in 65,536-row batches peaked at 2.1 GB RSS with it, 0.8 GB without).
    A read buffer makes the reader stream a column chunk's pages instead of loading the whole
    chunk (78 MB for a 50,000-row group of 384-d vectors) before decoding it.
    """
    reader = pq.ParquetFile(path, pre_buffer=False, buffer_size=READ_BUFFER)
    yield from reader.iter_batches(batch_size=batch_size, columns=columns)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None


def release_unused_memory() -> None:
    """Hand back to the system what the allocators keep after frees, between the phases of a
    long stage: Arrow's pool (mimalloc by default; until then only Arrow can reuse its pages)
    and, on glibc, the C heap, where faiss's growing inverted lists leave free holes (at 1M
    documents: 240 MiB returned after the documents' index, so the next kind starts lower)."""
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class ParquetSink:
    """Streaming, validated, atomic Parquet writer.

    Batches are appended as they come (memory is bound by one batch); the file appears at
    ``path`` only when the ``with`` block exits cleanly.
    """

    def __init__(self, path: str | Path, schema: pa.Schema) -> None:
        self.path = Path(path)
        self.schema = schema
        self.rows = 0
        self._ctx = atomic_path(self.path)
        self._writer: pq.ParquetWriter | None = None

    def __enter__(self) -> ParquetSink:
        tmp = self._ctx.__enter__()
        self._writer = pq.ParquetWriter(tmp, self.schema, compression="zstd")
        return self

    def write(self, table: pa.Table) -> None:
        assert self._writer is not None, "use ParquetSink as a context manager"
        table = validate(table, self.schema, name=str(self.path))
        if table.num_rows:
            self._writer.write_table(table)
            self.rows += table.num_rows

    def write_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        self.write(rows_to_table(rows, self.schema))

    def __exit__(self, exc_type, exc, tb) -> bool | None:
        assert self._writer is not None
        self._writer.close()
        return self._ctx.__exit__(exc_type, exc, tb)


def skipped_path(stage: str, root: str | Path = ".") -> Path:
    """Where ``stage`` writes its skipped items: one file of the data/skipped.parquet dataset."""
    return Path(root) / SKIPPED_DIR / f"{stage}.parquet"


class SkipLog:
    """Collects the input items a stage did not use, with a reason, and writes them once."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.rows: list[dict[str, str | None]] = []

    def add(self, item: str, reason: str, detail: str | None = None) -> None:
        """Record one skipped item. ``reason`` is a short category, ``detail`` the specifics."""
        self.rows.append({"stage": self.stage, "item": item, "reason": reason, "detail": detail})
        log.debug("skipped %s: %s (%s)", item, reason, detail)

    def extend(self, other: SkipLog) -> None:
        self.rows.extend(other.rows)

    def counts(self) -> Counter[str]:
        return Counter(row["reason"] for row in self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def write(self, root: str | Path = ".") -> Path:
        path = skipped_path(self.stage, root)
        write_table(rows_to_table(self.rows, SKIPPED), path, SKIPPED)
        return path
