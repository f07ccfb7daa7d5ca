"""Content-hash cache of embeddings that outlives the DVC outputs.

``data/cache/embeddings/<fingerprint[:16]>/part-*.parquet`` holds ``(content_hash, vector)``
rows for one encoder configuration. DVC deletes ``data/embeddings`` before re-running the
stage, but not this folder, so a grown corpus re-encodes only its new items. Each shard is
written atomically as soon as its batch is encoded: a run that dies half-way keeps its work.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from medsim.io import atomic_path

__all__ = [
    "EmbeddingCache",
    "cache_schema",
    "content_hash",
    "encode_with_cache",
    "vectors_to_arrow",
]

log = logging.getLogger(__name__)


def content_hash(fingerprint: str, content: str | bytes) -> str:
    """sha256 of an encoder fingerprint (spec, weights, settings) and one input."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    digest = hashlib.sha256(fingerprint.encode())
    digest.update(b"\x00")
    digest.update(data)
    return digest.hexdigest()


def cache_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("content_hash", pa.string(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
        ]
    )


class EmbeddingCache:
    """Vectors of one encoder configuration, looked up by content hash.

    Only the hash -> shard index is held in memory; vectors are read per lookup, from the
    shards that hold them.
    """

    def __init__(self, root: str | Path, fingerprint: str, dim: int) -> None:
        self.folder = Path(root) / fingerprint[:16]
        self.dim = dim
        self.schema = cache_schema(dim)
        self._where: dict[str, Path] = {}
        for shard in sorted(self.folder.glob("part-*.parquet")):
            try:
                hashes = pq.read_table(shard, columns=["content_hash"]).column(0)
                if pq.read_schema(shard).field("vector").type != self.schema.field("vector").type:
                    raise ValueError("vector type differs")
            except (OSError, pa.ArrowException, KeyError, ValueError) as exc:
                log.warning("ignoring unreadable cache shard %s: %s", shard, exc)
                continue
            for value in hashes.to_pylist():
                self._where[value] = shard
        if self._where:
            log.info("embedding cache %s: %d vectors", self.folder, len(self._where))

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def get(self, hashes: list[str]) -> dict[str, np.ndarray]:
        """The cached vectors among ``hashes`` (misses are simply absent)."""
        by_shard: dict[Path, list[str]] = defaultdict(list)
        for key in set(hashes):
            if key in self._where:
                by_shard[self._where[key]].append(key)
        found: dict[str, np.ndarray] = {}
        for shard, keys in by_shard.items():
            table = pq.read_table(shard)
            table = table.filter(pc.is_in(table.column("content_hash"), pa.array(keys)))
            vectors = _to_numpy(table.column("vector"), self.dim)
            for key, vector in zip(table.column("content_hash").to_pylist(), vectors, strict=True):
                found[key] = vector
        return found

    def put(self, hashes: list[str], vectors: np.ndarray) -> None:
        """Store new vectors as one shard (atomically); hashes already cached are left out."""
        first: dict[str, int] = {}
        for i, key in enumerate(hashes):
            if key not in self._where:
                first.setdefault(key, i)
        keep = list(first.values())
        if not keep:
            return
        table = pa.table(
            {
                "content_hash": pa.array([hashes[i] for i in keep], pa.string()),
                "vector": vectors_to_arrow(vectors[keep], self.dim),
            },
            schema=self.schema,
        )
        shard = self.folder / f"part-{uuid.uuid4().hex}.parquet"
        with atomic_path(shard) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        for i in keep:
            self._where[hashes[i]] = shard


def encode_with_cache(texts: list[str], encoder, cache: EmbeddingCache) -> np.ndarray:
    """Vectors of ``texts`` (in input order) by ``encoder``, encoding only what ``cache`` lacks.

    ``encoder`` is any object with ``fingerprint``, ``dim`` and ``encode(list) -> ndarray``
    (a :class:`~medsim.encoders.text.TextEncoder`); each distinct text is encoded once.
    """
    hashes = [content_hash(encoder.fingerprint, text) for text in texts]
    found = cache.get(hashes)
    todo: dict[str, str] = {}
    for key, text in zip(hashes, texts, strict=True):
        if key not in found:
            todo.setdefault(key, text)
    if todo:
        encoded = encoder.encode(list(todo.values()))
        found.update(zip(todo, encoded, strict=True))
        cache.put(list(todo), encoded)
    if not hashes:
        return np.empty((0, encoder.dim), dtype=np.float32)
    return np.stack([found[key] for key in hashes]).astype(np.float32, copy=False)


def vectors_to_arrow(vectors: np.ndarray, dim: int) -> pa.FixedSizeListArray:
    """A ``rows x dim`` float32 matrix as an Arrow fixed-size list column."""
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, dim)


def _to_numpy(column: pa.ChunkedArray, dim: int) -> np.ndarray:
    if column.num_chunks == 0 or len(column) == 0:
        return np.empty((0, dim), dtype=np.float32)
    array = column.combine_chunks()
    return array.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
