"""Index at PubMed scale: build time, memory, query latency and recall@10 on synthetic vectors.

Vectors: unit-norm, 128-d, a mixture of 1,000 Gaussian clusters in a 32-d latent space mapped
linearly to 128-d, plus small isotropic noise: text embeddings are clustered and of low
intrinsic dimension, while isotropic 128-d noise has no neighbours worth finding (every
distance concentrates). Generated batch by batch from a seed, so no step holds the corpus.
Queries are fresh draws from the same mixture. Ground truth: exact inner-product top-10,
streamed over the same batches.

For each size the script builds the index medsim chooses at that size with
``index.approximate: ivfpq`` (trained on ``index.train_size`` sampled vectors, filled by
streaming batches: :func:`medsim.search.scale.build_streaming`) and, up to ``--flat-max``
vectors, the exact flat index for comparison. Each build runs in a fresh process so peak RSS
is its own.

    python benchmarks/index_scale.py --sizes 1000000 --pq-bytes 16 64
    python benchmarks/index_scale.py --sizes 10000000 --pq-bytes 64 --flat-max 0
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from peak_memory import peak_rss_mib

DIM, LATENT, CLUSTERS, BATCH, QUERIES, K = 128, 32, 1000, 100_000, 500, 10


def _centres() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(12345)
    centres = rng.normal(size=(CLUSTERS, LATENT)).astype(np.float32)
    return centres, rng.normal(size=(LATENT, DIM)).astype(np.float32)


def _draw(n: int, seed: int, centres: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means, mix = centres
    z = means[rng.integers(0, CLUSTERS, n)] + 0.5 * rng.normal(size=(n, LATENT))
    x = z.astype(np.float32) @ mix + 0.1 * rng.normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _batches(n: int, centres: np.ndarray):
    for start in range(0, n, BATCH):
        yield _draw(min(BATCH, n - start), seed=start // BATCH, centres=centres)


def _truth(n: int, queries: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Exact top-K ids by streaming the corpus (never more than one batch in memory)."""
    best_s = np.full((len(queries), K), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), K), dtype=np.int64)
    for b, batch in enumerate(_batches(n, centres)):
        scores = queries @ batch.T
        top = np.argpartition(-scores, K, axis=1)[:, :K]
        s = np.concatenate([best_s, np.take_along_axis(scores, top, 1)], axis=1)
        i = np.concatenate([best_i, top + b * BATCH], axis=1)
        order = np.argsort(-s, axis=1)[:, :K]
        best_s, best_i = np.take_along_axis(s, order, 1), np.take_along_axis(i, order, 1)
    return best_i


def _run(index_type: str, n: int, pq_bytes: int, out) -> None:
    import faiss

    from medsim.config import IndexParams
    from medsim.search.scale import build_streaming

    centres = _centres()
    params = IndexParams(approximate="ivfpq", pq_bytes=pq_bytes)
    base_rss = peak_rss_mib()
    t0 = time.perf_counter()
    if index_type == "flat":
        index = faiss.IndexFlatIP(DIM)
        for batch in _batches(n, centres):
            index.add(batch)
    else:  # train on a sample drawn apart from the corpus batches (same distribution)
        train = _draw(min(params.train_size, n), seed=10**6, centres=centres)
        index = build_streaming(train, _batches(n, centres), n, params)
        del train
    build_s = time.perf_counter() - t0
    rss = peak_rss_mib()
    queries = _draw(QUERIES, seed=10**6 + 1, centres=centres)
    latencies, found = [], []
    for q in queries:  # one query at a time, as the service asks
        t = time.perf_counter()
        _, ids = index.search(q[None, :], K)
        latencies.append((time.perf_counter() - t) * 1000)
        found.append(ids[0])
    truth = _truth(n, queries, centres)
    recall = float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))
    out.put(
        {
            "index": index_type
            if index_type == "flat"
            else f"ivfpq(nlist={index.nlist},M={index.pq.M})",
            "n": n,
            "build_s": round(build_s, 1),
            "peak_rss_mib": round(rss),
            "rss_before_mib": round(base_rss),
            "index_mib": round(faiss.serialize_index(index).nbytes / 2**20, 1),
            "p50_ms": round(float(np.percentile(latencies, 50)), 3),
            "p99_ms": round(float(np.percentile(latencies, 99)), 3),
            "recall@10": round(recall, 3),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--flat-max", type=int, default=1_000_000, help="also flat up to this n")
    parser.add_argument("--pq-bytes", type=int, nargs="+", default=[16])
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    for n in args.sizes:
        index_types = [("ivfpq", b) for b in args.pq_bytes]
        index_types += [("flat", 0)] if n <= args.flat_max else []
        for index_type, pq_bytes in index_types:
            queue = ctx.Queue()
            proc = ctx.Process(target=_run, args=(index_type, n, pq_bytes, queue))
            proc.start()
            result = queue.get()
            proc.join()
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
