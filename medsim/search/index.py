"""FAISS indexes over the shared space: pure builders, the ``data/index/`` layout, the stage.

Layout of ``data/index/`` (everything a search needs, so a query reads no other table)::

    manifest.json            dim, code sizes, model specs, per-kind files and counts, labels
    items.parquet            one row per indexed item (ITEMS): kind, row, id, doc_id, pmid,
                             title, caption, label, text (text is read by `explain` only)
    <kind>.faiss             float index, inner product on unit vectors (= cosine)
    <kind>.b<bits>.faiss     binary index over the hash codes (Hamming)
    prototypes.npy           one unit vector per label: mean of its training documents

Kinds: ``documents`` (fused document vectors), ``figures`` (image vectors), ``captions`` and
``tables``. Row ``r`` of ``<kind>.faiss`` is the item with ``kind`` and ``row == r``.
Index files are memory-mapped on load (``IO_FLAG_MMAP_IFC``), so opening them costs
milliseconds whatever their size.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from medsim.errors import MedsimError
from medsim.io import SkipLog, atomic_dir
from medsim.names import INDEX_ORDER, SkipReason
from medsim.schemas import INDEX_ITEMS as ITEMS
from medsim.schemas import validate

if TYPE_CHECKING:  # params are only annotations here; yaml need not load for a search
    from medsim.config import IndexParams, Params

__all__ = [
    "INDEX_KINDS",
    "ITEMS",
    "KIND_ITEMS",
    "KIND_SOURCES",
    "RESULT_TYPES",
    "IndexStore",
    "KindArrays",
    "build_binary_index",
    "build_index",
    "index_type",
    "load_index",
    "pack_codes",
    "run_index",
    "search",
    "write_index_dir",
]

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
ITEMS_FILE = "items.parquet"
PROTOTYPES_FILE = "prototypes.npy"
FORMAT_VERSION = 1
ITEMS_ROW_GROUP = 4096  # a search reads only the row groups of its hits from items.parquet

INDEX_KINDS = tuple(m.index_kind for m in INDEX_ORDER)
# index kind -> (embedding file stem under data/embeddings/, shared-space head); documents are
# fused from every kind by medsim.dml.document_vectors.
KIND_SOURCES = {m.index_kind: (m.embeddings, m.value) for m in INDEX_ORDER}
RESULT_TYPES = {m.index_kind: m.result_type for m in INDEX_ORDER}

# The item map: what a result needs to render, without reading the pipeline's big tables.
# what one kind contributes; kind and row are added when the kinds are written together
KIND_ITEMS = pa.schema([f for f in ITEMS if f.name not in ("kind", "row")])


# --------------------------------------------------------------------------- pure builders


def index_type(n: int, params: IndexParams) -> str:
    """``"flat"`` (exact) under ``params.exact_below`` vectors, else ``params.approximate``."""
    return "flat" if n < params.exact_below else params.approximate


def _flat(vectors: np.ndarray, params: IndexParams, seed: int) -> faiss.Index:
    return faiss.IndexFlatIP(vectors.shape[1])


def _hnsw(vectors: np.ndarray, params: IndexParams, seed: int) -> faiss.Index:
    index = faiss.IndexHNSWFlat(vectors.shape[1], params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efSearch = params.ef_search
    return index


def _ivf(vectors: np.ndarray, params: IndexParams, seed: int) -> faiss.Index:
    n, d = vectors.shape
    # sqrt(n) lists (k-means on 1M vectors stays near a minute on two cores), and at least
    # 39 training points per list, faiss's own minimum.
    nlist = max(1, min(int(math.sqrt(n)), n // 39))
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.train(vectors)
    index.nprobe = min(params.nprobe, nlist)
    index.make_direct_map()  # so a stored item's vector can be read back (search --pmid)
    return index


def _ivfpq(vectors: np.ndarray, params: IndexParams, seed: int) -> faiss.Index:
    from medsim.search.scale import ivfpq_index, sample_rows

    train = vectors[sample_rows(len(vectors), params.train_size, seed)]
    index = ivfpq_index(train, len(vectors), params, seed)
    index.make_direct_map()  # as _ivf: stored items' (decoded) vectors stay readable
    return index


# index type -> builder returning an empty (trained) index for these vectors
FLOAT_BUILDERS: dict[str, Callable[[np.ndarray, IndexParams, int], faiss.Index]] = {
    "flat": _flat,
    "hnsw": _hnsw,
    "ivf": _ivf,
    "ivfpq": _ivfpq,
}


def _as_matrix(vectors: np.ndarray) -> np.ndarray:
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"expected a [n, dim] matrix, got shape {matrix.shape}")
    return matrix


def build_index(vectors: np.ndarray, params: IndexParams, seed: int = 0) -> faiss.Index:
    """A float index over unit ``vectors`` [n, dim], row ``i`` = vector ``i``.

    Exact inner product (``IndexFlatIP``) under ``params.exact_below`` vectors, otherwise the
    approximate type ``params.approximate`` (HNSW or IVF, its search breadth set from params).
    """
    matrix = _as_matrix(vectors)
    index = FLOAT_BUILDERS[index_type(len(matrix), params)](matrix, params, seed)
    if len(matrix):
        index.add(matrix)
    return index


def pack_codes(codes: np.ndarray) -> np.ndarray:
    """0/1 codes ``[n, bits]`` -> packed bytes ``[n, bits / 8]`` as faiss binary indexes take."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] % 8:
        raise ValueError(f"codes must be [n, bits] with bits a multiple of 8, got {codes.shape}")
    return np.ascontiguousarray(np.packbits(codes.astype(np.uint8, copy=False), axis=1))


