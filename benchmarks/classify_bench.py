"""``medsim classify`` against the issue-25 targets, on a built project (``dvc repro`` done).

Four parts, each printing one JSON line (run them on an otherwise idle machine and note the
load average, as docs/benchmarks.md does):

- ``table1``: ``medsim classify --batch`` over the test split's document ids (their stored
  vectors) must give Table 1's proposed accuracy to 3 decimals; the expected calibration
  error of the batch's calibrated probabilities (target <= 0.05) beside
  ``metrics/calibration.json``'s.
- ``speed``: documents/s of ``--batch`` over the test split's texts (title + abstract, encoded
  again), against the embed stage's core on the same texts (``load_text_encoder(...).encode``
  with ``embed.*``), in ABBA order (target ratio >= 0.9).
- ``api``: ``medsim serve`` in its own process; distinct texts (titles of the index) sent one at
  a time to ``/api/classify``; per query, the server's CPU time (every thread's
  ``/proc/<pid>/task/*/schedstat``, nanoseconds) around the request: p50 (target <= 60 ms).
- ``fewshot``: Table 2's held-out protocol through the classifier: the held-out classes of
  Table 2 (same draw), the space chosen and trained again without them, the base classes'
  training documents as the reference, and each 5-shot episode's support added as classes
  (:meth:`Classifier.with_classes`, what ``--classes`` does). Accuracy when each query is
  scored among the episode's classes (Table 2's rule) and among every class (base + added,
  what a ``--classes`` user gets), beside Table 2's 5-shot interval.

    python benchmarks/classify_bench.py table1 --root .
    python benchmarks/classify_bench.py speed --root . [--limit 2000]
    python benchmarks/classify_bench.py api --root build/medpix --queries 200
    python benchmarks/classify_bench.py fewshot --root .
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_speed import free_port, query_texts, start_server

from medsim.classify.calibrate import expected_calibration_error
from medsim.config import load_params


def test_split(root: Path) -> tuple[pd.DataFrame, list[str]]:
    """Table 1's test documents (labelled, of a training class, with a text embedding)."""
    import pyarrow.parquet as pq

    a = pd.read_parquet(root / "data/articles.parquet")
    text_ids = set(
        pq.read_table(root / "data/embeddings/text.parquet", columns=["doc_id"])[0].to_pylist()
    )
    a = a[a["label"].notna() & (a["label"] != "") & a["doc_id"].isin(text_ids)]
    classes = sorted(a.loc[a["split"] == "train", "label"].unique())
    return a[(a["split"] == "test") & a["label"].isin(classes)].reset_index(drop=True), classes


