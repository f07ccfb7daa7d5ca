"""Choose ``train.interpolation`` (the WiSE-FT weight of the tuned encoder) on validation data.

Tunes the text encoder once with the train stage's code on a project's ``data/`` (training
split only), then scores several tuned weights on the VALIDATION split only:

- kNN@10 accuracy of validation documents against the training documents (cosine);
- MAP@R of the validation documents among themselves;
- title -> own abstract nDCG@10 among the validation documents.

``--heldout`` scores transfer to classes the tuning never saw instead, Table 2's question asked
of non-test documents: ``max(ways, a third of the classes)`` classes are held out among those
with enough training + validation documents, the encoder is tuned on the other classes'
training documents (as Table 2's re-tuning does), and each weight gets nearest-prototype
accuracy over 5-way K-shot episodes drawn from the held-out classes' training + validation
documents.

The test split is never read. Usage (a project folder after fetch and embed)::

    python benchmarks/tune_interpolation.py --project DIR [--weights 0 0.3 0.5 0.7 1]
    python benchmarks/tune_interpolation.py --project DIR --heldout
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
from medsim.evaluate.fewshot import choose_holdout, episode_accuracy, sample_episodes
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
    parser.add_argument("--heldout", action="store_true", help="few-shot on unseen classes")
    parser.add_argument(
        "--encode-tokens", type=int, nargs="+", default=[0], help="token limits (0: as tuned)"
    )
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
    held: list[str] = []
    all_labels = labels
    if args.heldout:
        held = heldout_classes(params, labels, splits)
        labels = {d: c for d, c in labels.items() if c not in held}
    start = time.perf_counter()
    tune_text_encoder(split, items, labels, splits, train, params.loss, params.seed)
    seconds = time.perf_counter() - start
    tuned = split.upper_state()
    for tokens in args.encode_tokens:  # the same model, read through a cut with this limit
        print(json.dumps({"encode_tokens": tokens or train.max_tokens}), flush=True)
        reader = SplitEncoder(
            base, train.tune_layers, tokens or train.max_tokens, args.project / "data/cache/layers"
        )
        if args.heldout:
            heldout_rows(args, params, reader, original, tuned, items, held, all_labels, splits)
        else:
            validation_rows(args, reader, original, tuned, items, labels, splits)
    print(
        json.dumps(
            {
                "tune_seconds": round(seconds, 1),
                "threads": torch.get_num_threads(),
                "heldout_classes": held,
                "train": dataclasses.asdict(train),
                "loss": params.loss,
            }
        )
    )


def heldout_classes(params, labels: dict, splits: dict) -> list[str]:
    """Table 2's rule on training + validation documents only."""
    ev = params.evaluate
    seen = [c for d, c in labels.items() if splits.get(d) in ("train", "val")]
    n_classes = len(set(seen))
    wanted = ev.holdout_classes or max(ev.ways, -(-n_classes // 3))
    return choose_holdout(seen, max(ev.shots) + ev.queries, wanted, params.seed)


def heldout_rows(args, params, split, original, tuned, items, held, all_labels, splits) -> None:
    """Nearest-prototype accuracy on the held-out classes' non-test documents, per weight."""
    pool = [
        i
        for i, d in enumerate(items.doc_ids)
        if all_labels.get(d) in held and splits[d] in ("train", "val")
    ]
    y = [all_labels[items.doc_ids[i]] for i in pool]
    ev = params.evaluate
    episodes = {
        k: sample_episodes(y, held, ev.ways, k, ev.queries, ev.episodes, params.seed + k)
        for k in sorted(ev.shots)
    }
    for weight in args.weights:
        split.load_upper(interpolate(original, tuned, weight))
        x = split.encode([items.texts[i] for i in pool])
        row = {"weight": weight, "heldout_docs": len(pool)}
        for k, ep in episodes.items():
            row[f"val_{k}_shot"] = round(float(episode_accuracy(x, ep).mean()), 4)
        print(json.dumps(row), flush=True)


def validation_rows(args, split, original, tuned, items, labels, splits) -> None:
    """kNN accuracy, MAP@R and title -> abstract nDCG@10 of the validation split, per weight."""
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


if __name__ == "__main__":
    main()