def build_binary_index(codes: np.ndarray, params: IndexParams) -> faiss.IndexBinary:
    """A Hamming index over 0/1 ``codes`` [n, bits]: exact (``IndexBinaryFlat``) under
    ``params.exact_below`` codes, ``IndexBinaryHNSW`` above."""
    packed = pack_codes(codes)
    bits = packed.shape[1] * 8
    if len(packed) < params.exact_below:
        index = faiss.IndexBinaryFlat(bits)
    else:
        index = faiss.IndexBinaryHNSW(bits, params.hnsw_m)
        index.hnsw.efSearch = params.ef_search
    if len(packed):
        index.add(packed)
    return index


def search(
    index: faiss.Index | faiss.IndexBinary, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest rows of ``index`` for each query: ``(scores, rows)``, both [m, k].

    Float index: ``queries`` are unit vectors [m, dim], scores are inner products (highest
    first). Binary index: ``queries`` are 0/1 codes [m, bits], scores are Hamming distances
    (lowest first). Where the index holds fewer than ``k`` items the result has fewer columns;
    approximate indexes may return row ``-1`` for an empty slot.
    """
    k = min(k, index.ntotal)
    if isinstance(index, faiss.IndexBinary):
        scores, rows = index.search(pack_codes(queries), k)
    else:
        scores, rows = index.search(_as_matrix(queries), k)
    return scores, rows


# --------------------------------------------------------------------------- on-disk layout


@dataclass
class KindArrays:
    """What one index kind contributes: unit vectors, codes per size, and its item rows."""

    vectors: np.ndarray  # float32 [n, dim]
    codes: dict[int, np.ndarray]  # bits -> uint8 0/1 [n, bits]
    items: pa.Table  # KIND_ITEMS: n rows in vector order


def write_index_dir(
    directory: Path,
    kinds: Mapping[str, KindArrays],
    params: IndexParams,
    meta: Mapping[str, Any],
    prototypes: tuple[list[str], np.ndarray] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Build every kind's float and binary indexes into ``directory`` (which must exist) and
    write ``items.parquet``, ``prototypes.npy`` and ``manifest.json``; return the manifest."""
    unknown = set(kinds) - set(INDEX_KINDS)
    if unknown:
        raise ValueError(f"unknown index kinds {sorted(unknown)}")
    manifest: dict[str, Any] = {"version": FORMAT_VERSION, **meta, "kinds": {}}
    item_tables = []
    offset = 0
    for kind in INDEX_KINDS:
        if kind not in kinds:
            continue
        arrays = kinds[kind]
        n = len(arrays.vectors)
        if arrays.items.num_rows != n:
            raise ValueError(f"{kind}: {n} vectors but {arrays.items.num_rows} items")
        float_file = f"{kind}.faiss"
        faiss.write_index(build_index(arrays.vectors, params, seed), str(directory / float_file))
        binary_files = {}
        for bits, codes in sorted(arrays.codes.items()):
            name = f"{kind}.b{bits}.faiss"
            faiss.write_index_binary(build_binary_index(codes, params), str(directory / name))
            binary_files[str(bits)] = name
        manifest["kinds"][kind] = {
            "count": n,
            "offset": offset,  # first line of this kind in items.parquet
            "dim": int(arrays.vectors.shape[1]),
            "float": float_file,
            "float_type": index_type(n, params),
            "binary": binary_files,
        }
        items = validate(arrays.items, KIND_ITEMS, name=f"{kind} items")
        item_tables.append(
            items.append_column("kind", pa.array([kind] * n, pa.string())).append_column(
                "row", pa.array(np.arange(n, dtype=np.int64))
            )
        )
        offset += n
        log.info("indexed %d %s (%s)", n, kind, index_type(n, params))
    items = pa.concat_tables(item_tables) if item_tables else ITEMS.empty_table()
    pq.write_table(
        validate(items, ITEMS, name=ITEMS_FILE),
        directory / ITEMS_FILE,
        compression="zstd",
        row_group_size=ITEMS_ROW_GROUP,
    )
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
    def kinds(self) -> list[str]:
        """The kinds this index holds, in :data:`INDEX_KINDS` order."""
        return [k for k in INDEX_KINDS if k in self.manifest["kinds"]]

    @property
    def bits(self) -> list[int]:
        """Code sizes that every kind has a binary index for."""
        sizes = [set(map(int, self.manifest["kinds"][k]["binary"])) for k in self.kinds]
        return sorted(set.intersection(*sizes)) if sizes else []

    def count(self, kind: str) -> int:
        return int(self.manifest["kinds"][kind]["count"])

    def float_index(self, kind: str) -> faiss.Index:
        """The float index of ``kind``, memory-mapped and cached."""
        if kind not in self._float:
            path = self.directory / self.manifest["kinds"][kind]["float"]
            self._float[kind] = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
        return self._float[kind]

    def binary_index(self, kind: str, bits: int) -> faiss.IndexBinary:
        """The ``bits``-bit Hamming index of ``kind``."""
        key = (kind, bits)
        if key not in self._binary:
            files = self.manifest["kinds"][kind]["binary"]
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

    def items(self, columns: tuple[str, ...] = ("kind", "row", "id", "doc_id", "pmid")) -> pa.Table:
        """Whole columns of ``items.parquet`` (read once per column set)."""
        if columns not in self._items:
            self._items[columns] = self._items_file.read(columns=list(columns))
        return self._items[columns]

    def rows(self, kind: str, rows: list[int], columns: tuple[str, ...]) -> list[dict[str, Any]]:
        """Item records of ``kind`` at index rows ``rows`` (order kept). Reads only the row
        groups that hold them, so rendering ten hits costs the same for any corpus size."""
        offset = int(self.manifest["kinds"][kind]["offset"])
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
        self, value: str, kinds: list[str], columns: tuple[str, ...] = ("id",)
    ) -> tuple[str, int] | None:
        """The first item of ``kinds`` (in that order) whose ``columns`` hold ``value``, as
        ``(kind, row)``; None if there is none."""
        for kind in kinds:
            for column in columns:
                key = ("values", kind, column)
                if key not in self._items:
                    entry = self.manifest["kinds"][kind]
                    values = self.items((column,)).column(column)
                    self._items[key] = values.slice(entry["offset"], entry["count"]).to_pylist()
                try:
                    return kind, self._items[key].index(value)
                except ValueError:
                    continue
        return None

    def vector(self, kind: str, row: int) -> np.ndarray:
        """The stored unit vector of one item, read back from its float index."""
        index = self.float_index(kind)
        # an explicit numpy buffer: once pytorch-metric-learning has imported
        # faiss.contrib.torch_utils, faiss would otherwise hand back a torch tensor
        out = np.empty(index.d, dtype=np.float32)
        return index.reconstruct(int(row), out).reshape(1, -1)

    def code(self, kind: str, row: int, bits: int) -> np.ndarray:
        """The stored 0/1 code of one item, ``[1, bits]``."""
        packed = self.binary_index(kind, bits).reconstruct(int(row))
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


