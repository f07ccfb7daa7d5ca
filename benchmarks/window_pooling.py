"""How to pool a long text's windows: kNN and logistic-regression accuracy on validation only.

Encodes a finished project's training (a sample of ``--train`` documents) and validation
documents window by window with the embed stage's text encoder (``embed.max_tokens``,
``embed.window_stride``), then pools each document's windows four ways (the opening window
only, which is what truncation reads; the mean; the opening plus the mean of the rest, the
default; the opening counted twice in the mean) and scores kNN@10 and logistic regression of
the validation documents against the training ones. The test split is not read.

    .venv/bin/python benchmarks/window_pooling.py --project /tmp/runs/ohsumed --train 1000
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from medsim.config import load_params
from medsim.dml.neighbours import knn_proba, l2
from medsim.encoders.embed import SOURCES, text_encoder_from_params
from medsim.encoders.windows import pool_windows, split_windows
from medsim.evaluate.baselines import logistic_proba

Pool = Callable[[list[np.ndarray]], np.ndarray]
POOLINGS: dict[str, Pool] = {
    "opening only": lambda w: w[0],
    "mean": lambda w: np.mean(w, axis=0),
    "opening counted twice": lambda w: (w[0] + np.sum(w, axis=0)) / (len(w) + 1),
}


def _documents(root: Path, n_train: int, seed: int) -> tuple[list[str], np.ndarray, int]:
    """Texts of a training sample then the validation documents, class indices, sample size."""
    docs = pd.read_parquet(root / "data/articles.parquet")
    docs = docs[docs["label"].fillna("") != ""]
    train = docs[docs["split"] == "train"]
    train = train.sample(min(n_train, len(train)), random_state=seed)
    both = pd.concat([train, docs[docs["split"] == "val"]])
    classes = {c: i for i, c in enumerate(sorted(train["label"].unique()))}
    both = both[both["label"].isin(classes)]
    texts = [SOURCES["text"].content(r) for r in both.to_dict("records")]
    return texts, both["label"].map(classes).to_numpy(), len(train)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--train", type=int, default=1000, help="training documents sampled")
    args = parser.parse_args()
    params = load_params(args.project / "params.yaml")
    texts, y, n_train = _documents(args.project, args.train, params.seed)
    encoder = text_encoder_from_params(params.embed, args.project)
    pieces, owner, longer = split_windows(texts, encoder.tokenizer, encoder.windows)
    start = time.perf_counter()
    vectors = encoder.encode_pieces(pieces)
    print(
        f"{len(texts)} documents, {longer} longer than the window, {len(pieces)} windows, "
        f"{time.perf_counter() - start:.0f} s"
    )
    windows: list[list[np.ndarray]] = [[] for _ in texts]
    for vector, text in zip(vectors, owner, strict=True):
        windows[text].append(vector)
    pooled = {name: l2(np.stack([pool(w) for w in windows])) for name, pool in POOLINGS.items()}
    pooled["opening + mean of the rest (default)"] = pool_windows(vectors, owner, len(texts))
    n_classes = int(y.max()) + 1
    print("| pooling | val kNN@10 | val logistic regression |\n|---|---|---|")
    for name, x in pooled.items():
        knn = knn_proba(x[:n_train], y[:n_train], x[n_train:], n_classes, 10)
        lr = logistic_proba(x[:n_train], y[:n_train], x[n_train:], n_classes, params.seed)
        accuracy = [float((p.argmax(axis=1) == y[n_train:]).mean()) for p in (knn, lr)]
        print(f"| {name} | {accuracy[0]:.3f} | {accuracy[1]:.3f} |")


if __name__ == "__main__":
    main()
