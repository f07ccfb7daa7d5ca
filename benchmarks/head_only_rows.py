"""Head-only rows (residual heads over the frozen embeddings) with the evaluate stage's protocols.

Run in a project after `dvc repro` (reads params.yaml, data/): Table 1 kNN@10, Table 2 held-out
episodes (same classes and episodes as the evaluate stage) and title -> abstract nDCG@10 of the
space that `train.tune_encoder: false` trains, at ``--preserve-weight``::

    python benchmarks/head_only_rows.py --preserve-weight 30
"""

import argparse
import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from medsim.config import load_params
from medsim.evaluate.baselines import knn_proba
from medsim.evaluate.fewshot import choose_holdout, fewshot_table, sample_episodes
from medsim.evaluate.stage import load_context
from medsim.evaluate.textbench import retrieval_task

parser = argparse.ArgumentParser()
parser.add_argument("--preserve-weight", type=float, default=30.0)
args = parser.parse_args()
root = Path(".")
p = load_params("params.yaml")
p = dataclasses.replace(
    p, loss="triplet", train=dataclasses.replace(p.train, preserve_weight=args.preserve_weight)
)
ctx = load_context(p, root)
docs = ctx.docs
train = docs[docs.split == "train"]
classes = sorted(train.label.unique())
test = docs[(docs.split == "test") & docs.label.isin(classes)]
labelled = docs[docs.label.isin(classes)]
labels = dict(zip(labelled.doc_id, labelled.label, strict=True))
splits = dict(zip(labelled.doc_id, labelled.split, strict=True))
head = ctx.space.refit(labels, splits, choose="head_only")
cls = {c: i for i, c in enumerate(classes)}
tr, te = train.doc_id.tolist(), test.doc_id.tolist()
v = head.documents(head.features, tr + te)
pr = knn_proba(v[: len(tr)], train.label.map(cls).to_numpy(), v[len(tr) :], len(classes), 10)
out = {"table1_head_only_knn": float((pr.argmax(1) == test.label.map(cls).to_numpy()).mean())}
ev = p.evaluate
shots = sorted(ev.shots)
lab = docs.label.astype(str).to_numpy()
vals, counts = np.unique(lab, return_counts=True)
n_hold = min(
    ev.holdout_classes or max(ev.ways, math.ceil(len(vals) / 3)),
    int((counts >= max(shots) + ev.queries).sum()),
    len(vals) - 2,
)
held = choose_holdout(lab, max(shots) + ev.queries, n_hold, p.seed)
base = docs[~docs.label.isin(held)]
novel = docs[docs.label.isin(held)].reset_index(drop=True)
hb = ctx.space.refit(
    dict(zip(base.doc_id, base.label, strict=True)),
    dict(zip(base.doc_id, base.split, strict=True)),
    choose="head_only",
)
nid = novel.doc_id.tolist()
models = {
    "head_only": hb.documents(hb.features_for(nid), nid),
    "transformer_prototype": ctx.text_vectors(nid),
}
eps = {
    k: sample_episodes(
        novel.label.astype(str).to_numpy(), held, ev.ways, k, ev.queries, ev.episodes, p.seed + k
    )
    for k in shots
}
t2 = fewshot_table(models, eps)
out["table2"] = {k: {m: r["accuracy"] for m, r in b.items()} for k, b in t2.items()}
titled = test[
    (test.title.fillna("").str.strip() != "") & (test.abstract.fillna("").str.strip() != "")
]
if len(titled) > ev.textbench_max_docs:
    titled = titled.sample(n=ev.textbench_max_docs, random_state=p.seed)
t = ctx.encode_text(titled.title.tolist())
a = ctx.encode_text(titled.abstract.tolist())
out["ndcg_head_only"] = retrieval_task(head.project("text", t), head.project("text", a))[
    "ndcg_at_10"
]
print(json.dumps(out))
