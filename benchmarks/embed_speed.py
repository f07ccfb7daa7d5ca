"""Embed-stage throughput against the bare models, measured in one run.

Text: medsim's batch function (:func:`medsim.encoders.embed.embed_batch`, with its cold
content-hash cache) over OHSUMED titles + abstracts, against ``SentenceTransformer.encode`` on
the same texts, batch size and max length. Images: ``embed_batch`` over the MedPix PNGs
against a bare timm pipeline (decode, the model's own transform, forward) with the same
batch size; forward-only throughput is printed for reference.

    .venv/bin/python benchmarks/embed_speed.py            # full OHSUMED (7,400) + MedPix (596)
    .venv/bin/python benchmarks/embed_speed.py --docs 500 --images 100   # a quick look
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medsim.encoders.cache import EmbeddingCache  # noqa: E402
from medsim.encoders.embed import SOURCES, embed_batch  # noqa: E402
from medsim.encoders.image import load_image_encoder  # noqa: E402
from medsim.encoders.text import load_text_encoder  # noqa: E402
from medsim.pubmed.local.folders import parse_document  # noqa: E402
from medsim.schemas import ARTICLES, FIGURES  # noqa: E402

SHARED = Path(os.environ.get("MEDSIM_SHARED", REPO.parent / "shared")) / "data"


class NullEncoder:
    """Zeros at no cost: isolates medsim's per-item overhead from the model's time."""

    spec = "null"
    weight_hash = ""
    fingerprint = "null"

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def encode(self, items: list) -> np.ndarray:
        return np.zeros((len(items), self.dim), dtype=np.float32)


def ohsumed_articles(folder: Path, limit: int | None) -> pa.Table:
    rows = []
    for file in sorted(folder.glob("*/*/*")):
        title, abstract = parse_document(file.read_text(encoding="utf-8"))
        rows.append(
            {"doc_id": file.relative_to(folder).as_posix(), "title": title, "abstract": abstract}
        )
    rows = rows[:limit]
    schema = pa.schema([ARTICLES.field(c) for c in ("doc_id", "title", "abstract")])
    return pa.Table.from_pylist(rows, schema=schema)


def medpix_figures(folder: Path, limit: int | None) -> pa.Table:
    rows = []
    for file in sorted(folder.glob("*.png"))[:limit]:
        data = file.read_bytes()
        rows.append(
            {
                "figure_id": file.stem,
                "doc_id": file.stem.split("_")[0],
                "image": data,
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    schema = pa.schema([FIGURES.field(c) for c in ("figure_id", "doc_id", "image", "sha256")])
    return pa.Table.from_pylist(rows, schema=schema)


def timed(fn: Callable[..., object], *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def bench_text(args: argparse.Namespace) -> dict:
    from sentence_transformers import SentenceTransformer

    table = ohsumed_articles(SHARED / "ohsumed-23", args.docs)
    texts = [
        f"{t}\n{a}".strip()
        for t, a in zip(table["title"].to_pylist(), table["abstract"].to_pylist(), strict=True)
    ]
    ours = load_text_encoder(
        "packaged:all-MiniLM-L6-v2",
        max_tokens=args.max_tokens,
        batch_size=args.batch_size,
        device=args.device,
    )
    bare = SentenceTransformer(str(ours.folder), device=args.device)
    bare.max_seq_length = args.max_tokens
    warm = texts[: args.batch_size]
    bare.encode(warm, batch_size=args.batch_size)
    ours.encode(warm)
    read_rows = args.chunk or args.batch_size * 16  # the stage reads 16 batches at a time
    t_bare = t_ours = 0.0
    with tempfile.TemporaryDirectory() as cache_dir:  # cold cache, as on a first run
        cache = EmbeddingCache(cache_dir, ours.fingerprint, ours.dim)
        for start in range(0, len(texts), read_rows):  # interleaved: load drift hits both alike
            chunk = texts[start : start + read_rows]
            t_bare += timed(bare.encode, chunk, batch_size=args.batch_size)
            batch = table.slice(start, read_rows)
            t_ours += timed(embed_batch, batch, SOURCES["text"], ours, cache=cache)
    # medsim's own work around the model (hashing, cache, Arrow), with a model that costs nothing
    null = NullEncoder(ours.dim)
    with tempfile.TemporaryDirectory() as cache_dir:
        cache = EmbeddingCache(cache_dir, null.fingerprint, null.dim)
        t_null = sum(
            timed(embed_batch, table.slice(s, read_rows), SOURCES["text"], null, cache=cache)
            for s in range(0, len(texts), read_rows)
        )
    return {
        "items": len(texts),
        "bare_per_s": len(texts) / t_bare,
        "medsim_per_s": len(texts) / t_ours,
        "ratio": t_bare / t_ours,
        "medsim_overhead_ms_per_item": 1000 * t_null / len(texts),
        "bare_ms_per_item": 1000 * t_bare / len(texts),
    }


def bench_images(args: argparse.Namespace) -> dict:
    table = medpix_figures(SHARED / "medpix/images", args.images)
    ours = load_image_encoder(
        "packaged:efficientnet-lite0", batch_size=args.batch_size, device=args.device
    )
    model, transform, device = ours.model, ours.transform, ours.device
    blobs = table["image"].to_pylist()

    def bare(chunk: list[bytes]) -> None:
        with torch.inference_mode():
            for start in range(0, len(chunk), args.batch_size):
                pixels = torch.stack(
                    [
                        transform(Image.open(io.BytesIO(b)).convert("RGB"))
                        for b in chunk[start : start + args.batch_size]
                    ]
                )
                model(pixels.to(device))

    @torch.inference_mode()
    def forward(tensors: list[torch.Tensor]) -> None:
        for pixels in tensors:
            model(pixels.to(device))

    with torch.inference_mode():
        warm = [transform(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs[:4]]
        model(torch.stack(warm).to(device))
    read_rows = args.chunk or args.batch_size * 4  # the stage reads 4 batches at a time
    t_bare = t_ours = t_forward = 0.0
    with tempfile.TemporaryDirectory() as cache_dir:  # cold cache, as on a first run
        cache = EmbeddingCache(cache_dir, ours.fingerprint, ours.dim)
        for start in range(0, len(blobs), read_rows):  # interleaved: load drift hits both alike
            chunk = blobs[start : start + read_rows]
            t_bare += timed(bare, chunk)
            batch = table.slice(start, read_rows)
            t_ours += timed(embed_batch, batch, SOURCES["images"], ours, cache=cache)
            tensors = [
                torch.stack(
                    [
                        transform(Image.open(io.BytesIO(b)).convert("RGB"))
                        for b in chunk[s : s + args.batch_size]
                    ]
                )
                for s in range(0, len(chunk), args.batch_size)
            ]
            t_forward += timed(forward, tensors)
    n = len(blobs)
    return {
        "items": n,
        "bare_per_s": n / t_bare,
        "medsim_per_s": n / t_ours,
        "ratio": t_bare / t_ours,
        "forward_only_per_s": n / t_forward,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=None, help="OHSUMED docs (default: all)")
    parser.add_argument("--images", type=int, default=None, help="MedPix images (default: all)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--chunk", type=int, default=0, help="rows per interleaved step (default: as the stage)"
    )
    parser.add_argument("--skip", choices=["text", "images"], default=None)
    args = parser.parse_args()

    results = {
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "batch_size": args.batch_size,
        "max_tokens": args.max_tokens,
    }
    if args.skip != "text":
        results["text"] = bench_text(args)
    if args.skip != "images":
        results["images"] = bench_images(args)
    print(json.dumps(results, indent=2))
    for kind in ("text", "images"):
        if kind in results:
            r = results[kind]
            print(
                f"{kind}: {r['items']} items, medsim {r['medsim_per_s']:.1f}/s, "
                f"bare {r['bare_per_s']:.1f}/s, ratio {r['ratio']:.3f}"
            )


if __name__ == "__main__":
    main()
