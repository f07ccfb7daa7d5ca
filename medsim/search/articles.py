"""Article fields for the index stage's item rows, without holding the articles in memory.

At PubMed scale the articles table outweighs the index (titles and abstracts, about 1.5 KB an
article, 50 GB for 36M). :class:`ArticleTable` keeps only what every batch needs:

- a doc_id -> row lookup: the ids' sorted 64-bit hashes with their rows (16 bytes an
  article), each hit checked against the id column, held as Arrow (about 10 bytes an id);
- the short columns (pmid, label, split), label and split dictionary-encoded;
- titles and abstracts streamed from the file through a forward window. The embeddings follow
  the articles' order (embed and train write them in it, the Ray engine too), so the window
  spans about one batch; a request behind it restarts the stream: correct in any order, and
  bounded in memory in the order the pipeline writes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from medsim.errors import MedsimError
from medsim.io import release_unused_memory, stream_batches

__all__ = ["SHORT_COLUMNS", "TEXT_COLUMNS", "ArticleTable"]

SHORT_COLUMNS = ("pmid", "label", "split")
TEXT_COLUMNS = ("title", "abstract")


def _hashes(ids: Sequence[Any] | np.ndarray) -> np.ndarray:
    return pd.util.hash_array(np.asarray(ids, dtype=object), categorize=False)


class ArticleTable:
    """The articles file's fields by doc_id (the last row of a repeated id, as a dict would)."""

    def __init__(self, path: Path, batch_rows: int = 16_384) -> None:
        self.path, self.batch_rows = path, batch_rows
        table = pq.read_table(path, columns=["doc_id", *SHORT_COLUMNS])
        self.ids = table.column("doc_id").combine_chunks()
        self.short = {
            c: table.column(c).combine_chunks()
            if c == "pmid"
            else pc.dictionary_encode(table.column(c).combine_chunks())
            for c in SHORT_COLUMNS
        }
        del table
        self._index_ids()
        release_unused_memory()  # the read's buffers: 70 MB at 1M articles
        self._text_schema = pa.schema([pq.read_schema(path).field(c) for c in TEXT_COLUMNS])
        self._restart()

    def _index_ids(self) -> None:
        """Sorted hashes and rows; repeated hashes (a repeated id, or a 64-bit collision:
        both rare) are resolved through a dict of their ids."""
        n = len(self.ids)
        hashes = np.concatenate(
            [np.zeros(0, np.uint64)]
            + [
                _hashes(self.ids.slice(s, self.batch_rows).to_numpy(zero_copy_only=False))
                for s in range(0, n, self.batch_rows)
            ]
        )
        order = np.lexsort((np.arange(n), hashes))  # by hash, then row
        hashes = hashes[order]
        starts = np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1]]) if n else np.zeros(0, int)
        ends = np.r_[starts[1:], n].astype(np.int64)
        self._repeated: dict[str, int] = {}
        for run in np.flatnonzero(ends - starts > 1):
            for row in order[starts[run] : ends[run]]:  # ascending rows: the last one wins
                self._repeated[self.ids[int(row)].as_py()] = int(row)
        self._repeated_hashes = set(hashes[starts[ends - starts > 1]].tolist())
        self._sorted = hashes[ends - 1] if n else hashes
        self._rows = order[ends - 1] if n else order

    def positions(self, doc_ids: Sequence[str]) -> np.ndarray:
        """Row of each doc_id in the articles file, -1 where it has none."""
        if not len(doc_ids) or not len(self.ids):
            return np.full(len(doc_ids), -1, dtype=np.int64)
        wanted = _hashes(doc_ids)
        at = np.minimum(np.searchsorted(self._sorted, wanted), len(self._sorted) - 1)
        rows = np.where(self._sorted[at] == wanted, self._rows[at], -1).astype(np.int64)
        if self._repeated_hashes:
            for i, value in enumerate(wanted.tolist()):
                if value in self._repeated_hashes:
                    rows[i] = self._repeated.get(doc_ids[i], -1)
        found = np.flatnonzero(rows >= 0)
        stored = self.ids.take(pa.array(rows[found])).to_pylist()
        for i, doc_id in zip(found, stored, strict=True):
            if doc_id != doc_ids[i]:  # a hash match of an id the file does not have
                rows[i] = -1
        return rows

    def columns(self, doc_ids: Sequence[str], names: Sequence[str]) -> dict[str, list[Any]]:
        """``names`` (short or text columns) of each document; None where there is no article."""
        rows = self.positions(doc_ids)
        known = np.flatnonzero(rows >= 0)
        taken = pa.array(rows[known])
        texts = [c for c in names if c in TEXT_COLUMNS]
        window = self._take_texts(rows[known], texts) if texts and len(known) else None
        out: dict[str, list[Any]] = {}
        for name in names:
            values: list[Any] = [None] * len(doc_ids)
            if len(known):
                picked = (
                    window.column(name) if name in TEXT_COLUMNS else self.short[name].take(taken)
                )
                for i, value in zip(known, picked.to_pylist(), strict=True):
                    values[i] = value
            out[name] = values
        return out

    def _restart(self) -> None:
        self._batches: Iterator[pa.RecordBatch] = stream_batches(
            self.path, self.batch_rows, list(TEXT_COLUMNS)
        )
        self._start = 0
        self._window = self._text_schema.empty_table()

    def _take_texts(self, rows: np.ndarray, names: list[str]) -> pa.Table:
        """Rows of the text columns, the window moved forward to cover them."""
        low, high = int(rows.min()), int(rows.max())
        if low < self._start:
            self._restart()
        while True:
            cut = min(max(low - self._start, 0), self._window.num_rows)
            if cut:
                self._window = self._window.slice(cut)
                self._start += cut
            if self._start + self._window.num_rows > high:
                break
            batch = next(self._batches, None)
            if batch is None:
                raise MedsimError(f"{self.path} changed while the index was built")
            self._window = pa.concat_tables([self._window, pa.Table.from_batches([batch])])
        return self._window.select(names).take(pa.array(rows - self._start))
