"""The embed stage's text file on the two engines: ``compute.engine: local`` against ``ray``.

Both run :func:`medsim.encoders.stage.embed_file` on the same articles with no cache (every
text is encoded), with the packaged MiniLM. ``ray`` is a local single-node Ray started here
(its start-up time is reported apart); its time includes the actors' start and model load.

    python benchmarks/embed_engines.py --docs 1000 --workers 2
    python benchmarks/embed_engines.py --docs 0 --abba --parts 4  # all OHSUMED, ABBA order
    python benchmarks/embed_engines.py --memory 1000 10000   # peak RSS, local, synthetic texts
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from embed_speed import ohsumed_articles  # noqa: E402
from peak_memory import peak_rss_mib  # noqa: E402

from medsim.compute import start_ray  # noqa: E402
from medsim.config import ComputeParams, EmbedParams  # noqa: E402
from medsim.encoders.embed import SOURCES, text_encoder_from_params  # noqa: E402
from medsim.encoders.stage import EmbedSummary, embed_file  # noqa: E402
from medsim.io import SkipLog, rows_to_table, write_table  # noqa: E402
from medsim.schemas import ARTICLES  # noqa: E402

SHARED = Path(os.environ.get("MEDSIM_SHARED", REPO.parent / "shared")) / "data"


def _write_articles(root: Path, table: pa.Table) -> None:
    fixed = {"label": "x", "split": "train", "source": "bench"}
    rows = [{**row, **fixed} for row in table.to_pylist()]
    write_table(rows_to_table(rows, ARTICLES), root / "data/articles.parquet", ARTICLES)


def _embed(root: Path, compute: ComputeParams, embed: EmbedParams) -> tuple[float, Path]:
    encoder = text_encoder_from_params(embed, root)
    load = partial(text_encoder_from_params, embed, root.resolve())
    dest = root / f"out-{compute.engine}.parquet"
    t0 = time.perf_counter()
    embed_file(
        SOURCES["text"],
        root,
        encoder,
        dest,
        cache=None,
        skips=SkipLog("embed"),
        summary=EmbedSummary(),
        read_rows=embed.batch_size * 16,
        compute=compute,
        load=load,
    )
    return time.perf_counter() - t0, dest


def engines(docs: int, workers: int, batch_rows: int) -> None:
    import ray

    table = ohsumed_articles(SHARED / "ohsumed-23", docs)
    embed = EmbedParams(device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _write_articles(root, table)
        local_s, local_out = _embed(root, ComputeParams(), embed)
        t0 = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        init_s = time.perf_counter() - t0
        compute = ComputeParams(engine="ray", workers=workers, batch_size=batch_rows)
        ray_s, ray_out = _embed(root, compute, embed)
        ray.shutdown()
        a, b = pq.read_table(local_out), pq.read_table(ray_out)
        same_ids = a.column("id").to_pylist() == b.column("id").to_pylist()
        diff = np.abs(
            np.array(a.column("vector").to_pylist()) - np.array(b.column("vector").to_pylist())
        ).max()
    n = table.num_rows
    print(
        json.dumps(
            {
                "docs": n,
                "local_s": round(local_s, 1),
                "local_docs_per_s": round(n / local_s, 2),
                "ray_init_s": round(init_s, 1),
                "ray_s": round(ray_s, 1),
                "ray_docs_per_s": round(n / ray_s, 2),
                "ray_overhead_pct": round(100 * (ray_s / local_s - 1), 1),
                "ray_workers": workers,
                "same_rows": same_ids,
                "max_abs_diff": float(diff),
            }
        )
    )


def _tree_cpu_s() -> float:
    """CPU seconds of this process and every descendant (Ray's raylet, GCS and workers, whose
    exited children are counted in their parents' ``children_*`` times)."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.Error:  # exited between the listing and the read
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def abba(docs: int | None, workers: int, batch_rows: int, parts: int) -> None:
    """Each engine embeds every text once, in ``parts`` slices run in the order local, ray,
    ray, local, local, ray, ... so a load that drifts during the run weighs on both engines
    alike. Reports wall and CPU seconds per engine (local: this process; ray: this process and
    all of Ray's), per slice as it ends and in total."""
    import ray

    table = ohsumed_articles(SHARED / "ohsumed-23", docs or None)
    n = table.num_rows
    size = -(-n // parts)
    halves = [table.slice(i * size, size) for i in range(parts)]
    embed = EmbedParams(device="cpu")
    t0 = time.perf_counter()
    start_ray(ComputeParams(engine="ray"))  # as the stage starts it (workers at nice 0)
    init_s = time.perf_counter() - t0
    engines_ = {
        "local": ComputeParams(),
        "ray": ComputeParams(engine="ray", workers=workers, batch_size=batch_rows),
    }
    wall = {"local": 0.0, "ray": 0.0}
    cpu = {"local": 0.0, "ray": 0.0}
    vectors: dict[str, list] = {"local": [None] * parts, "ray": [None] * parts}
    pairs = [("local", "ray") if i % 2 == 0 else ("ray", "local") for i in range(parts)]
    for engine, half in [(e, i) for i, pair in enumerate(pairs) for e in pair]:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            _write_articles(root, halves[half])
            c0 = _tree_cpu_s()
            seconds, out = _embed(root, engines_[engine], embed)
            c1 = _tree_cpu_s()
            cpu[engine] += c1 - c0
            wall[engine] += seconds
            vectors[engine][half] = pq.read_table(out, columns=["id", "vector"])
        print(
            json.dumps({"engine": engine, "half": half, "seconds": round(seconds, 1)}), flush=True
        )
    ray.shutdown()
    a, b = (pa.concat_tables(vectors[e]) for e in ("local", "ray"))
    diff = np.abs(
        np.array(a.column("vector").to_pylist()) - np.array(b.column("vector").to_pylist())
    ).max()
    result = {"docs": n, "ray_init_s": round(init_s, 1), "ray_workers": workers}
    for engine in ("local", "ray"):
        result[f"{engine}_s"] = round(wall[engine], 1)
        result[f"{engine}_docs_per_s"] = round(n / wall[engine], 2)
        result[f"{engine}_cpu_s"] = round(cpu[engine], 1)
    result["ray_overhead_pct"] = round(100 * (wall["ray"] / wall["local"] - 1), 1)
    result["ray_cpu_overhead_pct"] = round(100 * (cpu["ray"] / cpu["local"] - 1), 1)
    result["same_rows"] = a.column("id").to_pylist() == b.column("id").to_pylist()
    result["max_abs_diff"] = float(diff)
    print(json.dumps(result), flush=True)


def _memory_run(n: int, out) -> None:
    rng = np.random.default_rng(0)
    words = np.array(["tumour", "cell", "growth", "patient", "therapy", "dose", "lung", "trial"])

    schema = pa.schema([ARTICLES.field(c) for c in ("doc_id", "title", "abstract")])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = [
            {"doc_id": f"d{i}", "title": " ".join(rng.choice(words, 6)), "abstract": ""}
            for i in range(n)
        ]
        _write_articles(root, pa.Table.from_pylist(rows, schema=schema))
        del rows
        seconds, _ = _embed(root, ComputeParams(), EmbedParams(device="cpu", max_tokens=32))
    rss = peak_rss_mib()
    out.put({"texts": n, "seconds": round(seconds, 1), "peak_rss_mib": round(rss)})


def memory(sizes: list[int]) -> None:
    ctx = mp.get_context("spawn")
    for n in sizes:
        queue = ctx.Queue()
        proc = ctx.Process(target=_memory_run, args=(n, queue))
        proc.start()
        print(json.dumps(queue.get()), flush=True)
        proc.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1000, help="OHSUMED texts (None: all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-rows", type=int, default=1024)
    parser.add_argument("--memory", type=int, nargs="*", help="synthetic corpus sizes instead")
    parser.add_argument("--abba", action="store_true", help="local, ray, ray, local")
    parser.add_argument("--parts", type=int, default=2, help="--abba: slices of the corpus")
    args = parser.parse_args()
    if args.memory:
        memory(args.memory)
    elif args.abba:
        abba(args.docs, args.workers, args.batch_rows, args.parts)
    else:
        engines(args.docs, args.workers, args.batch_rows)


if __name__ == "__main__":
    main()
