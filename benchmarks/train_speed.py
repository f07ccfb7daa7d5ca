"""Train-stage speed and quality per loss, on frozen embeddings already computed.

For each loss in the registry: wall time of :func:`medsim.dml.train_space` (the whole train
stage minus reading Parquet), epochs run, validation MAP@R of the frozen embeddings, of the
untrained heads and of the best epoch, and on the test split: kNN accuracy (cosine, k
neighbours from train+val) in the shared space against the frozen text embeddings, and, where
the corpus has images and captions, image -> own-caption mAP (positives: identical caption).

``--data`` is a folder holding ``articles.parquet`` and ``embeddings/`` (or a medsim project
root, where they sit under ``data/``)::

    .venv/bin/python benchmarks/train_speed.py --data /tmp/medsim-real/ohsumed --threads 2
    .venv/bin/python benchmarks/train_speed.py --data . --losses triplet proxy_anchor
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import average_precision_score
from sklearn.neighbors import KNeighborsClassifier

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medsim.config import load_params  # noqa: E402
from medsim.dml import project, train_space  # noqa: E402
from medsim.dml.data import load_features, load_labels  # noqa: E402
from medsim.dml.losses import LOSSES  # noqa: E402


def knn_accuracy(train_x, train_y, test_x, test_y, k: int) -> float:
    knn = KNeighborsClassifier(n_neighbors=k, metric="cosine").fit(train_x, train_y)
    return float((knn.predict(test_x) == test_y).mean())


def image_to_caption_map(image_z: np.ndarray, caption_z: np.ndarray, groups: np.ndarray) -> float:
    """Mean average precision of each image's ranking of all captions; relevant = its own
    caption and every caption with the same text (several images share one)."""
    scores = image_z @ caption_z.T
    aps = [average_precision_score(groups == groups[i], scores[i]) for i in range(len(image_z))]
    return float(np.mean(aps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--losses", nargs="*", default=sorted(LOSSES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--k", type=int, default=10, help="neighbours for kNN accuracy")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--set", nargs="*", default=[], help="train.* overrides, key=value")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    base = args.data / "data" if (args.data / "data" / "embeddings").is_dir() else args.data
    features = load_features(base / "embeddings")
    labels, splits = load_labels(base / "articles.parquet")
    params = load_params(args.params)
    train = params.train
    for item in args.set:
        key, value = item.split("=", 1)
        train = dataclasses.replace(train, **{key: type(getattr(train, key))(value)})

    _ids, docs, text = features["text"]
    split = np.array([splits.get(d, "") for d in docs])
    y = np.array([labels.get(d, "") for d in docs])
    fit = np.isin(split, ["train", "val"]) & (y != "")
    test = (split == "test") & (y != "")
    results = {
        "data": str(args.data),
        "threads": args.threads,
        "machine": platform.processor() or platform.machine(),
        "params": dataclasses.asdict(train),
        "frozen_text_knn_accuracy": knn_accuracy(text[fit], y[fit], text[test], y[test], args.k),
        "losses": {},
    }
    image_pairs = None
    if "image" in features and "caption" in features:
        img_ids, img_docs, images = features["image"]
        cap_ids, _, captions = features["caption"]
        cap_row = {f: r for r, f in enumerate(cap_ids)}
        rows = [
            r
            for r, (f, d) in enumerate(zip(img_ids, img_docs, strict=True))
            if splits.get(d) == "test" and f in cap_row
        ]
        cap_rows = [cap_row[img_ids[r]] for r in rows]
        _, groups = np.unique(np.round(captions[cap_rows], 4), axis=0, return_inverse=True)
        image_pairs = (images[rows], captions[cap_rows], groups.reshape(-1))
    print(f"frozen text kNN@{args.k} test accuracy {results['frozen_text_knn_accuracy']:.4f}")

    for loss in args.losses:
        start = time.perf_counter()
        space, history = train_space(features, labels, splits, train, loss, params.seed)
        seconds = time.perf_counter() - start
        best = space.params["best_epoch"]
        z = project(space, "text", text)
        row = {
            "seconds": round(seconds, 2),
            "epochs_run": len(history) - 1,
            "best_epoch": best,
            "val_map_at_r_frozen": history[0]["frozen_val"].get("text/text"),
            "val_map_at_r_untrained": history[0]["val_map_at_r"],
            "val_map_at_r_best": history[best]["val_map_at_r"],
            "val_best": history[best]["val"],
            "test_knn_accuracy": knn_accuracy(z[fit], y[fit], z[test], y[test], args.k),
        }
        if image_pairs is not None:
            image_x, caption_x, groups = image_pairs
            row["test_image_to_caption_map"] = image_to_caption_map(
                project(space, "image", image_x), project(space, "caption", caption_x), groups
            )
        results["losses"][loss] = row
        print(
            f"{loss:17s} {seconds:6.1f} s  epochs {row['epochs_run']:2d} (best {best:2d})  "
            f"val MAP@R {row['val_map_at_r_untrained']:.4f} -> {row['val_map_at_r_best']:.4f}  "
            f"test kNN acc {row['test_knn_accuracy']:.4f}"
            + (
                f"  img->caption mAP {row['test_image_to_caption_map']:.4f}"
                if "test_image_to_caption_map" in row
                else ""
            ),
            flush=True,
        )
    if image_pairs is not None:
        image_x, caption_x, groups = image_pairs
        chance = float(np.mean([(groups == g).mean() for g in groups]))
        results["image_to_caption_map_chance"] = chance
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
