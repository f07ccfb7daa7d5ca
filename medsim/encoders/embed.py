"""The embed stage: documents, captions, tables and figures -> ``data/embeddings/*.parquet``.

The core is :func:`embed_records`, a pure function over one Arrow batch of an input table
(skips come back as rows; no cache, no files); the stage streams each input through
:func:`medsim.compute.map_batches` (this process or Ray Data, per ``compute.engine``), keeps
the cache and the skip log at its edge (:func:`split_records`) and writes with
:class:`medsim.io.ParquetSink`, so memory is bound by the batch, not the corpus.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from medsim.compute import map_batches
from medsim.config import ComputeParams, EmbedParams, Params
from medsim.encoders.cache import EmbeddingCache, content_hash
from medsim.encoders.image import (
    ImageSkip,
    check_image,
    decode_image,
    image_model_dim,
    load_image_encoder,
)
from medsim.encoders.text import TextEncoder, load_text_encoder
from medsim.errors import MedsimError
from medsim.io import ParquetSink, SkipLog, atomic_dir
from medsim.names import Modality, SkipReason
from medsim.schemas import ARTICLES, FIGURES, TABLES, embedding_schema, validate

__all__ = [
    "CACHE_DIR",
    "EMBEDDINGS_DIR",
    "SOURCES",
    "EmbedSummary",
    "Encoder",
    "Source",
    "content_hashes",
    "embed_batch",
    "embed_file",
    "embed_records",
    "records_schema",
    "run_embed",
    "split_records",
    "text_encoder_from_params",
]

log = logging.getLogger(__name__)

EMBEDDINGS_DIR = Path("data/embeddings")
CACHE_DIR = Path("data/cache/embeddings")  # not a DVC output: survives `dvc repro`
MODELS_CACHE_DIR = Path("data/cache/models")
ADAPTED_MODEL = "text_model"  # folder under data/embeddings/ when embed.adapt is on


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
    columns: tuple[str, ...]  # input columns the content is built from
    modality: Literal["text", "image"]
    content: Callable[[dict], str | bytes] = field(repr=False)

    def read_columns(self) -> list[str]:
        return list(dict.fromkeys([self.id_column, "doc_id", *self.columns]))


SOURCES: dict[str, Source] = {
    Modality.TEXT.embeddings: Source(
        Modality.TEXT.embeddings,
        Path("data/articles.parquet"),
        ARTICLES,
        "doc_id",
        ("title", "abstract"),
        "text",
        lambda row: _join(row["title"], row["abstract"]),
    ),
    Modality.CAPTION.embeddings: Source(
        Modality.CAPTION.embeddings,
        Path("data/figures.parquet"),
        FIGURES,
        "figure_id",
        ("caption",),
        "text",
        lambda row: _join(row["caption"]),
    ),
    Modality.TABLE.embeddings: Source(
        Modality.TABLE.embeddings,
        Path("data/tables.parquet"),
        TABLES,
        "table_id",
        ("caption", "text"),
        "text",
        lambda row: _join(row["caption"], row["text"]),
    ),
    Modality.IMAGE.embeddings: Source(
        Modality.IMAGE.embeddings,
        Path("data/figures.parquet"),
        FIGURES,
        "figure_id",
        ("image",),
        "image",
        lambda row: row["image"] or b"",
    ),
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
    cache: EmbeddingCache | None = None,
    skips: SkipLog | None = None,
    min_image_px: int = 32,
) -> pa.Table:
    """Embed one batch of ``source``'s input table into rows of ``embedding_schema(dim)``.

    :func:`embed_records` between the edges: items already in ``cache`` are not encoded
    again and new vectors are added to it; skipped rows go to ``skips`` and get no row.
    """
    known = (
        cache.get(content_hashes(batch, source, encoder.fingerprint, min_image_px))
        if cache is not None
        else None
    )
    records = embed_records(batch, source, encoder, known=known, min_image_px=min_image_px)
    return split_records(records, source, encoder.dim, cache=cache, skips=skips)


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


@dataclass
class EmbedSummary:
    """Counts per output file: rows in, rows written, and skip reasons."""

    rows_in: Counter[str] = field(default_factory=Counter)
    rows_out: Counter[str] = field(default_factory=Counter)
    encoded: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)

    def describe(self) -> str:
        lines = []
        for name in SOURCES:
            rows_in, rows_out = self.rows_in[name], self.rows_out[name]
            lines.append(
                f"  {name:9s} in {rows_in:6d}  out {rows_out:6d}  "
                f"encoded {self.encoded[name]:6d}  skipped {rows_in - rows_out:d}"
            )
        if self.skipped:
            lines.append(
                "  skip reasons: " + ", ".join(f"{k} {v}" for k, v in self.skipped.items())
            )
        return "\n".join(lines)


def file_metadata(encoder: Encoder, kind: str) -> dict[str, str]:
    """Key-value metadata of an embeddings file: what produced its vectors."""
    meta = {
        "model_spec": encoder.spec,
        "weight_hash": encoder.weight_hash,
        "dim": str(encoder.dim),
        "fingerprint": encoder.fingerprint,
        "modality": kind,
    }
    if isinstance(encoder, TextEncoder):
        meta.update(
            pooling=encoder.pooling,
            max_tokens=str(encoder.max_tokens),
            instruction=encoder.instruction,
        )
    return meta


def _num_rows(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows if path.is_file() else 0


def embed_file(
    source: Source,
    root: Path,
    encoder: Encoder,
    dest: Path,
    *,
    cache: EmbeddingCache | None,
    skips: SkipLog,
    summary: EmbedSummary,
    read_rows: int,
    min_image_px: int = 32,
    compute: ComputeParams | None = None,
    load: Callable[[], Encoder] | None = None,
) -> Path:
    """Stream ``source``'s input table through :func:`embed_records` into ``dest``.

    ``compute`` picks the engine (default: local, with ``encoder``); on Ray each worker builds
    its own encoder with ``load`` (a picklable recipe for the same model). Either way this
    function keeps the edges: the cache, the skip log and the output file.
    """
    compute = compute or ComputeParams()
    schema = embedding_schema(encoder.dim).with_metadata(file_metadata(encoder, source.modality))
    path = root / source.input
    total = _num_rows(path)
    encoded_before = len(cache) if cache is not None else 0
    skipped_before = len(skips)
    with ParquetSink(dest, schema) as sink:
        if total:
            columns = source.read_columns()
            input_schema = pa.schema([source.schema.field(c) for c in columns])
            if compute.engine == "local":
                factory = partial(_local_core, source, encoder, cache, input_schema, min_image_px)
            elif load is None:
                raise MedsimError(f"embed {source.name}: the ray engine needs an encoder recipe")
            else:  # the cache stays here: workers elsewhere cannot read this disk
                factory = partial(_worker_core, source.name, load, input_schema, min_image_px)
            with tqdm(total=total, desc=f"embed {source.name}", unit="row") as bar:
                for records in map_batches(
                    path, factory, compute, columns=columns, batch_rows=read_rows
                ):
                    sink.write(
                        split_records(records, source, encoder.dim, cache=cache, skips=skips)
                    )
                    bar.update(records.num_rows)
        summary.rows_in[source.name] += total
        summary.rows_out[source.name] += sink.rows
    if cache is not None:
        summary.encoded[source.name] += len(cache) - encoded_before
    for row in skips.rows[skipped_before:]:
        summary.skipped[row["reason"]] += 1
    return dest


def _local_core(
    source: Source,
    encoder: Encoder,
    cache: EmbeddingCache | None,
    input_schema: pa.Schema,
    min_image_px: int,
) -> Callable[[pa.Table], pa.Table]:
    """The local engine's batch function: cache hits looked up here, then the core."""

    def core(batch: pa.Table) -> pa.Table:
        batch = validate(batch, input_schema, name=str(source.input))
        known = (
            cache.get(content_hashes(batch, source, encoder.fingerprint, min_image_px))
            if cache is not None
            else None
        )
        return embed_records(batch, source, encoder, known=known, min_image_px=min_image_px)

    return core


