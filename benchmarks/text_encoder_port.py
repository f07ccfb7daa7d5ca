"""The text encoder on sentence-transformers against the hand-written one it replaced.

Loads the old ``medsim/encoders/text.py`` from a git revision (default: 1ed765e, the last
commit before the port), encodes the same OHSUMED titles + abstracts with both (MiniLM,
batch 64, 256 tokens, CPU), timed alternately in one process, and prints the largest
absolute difference between their vectors, whether fingerprints and weight hashes agree,
and docs/s of each.

    python benchmarks/text_encoder_port.py --docs 500
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medsim.encoders.text import load_text_encoder  # noqa: E402
from medsim.pubmed.local.folders import parse_document  # noqa: E402

SHARED = Path(os.environ.get("MEDSIM_SHARED", REPO.parent / "shared")) / "data"


def old_module(rev: str):
    """The text encoder module as it was at ``rev``."""
    source = subprocess.run(
        ["git", "show", f"{rev}:medsim/encoders/text.py"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "old_text.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_text", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_text"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def ohsumed_texts(n: int) -> list[str]:
    """``n`` OHSUMED documents over all classes (every 14th file), joined as the stage joins."""
    files = sorted((SHARED / "ohsumed-23").glob("*/*/*"))[::14][:n]
    texts = []
    for file in files:
        title, abstract = parse_document(file.read_text(encoding="utf-8"))
        texts.append("\n".join(p.strip() for p in (title, abstract) if p and p.strip()))
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=500)
    parser.add_argument("--rev", default="1ed765e")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(2)
    texts = ohsumed_texts(args.docs)
    settings = {"max_tokens": 256, "batch_size": 64, "device": "cpu"}
    old = old_module(args.rev).load_text_encoder("packaged:all-MiniLM-L6-v2", **settings)
    new = load_text_encoder("packaged:all-MiniLM-L6-v2", **settings)
    for encoder in (old, new):
        encoder.encode(texts[:64])  # warm-up
    seconds = {"old": 0.0, "new": 0.0}
    vectors = {}
    for _ in range(args.rounds):
        for name, encoder in (("old", old), ("new", new)):
            start = time.perf_counter()
            vectors[name] = encoder.encode(texts)
            seconds[name] += time.perf_counter() - start
    diff = float(np.abs(vectors["old"] - vectors["new"]).max())
    print(f"{len(texts)} OHSUMED texts, {args.rounds} rounds each, alternating")
    print(f"max |old - new| = {diff:.3g}")
    print(f"fingerprint equal: {old.fingerprint == new.fingerprint}")
    print(f"weight hash equal: {old.weight_hash == new.weight_hash}")
    for name in ("old", "new"):
        print(f"{name}: {args.rounds * len(texts) / seconds[name]:.1f} docs/s")


if __name__ == "__main__":
    main()
