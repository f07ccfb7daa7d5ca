"""Search speed and recall of medsim's FAISS indexes at 10k, 100k and 1M vectors.

Vectors are synthetic but shaped like a learned space: unit vectors drawn around 1,000
cluster centres (uniform random vectors would be a worst case no real corpus resembles).
Queries come from the same distribution, not from the database. Per size it measures, for
each index that :mod:`medsim.search.index` builds:

- float: exact ``IndexFlatIP`` and the approximate types (``hnsw``, ``ivf``) with the
  default ``index.*`` params; binary: ``IndexBinaryFlat``, ``IndexBinaryHNSW`` and
  ``IndexBinaryIVF`` (``index.binary_nprobe``) over ``--bits`` SimHash codes (random
  hyperplanes, as an untrained hashing head);
- build time, queries/s for one batch of ``--queries`` queries, p50/p99 latency of single
  queries (the CLI's case), and recall@10 of each approximate index against its exact
  counterpart (binary: tie-aware, a hit counts when its Hamming distance is within the exact
  10th distance). Also recall@10 of exact binary search against exact float search: what
  hashing itself costs.

With ``--cli-sizes``, also the wall time of a whole ``medsim search --pmid`` process (import,
open the memory-mapped index, look the PMID up, search every collection, print JSON) on a synthetic
``data/index/`` of that many items per collection, after one run that warms the file cache.

Run from the repo root (the 1M float matrix is 512 MB; the whole run needs ~3 GB)::

    .venv/bin/python benchmarks/search_speed.py --sizes 10000 100000 1000000 --threads 1 \\
        --cli-sizes 1000 100000 --json /tmp/search_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np

from medsim.config import IndexParams
from medsim.search.builders import build_binary_index, build_index, search

K = 10


def clustered(n: int, dim: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    """``n`` unit vectors: a random centre plus Gaussian noise, built in 100k chunks."""
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        picks = centres[rng.integers(0, len(centres), stop - start)]
        chunk = picks + 0.08 * rng.standard_normal((stop - start, dim), dtype=np.float32)
        out[start:stop] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return out


def simhash(vectors: np.ndarray, planes: np.ndarray) -> np.ndarray:
    codes = np.empty((len(vectors), planes.shape[1]), dtype=np.uint8)
    for start in range(0, len(vectors), 100_000):
        codes[start : start + 100_000] = vectors[start : start + 100_000] @ planes > 0
    return codes


def timed_search(index, queries: np.ndarray, latency_queries: int, threads: int) -> dict:
    faiss.omp_set_num_threads(threads)
    start = time.perf_counter()
    _, rows = search(index, queries, K)
    batch_s = time.perf_counter() - start
    # one query at a time on one thread, as `medsim search` runs (an OpenMP team per single
    # query only adds barrier waits, badly so on a busy machine)
    faiss.omp_set_num_threads(1)
    latencies = []
    for q in queries[:latency_queries]:
        t = time.perf_counter()
        search(index, q[None], K)
        latencies.append(time.perf_counter() - t)
    faiss.omp_set_num_threads(threads)
    lat = np.asarray(latencies) * 1000
    return {
        "qps": round(len(queries) / batch_s, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 3),
        "p99_ms": round(float(np.percentile(lat, 99)), 3),
        "rows": rows,
    }


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def recall_ties(dist_found: np.ndarray, dist_truth: np.ndarray) -> float:
    """Fraction of returned hits whose distance is within the exact K-th distance."""
    return float(np.mean(dist_found <= dist_truth[:, -1:]))


def run_size(n: int, args: argparse.Namespace, rng: np.random.Generator) -> list[dict]:
    centres = rng.standard_normal((1000, args.dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    base = clustered(n, args.dim, rng, centres)
    queries = clustered(args.queries, args.dim, rng, centres)
    planes = rng.standard_normal((args.dim, args.bits), dtype=np.float32)
    params = IndexParams()
    results = []

    def measure(name: str, build) -> tuple[dict, object]:
        start = time.perf_counter()
        index = build()
        build_s = time.perf_counter() - start
        row = {"n": n, "index": name, "build_s": round(build_s, 2)}
        row.update(timed_search(index, query_input(name), args.latency_queries, args.threads))
        print(
            f"  {name:<14} build {build_s:7.2f} s  {row['qps']:>10.1f} q/s  "
            f"p50 {row['p50_ms']:.3f} ms  p99 {row['p99_ms']:.3f} ms",
            flush=True,
        )
        return row, index

    query_codes = simhash(queries, planes)

    def query_input(name: str) -> np.ndarray:
        return query_codes if name.startswith("binary") else queries

    exact, _ = measure("float-flat", lambda: build_index(base, replace(params, exact_below=n + 1)))
    truth = exact.pop("rows")
    results.append(exact)
    for collection in args.approximate:
        p = replace(params, exact_below=0, approximate=collection)
        row, _ = measure(f"float-{collection}", lambda p=p: build_index(base, p, seed=0))
        row["recall_at_10"] = round(recall(row.pop("rows"), truth), 4)
        results.append(row)

    codes = simhash(base, planes)
    bflat, bflat_index = measure(
        "binary-flat", lambda: build_binary_index(codes, replace(params, exact_below=n + 1))
    )
    btruth_rows = bflat.pop("rows")
    btruth_dist, _ = search(bflat_index, query_codes, K)
    bflat["recall_at_10_of_float"] = round(recall(btruth_rows, truth), 4)
    results.append(bflat)
    for collection in args.binary_approximate:
        p = replace(params, exact_below=0, approximate=collection)
        row, index = measure(f"binary-{collection}", lambda p=p: build_binary_index(codes, p))
        row.pop("rows")
        dist, _ = search(index, query_codes, K)
        row["recall_at_10"] = round(recall_ties(dist, btruth_dist), 4)
        results.append(row)
    for row in results:
        extra = {k: v for k, v in row.items() if k.startswith("recall")}
        if extra:
            print(f"  {row['index']:<14} {extra}")
    return results


def cli_startup(n: int, args: argparse.Namespace, rng: np.random.Generator) -> dict:
    """Wall time of ``medsim search --pmid`` (a fresh process, warm file cache) on a synthetic
    ``data/index/`` of ``n`` documents, ``n`` figures and ``n`` captions with titles."""
    import pyarrow as pa

    from medsim.search.index import CollectionArrays, write_index_dir

    centres = rng.standard_normal((1000, args.dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    planes = rng.standard_normal((args.dim, args.bits), dtype=np.float32)
    collections = {}
    for collection in ("documents", "figures", "captions"):
        vectors = clustered(n, args.dim, rng, centres)
        ids = [f"{collection[0]}{i}" for i in range(n)]
        items = pa.table(
            {
                "id": ids,
                "doc_id": [f"d{i}" for i in range(n)],
                "pmid": [str(10_000_000 + i) for i in range(n)],
                "title": [
                    f"A synthetic title of about sixty characters, number {i}" for i in range(n)
                ],
                "caption": [
                    None if collection == "documents" else f"Figure {i}: a caption"
                    for i in range(n)
                ],
                "label": [None] * n,
                "text": [f"Sentence one of item {i}. Sentence two." for i in range(n)],
            }
        )
        collections[collection] = CollectionArrays(
            vectors, {args.bits: simhash(vectors, planes)}, items
        )
    with tempfile.TemporaryDirectory() as tmp:
        index_dir = Path(tmp) / "index"
        index_dir.mkdir()
        write_index_dir(index_dir, collections, IndexParams(), {"dim": args.dim})
        argv = [sys.executable, "-m", "medsim.cli", "search", "--index", str(index_dir)]
        times = {}
        for mode, extra in (("float", []), ("binary", ["--binary"])):
            runs = []
            for i in range(args.cli_runs + 1):
                query = ["--pmid", str(10_000_000 + (i * 7919) % n), "--json", *extra]
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                subprocess.run(argv + query, check=True, capture_output=True)
                wall = time.perf_counter() - start
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                runs.append((wall, cpu))
            times[mode] = np.asarray(runs[1:])  # the first run warms the file cache
    row = {"n_per_kind": n, "index": "cli --pmid"}
    # CPU time (user + sys of the child) is what a quiet machine's wall time approaches;
    # wall time on a shared machine adds whatever the other processes take.
    for mode, runs in times.items():
        row[f"{mode}_wall_median_s"] = round(float(np.median(runs[:, 0])), 3)
        row[f"{mode}_cpu_median_s"] = round(float(np.median(runs[:, 1])), 3)
    print(f"  medsim search --pmid, {n:,} items per collection: {row}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--latency-queries", type=int, default=200)
    parser.add_argument("--approximate", nargs="*", default=["hnsw", "ivf"])
    parser.add_argument("--binary-approximate", nargs="*", default=["hnsw", "ivf"])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cli-sizes", type=int, nargs="*", default=[], help="items per collection for CLI timing"
    )
    parser.add_argument("--cli-runs", type=int, default=10)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    faiss.omp_set_num_threads(args.threads)
    print(
        f"faiss {faiss.__version__}, {args.threads} threads, dim {args.dim}, "
        f"{args.bits}-bit codes, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    rng = np.random.default_rng(args.seed)
    rows = []
    for n in args.sizes:
        print(f"n = {n:,}", flush=True)
        rows += run_size(n, args, rng)
    for n in args.cli_sizes:
        rows.append(cli_startup(n, args, rng))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "results": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
