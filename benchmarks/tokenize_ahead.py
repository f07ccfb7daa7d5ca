"""The CPU side of embedding on a GPU: how fast the text encoder's batches are tokenized with
N worker processes ahead of the model (:mod:`medsim.encoders.feed`).

OHSUMED titles + abstracts go through both tokenizer passes of the embed stage's text encoder
with ``embed.tokenize_workers`` = N: the window split (:func:`medsim.encoders.feed.split_ahead`,
``embed.max_tokens``, ``embed.long_text: windows``) and the batches the model reads
(:func:`medsim.encoders.feed.tokenized_batches`), consumed as fast as they come (no model), so
the rate is the most documents/s that tokenizing can feed a GPU with N workers (worker start
included). Counts documents per second, their windows included. ``--model`` also runs the model on
``--device`` to show the whole loop with and without workers. Each setting runs in the same
process in ABBA order; the load average is printed: a rate taken beside other jobs is not a
measurement.

    python benchmarks/tokenize_ahead.py --workers 0 1 2 4 8
    python benchmarks/tokenize_ahead.py --workers 0 8 --model --device cuda --batch-size 256
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from onnx_backend import SHARED, ohsumed_texts  # noqa: E402

from medsim.encoders.feed import split_ahead, tokenized_batches  # noqa: E402
from medsim.encoders.text import TextEncoder, load_text_encoder  # noqa: E402
from medsim.encoders.windows import split_windows  # noqa: E402


def calls(texts: list[str], rows: int) -> list[list[str]]:
    """The texts in the slices the embed stage hands its encoder (one read batch each)."""
    return [texts[i : i + rows] for i in range(0, len(texts), rows)]


def tokenize_seconds(encoder: TextEncoder, texts: list[str], workers: int, rows: int) -> float:
    """Seconds to split ``texts`` into windows and tokenize them with ``workers`` processes,
    one encoder call per ``rows`` texts (workers start anew each call, as in the stage)."""
    start = time.perf_counter()
    for part in calls(texts, rows):
        pieces = split_ahead(part, encoder.tokenizer, encoder.windows, workers)[0]
        batches = tokenized_batches(
            pieces,
            encoder.sentence_model.preprocess,
            batch_size=encoder.batch_size,
            workers=workers,
            prompt=encoder.instruction or None,
            pin_memory=encoder.device.type == "cuda",
        )
        for _, features in batches:
            features["attention_mask"].sum()  # touch what the model would read
    return time.perf_counter() - start


def encode_seconds(encoder: TextEncoder, texts: list[str], workers: int, rows: int) -> float:
    encoder.tokenize_workers = workers
    start = time.perf_counter()
    for part in calls(texts, rows):
        encoder.encode(part)
    if encoder.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=0, help="texts (0: all 7,400)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 4])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--call-rows", type=int, default=0, help="texts per encoder call (0: the embed stage's)"
    )
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", action="store_true", help="also time the model's loop")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    load_before = os.getloadavg()
    texts = ohsumed_texts(SHARED / "ohsumed-23", args.docs)
    encoder = load_text_encoder(
        "packaged:all-MiniLM-L6-v2",
        max_tokens=args.max_tokens,
        batch_size=args.batch_size,
        device=args.device,
    )
    pieces, _, longer = split_windows(texts, encoder.tokenizer, encoder.windows)
    rows = args.call_rows or max(args.batch_size * 16, 256)  # as medsim.encoders.stage reads
    print(
        f"{len(texts)} texts -> {len(pieces)} windows ({longer} texts longer than "
        f"{encoder.max_tokens} tokens), batch {args.batch_size}, {os.cpu_count()} CPUs, "
        f"device {encoder.device}, {rows} texts per encoder call"
    )
    settings = args.workers
    best = {w: float("inf") for w in settings}
    model_best = {w: float("inf") for w in settings}
    for rep in range(args.repeats):
        for workers in settings if rep % 2 == 0 else settings[::-1]:
            best[workers] = min(best[workers], tokenize_seconds(encoder, texts, workers, rows))
            if args.model:
                seconds = encode_seconds(encoder, texts, workers, rows)
                model_best[workers] = min(model_best[workers], seconds)
    print(
        "| workers | tokenizing docs/s | windows/s |" + (" encode docs/s |" if args.model else "")
    )
    print("|---|---|---|" + ("---|" if args.model else ""))
    for workers in settings:
        seconds = best[workers]
        row = f"| {workers} | {len(texts) / seconds:,.0f} | {len(pieces) / seconds:,.0f} |"
        if args.model:
            row += f" {len(texts) / model_best[workers]:,.1f} |"
        print(row)
    print(f"load average before {np.round(load_before, 2)}, after {np.round(os.getloadavg(), 2)}")


if __name__ == "__main__":
    main()
