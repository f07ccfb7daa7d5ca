"""MTEB-style text-embedding tasks on the local corpus, with scikit-learn evaluators.

The mteb package's evaluators need its task registry and dataset downloads; offline, the four
task types are computed the same way with scikit-learn:

- classification: logistic regression on the training split's embeddings, test accuracy and
  macro-F1;
- clustering: k-means (k = number of test classes) on the test embeddings, V-measure;
- pair classification: balanced same-label / different-label test pairs scored by cosine,
  average precision (MTEB's cosine AP);
- retrieval: each test document's title (query) against every test abstract (corpus),
  nDCG@10 with the document's own abstract as the only relevant item.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    ndcg_score,
    v_measure_score,
)

from medsim.evaluate.baselines import l2
from medsim.evaluate.memo import cached

if TYPE_CHECKING:
    from medsim.evaluate.context import EvalContext

__all__ = [
    "build_textbench",
    "classification_task",
    "clustering_task",
    "pair_classification_task",
    "retrieval_task",
    "sample_pairs",
]


def classification_task(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, seed: int
) -> dict:
    """MTEB classification: logistic regression (MTEB's default, max_iter 100 -> 1000 here)."""
    model = LogisticRegression(max_iter=1000, random_state=seed).fit(l2(x_train), y_train)
    pred = model.predict(l2(x_test))
    return {
        "accuracy": round(float(accuracy_score(y_test, pred)), 6),
        "macro_f1": round(float(f1_score(y_test, pred, average="macro")), 6),
    }


def clustering_task(x: np.ndarray, y: np.ndarray, seed: int) -> dict:
    """MTEB clustering: k-means with k = number of classes, V-measure against the labels."""
    k = len(np.unique(y))
    if k < 2:
        return {"v_measure": None}
    pred = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(l2(x))
    return {"v_measure": round(float(v_measure_score(y, pred)), 6)}


def sample_pairs(
    y: np.ndarray, n_pairs: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Up to ``n_pairs`` same-label and as many different-label index pairs (no self-pairs)."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    same: list[tuple[int, int]] = []
    diff: list[tuple[int, int]] = []
    attempts = 0
    while (len(same) < n_pairs or len(diff) < n_pairs) and attempts < 50 * n_pairs:
        attempts += 1
        i, j = rng.integers(0, len(y), size=2)
        if i == j:
            continue
        bucket = same if y[i] == y[j] else diff
        if len(bucket) < n_pairs:
            bucket.append((int(i), int(j)))
    pairs = np.array(same + diff, dtype=np.int64).reshape(-1, 2)
    is_same = np.array([1] * len(same) + [0] * len(diff))
    return pairs[:, 0], pairs[:, 1], is_same


def pair_classification_task(x: np.ndarray, y: np.ndarray, n_pairs: int, seed: int) -> dict:
    """MTEB pair classification: average precision of cosine similarity for same-label pairs."""
    left, right, is_same = sample_pairs(y, n_pairs, seed)
    if is_same.min() == is_same.max():
        return {"cosine_ap": None}
    xn = l2(x)
    scores = (xn[left] * xn[right]).sum(axis=1)
    return {"cosine_ap": round(float(average_precision_score(is_same, scores)), 6)}


def retrieval_task(queries: np.ndarray, corpus: np.ndarray, k: int = 10) -> dict:
    """MTEB retrieval: query i's only relevant document is corpus row i; nDCG@k."""
    scores = l2(queries) @ l2(corpus).T
    relevance = np.eye(len(queries))
    return {f"ndcg_at_{k}": round(float(ndcg_score(relevance, scores, k=k)), 6)}


def _tasks(
    x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray, n_pairs: int, seed: int
) -> dict:
    out: dict = {}
    cls = classification_task(x_tr, y_tr, x_te, y_te, seed)
    out["classification_accuracy"] = cls["accuracy"]
    out["classification_macro_f1"] = cls["macro_f1"]
    out["clustering_v_measure"] = clustering_task(x_te, y_te, seed)["v_measure"]
    out["pair_classification_ap"] = pair_classification_task(x_te, y_te, n_pairs, seed)["cosine_ap"]
    return out


def build_textbench(ctx: EvalContext, table1: Mapping[str, object]) -> dict:
    """The four task types for the frozen text encoder (``before``) and the trained space
    (``after``: the tuned encoder's vectors, or frozen vectors through the text head).
    ``table1``: Table 1's products, for the head-only space it refitted (if any)."""
    ev, seed = ctx.params.evaluate, ctx.seed
    docs = ctx.docs
    train = docs[docs["split"] == "train"]
    test = docs[(docs["split"] == "test") & docs["label"].isin(set(train["label"]))]
    if train.empty or test.empty or "text" not in ctx.space.modalities:
        reason = "needs labelled train and test documents and a text head in the space"
        return {"before": {"reason": reason}, "after": {"reason": reason}}
    y_tr, y_te = train["label"].to_numpy(), test["label"].to_numpy()
    x_tr, x_te = ctx.text_vectors(train["doc_id"]), ctx.text_vectors(test["doc_id"])
    project = ctx.space.project
    s_tr = project("text", ctx.space_inputs("text", train["doc_id"]))
    s_te = project("text", ctx.space_inputs("text", test["doc_id"]))
    before = [x_tr, y_tr, x_te, y_te, ev.pairs, seed]
    table = {
        # the frozen encoder's side: no loss or tuning experiment changes it
        "before": cached(ctx.cache_root, "textbench_before", before, lambda: _tasks(*before)),
        "after": _tasks(s_tr, y_tr, s_te, y_te, ev.pairs, seed),
    }
    titled = test[
        (test["title"].fillna("").str.strip() != "")
        & (test["abstract"].fillna("").str.strip() != "")
    ]
    if ctx.encode_text is None or titled.empty:
        for side in table.values():
            side["retrieval_ndcg_at_10"] = None
        table["meta"] = {"retrieval_reason": "no text encoder or no titled test documents"}
        return table
    if len(titled) > ev.textbench_max_docs:
        titled = titled.sample(n=ev.textbench_max_docs, random_state=seed)
    titles = ctx.encode_text(titled["title"].tolist())
    abstracts = ctx.encode_text(titled["abstract"].tolist())
    table["before"]["retrieval_ndcg_at_10"] = retrieval_task(titles, abstracts)["ndcg_at_10"]
    table["after"]["retrieval_ndcg_at_10"] = retrieval_task(
        ctx.space_texts(titled["title"].tolist()), ctx.space_texts(titled["abstract"].tolist())
    )["ndcg_at_10"]
    head = table1.get("head_only_space")  # Table 1's residual heads, when it refitted them
    if head is not None:
        table["head_only"] = {
            "retrieval_ndcg_at_10": retrieval_task(
                head.project("text", titles), head.project("text", abstracts)
            )["ndcg_at_10"]
        }
    table["meta"] = {"n_train": len(train), "n_test": len(test), "n_retrieval": len(titled)}
    return table
