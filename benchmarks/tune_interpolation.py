"""Choose ``train.interpolation`` (the WiSE-FT weight of the tuned encoder) on validation data.

Tunes the text encoder once with the train stage's code on a project's ``data/`` (training
split only), then scores several tuned weights on the VALIDATION split only:

- kNN@10 accuracy of validation documents against the training documents (cosine);
- MAP@R of the validation documents among themselves;
- title -> own abstract nDCG@10 among the validation documents.

The test split is never read. Usage (a project folder after fetch and embed)::

    python benchmarks/tune_interpolation.py --project DIR [--weights 0 0.3 0.5 0.7 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from medsim.config import load_params
from medsim.dml.data import load_labels
from medsim.dml.tune import interpolate, read_text_items, tune_text_encoder
from medsim.encoders.embed import text_encoder_from_params
from medsim.encoders.layers import SplitEncoder
from medsim.evaluate.baselines import knn_proba
from medsim.evaluate.textbench import retrieval_task


def map_at_r(x: np.ndarray, y: np.ndarray) -> float:
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    scores = []
    for i in range(len(y)):
        r = int((y == y[i]).sum()) - 1
        if r < 1:
            continue
        top = np.argsort(-sims[i])[:r]
        hits = (y[top] == y[i]).astype(float)
        scores.append(float((np.cumsum(hits) / np.arange(1, r + 1) * hits).sum() / r))
    return float(np.mean(scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.3, 0.5, 0.7, 1.0])
    parser.add_argument("--set", nargs="*", default=[], help="train.KEY=VALUE overrides")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    params = load_params(args.project / "params.yaml")
    train = params.train
    for item in args.set:
        key, value = item.split("=", 1)
        field_type = type(getattr(train, key))
        train = dataclasses.replace(train, **{key: field_type(value)})
    train = dataclasses.replace(train, interpolation=1.0)
    labels, splits = load_labels(args.project / "data/articles.parquet")
    items = read_text_items(args.project)
    items.parts = {}
    base = text_encoder_from_params(params.embed, args.project)
    split = SplitEncoder(
        base, train.tune_layers, train.max_tokens, args.project / "data/cache/layers"
    )
    original = split.upper_state()
    start = time.perf_counter()
    tune_text_encoder(split, items, labels, splits, train, params.loss, params.seed)
    seconds = time.perf_counter() - start
    tuned = split.upper_state()

    tr = [i for i, d in enumerate(items.doc_ids) if splits[d] == "train" and d in labels]
    va = [i for i, d in enumerate(items.doc_ids) if splits[d] == "val" and d in labels]
    classes = sorted({labels[items.doc_ids[i]] for i in tr})
    cls = {c: i for i, c in enumerate(classes)}
    y_tr = np.array([cls[labels[items.doc_ids[i]]] for i in tr])
    y_va = np.array([cls.get(labels[items.doc_ids[i]], -1) for i in va])
    titled = [i for i in va if items.titles[i] and items.texts[i] != items.titles[i]]
    abstracts = [items.texts[i][len(items.titles[i]) :].strip() for i in titled]
    rows = []
    for weight in args.weights:
        split.load_upper(interpolate(original, tuned, weight))
        x_tr = split.encode([items.texts[i] for i in tr])
        x_va = split.encode([items.texts[i] for i in va])
        proba = knn_proba(x_tr, y_tr, x_va, len(classes), 10)
        q = split.encode([items.titles[i] for i in titled])
        g = split.encode(abstracts)
        rows.append(
            {
                "weight": weight,
                "val_knn_acc": round(float((proba.argmax(1) == y_va).mean()), 4),
                "val_map_at_r": round(map_at_r(x_va, y_va), 4),
                "val_title_ndcg10": retrieval_task(q, g)["ndcg_at_10"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    print(
        json.dumps(
            {
                "tune_seconds": round(seconds, 1),
                "threads": torch.get_num_threads(),
                "train": dataclasses.asdict(train),
                "loss": params.loss,
            }
        )
    )


if __name__ == "__main__":
    main()
