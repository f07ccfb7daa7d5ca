"""Resident memory of ``run_index`` by phase, on one synthetic project (see index_memory.py).

Writes the project, then runs the stage in a fresh process that wraps its phases (the article
lookup and the documents' first pass, each collection's index build) and prints VmRSS and the
high-water mark VmHWM, in MiB, as each starts and ends::

    OMP_NUM_THREADS=1 python benchmarks/index_memory_trace.py --docs 1000000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from index_memory import write_synthetic_project
from peak_memory import status_mib

import medsim.search.index as index_module
import medsim.search.stage as stage_module
from medsim.config import load_params

START = time.perf_counter()


def mark(name: str) -> None:
    row = {"s": round(time.perf_counter() - START, 1), "at": name, **status_mib("VmRSS", "VmHWM")}
    print(json.dumps(row), flush=True)


def traced(module, name: str) -> None:
    inner = getattr(module, name)

    def wrapper(*args, **kwargs):
        mark(f"{name} start")
        result = inner(*args, **kwargs)
        mark(f"{name} end")
        return result

    setattr(module, name, wrapper)


def _stage(root: Path) -> None:
    """The stage, traced, in a process of its own (so the marks are not the writer's)."""
    for name in ("_document_stream", "_part_stream"):
        traced(stage_module, name)
    traced(index_module, "_write_collection")
    mark("stage process started")
    stage_module.run_index(load_params(root / "params.yaml"), root)
    mark("done")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--exact-below", type=int, default=50_000)
    parser.add_argument("--abstract-words", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = write_synthetic_project(
            Path(tmp), args.docs, exact_below=args.exact_below, abstract_words=args.abstract_words
        )
        process = mp.get_context("spawn").Process(target=_stage, args=(root,))
        process.start()
        process.join()


if __name__ == "__main__":
    main()
