"""The ``data/index/`` layout over the shared space, its writer and its reader.

The ``index`` stage that fills it is :func:`medsim.search.stage.run_index`; the FAISS indexes
in it come from :mod:`medsim.search.builders`.

Layout of ``data/index/`` (everything a search needs, so a query reads no other table)::

    manifest.json            dim, code sizes, model specs, per-collection files and counts, labels
    items.parquet            one row per indexed item (ITEMS): collection, row, id, doc_id, pmid,
                             title, caption, label, text (text is read by `explain` only)
    <collection>.faiss             float index, inner product on unit vectors (= cosine)
    <collection>.b<bits>.faiss     binary index over the hash codes (Hamming)
    prototypes.npy           one unit vector per label: mean of its training documents

Collections: ``documents`` (fused document vectors), ``figures`` (image vectors), ``captions`` and
``tables``. Row ``r`` of ``<collection>.faiss`` is the item with ``collection`` and ``row == r``.
Index files are memory-mapped on load (``IO_FLAG_MMAP_IFC``), so opening them costs
milliseconds whatever their size.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from medsim.errors import MedsimError
from medsim.io import release_unused_memory
from medsim.names import INDEX_ORDER
from medsim.schemas import INDEX_ITEMS as ITEMS
from medsim.schemas import validate
from medsim.search.builders import (
    as_matrix,
    binary_index_type,
    empty_binary_index,
    empty_index,
    index_type,
    pack_codes,
)

if TYPE_CHECKING:  # params are only annotations here; yaml need not load for a search
    from medsim.config import IndexParams

__all__ = [
    "COLLECTION_ITEMS",
    "COLLECTION_SOURCES",
    "INDEX_COLLECTIONS",
    "ITEMS",
    "RESULT_TYPES",
    "CollectionArrays",
    "CollectionStream",
    "IndexStore",
    "load_index",
    "write_index_dir",
]

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
ITEMS_FILE = "items.parquet"
PROTOTYPES_FILE = "prototypes.npy"
FORMAT_VERSION = 2  # 2: "collections" (documents, figures, ...), once called "kinds"
ITEMS_ROW_GROUP = 4096  # a search reads only the row groups of its hits from items.parquet

INDEX_COLLECTIONS = tuple(m.collection for m in INDEX_ORDER)
# index collection -> (embedding file stem under data/embeddings/, shared-space head); documents are
# fused from every collection by medsim.dml.document_vectors.
COLLECTION_SOURCES = {m.collection: (m.embeddings, m.value) for m in INDEX_ORDER}
RESULT_TYPES = {m.collection: m.result_type for m in INDEX_ORDER}

# The item map: what a result needs to render, without reading the pipeline's big tables.
# what one collection contributes; collection and row are added when all are written together
COLLECTION_ITEMS = pa.schema([f for f in ITEMS if f.name not in ("collection", "row")])


# --------------------------------------------------------------------------- on-disk layout


@dataclass
class CollectionArrays:
    """What one index collection contributes, or one batch of it: unit vectors, codes per size, and
    its item rows (None in a pass that reads training rows only)."""

    vectors: np.ndarray  # float32 [n, dim]
    codes: dict[int, np.ndarray]  # bits -> uint8 0/1 [n, bits]
    items: pa.Table | None = None  # COLLECTION_ITEMS: n rows in vector order


@dataclass
class CollectionStream:
    """One index collection read batch by batch, for corpora larger than memory.

    ``batches()`` yields the collection's :class:`CollectionArrays` in row order and may be
    called more than once: the index types that train (IVF, IVF-PQ; binary IVF) first read
    their training rows through ``samples()`` (the same batches, items left out; by default
    ``batches()``), then every batch is added.
    """

    count: int
    dim: int
    bits: tuple[int, ...]
    batches: Callable[[], Iterator[CollectionArrays]]
    samples: Callable[[], Iterator[CollectionArrays]] | None = None

    @classmethod
    def of(cls, arrays: CollectionArrays) -> CollectionStream:
        """A whole collection held in memory, as a stream of one batch."""
        n, dim = len(arrays.vectors), int(np.shape(arrays.vectors)[1])
        return cls(n, dim, tuple(sorted(arrays.codes)), lambda: iter([arrays]))

    def sample(self, rows: np.ndarray) -> CollectionArrays:
        """Rows ``rows`` (sorted, as :func:`medsim.search.scale.sample_rows` gives) of the
        collection's vectors and codes, read in one pass."""
        vectors = [np.zeros((0, self.dim), dtype=np.float32)]
        codes = {bits: [np.zeros((0, bits), dtype=np.uint8)] for bits in self.bits}
        start = 0
        for batch in (self.samples or self.batches)():
            end = start + len(batch.vectors)
            lo, hi = np.searchsorted(rows, [start, end])
            local = rows[lo:hi] - start
            vectors.append(np.asarray(batch.vectors, dtype=np.float32)[local])
            for bits in self.bits:
                codes[bits].append(np.asarray(batch.codes[bits])[local])
            start = end
        return CollectionArrays(
            np.concatenate(vectors), {bits: np.concatenate(c) for bits, c in codes.items()}
        )


