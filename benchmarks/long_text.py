"""Reading whole documents against cutting them: frozen-encoder accuracy on a project's split.

Encodes a finished project's documents (``data/articles.parquet``: title + abstract, its
train / val / test split) with the embed stage's text encoder twice, ``embed.long_text:
truncate`` and ``windows``, and reports per mode kNN@10 and logistic-regression accuracy on
the validation and test splits (fitted on the training split), with how many documents exceed
the window. The embed stage's cache in the project is used, so the mode the project ran with
costs nothing.

    .venv/bin/python benchmarks/long_text.py --project /tmp/runs/hoc
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd

from medsim.config import load_params
from medsim.encoders import EmbeddingCache, encode_with_cache
from medsim.encoders.embed import SOURCES, text_encoder_from_params
from medsim.evaluate.baselines import knn_proba, logistic_proba
from medsim.paths import EMBEDDINGS_CACHE_DIR


def _accuracy(proba: np.ndarray, y: np.ndarray) -> float:
    return float((proba.argmax(axis=1) == y).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, required=True)
    args = parser.parse_args()
    root = args.project
    params = load_params(root / "params.yaml")
    docs = pd.read_parquet(root / "data/articles.parquet")
    docs = docs[docs["label"].fillna("") != ""]
    texts = pd.Series([SOURCES["text"].content(r) for r in docs.to_dict("records")])
    classes = sorted(docs.loc[docs["split"] == "train", "label"].unique())
    y = docs["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    split = docs["split"].to_numpy()
    print("| mode | longer than window | seconds | val kNN | test kNN | val LR | test LR |")
    print("|---|---|---|---|---|---|---|")
    for mode in ("truncate", "windows"):
        embed = dataclasses.replace(params.embed, long_text=mode, device="cpu")
        encoder = text_encoder_from_params(embed, root)
        cache = EmbeddingCache(root / EMBEDDINGS_CACHE_DIR, encoder.fingerprint, encoder.dim)
        start = time.perf_counter()
        x = encode_with_cache(texts.tolist(), encoder, cache)
        seconds = time.perf_counter() - start
        tr = (split == "train") & (y >= 0)
        cells = []
        for evaluate in ("knn", "lr"):
            for part in ("val", "test"):
                rows = (split == part) & (y >= 0)
                if evaluate == "knn":
                    proba = knn_proba(x[tr], y[tr], x[rows], len(classes), 10)
                else:
                    proba = logistic_proba(x[tr], y[tr], x[rows], len(classes), params.seed)
                cells.append(f"{_accuracy(proba, y[rows]):.3f}")
        longer = encoder.longer_than_window(texts.tolist())
        print(f"| {mode} | {longer} of {len(texts)} | {seconds:.0f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
