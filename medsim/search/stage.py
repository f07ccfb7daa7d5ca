"""The DVC ``index`` stage: project every embedding into the trained space, hash it, and write
``data/index/`` (layout in :mod:`medsim.search.index`), streaming the embedding files.

Memory is one batch of ``BATCH_ROWS`` embeddings, the indexes being filled (codes for
IVF-PQ, vectors for flat, HNSW and IVF), an IVF/IVF-PQ training sample (``index.train_size``
rows), a compact doc_id lookup with the articles' short columns (titles and abstracts are
streamed beside the embeddings, :mod:`medsim.search.articles`), and figure and table
captions. The figure, caption and table vectors are also held, projected, while documents
are fused from them: one document's fusion needs all its parts, and PubMed's abstracts (most
of the corpus) have none.

An index type whose build does not depend on batching (flat, IVF, IVF-PQ; binary flat) gives
the same files as an in-memory build of the whole collection: batches are a multiple of the
projection's and faiss's own chunks, so each row is computed exactly as before.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from medsim.dml.neighbours import space_rule
from medsim.errors import MedsimError
from medsim.io import SkipLog, atomic_dir, release_unused_memory, stream_batches
from medsim.names import SkipReason
from medsim.paths import (
    ARTICLES_PATH,
    EMBEDDINGS_DIR,
    FIGURES_PATH,
    INDEX_DIR,
    MODEL_DIR,
    SPACE_EMBEDDINGS,
    TABLES_PATH,
)
from medsim.search.articles import ArticleTable
from medsim.search.index import (
    COLLECTION_SOURCES,
    CollectionArrays,
    CollectionStream,
    write_index_dir,
)
from medsim.search.prototypes import LabelMeans

if TYPE_CHECKING:
    from medsim.config import Params
    from medsim.dml import SharedSpace

__all__ = ["BATCH_ROWS", "run_index"]

log = logging.getLogger(__name__)

# rows per batch: a multiple of medsim.dml.project's 4,096-row chunks and of faiss's 4,096-row
# BLAS query blocks (under its 65,536-row add chunks), so a batch computes each row as the whole
# matrix would. Its fusion and item rows (a PubMed abstract is 1.4 KB) take several times the
# batch's vectors: 65,536 rows peaked 660 MiB higher at 1M documents (docs/benchmarks.md).
BATCH_ROWS = 16_384
READ_ROWS = 4_096  # rows Arrow decodes at a time into a batch (a divisor of BATCH_ROWS)


def _lookup(path: Path, key: str, columns: list[str]) -> dict[str, dict[str, Any]]:
    """``key`` value -> row (of ``columns``) of a pipeline table; {} when it does not exist."""
    if not path.is_file():
        return {}
    table = pq.read_table(path, columns=[key, *columns])
    return {row[key]: row for row in table.to_pylist()}


@dataclass
class Metadata:
    """What an item row needs beside its vector: article fields by doc_id (streamed, see
    :mod:`medsim.search.articles`), captions by id."""

    articles: ArticleTable
    figure_captions: dict[str, str]
    table_captions: dict[str, str]
    table_texts: dict[str, str]

    @classmethod
    def read(cls, root: Path) -> Metadata:
        path = root / ARTICLES_PATH
        if not path.is_file():
            raise MedsimError(f"{path} not found (run `dvc repro fetch`)")
        figures = _lookup(root / FIGURES_PATH, "figure_id", ["caption"])
        tables = _lookup(root / TABLES_PATH, "table_id", ["caption", "text"])
        return cls(
            ArticleTable(path, BATCH_ROWS),
            {k: v["caption"] for k, v in figures.items()},
            {k: v["caption"] for k, v in tables.items()},
            {k: "\n".join(filter(None, (v["caption"], v["text"]))) for k, v in tables.items()},
        )

    def items(self, collection: str, ids: list[str], doc_ids: list[str]) -> pa.Table:
        """The item rows (COLLECTION_ITEMS) of one batch of ``collection``."""
        wanted = ["pmid", "title", "label", *(["abstract"] if collection == "documents" else [])]
        fields = self.articles.columns(doc_ids, wanted)
        if collection == "documents":
            captions: Mapping[str, str] = {}
            pairs = zip(fields["title"], fields["abstract"], strict=True)
            texts = ["\n".join(filter(None, pair)) for pair in pairs]
        else:
            captions = self.table_captions if collection == "tables" else self.figure_captions
            source = self.table_texts if collection == "tables" else self.figure_captions
            texts = [source.get(i) for i in ids]
        return pa.table(
            {
                "id": ids,
                "doc_id": doc_ids,
                "pmid": fields["pmid"],
                "title": fields["title"],
                "caption": [captions.get(i) for i in ids],
                "label": fields["label"],
                "text": texts,
            }
        )


def _embedding_batches(path: Path) -> Iterator[tuple[list[str], list[str], np.ndarray]]:
    """``(ids, doc_ids, vectors)`` of an embeddings file in batches of exactly BATCH_ROWS rows
    (the last excepted), whatever its row groups.

    Arrow reads READ_ROWS rows at a time, each copied straight into the batch's matrix: the
    reader's buffers stay a few MB, where reading whole batches through Arrow held two or
    three copies of each (combined chunks, a NumPy view, the matrix).
    """
    dim = pq.ParquetFile(path).schema_arrow.field("vector").type.list_size
    ids: list[str] = []
    doc_ids: list[str] = []
    matrix = np.empty((BATCH_ROWS, dim), dtype=np.float32)
    for batch in stream_batches(path, READ_ROWS, ["id", "doc_id", "vector"]):
        start = 0
        while start < batch.num_rows:
            part = batch.slice(start, min(BATCH_ROWS - len(ids), batch.num_rows - start))
            rows = slice(len(ids), len(ids) + part.num_rows)
            matrix[rows] = part.column(2).flatten().to_numpy().reshape(part.num_rows, dim)
            ids += part.column(0).to_pylist()
            doc_ids += part.column(1).to_pylist()
            start += part.num_rows
            if len(ids) == BATCH_ROWS:
                yield ids, doc_ids, matrix
                ids, doc_ids = [], []
                matrix = np.empty((BATCH_ROWS, dim), dtype=np.float32)
    if ids:
        yield ids, doc_ids, matrix[: len(ids)]


def _sources(root: Path, space: SharedSpace, skipped: SkipLog) -> dict[str, Path]:
    """Index collection -> its embeddings file, for the collections with rows and a head in
    the space."""
    # a space that makes its own text vectors (tuned encoder, lexical part) takes those
    # (written by train)
    tuned_dir = root / MODEL_DIR / SPACE_EMBEDDINGS if space.own_text_inputs else None
    sources = {}
    for collection, (stem, head) in COLLECTION_SOURCES.items():
        folder = tuned_dir if tuned_dir is not None and head != "image" else root / EMBEDDINGS_DIR
        path = folder / f"{stem}.parquet"
        if not path.is_file() or pq.ParquetFile(path).metadata.num_rows == 0:
            continue
        if head not in space.heads:
            for batch in stream_batches(path, BATCH_ROWS, ["id"]):
                for item in batch.column(0).to_pylist():
                    skipped.add(item, SkipReason.NO_HEAD, f"the trained space has no '{head}' head")
            continue
        sources[collection] = path
    if not sources:
        raise MedsimError(f"no embeddings under {root / EMBEDDINGS_DIR} (run `dvc repro embed`)")
    return sources


def _hashed(space: SharedSpace, vectors: np.ndarray) -> dict[int, np.ndarray]:
    from medsim.dml import codes_from_projected

    return {bits: codes_from_projected(space, vectors, bits) for bits in space.bits}


def _collection_stream(
    collection: str, path: Path, space: SharedSpace, meta: Metadata
) -> CollectionStream:
    """Figures, captions or tables: each batch projected by its head, hashed, itemised."""
    from medsim.dml import project

    head = COLLECTION_SOURCES[collection][1]

    def batches(items: bool = True) -> Iterator[CollectionArrays]:
        for ids, doc_ids, matrix in _embedding_batches(path):
            projected = project(space, head, matrix)
            rows = meta.items(collection, ids, doc_ids) if items else None
            yield CollectionArrays(projected, _hashed(space, projected), rows)

    count = pq.ParquetFile(path).metadata.num_rows
    samples = partial(batches, items=False)  # the training pass reads no article fields
    return CollectionStream(count, space.dim, tuple(space.bits), batches, samples)


@dataclass
class _Parts:
    """The projected parts of every document (captions, tables, images), by collection."""

    vectors: dict[str, tuple[np.ndarray, np.ndarray]]  # head -> (doc_id per row, [n, dim])
    rows: dict[str, dict[str, list[int]]]  # head -> doc_id -> its rows, in order

    @classmethod
    def read(cls, sources: Mapping[str, Path], space: SharedSpace) -> _Parts:
        from medsim.dml import project

        vectors, rows = {}, {}
        for collection, path in sources.items():
            if collection == "documents":
                continue
            head = COLLECTION_SOURCES[collection][1]
            batches = [(d, project(space, head, m)) for _, d, m in _embedding_batches(path)]
            doc_ids = np.asarray([d for ds, _ in batches for d in ds], dtype=object)
            vectors[head] = (doc_ids, np.concatenate([v for _, v in batches]))
            groups: dict[str, list[int]] = {}
            for row, doc_id in enumerate(doc_ids):
                groups.setdefault(doc_id, []).append(row)
            rows[head] = groups
        return cls(vectors, rows)

    def of(self, doc_ids: Sequence[str]) -> dict[str, tuple[list[str], np.ndarray]]:
        """Every collection's parts of ``doc_ids``, in file order (as fusion over all would see)."""
        out = {}
        for head, (ids, matrix) in self.vectors.items():
            rows = sorted(r for d in doc_ids for r in self.rows[head].get(d, ()))
            out[head] = (list(ids[rows]), matrix[rows])
        return out

    def doc_ids(self) -> list[str]:
        """Documents that have parts, in order of appearance across collections."""
        return list(dict.fromkeys(d for groups in self.rows.values() for d in groups))


