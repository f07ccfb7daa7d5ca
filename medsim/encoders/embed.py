"""The embed stage's pure core: one Arrow batch of an input table -> vectors or skip rows.

:func:`embed_records` reads and writes no files, so any worker can run it on its batch;
:func:`split_records` is the edge that the stage (:mod:`medsim.encoders.stage`) runs where the
cache and the skip log live. :data:`SOURCES` says what each embeddings file encodes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medsim.config import EmbedParams
from medsim.encoders.cache import EmbeddingCache, content_hash
from medsim.encoders.image import (
    ImageSkip,
    check_image,
    decode_image,
)
from medsim.encoders.text import TextEncoder, load_text_encoder
from medsim.io import SkipLog
from medsim.names import Modality, SkipReason
from medsim.paths import ARTICLES_PATH, FIGURES_PATH, MODELS_CACHE_DIR, TABLES_PATH
from medsim.schemas import ARTICLES, FIGURES, TABLES, embedding_schema, validate

__all__ = [
    "SOURCES",
    "Encoder",
    "Source",
    "cached_records",
    "content_hashes",
    "embed_batch",
    "embed_records",
    "records_schema",
    "split_records",
    "text_encoder_from_params",
]

log = logging.getLogger(__name__)


class Encoder(Protocol):
    """What :func:`embed_batch` needs of a text or image encoder."""

    spec: str
    dim: int
    weight_hash: str

    @property
    def fingerprint(self) -> str: ...

    def encode(self, items: list) -> np.ndarray: ...


def _join(*parts: str | None) -> str:
    return "\n".join(p.strip() for p in parts if p and p.strip())


@dataclass(frozen=True)
class Source:
    """One embeddings file: which input table, which id, and what content gets encoded."""

    name: str  # output file stem under data/embeddings/
    input: Path  # relative to the repo root
    schema: pa.Schema  # the input's schema
    id_column: str
    columns: tuple[str, ...]  # text: joined in this order, one paragraph each; image: the bytes
    modality: Literal["text", "image"] = "text"

    def read_columns(self) -> list[str]:
        return list(dict.fromkeys([self.id_column, "doc_id", *self.columns]))

    def content(self, row: Mapping) -> str | bytes:
        """What the encoder reads for one input row."""
        if self.modality == "image":
            return row[self.columns[0]] or b""
        return _join(*(row[c] for c in self.columns))


SOURCES: dict[str, Source] = {
    source.name: source
    for source in (
        Source(Modality.TEXT.embeddings, ARTICLES_PATH, ARTICLES, "doc_id", ("title", "abstract")),
        Source(Modality.CAPTION.embeddings, FIGURES_PATH, FIGURES, "figure_id", ("caption",)),
        Source(Modality.TABLE.embeddings, TABLES_PATH, TABLES, "table_id", ("caption", "text")),
        Source(Modality.IMAGE.embeddings, FIGURES_PATH, FIGURES, "figure_id", ("image",), "image"),
    )
}


def records_schema(dim: int) -> pa.Schema:
    """What the pure core returns: one row per input row, a vector or a skip reason."""
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("doc_id", pa.string(), nullable=False),
            pa.field("content_hash", pa.string()),  # null for rows skipped before hashing
            pa.field("vector", pa.list_(pa.float32(), dim)),  # null on skip rows
            pa.field("reason", pa.string()),  # null on embedded rows
            pa.field("detail", pa.string()),
        ]
    )


def _screen(
    batch: pa.Table, source: Source, min_image_px: int
) -> list[tuple[dict, str | bytes | None, str | None, str | None]]:
    """(row, content, skip reason, detail) per input row: empty texts, unusable image headers."""
    out = []
    for row in batch.select(source.read_columns()).to_pylist():
        content = source.content(row)
        reason, detail = None, None
        if not content:
            reason = SkipReason.EMPTY_TEXT if source.modality == "text" else SkipReason.EMPTY_IMAGE
        elif source.modality == "image":
            try:  # header only, so that cached vectors obey embed.min_image_px too
                check_image(content, min_image_px)
            except ImageSkip as skip:
                reason, detail = skip.reason, skip.detail
        out.append((row, None if reason else content, reason, detail))
    return out


def content_hashes(
    batch: pa.Table, source: Source, fingerprint: str, min_image_px: int = 32
) -> list[str]:
    """The content hashes of a batch's usable rows: what the stage looks up in its cache."""
    return [
        content_hash(fingerprint, content)
        for _, content, _, _ in _screen(batch, source, min_image_px)
        if content is not None
    ]


def embed_records(
    batch: pa.Table,
    source: Source,
    encoder: Encoder,
    *,
    known: Mapping[str, np.ndarray] | None = None,
    min_image_px: int = 32,
) -> pa.Table:
    """The pure core: one batch of ``source``'s input -> rows of :func:`records_schema`.

    Each input row gets one output row, in input order: its vector, or a skip ``reason``
    ("empty text", "empty image", "undecodable image", "image too small"). Vectors in
    ``known`` (by content hash: the caller's cache hits) are not encoded again; equal contents
    are encoded once. No files are read or written, so any worker can run it on its batch.
    """
    screened = _screen(batch, source, min_image_px)
    fingerprint = encoder.fingerprint
    hashes = [None if c is None else content_hash(fingerprint, c) for _, c, _, _ in screened]
    vectors: dict[str, np.ndarray] = {}
    todo: dict[str, str | bytes] = {}  # one encode per distinct content
    for key, (_, content, _, _) in zip(hashes, screened, strict=True):
        if key is None:
            continue
        if known is not None and key in known:
            vectors[key] = known[key]
        else:
            todo.setdefault(key, content)
    failed: dict[str, tuple[str, str | None]] = {}
    if todo:
        keys, items = list(todo), list(todo.values())
        if source.modality == "image":
            keys, items, failed = _decode(keys, items, min_image_px)
        if items:
            vectors.update(zip(keys, encoder.encode(items), strict=True))
    return _records(screened, hashes, vectors, failed, source, encoder.dim)


