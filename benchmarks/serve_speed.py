"""Warm text-query latency and throughput of ``medsim serve`` over HTTP.

Starts ``medsim serve`` as a separate process (the way a user runs it), waits until its
models are loaded, sends one warm-up query, then measures from the client side:

- latency: ``--queries`` distinct text queries, one at a time over one keep-alive
  connection; p50, p99 and mean wall time per ``/api/search`` answer (k=10). Each text is
  new to the server, so its query cache never answers: every query runs the text encoder,
  the projection head and the FAISS search;
- throughput: ``--clients`` threads, each with its own connection, sending ``--requests``
  further distinct queries as fast as answers come; requests/s over the whole run.

Query texts are the captions and titles of the served index (distinct ones, in index order),
so they read like what users type. ``--synthetic N`` serves instead a synthetic index of N
documents (unit vectors around 1,000 clusters, as benchmarks/search_speed.py draws them; IVF
above ``index.exact_below`` like the real stage; no hash codes), queried through the real
model of ``--root``: what the encoder plus a search over N items costs.

    python benchmarks/serve_speed.py --root build/medpix
    python benchmarks/serve_speed.py --root build/medpix --synthetic 1000000 \\
        --synthetic-dir /tmp/medsim-synth-1m
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_speed import clustered

from medsim.config import IndexParams
from medsim.search.index import CollectionArrays, load_index, write_index_dir


def query_texts(index_dir: Path) -> list[str]:
    """Distinct captions and titles of the index, in order, each at most 300 characters."""
    items = pq.read_table(index_dir / "items.parquet", columns=["caption", "title"])
    seen: dict[str, None] = {}
    for column in ("caption", "title"):
        for text in items.column(column).to_pylist():
            if text and text.strip():
                seen.setdefault(" ".join(text.split())[:300], None)
    return list(seen)


def synthetic_index(directory: Path, n: int, like: Path, seed: int = 0) -> Path:
    """A synthetic ``data/index/`` of ``n`` documents with the manifest (models, dim) of the
    real index ``like``; reused if already built."""
    index_dir = directory / "index"
    if (index_dir / "manifest.json").is_file():
        return index_dir
    manifest = load_index(like).manifest
    dim = int(manifest["dim"])
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1000, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = clustered(n, dim, rng, centres)
    items = pa.table(
        {
            "id": [f"s{i}" for i in range(n)],
            "doc_id": [f"s{i}" for i in range(n)],
            "pmid": [str(20_000_000 + i) for i in range(n)],
            "title": [f"A synthetic title of about sixty characters, number {i}" for i in range(n)],
            "caption": pa.nulls(n, pa.string()),
            "label": pa.nulls(n, pa.string()),
            "text": [f"Sentence one of item {i}. Sentence two." for i in range(n)],
        }
    )
    meta = {k: v for k, v in manifest.items() if k not in ("collections", "labels", "version")}
    meta["bits"] = []
    tmp = directory / "index.tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # one OpenMP thread: on a busy machine a team's barrier waits made k-means many times
    # slower than on one thread
    import faiss

    faiss.omp_set_num_threads(1)
    write_index_dir(tmp, {"documents": CollectionArrays(vectors, {}, items)}, IndexParams(), meta)
    tmp.rename(index_dir)
    print(f"built a synthetic {n:,}-item index in {time.perf_counter() - start:.0f} s")
    return index_dir


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(argv: list[str], port: int, timeout: float = 600) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "medsim.cli", "serve", "--port", str(port), *argv]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"medsim serve exited: {proc.stderr.read()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/api/health")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("medsim serve did not start in time")


def ask(conn: http.client.HTTPConnection, text: str, k: int) -> float:
    start = time.perf_counter()
    conn.request("GET", "/api/search?" + urlencode({"q": text, "k": k}))
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
    if len(json.loads(body)) != k:
        raise RuntimeError("short answer")
    return time.perf_counter() - start


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def latency(port: int, pid: int, texts: list[str], k: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    cpu_before = cpu_seconds(pid)
    ms = np.asarray([ask(conn, t, k) for t in texts]) * 1000
    cpu_after = cpu_seconds(pid)
    conn.close()
    result = {
        "queries": len(texts),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "mean_ms": round(float(ms.mean()), 1),
    }
    if cpu_before is not None and cpu_after is not None:
        # what a query costs the server whatever else runs: the wall time on an idle core
        result["server_cpu_ms_per_query"] = round((cpu_after - cpu_before) * 1000 / len(texts), 1)
    return result


def throughput(port: int, texts: list[str], clients: int, k: int) -> dict:
    chunks = [texts[i::clients] for i in range(clients)]
    errors: list[str] = []

    def client(chunk: list[str]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            for text in chunk:
                ask(conn, text, k)
        except Exception as exc:  # reported below, not swallowed
            errors.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in chunks]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} clients failed: {errors[0]}")
    return {"clients": clients, "requests": len(texts), "rps": round(len(texts) / wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=".", help="project with data/index and data/model")
    parser.add_argument("--synthetic", type=int, default=0, help="serve N synthetic documents")
    parser.add_argument("--synthetic-dir", help="where to build (and reuse) the synthetic index")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--requests", type=int, default=320, help="for the throughput run")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    root = Path(args.root).resolve()
    real_index = root / "data" / "index"
    texts = query_texts(real_index)
    need = args.queries + args.requests + 1
    if len(texts) < need:
        sys.exit(f"{real_index} has {len(texts)} distinct captions/titles; {need} are needed")
    argv = ["--root", str(root)]
    store = load_index(real_index)
    name = f"{root.name} ({sum(store.count(k) for k in store.collections):,} items)"
    tmp = None
    if args.synthetic:
        if args.synthetic_dir:
            folder = Path(args.synthetic_dir)
        else:
            tmp = tempfile.TemporaryDirectory()
            folder = Path(tmp.name)
        index_dir = synthetic_index(folder, args.synthetic, real_index)
        # --root: an empty folder, so the server loads no corpus tables for synthetic items
        empty = folder / "root"
        empty.mkdir(exist_ok=True)
        argv = [
            "--root",
            str(empty),
            "--index",
            str(index_dir),
            "--model",
            str(root / "data" / "model"),
        ]
        name = f"synthetic ({args.synthetic:,} documents)"

    port = free_port()
    start = time.perf_counter()
    proc = start_server(argv, port)
    started_s = time.perf_counter() - start
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        ask(conn, texts[0], args.k)  # warm-up
        conn.close()
        result = {
            "index": name,
            "cpus": os.cpu_count(),
            "server_start_s": round(started_s, 1),
            **latency(port, proc.pid, texts[1 : 1 + args.queries], args.k),
        }
        result.update(throughput(port, texts[1 + args.queries : need], args.clients, args.k))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if tmp is not None:
            tmp.cleanup()
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