# --------------------------------------------------------------------------- the stage


def _embeddings(path: Path) -> pa.Table | None:
    if not path.is_file():
        return None
    return pq.read_table(path, columns=["id", "doc_id", "vector"])


def _matrix(table: pa.Table) -> np.ndarray:
    if table.num_rows == 0:
        return np.zeros((0, 0), dtype=np.float32)
    flat = table.column("vector").combine_chunks().flatten()
    # a writable copy: torch warns on (and must not write into) Arrow-owned read-only buffers
    return np.array(flat.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(
        table.num_rows, -1
    )


def _lookup(path: Path, key: str, columns: list[str]) -> dict[str, dict[str, Any]]:
    """``key`` value -> row (of ``columns``) of a pipeline table; {} when it does not exist."""
    if not path.is_file():
        return {}
    table = pq.read_table(path, columns=[key, *columns])
    return {row[key]: row for row in table.to_pylist()}


def _item_table(
    ids: list[str],
    doc_ids: list[str],
    articles: Mapping[str, dict],
    captions: Mapping[str, str],
    texts: Mapping[str, str],
) -> pa.Table:
    def meta(doc_id: str, name: str) -> Any:
        return articles.get(doc_id, {}).get(name)

    return pa.table(
        {
            "id": ids,
            "doc_id": doc_ids,
            "pmid": [meta(d, "pmid") for d in doc_ids],
            "title": [meta(d, "title") for d in doc_ids],
            "caption": [captions.get(i) for i in ids],
            "label": [meta(d, "label") for d in doc_ids],
            "text": [texts.get(i) for i in ids],
        }
    )


def label_prototypes(vectors: np.ndarray, labels: list[str | None]) -> tuple[list[str], np.ndarray]:
    """One unit vector per label: the normalised mean of the vectors carrying it."""
    names = sorted({label for label in labels if label})
    if not names:
        return [], np.zeros((0, vectors.shape[1]), dtype=np.float32)
    label_array = np.asarray([label or "" for label in labels])
    means = np.stack([vectors[label_array == name].mean(axis=0) for name in names])
    means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    return names, means.astype(np.float32)


def run_index(params: Params, root: str | Path = ".") -> dict[str, Any]:
    """The DVC ``index`` stage: project every embedding into the trained space, hash it, and
    write ``data/index/``. Returns the manifest."""
    from medsim.dml import codes_from_projected, document_vectors, load_shared_space, project

    root = Path(root)
    data = root / "data"
    space = load_shared_space(data / "model")
    articles_path = data / "articles.parquet"
    if not articles_path.is_file():
        raise MedsimError(f"{articles_path} not found (run `dvc repro fetch`)")
    articles = _lookup(articles_path, "doc_id", ["pmid", "title", "abstract", "label", "split"])
    figure_captions = {
        k: v["caption"]
        for k, v in _lookup(data / "figures.parquet", "figure_id", ["caption"]).items()
    }
    table_rows = _lookup(data / "tables.parquet", "table_id", ["caption", "text"])
    table_captions = {k: v["caption"] for k, v in table_rows.items()}
    table_texts = {
        k: "\n".join(filter(None, (v["caption"], v["text"]))) for k, v in table_rows.items()
    }

    skipped = SkipLog("index")
    embeddings: dict[str, pa.Table] = {}
    # a space over a tuned text encoder takes that encoder's text vectors (written by train)
    tuned_dir = data / "model" / "embeddings" if space.text_model else None
    for kind, (stem, head) in KIND_SOURCES.items():
        source = data / "embeddings"
        if tuned_dir is not None and head != "image":
            source = tuned_dir
        table = _embeddings(source / f"{stem}.parquet")
        if table is None or table.num_rows == 0:
            continue
        if head not in space.heads:
            for item in table.column("id").to_pylist():
                skipped.add(item, SkipReason.NO_HEAD, f"the trained space has no '{head}' head")
            continue
        embeddings[kind] = table
    if not embeddings:
        raise MedsimError(f"no embeddings under {data / 'embeddings'} (run `dvc repro embed`)")

    def hashed(vectors: np.ndarray) -> dict[int, np.ndarray]:
        return {bits: codes_from_projected(space, vectors, bits) for bits in space.bits}

    kinds: dict[str, KindArrays] = {}
    parts = {KIND_SOURCES[k][1]: t for k, t in embeddings.items() if k != "documents"}
    no_text = pa.table(
        {"doc_id": pa.array([], pa.string()), "vector": pa.array([], pa.list_(pa.float32()))}
    )
    text = embeddings.get("documents", no_text)
    doc_ids, doc_vectors = document_vectors(space, text, parts)
    if doc_ids:
        doc_texts = {
            d: "\n".join(
                filter(
                    None, (articles.get(d, {}).get("title"), articles.get(d, {}).get("abstract"))
                )
            )
            for d in doc_ids
        }
        kinds["documents"] = KindArrays(
            doc_vectors, hashed(doc_vectors), _item_table(doc_ids, doc_ids, articles, {}, doc_texts)
        )
    for kind, table in embeddings.items():
        if kind == "documents":
            continue
        head = KIND_SOURCES[kind][1]
        vectors = project(space, head, _matrix(table))
        ids = table.column("id").to_pylist()
        captions = table_captions if kind == "tables" else figure_captions
        texts = table_texts if kind == "tables" else figure_captions
        kinds[kind] = KindArrays(
            vectors,
            hashed(vectors),
            _item_table(ids, table.column("doc_id").to_pylist(), articles, captions, texts),
        )

    train_rows = [i for i, d in enumerate(doc_ids) if articles.get(d, {}).get("split") == "train"]
    prototypes = label_prototypes(
        doc_vectors[train_rows] if train_rows else np.zeros((0, space.dim), np.float32),
        [articles[doc_ids[i]].get("label") for i in train_rows],
    )
    meta = {
        "dim": space.dim,
        "bits": list(space.bits),
        "heads": space.kinds,
        # queries are embedded with the model that made the indexed text vectors
        "text_model": (
            (Path("data/model") / space.text_model).as_posix()
            if space.text_model
            else params.embed.text_model
        ),
        "image_model": params.embed.image_model,
        "instruction": params.embed.instruction,
        "max_tokens": int(space.params.get("max_tokens", params.embed.max_tokens))
        if space.text_model
        else params.embed.max_tokens,
        "params": {
            "exact_below": params.index.exact_below,
            "approximate": params.index.approximate,
        },
    }
    with atomic_dir(data / "index") as tmp:
        manifest = write_index_dir(tmp, kinds, params.index, meta, prototypes, params.seed)
    skipped.write(root)
    log.info(
        "index: %s; skipped %d items (%s)",
        ", ".join(f"{k} {v['count']}" for k, v in manifest["kinds"].items()),
        len(skipped),
        dict(skipped.counts()),
    )
    return manifest