def _fused(
    text: Path | None, parts: _Parts, space: SharedSpace
) -> Iterator[tuple[list[str], np.ndarray]]:
    """Document vectors by :func:`medsim.dml.fusion.fuse_documents`, a text batch at a time,
    then the documents that have parts but no text: the rows and order of one call over all."""
    from medsim.dml import project
    from medsim.dml.fusion import fuse_documents
    from medsim.dml.model import fuses_text_only

    # only the documents with parts are remembered: PubMed's abstracts (most of the corpus)
    # have none, and a set of every doc_id would grow with the corpus
    with_parts = parts.doc_ids()
    seen = set(with_parts)
    with_text: set[str] = set()
    text_only = fuses_text_only(space)
    for _, doc_ids, matrix in _embedding_batches(text) if text else ():
        with_text.update(d for d in doc_ids if d in seen)
        yield fuse_documents(doc_ids, project(space, "text", matrix), parts.of(doc_ids), text_only)
    rest = [d for d in with_parts if d not in with_text]
    if rest:
        yield fuse_documents([], np.zeros((0, space.dim), np.float32), parts.of(rest))


def _document_stream(
    sources: Mapping[str, Path], space: SharedSpace, meta: Metadata
) -> tuple[CollectionStream | None, tuple[list[str], np.ndarray]]:
    """The fused documents as a stream, and the label prototypes of the training documents
    (counted and averaged in a first pass over the fusion)."""
    parts = _Parts.read(sources, space)
    text = sources.get("documents")
    count, means = 0, LabelMeans()
    means.dim = space.dim
    for doc_ids, vectors in _fused(text, parts, space):
        count += len(doc_ids)
        fields = meta.articles.columns(doc_ids, ["split", "label"])
        train = np.asarray([s == "train" for s in fields["split"]], dtype=bool)
        labels = fields["label"]
        means.add(vectors[train], [label for label, t in zip(labels, train, strict=True) if t])
    release_unused_memory()
    if not count:
        return None, means.result()

    def batches(items: bool = True) -> Iterator[CollectionArrays]:
        for doc_ids, vectors in _fused(text, parts, space):
            rows = meta.items("documents", doc_ids, doc_ids) if items else None
            yield CollectionArrays(vectors, _hashed(space, vectors), rows)

    samples = partial(batches, items=False)  # the training pass reads no article fields
    return CollectionStream(count, space.dim, tuple(space.bits), batches, samples), means.result()


