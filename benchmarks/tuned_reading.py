"""How the tuned encoder should read a long document: the experiment behind ``tuned_opening``.

Tunes the text encoder as the train stage does (``medsim.dml.tune``, the project's params and
split), either drawing a window of each long document per step as ``tuned`` does (``mixed``)
or always its opening window (``opening``), then scores three readings of the training and
validation documents by kNN@10 of validation against training (the test split is not read):
the opening window plus the mean of the rest (the embed stage's pooling), the opening window
alone, and the plain mean of the windows.

    python benchmarks/tuned_reading.py --project RUN --tuning mixed --loss triplet
    python benchmarks/tuned_reading.py --project RUN --tuning opening --loss triplet
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medsim.config import load_params  # noqa: E402
from medsim.dml import tune as tune_module  # noqa: E402
from medsim.dml.data import load_labels  # noqa: E402
from medsim.dml.neighbours import knn_proba  # noqa: E402
from medsim.dml.tune import read_text_items, tune_text_encoder  # noqa: E402
from medsim.encoders.embed import text_encoder_from_params  # noqa: E402
from medsim.encoders.layers import SplitEncoder  # noqa: E402
from medsim.encoders.windows import pool_windows  # noqa: E402
from medsim.paths import ARTICLES_PATH, LAYER_CACHE_DIR  # noqa: E402


def readings(vectors: np.ndarray, owner: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Each text's vector under the three readings, from its windows' vectors."""
    _, first = np.unique(owner, return_index=True)
    mean = np.zeros((n, vectors.shape[1]), dtype=np.float32)
    np.add.at(mean, owner, vectors)
    return {
        "opening+mean(rest)": pool_windows(vectors, owner, n),
        "opening": vectors[first],
        "mean": mean / np.linalg.norm(mean, axis=1, keepdims=True),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, required=True, help="a built project")
    parser.add_argument("--tuning", choices=["mixed", "opening"], default="mixed")
    parser.add_argument("--loss", default=None, help="default: the project's loss")
    args = parser.parse_args()
    root = args.project
    params = load_params(root / "params.yaml")
    labels, splits = load_labels(root / ARTICLES_PATH)
    items = read_text_items(root)
    if args.tuning == "opening":  # every step reads a long document's opening window
        tune_module._TuneInputs.window = lambda self, windows: windows[0]
    base = text_encoder_from_params(dataclasses.replace(params.embed, backend="torch"), root)
    split = SplitEncoder(
        base, params.train.tune_layers, params.train.max_tokens, root / LAYER_CACHE_DIR
    )
    start = time.perf_counter()
    loss = args.loss or params.loss
    tune_text_encoder(split, items, labels, splits, params.train, loss, params.seed)
    print(f"tuned ({args.tuning}, {loss}) in {time.perf_counter() - start:.0f} s")
    seen = [i for i, d in enumerate(items.doc_ids) if splits.get(d) in ("train", "val")]
    seen = [i for i in seen if items.doc_ids[i] in labels]
    pieces, owner = split.pieces([items.texts[i] for i in seen])
    docs = [items.doc_ids[i] for i in seen]
    train = np.array([splits[d] == "train" for d in docs])
    classes = {c: k for k, c in enumerate(sorted({labels[d] for d in docs}))}
    y = np.array([classes[labels[d]] for d in docs])
    vectors = split._encode_pieces(pieces, 64)
    for name, v in readings(vectors, owner, len(docs)).items():
        proba = knn_proba(v[train], y[train], v[~train], len(classes), 10)
        print(
            f"{args.tuning} tuning, read as {name}: val kNN@10 "
            f"{(proba.argmax(axis=1) == y[~train]).mean():.4f}"
        )


if __name__ == "__main__":
    main()
