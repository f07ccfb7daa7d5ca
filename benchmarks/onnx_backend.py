"""ONNX Runtime backends and int8 recipes against torch fp32: the vectors kept, and the speed.

OHSUMED titles + abstracts (an even spread over the whole folder, every class), read by
:meth:`TextEncoder.encode` exactly as the embed stage reads them (``embed.max_tokens``, long
texts as windows), once per backend: torch fp32, ONNX fp32 and each int8 recipe of
:data:`medsim.encoders.backends.QUANTIZATIONS`. Reports per backend the mean and minimum cosine
of each text's vector to torch's, the largest absolute difference, and docs/s on ``--threads``
threads (the best of ``--repeats`` passes, backends alternating direction each pass, so a
shared machine's slow spell does not fall on one of them). A timing is only a measurement on
an otherwise idle machine: the load average before and after is printed beside it.

    python benchmarks/onnx_backend.py                       # 300 texts, 1 thread, 3 passes
    python benchmarks/onnx_backend.py --threads 2 --docs 0  # all 7,400 texts on 2 threads
    python benchmarks/onnx_backend.py --repeats 0           # cosines only (deterministic)
    python benchmarks/onnx_backend.py --docs 0 --threads 2 --repeats 1 --timing-only
                                                            # one timed pass each, no cosines
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medsim.encoders.backends import QUANTIZATIONS, OnnxRunner, onnx_model  # noqa: E402
from medsim.encoders.text import TextEncoder, load_text_encoder  # noqa: E402
from medsim.pubmed.local.folders import parse_document  # noqa: E402

SHARED = Path(os.environ.get("MEDSIM_SHARED", REPO.parent / "shared")) / "data"


def ohsumed_texts(folder: Path, docs: int) -> list[str]:
    """``docs`` texts spread evenly over the sorted files (0: all), title and abstract joined
    as the embed stage joins them."""
    files = sorted(folder.glob("*/*/*"))
    if not files:
        raise SystemExit(f"no OHSUMED files under {folder} (set MEDSIM_SHARED)")
    if docs and docs < len(files):
        files = [files[i] for i in np.linspace(0, len(files) - 1, docs).astype(int)]
    texts = []
    for file in files:
        title, abstract = parse_document(file.read_text(encoding="utf-8"))
        texts.append("\n".join(p.strip() for p in (title, abstract) if p and p.strip()))
    return texts


def backends(torch_encoder: TextEncoder, cache: Path, threads: int) -> dict[str, TextEncoder]:
    """torch fp32, ONNX fp32 and every int8 recipe, sharing one loaded model."""
    out = {"torch fp32": torch_encoder}
    model, weights = torch_encoder.sentence_model, torch_encoder.weight_hash
    for name, recipe in [("onnx fp32", None), *((f"int8 {q}", q) for q in QUANTIZATIONS)]:
        runner = OnnxRunner(onnx_model(model, weights, cache, recipe), threads=threads)
        backend = "onnx" if recipe is None else "onnx-int8"
        out[name] = replace(torch_encoder, backend=backend, runner=runner)
    return out


def timed(encoders: dict[str, TextEncoder], texts: list[str], repeats: int) -> dict[str, float]:
    """Best seconds per backend over ``repeats`` passes, alternating the order (ABBA)."""
    best = dict.fromkeys(encoders, float("inf"))
    names = list(encoders)
    for rep in range(repeats):
        for name in names if rep % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            encoders[name].encode(texts)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=300, help="texts (0: all 7,400)")
    parser.add_argument("--threads", type=int, default=1, help="threads for torch and ORT")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes (0: cosines only)")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cache", type=Path, default=None, help="ONNX exports (default: temp)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        help='backends to run, e.g. "torch fp32" "int8 per-channel"',
    )
    parser.add_argument(
        "--timing-only",
        action="store_true",
        help="no cosine pass: warm each backend up on 64 texts, then the timed passes only",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    texts = ohsumed_texts(SHARED / "ohsumed-23", args.docs)
    base = load_text_encoder(
        "packaged:all-MiniLM-L6-v2",
        max_tokens=args.max_tokens,
        batch_size=args.batch_size,
        device="cpu",
    )
    with tempfile.TemporaryDirectory() as tmp:
        encoders = backends(base, args.cache or Path(tmp), args.threads)
        if args.only:
            encoders = {name: e for name, e in encoders.items() if name in args.only}
        warm = texts[:64] if args.timing_only else texts  # the cosine pass is a warm-up too
        vectors = {name: enc.encode(warm) for name, enc in encoders.items()}
        seconds = timed(encoders, texts, args.repeats) if args.repeats else {}
    reference = vectors["torch fp32"]
    rows = []
    for name, got in vectors.items():
        row = {"backend": name}
        if not args.timing_only:
            cosine = (got * reference).sum(axis=1)  # unit vectors
            row["mean_cosine"] = float(cosine.mean())
            row["min_cosine"] = float(cosine.min())
            row["max_abs_diff"] = float(np.abs(got - reference).max())
        if name in seconds:
            row["docs_per_s"] = len(texts) / seconds[name]
            row["speedup"] = seconds["torch fp32"] / seconds[name]
        rows.append(row)
    report = {
        "texts": len(texts),
        "longer_than_window": base.longer_than_window(texts),
        "threads": args.threads,
        "max_tokens": base.max_tokens,
        "batch_size": args.batch_size,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "cpu": platform.processor() or platform.machine(),
        "vnni": _vnni(),
        "rows": rows,
    }
    print(_table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


def _vnni() -> bool | None:
    """Whether the CPU has int8 dot-product instructions (int8 speed, and on CPUs without
    them ORT's u8 x s8 products can saturate)."""
    info = Path("/proc/cpuinfo")
    if not info.exists():
        return None
    flags = info.read_text()
    return "avx512_vnni" in flags or "avx_vnni" in flags


def _table(report: dict) -> str:
    lines = [
        f"{report['texts']} texts ({report['longer_than_window']} longer than the window), "
        f"{report['max_tokens']} tokens, batch {report['batch_size']}, "
        f"{report['threads']} thread(s); load average before {report['load_average_before']}, "
        f"after {report['load_average_after']}; VNNI: {report['vnni']}",
        "",
        "| backend | mean cosine | min cosine | max abs diff | docs/s | x torch fp32 |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        speed = f"{r['docs_per_s']:.1f} | {r['speedup']:.2f}" if "docs_per_s" in r else "- | -"
        if "mean_cosine" in r:
            vector = f"{r['mean_cosine']:.4f} | {r['min_cosine']:.4f} | {r['max_abs_diff']:.2e}"
        else:
            vector = "- | - | -"
        lines.append(f"| {r['backend']} | {vector} | {speed} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