class _TrainingRows:
    """A collection's training rows, read from its stream once, when an index first asks for them
    (the float and binary indexes of a collection train on the same rows)."""

    def __init__(self, stream: CollectionStream) -> None:
        self.stream = stream
        self.rows: np.ndarray | None = None
        self.arrays: CollectionArrays | None = None

    def get(self, rows: np.ndarray) -> CollectionArrays:
        if self.arrays is None or self.rows is None or not np.array_equal(rows, self.rows):
            self.rows, self.arrays = rows, self.stream.sample(rows)
        return self.arrays


class _ItemsWriter:
    """``items.parquet`` written as items arrive, in row groups of exactly ``ITEMS_ROW_GROUP``
    rows whatever the batches (a search finds an item's group by division)."""

    def __init__(self, path: Path) -> None:
        self.writer = pq.ParquetWriter(path, ITEMS, compression="zstd")
        self.pending: list[pa.Table] = []
        self.buffered = 0
        self.rows = 0  # items received so far: the next collection's offset

    def add(self, collection: str, first_row: int, items: pa.Table) -> None:
        n = items.num_rows
        items = validate(items, COLLECTION_ITEMS, name=f"{collection} items")
        items = items.append_column("collection", pa.array([collection] * n, pa.string()))
        rows = pa.array(np.arange(first_row, first_row + n, dtype=np.int64))
        self.pending.append(validate(items.append_column("row", rows), ITEMS, name=ITEMS_FILE))
        self.buffered += n
        self.rows += n
        if self.buffered >= ITEMS_ROW_GROUP:
            self._flush(whole_groups=True)

    def _flush(self, whole_groups: bool) -> None:
        table = pa.concat_tables(self.pending) if self.pending else ITEMS.empty_table()
        cut = table.num_rows - table.num_rows % ITEMS_ROW_GROUP if whole_groups else None
        if cut is None or cut:
            self.writer.write_table(table.slice(0, cut), row_group_size=ITEMS_ROW_GROUP)
        rest = table.slice(cut) if cut is not None else table.slice(table.num_rows)
        self.pending, self.buffered = [rest], rest.num_rows

    def close(self) -> None:
        if self.buffered or not self.rows:
            self._flush(whole_groups=False)
        self.writer.close()


def _collection_entry(
    collection: str, stream: CollectionStream, offset: int, params: IndexParams
) -> dict:
    return {
        "count": stream.count,
        "offset": offset,  # first line of this collection in items.parquet
        "dim": stream.dim,
        "float": f"{collection}.faiss",
        "float_type": index_type(stream.count, params),
        "binary": {str(bits): f"{collection}.b{bits}.faiss" for bits in stream.bits},
        "binary_type": binary_index_type(stream.count, params),
    }


