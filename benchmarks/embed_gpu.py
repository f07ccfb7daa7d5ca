"""Text embedding on one GPU: a bare sentence-transformers forward against medsim's two engines.

The same texts (OHSUMED titles + abstracts, repeated to ``--repeat`` copies so the card is busy
for more than a few batches) are encoded three ways, each after a warm-up on the same card:

1. ``SentenceTransformer.encode`` in half precision (medsim autocasts to fp16 on a GPU);
2. medsim's embed stage core on ``compute.engine: local`` (:func:`embed_file`, no cache);
3. the same core on ``compute.engine: ray`` with one GPU actor (``gpus_per_worker: 1``),
   a single-node Ray started here; its start-up time is reported apart.

``--random-weights`` builds the model from ``--model``'s config with random weights: throughput
does not depend on the values, and it spares carrying the weights to a machine without a hub.

    python benchmarks/embed_gpu.py --model <sentence-transformers folder> --repeat 8
    python benchmarks/embed_gpu.py --repeat 1 --limit 200 --device cpu   # a smoke run, no GPU
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from embed_engines import _embed, _write_articles  # noqa: E402
from embed_speed import ohsumed_articles  # noqa: E402

from medsim.config import ComputeParams, EmbedParams  # noqa: E402

SHARED = Path(os.environ.get("MEDSIM_SHARED", REPO.parent / "shared")) / "data"


def random_copy(model: Path, dest: Path, seed: int = 0) -> Path:
    """``model``'s folder with its transformer's weights replaced by random ones."""
    from transformers import AutoConfig, AutoModel

    shutil.copytree(model, dest, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    torch.manual_seed(seed)
    AutoModel.from_config(AutoConfig.from_pretrained(model)).save_pretrained(dest)
    return dest


def corpus(folder: Path, repeat: int, limit: int | None) -> pa.Table:
    """OHSUMED's documents, ``repeat`` times over with distinct ids."""
    table = ohsumed_articles(folder, limit)
    copies = []
    for k in range(repeat):
        ids = pa.array([f"{d}#{k}" for d in table.column("doc_id").to_pylist()])
        copies.append(table.set_column(0, "doc_id", ids))
    return pa.concat_tables(copies)


def bare(model: Path, texts: list[str], device: str, batch_size: int, max_tokens: int) -> float:
    """Seconds for ``SentenceTransformer.encode`` over ``texts`` (fp16 on a GPU), after warm-up."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model), device=device)
    st.max_seq_length = max_tokens
    if device == "cuda":
        st.half()
    st.encode(texts[: batch_size * 4], batch_size=batch_size)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    st.encode(texts, batch_size=batch_size, convert_to_numpy=True)
    return time.perf_counter() - t0


def breakdown(model: Path, texts: list[str], device: str, batch_size: int, max_tokens: int) -> dict:
    """Where a bare forward's time goes: tokenizing alone, and the model alone on ready batches."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model), device=device)
    st.max_seq_length = max_tokens
    if device == "cuda":
        st.half()
    batches = [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]
    t0 = time.perf_counter()
    features = [st.tokenize(b) for b in batches]
    tokenize_s = time.perf_counter() - t0
    features = [
        {k: v.to(device) for k, v in f.items() if isinstance(v, torch.Tensor)} for f in features
    ]
    with torch.inference_mode():
        st.forward(features[0])
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for f in features:
            st.forward(f)
        if device == "cuda":
            torch.cuda.synchronize()
        forward_s = time.perf_counter() - t0
    n = len(texts)
    return {
        "tokenize_docs_per_s": round(n / tokenize_s, 1),
        "forward_docs_per_s": round(n / forward_s, 1),
        "cpu_threads": torch.get_num_threads(),
    }


def engines(root: Path, embed: EmbedParams, ray_batch: int, gpus: int) -> dict[str, float]:
    """Seconds for medsim's local engine and for Ray with one (GPU) actor, same texts."""
    import ray

    result = {}
    result["local_s"], local_out = _embed(root, ComputeParams(), embed)
    t0 = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), num_gpus=gpus, include_dashboard=False, log_to_driver=False)
    result["ray_init_s"] = time.perf_counter() - t0
    compute = ComputeParams(engine="ray", workers=1, gpus_per_worker=gpus, batch_size=ray_batch)
    result["ray_s"], ray_out = _embed(root, compute, embed)
    ray.shutdown()
    import pyarrow.parquet as pq

    a, b = pq.read_table(local_out), pq.read_table(ray_out)
    result["same_rows"] = a.column("id").to_pylist() == b.column("id").to_pylist()
    va = np.array(a.column("vector").to_pylist(), dtype=np.float32)
    vb = np.array(b.column("vector").to_pylist(), dtype=np.float32)
    result["max_abs_diff"] = float(np.abs(va - vb).max())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="default: the packaged MiniLM")
    parser.add_argument("--ohsumed", type=Path, default=SHARED / "ohsumed-23")
    parser.add_argument("--repeat", type=int, default=8)
    parser.add_argument("--limit", type=int, default=None, help="OHSUMED documents (None: all)")
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--ray-batch", type=int, default=4096, help="rows per Ray batch")
    parser.add_argument("--breakdown", action="store_true", help="tokenize vs forward only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = args.model
        if model is None:
            from medsim.encoders.specs import resolve_text_model

            model = resolve_text_model("packaged:all-MiniLM-L6-v2")
        if args.random_weights:
            model = random_copy(model, root / "model")
        table = corpus(args.ohsumed, args.repeat, args.limit)
        _write_articles(root, table)
        texts = [
            "\n".join(p.strip() for p in (t, a) if p and p.strip())
            for t, a in zip(
                table.column("title").to_pylist(), table.column("abstract").to_pylist(), strict=True
            )
        ]
        shape = (args.device, args.batch_size, args.max_tokens)
        embed = EmbedParams(
            text_model=str(model),
            device=args.device,
            batch_size=args.batch_size,
            max_tokens=args.max_tokens,
        )
        if args.breakdown:
            print(json.dumps(breakdown(model, texts, *shape)), flush=True)
            return
        bare_s = bare(model, texts, *shape)
        gpus = 1 if args.device == "cuda" else 0
        timings = engines(root, embed, args.ray_batch, gpus)
    n = len(texts)
    report = {
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "torch": torch.__version__,
        "docs": n,
        "batch_size": args.batch_size,
        "max_tokens": args.max_tokens,
        "random_weights": args.random_weights,
        "bare_docs_per_s": round(n / bare_s, 1),
        "local_docs_per_s": round(n / timings["local_s"], 1),
        "ray_docs_per_s": round(n / timings["ray_s"], 1),
        "ray_init_s": round(timings["ray_init_s"], 1),
        "same_rows": timings["same_rows"],
        "max_abs_diff": timings["max_abs_diff"],
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