def batch(root: Path, frame: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    """``medsim classify --batch`` over ``frame`` (a CSV of its columns); (table, seconds)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in.csv", Path(tmp) / "out.parquet"
        frame.to_csv(src, index=False)
        cmd = [sys.executable, "-m", "medsim.cli", "classify", "--root", str(root)]
        start = time.perf_counter()
        subprocess.run([*cmd, "--batch", str(src), "--out", str(out)], check=True)
        return pd.read_parquet(out), time.perf_counter() - start


def part_table1(root: Path) -> dict:
    test, classes = test_split(root)
    table, seconds = batch(root, pd.DataFrame({"id": test["doc_id"], "pmid": test["doc_id"]}))
    truth = test["label"].to_numpy()
    accuracy = float((table["label"].to_numpy() == truth).mean())
    proba = table[[f"p:{c}" for c in classes]].to_numpy()
    y = np.array([classes.index(t) for t in truth])
    t1 = json.loads((root / "metrics/table1.json").read_text())["proposed"]["accuracy"]
    calibration = root / "metrics/calibration.json"
    stage_ece = (
        json.loads(calibration.read_text())["proposed"]["ece"] if calibration.is_file() else None
    )
    return {
        "n_test": len(test),
        "classify_accuracy": round(accuracy, 3),
        "table1_accuracy": round(t1, 3),
        "equal_to_3_decimals": round(accuracy, 3) == round(t1, 3),
        "ece": round(expected_calibration_error(proba, y), 4),
        "evaluate_stage_ece": stage_ece,
        "skipped": int((table["reason"] != "").sum()),
        "seconds": round(seconds, 1),
    }


def part_speed(root: Path, limit: int) -> dict:
    from medsim.encoders.text import load_text_encoder

    test, _ = test_split(root)
    test = test.head(limit)
    texts = (test["title"].fillna("") + "\n" + test["abstract"].fillna("")).tolist()
    embed = load_params(root / "params.yaml").embed
    encoder = load_text_encoder(
        embed.text_model,
        max_tokens=embed.max_tokens,
        batch_size=embed.batch_size,
        device="cpu",
        instruction=embed.instruction,
        root=root,
        long_text=embed.long_text,
        stride=embed.window_stride,
    )
    runs: dict[str, list[float]] = {"embed": [], "batch": []}
    for name in ("embed", "batch", "batch", "embed"):  # ABBA: drift in load cancels out
        if name == "embed":
            start = time.perf_counter()
            encoder.encode(texts)
            runs[name].append(len(texts) / (time.perf_counter() - start))
        else:
            _, seconds = batch(root, pd.DataFrame({"id": test["doc_id"], "text": texts}))
            runs[name].append(len(texts) / seconds)
    embed_rate, batch_rate = np.mean(runs["embed"]), np.mean(runs["batch"])
    return {
        "docs": len(texts),
        "embed_docs_per_s": round(float(embed_rate), 1),
        "batch_docs_per_s": round(float(batch_rate), 1),
        "ratio": round(float(batch_rate / embed_rate), 3),
        "note": "batch includes its process start and model loading",
    }


def server_cpu_ns(pid: int) -> int:
    """CPU time of every thread of ``pid`` so far, in nanoseconds (Linux schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended between the listing and the read
    return total


def part_api(root: Path, queries: int) -> dict:
    port = free_port()
    proc = start_server(["--root", str(root)], port)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        texts = query_texts(root / "data/index")[: queries + 1]
        cpu_ms, wall_ms = [], []
        for n, text in enumerate(texts):
            before, start = server_cpu_ns(proc.pid), time.perf_counter()
            conn.request("GET", "/api/classify?" + urlencode({"q": text}))
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
            if n:  # the first one loads the classifier and warms it
                wall_ms.append((time.perf_counter() - start) * 1000)
                cpu_ms.append((server_cpu_ns(proc.pid) - before) / 1e6)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {
        "queries": len(cpu_ms),
        "server_cpu_ms_p50": round(float(np.percentile(cpu_ms, 50)), 1),
        "server_cpu_ms_p90": round(float(np.percentile(cpu_ms, 90)), 1),
        "wall_ms_p50": round(float(np.percentile(wall_ms, 50)), 1),
    }


def part_fewshot(root: Path, episodes: int | None) -> dict:
    from medsim.classify.classifier import fit_classifier
    from medsim.classify.episodes import added_class_accuracy
    from medsim.classify.rule import Reference
    from medsim.evaluate.fewshot import choose_holdout, sample_episodes
    from medsim.evaluate.stage import load_context

    t2 = json.loads((root / "metrics/details/table2.json").read_text())
    if t2.get("protocol") != "heldout_classes":
        return {
            "skipped": f"Table 2 ran the {t2.get('protocol')} protocol here: no held-out classes"
        }
    params = load_params(root / "params.yaml")
    ctx = load_context(params, root)
    ev, docs = params.evaluate, ctx.docs
    held = t2["meta"]["heldout_classes"].split(",")
    labels = docs["label"].astype(str).to_numpy()
    assert held == choose_holdout(labels, max(ev.shots) + ev.queries, len(held), ctx.seed)
    base, novel = docs[~docs["label"].isin(held)], docs[docs["label"].isin(held)]
    novel = novel.reset_index(drop=True)
    base_ids = base["doc_id"].tolist()
    space = ctx.space.refit(  # Table 2's own refit: chosen on base classes it was not built on
        dict(zip(base_ids, base["label"], strict=True)),
        dict(zip(base_ids, base["split"], strict=True)),
        criterion="held_out_classes",
    )
    classes = sorted(base.loc[base["split"] == "train", "label"].unique())
    cls = {c: i for i, c in enumerate(classes)}
    parts = {s: base[(base["split"] == s) & base["label"].isin(cls)] for s in ("train", "val")}
    vec = {
        s: space.documents(space.features_for(p["doc_id"].tolist()), p["doc_id"].tolist())
        for s, p in parts.items()
    }
    reference = Reference(
        classes,
        parts["train"]["doc_id"].tolist(),
        vec["train"],
        parts["train"]["label"].map(cls).to_numpy(),
        ev.knn_k,
    )
    classifier = fit_classifier(reference, vec["val"], parts["val"]["label"].map(cls).to_numpy())
    novel_ids = novel["doc_id"].tolist()
    x = space.documents(space.features_for(novel_ids), novel_ids)
    eps = sample_episodes(
        novel["label"].astype(str).to_numpy(),
        held,
        ev.ways,
        5,
        ev.queries,
        episodes or ev.episodes,  # Table 2's own episodes unless told
        ctx.seed + 5,
    )
    among_episode, among_all = added_class_accuracy(classifier, x, eps.support, eps.query)
    table2 = json.loads((root / "metrics/table2.json").read_text())["5_shot"]["proposed"]
    return {
        "episodes": eps.n,
        "accuracy_among_episode_classes": round(float(np.mean(among_episode)), 4),
        "accuracy_among_all_classes": round(float(np.mean(among_all)), 4),
        "table2_5_shot": table2,
        "space": space.candidate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", choices=["table1", "speed", "api", "fewshot"])
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--limit", type=int, default=2000, help="speed: texts to classify")
    parser.add_argument("--queries", type=int, default=200, help="api: timed queries")
    parser.add_argument(
        "--episodes", type=int, help="fewshot: 5-shot episodes (default: evaluate.episodes)"
    )
    args = parser.parse_args()
    root = args.root.resolve()
    result = {
        "table1": lambda: part_table1(root),
        "speed": lambda: part_speed(root, args.limit),
        "api": lambda: part_api(root, args.queries),
        "fewshot": lambda: part_fewshot(root, args.episodes),
    }[args.part]()
    print(json.dumps({"part": args.part, "root": str(root), **result}))


if __name__ == "__main__":
    main()