def _write_collection(
    directory: Path,
    collection: str,
    stream: CollectionStream,
    params: IndexParams,
    seed: int,
    items: _ItemsWriter,
) -> dict[str, Any]:
    """Fill one collection's float and binary indexes batch by batch; write them; return its
    manifest entry. Memory: the indexes (codes, graph or vectors, by type), one batch, a
    training sample."""
    entry = _collection_entry(collection, stream, items.rows, params)
    train = _TrainingRows(stream)
    index = empty_index(stream.count, stream.dim, params, lambda r: train.get(r).vectors, seed)
    binary = {
        bits: empty_binary_index(
            stream.count, bits, params, lambda r, b=bits: train.get(r).codes[b], seed
        )
        for bits in stream.bits
    }
    train.arrays = None  # the sample is not needed once the indexes are trained
    n = 0
    for batch in stream.batches():
        size = len(batch.vectors)
        if batch.items is None or batch.items.num_rows != size:
            found = "no" if batch.items is None else batch.items.num_rows
            raise ValueError(f"{collection}: {size} vectors but {found} items")
        if size:
            index.add(as_matrix(batch.vectors))
            for bits, codes in batch.codes.items():
                binary[bits].add(pack_codes(codes))
        items.add(collection, n, batch.items)
        n += size
    if n != stream.count:
        raise ValueError(f"{collection}: {stream.count} items announced, {n} streamed")
    faiss.write_index(index, str(directory / entry["float"]))
    for bits, name in entry["binary"].items():
        faiss.write_index_binary(binary[int(bits)], str(directory / name))
    log.info("indexed %d %s (%s)", n, collection, entry["float_type"])
    return entry


