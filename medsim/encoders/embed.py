"""The embed stage: documents, captions, tables and figures -> ``data/embeddings/*.parquet``.

The core is :func:`embed_batch`, a pure function over one Arrow batch of an input table; the
stage streams each input with :func:`medsim.io.iter_batches` and writes with
:class:`medsim.io.ParquetSink`, so memory is bound by the batch, not the corpus.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from medsim.config import EmbedParams, Params
from medsim.encoders.cache import EmbeddingCache, content_hash, vectors_to_arrow
from medsim.encoders.image import (
    ImageSkip,
    check_image,
    decode_image,
    image_model_dim,
    load_image_encoder,
)
from medsim.encoders.text import TextEncoder, load_text_encoder
from medsim.errors import MedsimError
from medsim.io import ParquetSink, SkipLog, atomic_dir, iter_batches
from medsim.schemas import ARTICLES, FIGURES, TABLES, embedding_schema, validate

__all__ = [
    "CACHE_DIR",
    "EMBEDDINGS_DIR",
    "SOURCES",
    "EmbedSummary",
    "Encoder",
    "Source",
    "embed_batch",
    "embed_file",
    "run_embed",
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
    "text": Source(
        "text",
        Path("data/articles.parquet"),
        ARTICLES,
        "doc_id",
        ("title", "abstract"),
        "text",
        lambda row: _join(row["title"], row["abstract"]),
    ),
    "captions": Source(
        "captions",
        Path("data/figures.parquet"),
        FIGURES,
        "figure_id",
        ("caption",),
        "text",
        lambda row: _join(row["caption"]),
    ),
    "tables": Source(
        "tables",
        Path("data/tables.parquet"),
        TABLES,
        "table_id",
        ("caption", "text"),
        "text",
        lambda row: _join(row["caption"], row["text"]),
    ),
    "images": Source(
        "images",
        Path("data/figures.parquet"),
        FIGURES,
        "figure_id",
        ("image",),
        "image",
        lambda row: row["image"] or b"",
    ),
}


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

    Items already in ``cache`` are not encoded again; new vectors are added to it. Empty
    texts and unusable images go to ``skips`` (reason ``empty_text``, ``undecodable_image``,
    ``image_too_small``) and get no row.
    """
    rows = batch.select(source.read_columns()).to_pylist()
    kept, contents = [], []
    for row in rows:
        content = source.content(row)
        reason, detail = None, None
        if not content:
            reason = "empty_text" if source.modality == "text" else "empty_image"
        elif source.modality == "image":
            try:  # header only, so that cached vectors obey embed.min_image_px too
                check_image(content, min_image_px)
            except ImageSkip as skip:
                reason, detail = skip.reason, skip.detail
        if reason:
            if skips is not None:
                skips.add(f"{source.name}:{row[source.id_column]}", reason, detail)
            continue
        kept.append(row)
        contents.append(content)
    fingerprint = encoder.fingerprint
    hashes = [content_hash(fingerprint, c) for c in contents]
    vectors = cache.get(hashes) if cache is not None else {}

    todo: dict[str, str | bytes] = {}  # one encode per distinct content
    for key, content in zip(hashes, contents, strict=True):
        if key not in vectors:
            todo.setdefault(key, content)
    if todo:
        keys, items = list(todo), list(todo.values())
        if source.modality == "image":
            keys, items = _decode(keys, items, kept, hashes, source, skips, min_image_px)
        if items:
            encoded = encoder.encode(items)
            vectors.update(zip(keys, encoded, strict=True))
            if cache is not None:
                cache.put(keys, encoded)

    out = [(row, key) for row, key in zip(kept, hashes, strict=True) if key in vectors]
    matrix = (
        np.stack([vectors[key] for _, key in out])
        if out
        else np.empty((0, encoder.dim), dtype=np.float32)
    )
    table = pa.table(
        {
            "id": pa.array([row[source.id_column] for row, _ in out], pa.string()),
            "doc_id": pa.array([row["doc_id"] for row, _ in out], pa.string()),
            "content_hash": pa.array([key for _, key in out], pa.string()),
            "vector": vectors_to_arrow(matrix, encoder.dim),
        }
    )
    return validate(table, embedding_schema(encoder.dim), name=f"embeddings/{source.name}")


def _decode(
    keys: list[str],
    items: list,
    rows: list[dict],
    hashes: list[str],
    source: Source,
    skips: SkipLog | None,
    min_px: int,
) -> tuple[list[str], list]:
    """Decode image bytes; record every row whose image cannot be used."""
    ok_keys, images = [], []
    for key, data in zip(keys, items, strict=True):
        try:
            images.append(decode_image(data, min_px))
            ok_keys.append(key)
        except ImageSkip as skip:
            if skips is not None:
                for row, row_key in zip(rows, hashes, strict=True):
                    if row_key == key:
                        skips.add(
                            f"{source.name}:{row[source.id_column]}", skip.reason, skip.detail
                        )
    return ok_keys, images


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
) -> Path:
    """Stream ``source``'s input table through :func:`embed_batch` into ``dest``."""
    schema = embedding_schema(encoder.dim).with_metadata(file_metadata(encoder, source.modality))
    path = root / source.input
    total = _num_rows(path)
    encoded_before = len(cache) if cache is not None else 0
    skipped_before = len(skips)
    with ParquetSink(dest, schema) as sink:
        if total:
            columns = source.read_columns()
            input_schema = pa.schema([source.schema.field(c) for c in columns])
            with tqdm(total=total, desc=f"embed {source.name}", unit="row") as bar:
                for batch in iter_batches(path, batch_size=read_rows, columns=columns):
                    batch = validate(batch, input_schema, name=str(path))
                    sink.write(
                        embed_batch(
                            batch,
                            source,
                            encoder,
                            cache=cache,
                            skips=skips,
                            min_image_px=min_image_px,
                        )
                    )
                    bar.update(batch.num_rows)
        summary.rows_in[source.name] += total
        summary.rows_out[source.name] += sink.rows
    if cache is not None:
        summary.encoded[source.name] += len(cache) - encoded_before
    for row in skips.rows[skipped_before:]:
        summary.skipped[row["reason"]] += 1
    return dest


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
        if embed.adapt:
            text = _adapted(text, params, root, staging)
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
    adapted = load_text_encoder(
        str(staging / ADAPTED_MODEL),
        max_tokens=embed.max_tokens,
        batch_size=embed.batch_size,
        device=embed.device,
        instruction=embed.instruction,
    )
    adapted.spec = (EMBEDDINGS_DIR / ADAPTED_MODEL).as_posix()  # where it lives after the run
    return adapted
