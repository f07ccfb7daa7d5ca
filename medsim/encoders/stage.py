"""The embed stage at its edges: documents, captions, tables and figures -> embeddings files.

Each input table streams through :func:`medsim.encoders.embed.embed_records` (the pure core)
by :func:`medsim.compute.map_batches` (this process or Ray Data, per ``compute.engine``); the
stage keeps the content-hash cache and the skip log here (:func:`split_records`) and writes with
:class:`medsim.io.ParquetSink`, so memory is bound by the batch, not the corpus.

Outputs (written atomically): ``data/embeddings/{text,captions,tables,images}.parquet`` (and
``data/embeddings/text_model/`` when ``embed.adapt`` is on) and
``data/skipped.parquet/embed.parquet``.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from medsim.compute import map_batches
from medsim.config import ComputeParams, EmbedParams, Params
from medsim.encoders import embed as core
from medsim.encoders.cache import EmbeddingCache
from medsim.encoders.embed import SOURCES, Encoder
from medsim.encoders.image import image_model_dim, load_image_encoder
from medsim.encoders.text import TextEncoder
from medsim.errors import MedsimError
from medsim.io import ParquetSink, SkipLog, atomic_dir
from medsim.names import Modality
from medsim.paths import EMBEDDINGS_CACHE_DIR, EMBEDDINGS_DIR, MODELS_CACHE_DIR
from medsim.schemas import embedding_schema, validate

__all__ = ["ADAPTED_MODEL", "EmbedSummary", "embed_file", "file_metadata", "run_embed"]

log = logging.getLogger(__name__)

ADAPTED_MODEL = "text_model"  # folder under data/embeddings/ when embed.adapt is on


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
            long_text=encoder.long_text,
            window_stride=str(encoder.stride),
        )
    return meta


def _num_rows(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows if path.is_file() else 0


def embed_file(
    source: core.Source,
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
                        core.split_records(records, source, encoder.dim, cache=cache, skips=skips)
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
    source: core.Source,
    encoder: Encoder,
    cache: EmbeddingCache | None,
    input_schema: pa.Schema,
    min_image_px: int,
) -> Callable[[pa.Table], pa.Table]:
    """The local engine's batch function: cache hits looked up here, then the core."""

    def encode_batch(batch: pa.Table) -> pa.Table:
        batch = validate(batch, input_schema, name=str(source.input))
        return core.cached_records(batch, source, encoder, cache, min_image_px)

    return encode_batch


def _worker_core(
    name: str, load: Callable[[], Encoder], input_schema: pa.Schema, min_image_px: int
) -> Callable[[pa.Table], pa.Table]:
    """A Ray worker's batch function: its own encoder, loaded once, and the core."""
    source, encoder = SOURCES[name], load()

    def encode_batch(batch: pa.Table) -> pa.Table:
        batch = validate(batch, input_schema, name=str(source.input))
        return core.embed_records(batch, source, encoder, min_image_px=min_image_px)

    return encode_batch


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


def run_embed(params: Params, root: str | Path = ".") -> EmbedSummary:
    """Run the embed stage under ``root``: four embeddings files and the skipped log."""
    root = Path(root)
    if not (root / SOURCES[Modality.TEXT.embeddings].input).is_file():
        raise MedsimError(f"{SOURCES['text'].input} not found: run the fetch stage first")
    torch.manual_seed(params.seed)
    _set_threads()
    skips = SkipLog("embed")
    summary = EmbedSummary()
    with atomic_dir(root / EMBEDDINGS_DIR) as staging:
        _embed_texts(params, root, staging, skips, summary)
        _embed_images(params, root, staging, skips, summary)
    skips.write(root)
    log.info("embed done\n%s", summary.describe())
    return summary


def _embed_texts(
    params: Params, root: Path, staging: Path, skips: SkipLog, summary: EmbedSummary
) -> None:
    """Documents, captions and tables with the text encoder (adapted first if asked)."""
    embed = params.embed
    text = core.text_encoder_from_params(embed, root)
    load_text = partial(core.text_encoder_from_params, embed, root.resolve())  # for Ray workers
    if embed.adapt:
        text = _adapted(text, params, root, staging)
        load_text = partial(
            _load_adapted, str((staging / ADAPTED_MODEL).resolve()), embed, root.resolve()
        )
    cache = EmbeddingCache(root / EMBEDDINGS_CACHE_DIR, text.fingerprint, text.dim)
    for name in (Modality.TEXT.embeddings, Modality.CAPTION.embeddings, Modality.TABLE.embeddings):
        embed_file(
            SOURCES[name],
            root,
            text,
            staging / f"{name}.parquet",
            cache=cache,
            skips=skips,
            summary=summary,
            read_rows=max(embed.batch_size * 16, 256),
            compute=params.compute,
            load=load_text,
        )


def _embed_images(
    params: Params, root: Path, staging: Path, skips: SkipLog, summary: EmbedSummary
) -> None:
    """Figures with the image encoder, loaded only when there are figures."""
    embed = params.embed
    images = SOURCES[Modality.IMAGE.embeddings]
    load_image = partial(
        load_image_encoder, embed.image_model, batch_size=embed.batch_size, device=embed.device
    )
    if _num_rows(root / images.input):
        image = load_image()
        cache = EmbeddingCache(root / EMBEDDINGS_CACHE_DIR, image.fingerprint, image.dim)
    else:
        image = _NoWeights(embed.image_model, image_model_dim(embed.image_model))
        cache = None
    embed_file(
        images,
        root,
        image,
        staging / "images.parquet",
        cache=cache,
        skips=skips,
        summary=summary,
        read_rows=max(embed.batch_size * 4, 64),
        min_image_px=embed.min_image_px,
        compute=params.compute,
        load=load_image,
    )


def _adapted(base: TextEncoder, params: Params, root: Path, staging: Path) -> TextEncoder:
    """Fine-tune ``base`` on the corpus (cached by inputs), place it in the outputs, load it."""
    from medsim.encoders.adapt import adapt_text_model, corpus_pairs

    embed = params.embed
    pairs = corpus_pairs(
        root / SOURCES[Modality.TEXT.embeddings].input,
        root / SOURCES[Modality.IMAGE.embeddings].input,
    )
    folder = adapt_text_model(
        base,
        pairs,
        root / MODELS_CACHE_DIR,
        steps=embed.adapt_steps,
        lr=embed.adapt_lr,
        seed=params.seed,
    )
    shutil.copytree(folder, staging / ADAPTED_MODEL)
    return _load_adapted(str(staging / ADAPTED_MODEL), embed, root)


def _load_adapted(folder: str, embed: EmbedParams, root: Path) -> TextEncoder:
    """The adapted text encoder in ``folder``, named by where it lives after the run."""
    adapted = core.text_encoder_from_params(embed, root, spec=folder)
    adapted.spec = (EMBEDDINGS_DIR / ADAPTED_MODEL).as_posix()  # where it lives after the run
    return adapted
