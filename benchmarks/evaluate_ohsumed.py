"""Every evaluate table on the real OHSUMED-23 corpus, outside DVC, with timings.

Reads ../shared/data/ohsumed-23 (first non-empty line = title, as the folders reader does),
keeps its training/test split (10% of training to val by the project's hash split), embeds
title + abstract with the packaged MiniLM (cached under --cache), trains the shared space with
``train_space`` and runs :func:`medsim.evaluate.evaluate_tables`.

    .venv/bin/python benchmarks/evaluate_ohsumed.py --cache /tmp/medsim-ohsumed \\
        [--loss triplet] [--episodes 500] [--bootstrap 1000] [--out /tmp/medsim-ohsumed/out]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from medsim.config import load_params
from medsim.splits import assign_split

REPO = Path(__file__).resolve().parents[1]


def read_ohsumed(root: Path, seed: int) -> pd.DataFrame:
    rows = []
    for side, fixed in (("training", "train"), ("test", "test")):
        for folder in sorted((root / side).iterdir()):
            for path in sorted(folder.iterdir()):
                lines = [x.strip() for x in path.read_text(errors="replace").splitlines()]
                lines = [x for x in lines if x]
                doc_id = f"ohsumed:{side}/{folder.name}/{path.name}"
                rows.append(
                    {
                        "doc_id": doc_id,
                        "title": lines[0],
                        "abstract": "\n".join(lines[1:]),
                        "label": folder.name,
                        "split": assign_split(doc_id, seed, 0.1, 0.0, fixed=fixed),
                        "source": "ohsumed-23",
                    }
                )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--loss", default=None)
    parser.add_argument("--episodes", type=int, default=None)
    parser.add_argument("--bootstrap", type=int, default=None)
    parser.add_argument("--textbench-max-docs", type=int, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    import dataclasses

    from medsim.dml import train_space
    from medsim.evaluate.context import EvalContext, SpaceOps
    from medsim.evaluate.encode import load_encoder
    from medsim.evaluate.stage import evaluate_tables, write_outputs

    params = load_params(REPO / "params.yaml")
    ev = params.evaluate
    ev = dataclasses.replace(
        ev,
        episodes=args.episodes or ev.episodes,
        bootstrap=args.bootstrap if args.bootstrap is not None else ev.bootstrap,
        textbench_max_docs=args.textbench_max_docs or ev.textbench_max_docs,
        cross_domain_target=str(args.shared / "medical-abstracts-tc"),
    )
    params = dataclasses.replace(params, evaluate=ev, loss=args.loss or params.loss)
    articles = read_ohsumed(args.shared / "ohsumed-23", params.seed)
    args.cache.mkdir(parents=True, exist_ok=True)
    encode, note = load_encoder(params.embed, REPO)
    vectors_path = args.cache / "text.npy"
    if vectors_path.exists() and len(np.load(vectors_path)) == len(articles):
        text = np.load(vectors_path)
    else:
        start = time.perf_counter()
        text = encode((articles["title"] + "\n" + articles["abstract"]).tolist())
        np.save(vectors_path, text)
        print(f"embedded {len(text)} documents in {time.perf_counter() - start:.1f} s")
    ids = articles["doc_id"].tolist()
    features = {"text": (ids, ids, text)}
    start = time.perf_counter()
    space, _ = train_space(
        features,
        dict(zip(ids, articles["label"], strict=True)),
        dict(zip(ids, articles["split"], strict=True)),
        params.train,
        params.loss,
        params.seed,
    )
    print(f"trained the space ({params.loss}) in {time.perf_counter() - start:.1f} s")
    out = args.out or args.cache / f"out-{params.loss}"
    ctx = EvalContext(
        params=params,
        articles=articles,
        features=features,
        figures=pd.DataFrame(columns=["figure_id", "doc_id", "caption", "modality", "plane"]),
        space=SpaceOps(space, params),
        encode_text=encode,
        encoder_note=note,
        root=out,
    )
    start = time.perf_counter()
    built = evaluate_tables(ctx)
    print(f"evaluated in {time.perf_counter() - start:.1f} s")
    write_outputs(ctx, built)
    tables = {name: b.table for name, b in built.items()}
    print(json.dumps({k: v for k, v in tables.items() if k != "retrieval"}, indent=1)[:20000])


if __name__ == "__main__":
    main()