def _worker_core(
    name: str, load: Callable[[], Encoder], input_schema: pa.Schema, min_image_px: int
) -> Callable[[pa.Table], pa.Table]:
    """A Ray worker's batch function: its own encoder, loaded once, and the core."""
    source, encoder = SOURCES[name], load()

    def core(batch: pa.Table) -> pa.Table:
        batch = validate(batch, input_schema, name=str(source.input))
        return embed_records(batch, source, encoder, min_image_px=min_image_px)

    return core


@dataclass
class _NoWeights:
    """Stand-in for an image model never loaded because there are no images to encode."""

    spec: str
    dim: int
    weight_hash: str = ""
    fingerprint: str = ""

    def encode(self, items: list) -> np.ndarray:
        raise AssertionError("no images were expected")


def _set_threads() -> None:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    torch.set_num_threads(max(1, cores))


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
    )


def run_embed(params: Params, root: str | Path = ".") -> EmbedSummary:
    """Run the embed stage under ``root``: four embeddings files and the skipped log."""
    root = Path(root)
    embed = params.embed
    if not (root / SOURCES["text"].input).is_file():
        raise MedsimError(f"{SOURCES['text'].input} not found: run the fetch stage first")
    torch.manual_seed(params.seed)
    _set_threads()
    skips = SkipLog("embed")
    summary = EmbedSummary()
    read_rows = max(embed.batch_size * 16, 256)
    with atomic_dir(root / EMBEDDINGS_DIR) as staging:
        text = text_encoder_from_params(embed, root)
        load_text = partial(text_encoder_from_params, embed, root.resolve())  # for Ray workers
        if embed.adapt:
            text = _adapted(text, params, root, staging)
            load_text = partial(_load_adapted, str((staging / ADAPTED_MODEL).resolve()), embed)
        text_cache = EmbeddingCache(root / CACHE_DIR, text.fingerprint, text.dim)
        for name in ("text", "captions", "tables"):
            embed_file(
                SOURCES[name],
                root,
                text,
                staging / f"{name}.parquet",
                cache=text_cache,
                skips=skips,
                summary=summary,
                read_rows=read_rows,
                compute=params.compute,
                load=load_text,
            )
        del text
        images = SOURCES["images"]
        if _num_rows(root / images.input):
            image = load_image_encoder(
                embed.image_model, batch_size=embed.batch_size, device=embed.device
            )
            image_cache = EmbeddingCache(root / CACHE_DIR, image.fingerprint, image.dim)
        else:
            image = _NoWeights(embed.image_model, image_model_dim(embed.image_model))
            image_cache = None
        embed_file(
            images,
            root,
            image,
            staging / "images.parquet",
            cache=image_cache,
            skips=skips,
            summary=summary,
            read_rows=max(embed.batch_size * 4, 64),
            min_image_px=embed.min_image_px,
            compute=params.compute,
            load=partial(
                load_image_encoder,
                embed.image_model,
                batch_size=embed.batch_size,
                device=embed.device,
            ),
        )
    skips.write(root)
    log.info("embed done\n%s", summary.describe())
    return summary


def _adapted(base: TextEncoder, params: Params, root: Path, staging: Path) -> TextEncoder:
    """Fine-tune ``base`` on the corpus (cached by inputs), place it in the outputs, load it."""
    from medsim.encoders.adapt import adapt_text_model, corpus_pairs

    embed = params.embed
    pairs = corpus_pairs(root / SOURCES["text"].input, root / SOURCES["images"].input)
    folder = adapt_text_model(
        base,
        pairs,
        root / MODELS_CACHE_DIR,
        steps=embed.adapt_steps,
        lr=embed.adapt_lr,
        seed=params.seed,
    )
    shutil.copytree(folder, staging / ADAPTED_MODEL)
    return _load_adapted(str(staging / ADAPTED_MODEL), embed)


def _load_adapted(folder: str, embed: EmbedParams) -> TextEncoder:
    """The adapted text encoder in ``folder``, named by where it lives after the run."""
    adapted = load_text_encoder(
        folder,
        max_tokens=embed.max_tokens,
        batch_size=embed.batch_size,
        device=embed.device,
        instruction=embed.instruction,
    )
    adapted.spec = (EMBEDDINGS_DIR / ADAPTED_MODEL).as_posix()  # where it lives after the run
    return adapted