def _manifest_meta(space: SharedSpace, params: Params) -> dict[str, Any]:
    from medsim.dml.candidates import space_reading

    tuned = bool(space.text_model)
    return {
        "dim": space.dim,
        "bits": list(space.bits),
        "heads": space.modalities,
        # queries are embedded with the model that made the indexed text vectors
        "text_model": (
            (MODEL_DIR / space.text_model).as_posix() if tuned else params.embed.text_model
        ),
        "image_model": params.embed.image_model,
        "instruction": params.embed.instruction,
        # the words' part of a query's vector (medsim.dml.lexical), when the space has one
        "lexical": (MODEL_DIR / space.lexical).as_posix() if space.lexical else None,
        "lexical_weight": float(space.params.get("lexical_weight", 0.0)),
        # how medsim classify labels a document: the rule the space chose on validation
        "rule": space_rule(space.params),
        # how the query encoder reads a long text: as the space's tuned encoder was tuned
        "long_text": space_reading(space.params, params.embed.long_text)
        if tuned
        else params.embed.long_text,
        "window_stride": params.embed.window_stride,
        "backend": params.embed.backend,  # what runs the query encoder
        "max_tokens": int(space.params.get("max_tokens", params.embed.max_tokens))
        if tuned
        else params.embed.max_tokens,
        "params": {
            "exact_below": params.index.exact_below,
            "approximate": params.index.approximate,
        },
    }


def run_index(params: Params, root: str | Path = ".") -> dict[str, Any]:
    """The DVC ``index`` stage: project every embedding into the trained space, hash it, and
    write ``data/index/``. Returns the manifest."""
    from medsim.dml import load_shared_space

    root = Path(root)
    space = load_shared_space(root / MODEL_DIR)
    meta = Metadata.read(root)
    skipped = SkipLog("index")
    sources = _sources(root, space, skipped)
    documents, prototypes = _document_stream(sources, space, meta)
    collections = {} if documents is None else {"documents": documents}
    for collection, path in sources.items():
        if collection != "documents":
            collections[collection] = _collection_stream(collection, path, space, meta)
    with atomic_dir(root / INDEX_DIR) as tmp:
        manifest = write_index_dir(
            tmp, collections, params.index, _manifest_meta(space, params), prototypes, params.seed
        )
    skipped.write(root)
    log.info(
        "index: %s; skipped %d items (%s)",
        ", ".join(f"{k} {v['count']}" for k, v in manifest["collections"].items()),
        len(skipped),
        dict(skipped.counts()),
    )
    return manifest
