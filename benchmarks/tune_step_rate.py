"""Seconds per encoder-tuning step on a built project (``dvc repro`` done), alone on the machine.

Tunes the top ``train.tune_layers`` layers on the openings (``train.max_tokens``) of the first
``--docs`` training documents, one process per run, and prints one JSON line. ``--after-untuned``
first encodes the same documents with the untuned encoder, as the ``frozen_opening`` candidate
does before a tuning, to see whether that slows the steps that follow. ``--precision`` sets
``train.tune_precision`` (default: the project's).

    python benchmarks/tune_step_rate.py --root . [--docs 640] [--loss triplet] [--after-untuned]
        [--precision auto|float32|bfloat16]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import torch

from medsim.config import load_params
from medsim.dml.data import load_labels
from medsim.dml.tune import TunedText, read_text_items, tune_text_encoder, tuning_dtype
from medsim.encoders.embed import text_encoder_from_params
from medsim.encoders.layers import SplitEncoder
from medsim.paths import ARTICLES_PATH, LAYER_CACHE_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--docs", type=int, default=640)
    parser.add_argument("--loss", default="triplet")
    parser.add_argument("--after-untuned", action="store_true")
    parser.add_argument("--precision", choices=["auto", "float32", "bfloat16"])
    args = parser.parse_args()
    params = load_params(args.root / "params.yaml")
    labels, splits = load_labels(args.root / ARTICLES_PATH)
    items = read_text_items(args.root)
    train = [d for d in items.doc_ids if splits.get(d) == "train" and d in labels][: args.docs]
    docs = items.subset(set(train))
    embed = dataclasses.replace(params.embed, backend="torch", long_text="truncate")
    train_params = params.train
    if args.precision:
        train_params = dataclasses.replace(train_params, tune_precision=args.precision)

    def split() -> SplitEncoder:
        base = text_encoder_from_params(embed, args.root)
        t = params.train
        return SplitEncoder(base, t.tune_layers, t.max_tokens, args.root / LAYER_CACHE_DIR)

    untuned_s = None
    if args.after_untuned:
        start = time.perf_counter()
        TunedText(split()).encode(docs.texts)
        untuned_s = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    tuned = split()
    steps = tune_text_encoder(tuned, docs, labels, splits, train_params, args.loss, params.seed)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "documents": len(train),
                "loss": args.loss,
                "steps": len(steps),
                "seconds": round(seconds, 1),
                "seconds_per_step": round(seconds / len(steps), 3),
                "dtype": str(tuning_dtype(tuned.device, train_params.tune_precision)),
                "untuned_encode_s": untuned_s,
                "threads": torch.get_num_threads(),
                "load_average": os.getloadavg()[:3],
            }
        )
    )


if __name__ == "__main__":
    main()