def write_index_dir(
    directory: Path,
    collections: Mapping[str, CollectionArrays | CollectionStream],
    params: IndexParams,
    meta: Mapping[str, Any],
    prototypes: tuple[list[str], np.ndarray] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Build every collection's float and binary indexes into ``directory`` (which must exist) and
    write ``items.parquet``, ``prototypes.npy`` and ``manifest.json``; return the manifest.

    A collection is given whole (:class:`CollectionArrays`) or as batches
    (:class:`CollectionStream`); either way the files are those of :func:`build_index` and
    :func:`build_binary_index` over the whole collection, where the index type's build does
    not depend on how the rows were batched (flat, IVF and IVF-PQ adds; HNSW graphs do: they
    are built in insertion batches).
    """
    unknown = set(collections) - set(INDEX_COLLECTIONS)
    if unknown:
        raise ValueError(f"unknown index collections {sorted(unknown)}")
    manifest: dict[str, Any] = {"version": FORMAT_VERSION, **meta, "collections": {}}
    items = _ItemsWriter(directory / ITEMS_FILE)
    for collection in (k for k in INDEX_COLLECTIONS if k in collections):
        given = collections[collection]
        stream = given if isinstance(given, CollectionStream) else CollectionStream.of(given)
        manifest["collections"][collection] = _write_collection(
            directory, collection, stream, params, seed, items
        )
        release_unused_memory()  # the next collection's build starts from what this one freed
    items.close()
    manifest["items_row_group"] = ITEMS_ROW_GROUP
    if prototypes is not None and len(prototypes[0]):
        labels, matrix = prototypes
        np.save(directory / PROTOTYPES_FILE, np.asarray(matrix, dtype=np.float32))
        manifest["labels"] = list(labels)
    else:
        manifest["labels"] = []
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


@dataclass
class IndexStore:
    """A loaded ``data/index/``: the manifest now, index files and item columns on demand."""

    directory: Path
    manifest: dict[str, Any]
    _float: dict[str, faiss.Index] = field(default_factory=dict, repr=False)
    _binary: dict[tuple[str, int], faiss.IndexBinary] = field(default_factory=dict, repr=False)
    _items: dict[tuple[str, ...], Any] = field(default_factory=dict, repr=False)

    @property
    def collections(self) -> list[str]:
        """The collections this index holds, in :data:`INDEX_COLLECTIONS` order."""
        return [k for k in INDEX_COLLECTIONS if k in self.manifest["collections"]]

    @property
    def bits(self) -> list[int]:
        """Code sizes that every collection has a binary index for."""
        sizes = [set(map(int, self.manifest["collections"][k]["binary"])) for k in self.collections]
        return sorted(set.intersection(*sizes)) if sizes else []

    def count(self, collection: str) -> int:
        return int(self.manifest["collections"][collection]["count"])

    def float_index(self, collection: str) -> faiss.Index:
        """The float index of ``collection``, memory-mapped and cached."""
        if collection not in self._float:
            path = self.directory / self.manifest["collections"][collection]["float"]
            self._float[collection] = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
        return self._float[collection]

    def binary_index(self, collection: str, bits: int) -> faiss.IndexBinary:
        """The ``bits``-bit Hamming index of ``collection``."""
        key = (collection, bits)
        if key not in self._binary:
            files = self.manifest["collections"][collection]["binary"]
            if str(bits) not in files:
                have = ", ".join(sorted(files, key=int)) or "none"
                raise MedsimError(f"the index has no {bits}-bit codes (it has: {have})")
            path = self.directory / files[str(bits)]
            self._binary[key] = faiss.read_index_binary(str(path), faiss.IO_FLAG_MMAP_IFC)
        return self._binary[key]

    @cached_property
    def _items_file(self) -> pq.ParquetFile:
        # ParquetFile, not pq.read_table: the latter imports pyarrow.dataset (and pandas with
        # it), a third of a second that every search would pay.
        return pq.ParquetFile(self.directory / ITEMS_FILE)

    def items(
        self, columns: tuple[str, ...] = ("collection", "row", "id", "doc_id", "pmid")
    ) -> pa.Table:
        """Whole columns of ``items.parquet`` (read once per column set)."""
        if columns not in self._items:
            self._items[columns] = self._items_file.read(columns=list(columns))
        return self._items[columns]

    def collection_items(self, collection: str, columns: tuple[str, ...]) -> pa.Table:
        """Whole columns of ``collection``'s items, row ``r`` its index's row ``r``."""
        entry = self.manifest["collections"][collection]
        return self.items(columns).slice(int(entry["offset"]), int(entry["count"]))

    def rows(
        self, collection: str, rows: list[int], columns: tuple[str, ...]
    ) -> list[dict[str, Any]]:
        """Item records of ``collection`` at index rows ``rows`` (order kept). Reads only the row
        groups that hold them, so rendering ten hits costs the same for any corpus size."""
        offset = int(self.manifest["collections"][collection]["offset"])
        size = int(self.manifest["items_row_group"])
        records = []
        for row in rows:
            group, line = divmod(offset + int(row), size)
            key = ("group", group, *columns)
            if key not in self._items:
                self._items[key] = self._items_file.read_row_group(group, columns=list(columns))
            # slice + to_pylist, not take/compute: those convert Python values through
            # pyarrow's pandas shim, which imports pandas (a third of a second).
            records.append(self._items[key].slice(line, 1).to_pylist()[0])
        return records

    def find(
        self, value: str, collections: list[str], columns: tuple[str, ...] = ("id",)
    ) -> tuple[str, int] | None:
        """The first item of ``collections`` (in that order) whose ``columns`` hold ``value``, as
        ``(collection, row)``; None if there is none."""
        for collection in collections:
            for column in columns:
                key = ("values", collection, column)
                if key not in self._items:
                    entry = self.manifest["collections"][collection]
                    values = self.items((column,)).column(column)
                    self._items[key] = values.slice(entry["offset"], entry["count"]).to_pylist()
                try:
                    return collection, self._items[key].index(value)
                except ValueError:
                    continue
        return None

    def vector(self, collection: str, row: int) -> np.ndarray:
        """The stored unit vector of one item, read back from its float index."""
        index = self.float_index(collection)
        # an explicit numpy buffer: once pytorch-metric-learning has imported
        # faiss.contrib.torch_utils, faiss would otherwise hand back a torch tensor
        out = np.empty(index.d, dtype=np.float32)
        return index.reconstruct(int(row), out).reshape(1, -1)

    def code(self, collection: str, row: int, bits: int) -> np.ndarray:
        """The stored 0/1 code of one item, ``[1, bits]``."""
        packed = self.binary_index(collection, bits).reconstruct(int(row))
        return np.unpackbits(np.asarray(packed, dtype=np.uint8)).reshape(1, -1)

    @cached_property
    def prototypes(self) -> tuple[list[str], np.ndarray]:
        """Label names and their unit prototype vectors (empty if the corpus had no labels)."""
        labels = list(self.manifest.get("labels", []))
        if not labels:
            return [], np.zeros((0, int(self.manifest["dim"])), dtype=np.float32)
        return labels, np.load(self.directory / PROTOTYPES_FILE)


def load_index(directory: str | Path) -> IndexStore:
    """Open ``data/index/`` written by the ``index`` stage; a missing one is a MedsimError."""
    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except FileNotFoundError as exc:
        raise MedsimError(
            f"no search index in {directory} (build it with `dvc repro index`)"
        ) from exc
    except json.JSONDecodeError as exc:
        raise MedsimError(f"{directory / MANIFEST} is corrupt ({exc}); rebuild it") from exc
    if manifest.get("version") != FORMAT_VERSION:
        raise MedsimError(
            f"{directory} was written by another medsim version; rebuild it (`dvc repro index`)"
        )
    return IndexStore(directory, manifest)
