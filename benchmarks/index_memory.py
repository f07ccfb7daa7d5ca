"""Peak memory of the ``index`` stage as the corpus grows: ``run_index`` on synthetic projects.

A synthetic project: ``--docs`` articles (six-word titles, ``--abstract-words`` word
abstracts: 200 is about a PubMed abstract, 1.4 KB), one 384-d text
embedding each (MiniLM's size), a caption embedding for one document in ten (so the
documents are fused from two collections), and a seeded, untrained SharedSpace (128-d,
64-bit codes).
Embeddings are written batch by batch. Each size runs ``run_index`` in a fresh process and
reports that process's peak RSS (``VmHWM``: Python, torch and faiss included).

    python benchmarks/index_memory.py --docs 5000 50000 --exact-below 1000 --batch-rows 4096
    # the same against the whole-table run_index of an older checkout (before it streamed):
    PYTHONPATH=<old checkout> python benchmarks/index_memory.py ... --stage medsim.search.index
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from peak_memory import peak_rss_mib

from medsim.schemas import ARTICLES, embedding_schema

DIM_IN, BATCH, WORDS = 384, 50_000, np.array(["tumour", "cell", "lung", "dose", "trial", "gene"])


def _embeddings(rng, ids: list[str], doc_ids: list[str]) -> pa.Table:
    schema = embedding_schema(DIM_IN)
    x = rng.standard_normal((len(ids), DIM_IN)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), DIM_IN)
    vectors = vectors.cast(schema.field("vector").type)
    columns = {"id": ids, "doc_id": doc_ids, "content_hash": ["x"] * len(ids), "vector": vectors}
    return pa.table(columns, schema=schema)


def write_synthetic_project(
    root: Path,
    docs: int,
    seed: int = 0,
    exact_below: int = 100_000,
    approximate: str = "ivfpq",
    abstract_words: int = 0,
) -> Path:
    """Articles, text and caption embeddings, a seeded space and params.yaml under ``root``."""
    import torch

    from medsim.dml import SharedSpace

    rng = np.random.default_rng(seed)
    data = root / "data"
    (data / "embeddings").mkdir(parents=True)
    writers = {
        "articles": pq.ParquetWriter(data / "articles.parquet", ARTICLES),
        "text": pq.ParquetWriter(data / "embeddings/text.parquet", embedding_schema(DIM_IN)),
        "captions": pq.ParquetWriter(
            data / "embeddings/captions.parquet", embedding_schema(DIM_IN)
        ),
    }
    for start in range(0, docs, BATCH):
        ids = [f"d{i}" for i in range(start, min(docs, start + BATCH))]
        rows = {
            "doc_id": ids,
            "pmid": [i[1:] for i in ids],
            "title": [" ".join(rng.choice(WORDS, 6)) for _ in ids],
            "abstract": [" ".join(rng.choice(WORDS, abstract_words)) for _ in ids],
            "label": [f"c{int(i[1:]) % 5}" for i in ids],
            "split": ["train" if int(i[1:]) % 4 else "test" for i in ids],
            "source": ["synthetic"] * len(ids),
        }
        columns = {f.name: rows.get(f.name, [None] * len(ids)) for f in ARTICLES}
        writers["articles"].write_table(pa.table(columns, schema=ARTICLES))
        writers["text"].write_table(_embeddings(rng, ids, ids))
        with_caption = ids[::10]
        writers["captions"].write_table(
            _embeddings(rng, [f"{d}.f1" for d in with_caption], with_caption)
        )
    for writer in writers.values():
        writer.close()
    torch.manual_seed(seed)
    space = SharedSpace({"text": DIM_IN, "caption": DIM_IN}, dim=128, hidden=256, bits=(64,))
    space.eval().save(data / "model")
    (root / "params.yaml").write_text(
        f"seed: {seed}\nindex:\n  exact_below: {exact_below}\n  approximate: {approximate}\n"
    )
    return root


def _run(root: Path, stage: str, batch_rows: int, out) -> None:
    import importlib

    from medsim.config import load_params

    module = importlib.import_module(stage)
    if batch_rows:
        module.BATCH_ROWS = batch_rows
    run_index = module.run_index
    t0 = time.perf_counter()
    manifest = run_index(load_params(root / "params.yaml"), root)
    seconds = time.perf_counter() - t0
    out.put(
        {
            "collections": {
                k: [v["count"], v["float_type"], v.get("binary_type")]
                for k, v in manifest["collections"].items()
            },
            "seconds": round(seconds, 1),
            "peak_rss_mib": peak_rss_mib(),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--exact-below", type=int, default=100_000)
    parser.add_argument("--stage", default="medsim.search.stage", help="module with run_index")
    parser.add_argument("--batch-rows", type=int, default=0, help="override the stage's batch")
    parser.add_argument("--abstract-words", type=int, default=200, help="words per abstract")
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    for docs in args.docs:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            root = write_synthetic_project(
                Path(tmp), docs, exact_below=args.exact_below, abstract_words=args.abstract_words
            )
            made = time.perf_counter() - t0
            queue = ctx.Queue()
            proc = ctx.Process(target=_run, args=(root, args.stage, args.batch_rows, queue))
            proc.start()
            result = queue.get()
            proc.join()
            row = {
                "stage": args.stage,
                "batch_rows": args.batch_rows or "default",
                "docs": docs,
                "abstract_words": args.abstract_words,
                "write_s": round(made, 1),
                **result,
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