def _records(
    screened: list,
    hashes: list[str | None],
    vectors: dict[str, np.ndarray],
    failed: dict[str, tuple[str, str | None]],
    source: Source,
    dim: int,
) -> pa.Table:
    matrix = np.zeros((len(screened), dim), dtype=np.float32)
    missing, reasons, details = [], [], []
    for i, ((_, _, reason, detail), key) in enumerate(zip(screened, hashes, strict=True)):
        if key is not None and key in vectors:
            matrix[i] = vectors[key]
        elif key is not None:
            reason, detail = failed[key]
        missing.append(reason is not None)
        reasons.append(reason)
        details.append(detail)
    flat = pa.array(matrix.reshape(-1), pa.float32())
    table = pa.table(
        {
            "id": pa.array([row[source.id_column] for row, *_ in screened], pa.string()),
            "doc_id": pa.array([row["doc_id"] for row, *_ in screened], pa.string()),
            "content_hash": pa.array(hashes, pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(flat, dim, mask=pa.array(missing)),
            "reason": pa.array(reasons, pa.string()),
            "detail": pa.array(details, pa.string()),
        }
    )
    return validate(table, records_schema(dim), name=f"records/{source.name}")


def split_records(
    records: pa.Table,
    source: Source,
    dim: int,
    *,
    cache: EmbeddingCache | None = None,
    skips: SkipLog | None = None,
) -> pa.Table:
    """The stage's edge: skip rows to ``skips``, new vectors to ``cache``, embeddings out."""
    records = validate(records, records_schema(dim), name=f"records/{source.name}")
    skipped = pc.is_valid(records.column("reason"))
    if skips is not None:
        for row in records.filter(skipped).select(["id", "reason", "detail"]).to_pylist():
            skips.add(f"{source.name}:{row['id']}", row["reason"], row["detail"])
    table = records.filter(pc.invert(skipped)).select(["id", "doc_id", "content_hash", "vector"])
    if cache is not None and table.num_rows:
        cache.put(table.column("content_hash").to_pylist(), _matrix(table, dim))
    return validate(table, embedding_schema(dim), name=f"embeddings/{source.name}")


def _matrix(table: pa.Table, dim: int) -> np.ndarray:
    values = table.column("vector").combine_chunks().flatten()
    return values.to_numpy(zero_copy_only=False).reshape(-1, dim)


def embed_batch(
    batch: pa.Table,
    source: Source,
    encoder: Encoder,
    *,
    cache: EmbeddingCache | None = None,  # hits skip the encoder; new vectors are added
    skips: SkipLog | None = None,
    min_image_px: int = 32,  # smaller images are skipped (icons, rules, spacer pixels)
) -> pa.Table:
    """Embed one batch of ``source``'s input table into rows of ``embedding_schema(dim)``.

    :func:`embed_records` between the edges: items already in ``cache`` are not encoded
    again and new vectors are added to it; skipped rows go to ``skips`` and get no row.
    """
    records = cached_records(batch, source, encoder, cache, min_image_px)
    return split_records(records, source, encoder.dim, cache=cache, skips=skips)


def cached_records(
    batch: pa.Table, source: Source, encoder: Encoder, cache: EmbeddingCache | None, min_px: int
) -> pa.Table:
    """:func:`embed_records` with ``cache``'s vectors as the known ones (where the cache is)."""
    known = None
    if cache is not None:
        known = cache.get(content_hashes(batch, source, encoder.fingerprint, min_px))
    return embed_records(batch, source, encoder, known=known, min_image_px=min_px)


def _decode(
    keys: list[str], items: list, min_px: int
) -> tuple[list[str], list, dict[str, tuple[str, str | None]]]:
    """Decode image bytes; the reason for every content that cannot be used."""
    ok_keys, images, failed = [], [], {}
    for key, data in zip(keys, items, strict=True):
        try:
            images.append(decode_image(data, min_px))
            ok_keys.append(key)
        except ImageSkip as skip:
            failed[key] = (skip.reason, skip.detail)
    return ok_keys, images, failed


def text_encoder_from_params(
    params: EmbedParams, root: Path, spec: str | None = None
) -> TextEncoder:
    """The text encoder ``embed.*`` describes (``spec`` overrides ``embed.text_model``)."""
    return load_text_encoder(
        spec or params.text_model,
        max_tokens=params.max_tokens,
        batch_size=params.batch_size,
        device=params.device,
        instruction=params.instruction,
        root=root,
        cache_dir=root / MODELS_CACHE_DIR,
        long_text=params.long_text,
        stride=params.window_stride,
        backend=params.backend,
        tokenize_workers=params.tokenize_workers,
    )
