"""Table 1: document classification metrics (accuracy, macro-F1, macro one-vs-rest AUC).

Every model hands in class probabilities for the same test documents; this module scores them
with scikit-learn and adds percentile-bootstrap 95% intervals. The bootstrap re-scores 1,000
resamples, so it uses vectorised equivalents of the scikit-learn metrics (tested against them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score

from medsim.dml.neighbours import RULES, rule_proba
from medsim.evaluate.baselines import (
    knn_proba,
    logistic_proba,
    mlp_proba,
    pool_by_doc,
    tfidf_features,
)
from medsim.evaluate.context import Built, SpaceOps
from medsim.evaluate.memo import cached, head_params
from medsim.evaluate.stats import (
    accuracy_row,
    bootstrap_indices,
    difference_row,
    null_row,
    percentile_ci,
    with_ci,
)

if TYPE_CHECKING:
    from medsim.evaluate.context import EvalContext

__all__ = [
    "METRICS",
    "ModelOutput",
    "build_table1",
    "classification_metrics",
    "classification_table",
    "confusion",
    "macro_f1_batched",
    "macro_ovr_auc",
    "macro_ovr_auc_batched",
    "versus_best_other",
]

METRICS = ("accuracy", "macro_f1", "auc")

# A model's output: class probabilities [n_test, n_classes] in the table's class order, or a
# reason (str) why the row cannot be computed on this corpus.
ModelOutput = np.ndarray | str


def macro_ovr_auc(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Macro one-vs-rest ROC AUC over the classes present in ``y_true`` (with a negative too).

    scikit-learn's multi-class ``roc_auc_score`` refuses a test set that lacks a class; the
    one-vs-rest definition is the mean of the per-class binary AUCs, computed here per class.
    """
    aucs = []
    for c in range(proba.shape[1]):
        positive = y_true == c
        if positive.any() and not positive.all():
            aucs.append(roc_auc_score(positive, proba[:, c]))
    return float(np.mean(aucs)) if aucs else float("nan")


def macro_ovr_auc_batched(y_true: np.ndarray, proba: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """:func:`macro_ovr_auc` of each resample ``idx[b]``, by Mann-Whitney counting.

    Per class, rows with equal scores form one group (groups in score order); a resample's
    U = sum over groups of positives drawn x (negatives drawn in lower groups + half those in
    the group). Integer counts throughout, so U is exact and equals the rank-sum form's
    (tested) without sorting each resample again.
    """
    idx = np.asarray(idx)
    drawn_label = np.asarray(y_true)[idx]
    aucs = np.full((len(idx), proba.shape[1]), np.nan)
    for c in range(proba.shape[1]):
        aucs[:, c] = _resampled_auc(drawn_label == c, proba[:, c], idx)
    out = np.empty(len(idx))
    for b, row in enumerate(aucs):  # mean over the classes present, in class order
        present = row[~np.isnan(row)]
        out[b] = np.mean(present) if len(present) else np.nan
    return out


def _resampled_auc(positive: np.ndarray, scores: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Binary AUC of each resample (``positive``: [n_boot, n] per draw); NaN without
    positives or negatives."""
    _, group = np.unique(scores, return_inverse=True)
    n_groups = int(group.max()) + 1
    n_boot = len(idx)
    flat = group[idx] + (np.arange(n_boot) * n_groups)[:, None]
    size = n_boot * n_groups
    pos = np.bincount(flat[positive], minlength=size).reshape(n_boot, n_groups)
    neg = np.bincount(flat[~positive], minlength=size).reshape(n_boot, n_groups)
    below = np.cumsum(neg, axis=1) - neg
    twice_u = (pos * (2 * below + neg)).sum(axis=1)
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    valid = (n_pos > 0) & (n_neg > 0)
    return np.where(valid, (twice_u / 2) / np.where(valid, n_pos * n_neg, 1), np.nan)


def macro_f1_batched(
    y_true: np.ndarray, y_pred: np.ndarray, idx: np.ndarray, n_classes: int
) -> np.ndarray:
    """Macro-F1 of each resample, averaged like scikit-learn over labels in truth or prediction."""
    n_boot = len(idx)
    cells = n_classes * n_classes
    flat = np.arange(n_boot)[:, None] * cells + y_true[idx] * n_classes + y_pred[idx]
    cm = np.bincount(flat.ravel(), minlength=n_boot * cells).reshape(n_boot, n_classes, n_classes)
    tp = np.diagonal(cm, axis1=1, axis2=2).astype(float)
    support = cm.sum(axis=2)
    predicted = cm.sum(axis=1)
    denom = support + predicted
    present = denom > 0
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=present)
    return (f1 * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, n_boot: int = 1000, seed: int = 0
) -> dict:
    """Accuracy, macro-F1 and macro OvR AUC of ``proba`` with percentile-bootstrap 95% CIs."""
    y_true = np.asarray(y_true, dtype=int)
    proba = np.asarray(proba, dtype=float)
    if proba.shape != (len(y_true), proba.shape[1]) or len(y_true) == 0:
        raise ValueError(f"proba shape {proba.shape} does not match {len(y_true)} labels")
    n_classes = proba.shape[1]
    y_pred = proba.argmax(axis=1)
    row: dict = {}
    idx = bootstrap_indices(len(y_true), n_boot, seed) if n_boot > 0 else None
    acc = accuracy_score(y_true, y_pred)
    f1 = f1_score(y_true, y_pred, average="macro")
    auc = macro_ovr_auc(y_true, proba)
    if idx is None:
        row.update(accuracy=acc, macro_f1=f1, auc=auc)
        return {k: (None if np.isnan(v) else round(float(v), 6)) for k, v in row.items()}
    row.update(accuracy_row(y_true == y_pred, idx))
    with_ci(row, "macro_f1", f1, *percentile_ci(macro_f1_batched(y_true, y_pred, idx, n_classes)))
    with_ci(row, "auc", auc, *percentile_ci(macro_ovr_auc_batched(y_true, proba, idx)))
    return row


def classification_table(
    outputs: Mapping[str, ModelOutput],
    y_true: np.ndarray,
    n_boot: int,
    seed: int,
    notes: Mapping[str, str] | None = None,
) -> dict:
    """Table 1: one row per model; a model given as a string is a null row with that reason."""
    table: dict = {}
    for name, output in outputs.items():
        if isinstance(output, str):
            table[name] = null_row(output, METRICS)
        else:
            table[name] = classification_metrics(y_true, output, n_boot=n_boot, seed=seed)
        if notes and name in notes:
            table[name]["model"] = notes[name]
    return table


def versus_best_other(
    table: Mapping[str, Mapping],
    proba: Mapping[str, np.ndarray],
    y_true: np.ndarray,
    n_boot: int,
    seed: int,
) -> dict:
    """The proposed row's accuracy minus that of the best other row (by test accuracy; a tie
    goes to the first in ``table``), paired over the same test documents and the same
    bootstrap resamples as the rows' own intervals. The proposed space's own rules
    (``proposed_knn``, ``proposed_prototype``) are not other rows. Empty when either is
    missing."""
    others = {
        name: row["accuracy"]
        for name, row in table.items()
        if not name.startswith("proposed") and name in proba and row.get("accuracy") is not None
    }
    if "proposed" not in proba or not others:
        return {}
    best = max(others, key=others.__getitem__)
    y_true = np.asarray(y_true, dtype=int)
    hits = {name: proba[name].argmax(axis=1) == y_true for name in ("proposed", best)}
    idx = bootstrap_indices(len(y_true), n_boot, seed) if n_boot > 0 else None
    return difference_row(best, hits["proposed"], hits[best], idx)


def confusion(y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Confusion matrix (rows = truth, columns = prediction) in ``classes`` order."""
    return confusion_matrix(y_true, np.asarray(proba).argmax(axis=1), labels=range(len(classes)))


@dataclass(frozen=True)
class _Split:
    """Table 1's documents: labelled train / val / test of the training classes."""

    classes: list[str]
    tr_ids: list[str]
    va_ids: list[str]
    te_ids: list[str]
    y_tr: np.ndarray
    y_va: np.ndarray
    y_te: np.ndarray
    labelled: pd.DataFrame  # every document of a training class, any split

    @property
    def n_classes(self) -> int:
        return len(self.classes)


# Table 1's rows in the order the metrics file lists them
ROWS = (
    "text_softmax",
    "tfidf_softmax",
    "cnn_softmax",
    "cnn_mlp_softmax",
    "late_fusion",
    "metric_learning_no_llm",
    "frozen_knn",
    "head_only",
    "proposed",  # the space by the rule it chose on validation: one of the two below
    "proposed_knn",
    "proposed_prototype",
)


def build_table1(ctx: EvalContext) -> Built:
    """Every Table 1 row on the corpus's test split; models fitted on its training split.

    Rows that read neither ``loss`` nor the tuned encoder (frozen, TF-IDF, CNN and no-LLM
    baselines) come from the evaluate cache when their inputs have not changed.
    """
    docs = ctx.docs
    train = docs[docs["split"] == "train"]
    classes = sorted(train["label"].unique())
    test = docs[(docs["split"] == "test") & docs["label"].isin(classes)]
    if train.empty or test.empty:
        reason = f"no labelled train ({len(train)}) or test ({len(test)}) documents"
        return Built({"meta": {"n_test": len(test)}, "proposed": null_row(reason, METRICS)})
    split = _table1_split(docs, classes)
    ev = ctx.params.evaluate
    key = [
        split.labelled[["doc_id", "label", "split", "title", "abstract"]],
        ctx.text_vectors(split.labelled["doc_id"].tolist()),
        ctx.features["image"] if ctx.has_images else None,
        ctx.seed,
        ev.knn_k,
        ev.bootstrap,
        head_params(ctx.params.train),
    ]
    frozen_table, frozen_proba, _ = cached(
        ctx.cache_root, "table1_frozen", key, lambda: _frozen_rows(ctx, split)
    )
    outputs, test_vectors, head_only = _space_outputs(ctx, split)
    table = frozen_table | classification_table(outputs, split.y_te, ev.bootstrap, ctx.seed)
    table = {name: table[name] for name in ROWS if name in table}
    table["meta"] = {
        "n_train": len(split.tr_ids),
        "n_test": len(split.te_ids),
        "n_classes": split.n_classes,
        "knn_k": ev.knn_k,
        "bootstrap": ev.bootstrap,
        "proposed_rule": ctx.space.rule,  # chosen on validation by the train stage
    }
    proba = frozen_proba | {k: v for k, v in outputs.items() if not isinstance(v, str)}
    table["comparison"] = versus_best_other(table, proba, split.y_te, ev.bootstrap, ctx.seed)
    products = {
        "classes": classes,
        "y_test": split.y_te,
        "proba": {name: proba[name] for name in ROWS if name in proba},
        "test_vectors": test_vectors,
        "head_only_space": head_only,  # the residual heads refitted beside a tuned space
    }
    return Built(table, products)


def _table1_split(docs: pd.DataFrame, classes: list[str]) -> _Split:
    cls = {c: i for i, c in enumerate(classes)}
    labelled = docs[docs["label"].isin(classes)]
    parts = [labelled[labelled["split"] == name] for name in ("train", "val", "test")]
    ids = [part["doc_id"].tolist() for part in parts]
    ys = [part["label"].map(cls).to_numpy() for part in parts]
    return _Split(list(classes), *ids, *ys, labelled)


def _frozen_rows(ctx: EvalContext, s: _Split) -> tuple[dict, dict[str, np.ndarray], int | None]:
    """The rows that read neither ``loss`` nor the tuned encoder: (their metrics, their
    class probabilities, test documents with images or None)."""
    seed, k = ctx.seed, ctx.params.evaluate.knn_k
    outputs: dict[str, ModelOutput] = {}
    x_tr, x_te = ctx.text_vectors(s.tr_ids), ctx.text_vectors(s.te_ids)
    x_va = ctx.text_vectors(s.va_ids)
    outputs["text_softmax"] = logistic_proba(x_tr, s.y_tr, x_te, s.n_classes, seed, (x_va, s.y_va))
    tfidf = tfidf_features(
        ctx.doc_texts(s.labelled[s.labelled["split"] == "train"]),
        ctx.doc_texts(s.labelled),
        seed=seed,
    )
    tfidf_of = dict(zip(s.labelled["doc_id"], tfidf, strict=True))
    t_tr = np.stack([tfidf_of[d] for d in s.tr_ids])
    t_te = np.stack([tfidf_of[d] for d in s.te_ids])
    t_va = np.stack([tfidf_of[d] for d in s.va_ids]) if s.va_ids else t_tr[:0]
    outputs["tfidf_softmax"] = logistic_proba(t_tr, s.y_tr, t_te, s.n_classes, seed, (t_va, s.y_va))
    ids = s.labelled["doc_id"].tolist()
    baseline_features: dict = {"text": (ids, ids, tfidf)}
    with_images = _image_rows(ctx, s, outputs) if ctx.has_images else None
    if ctx.has_images:
        baseline_features["image"] = ctx.features["image"]
    else:
        for name in ("cnn_softmax", "cnn_mlp_softmax", "late_fusion"):
            outputs[name] = ctx.image_reason()
    labels = dict(zip(ids, s.labelled["label"], strict=True))
    splits = dict(zip(ids, s.labelled["split"], strict=True))
    no_llm = ctx.space.retrain(baseline_features, labels, splits, loss="triplet")
    b_vecs = no_llm.documents(baseline_features, s.tr_ids + s.te_ids)
    n_tr = len(s.tr_ids)
    outputs["metric_learning_no_llm"] = knn_proba(
        b_vecs[:n_tr], s.y_tr, b_vecs[n_tr:], s.n_classes, k
    )
    outputs["frozen_knn"] = knn_proba(x_tr, s.y_tr, x_te, s.n_classes, k)
    table = classification_table(outputs, s.y_te, ctx.params.evaluate.bootstrap, seed)
    return table, {n: v for n, v in outputs.items() if not isinstance(v, str)}, with_images


def _image_rows(ctx: EvalContext, s: _Split, outputs: dict[str, ModelOutput]) -> int:
    """CNN softmax heads (figures pooled per document) and late fusion into ``outputs``;
    returns how many test documents have figures."""
    _, fig_docs, images = ctx.features["image"]
    label_of = dict(zip(s.tr_ids, s.y_tr, strict=True))
    test_set = set(s.te_ids)
    rows_tr = [i for i, d in enumerate(fig_docs) if d in label_of]
    rows_te = [i for i, d in enumerate(fig_docs) if d in test_set]
    y_fig = np.array([label_of[fig_docs[i]] for i in rows_tr])
    prior = np.bincount(s.y_tr, minlength=s.n_classes) / len(s.y_tr)
    has = np.zeros(len(s.te_ids), dtype=bool)
    for name, head in (("cnn_softmax", logistic_proba), ("cnn_mlp_softmax", mlp_proba)):
        fig_proba = head(images[rows_tr], y_fig, images[rows_te], s.n_classes, ctx.seed)
        pooled, has = pool_by_doc([fig_docs[i] for i in rows_te], fig_proba, s.te_ids)
        pooled[~has] = prior  # a test document without figures: the image model can only guess
        outputs[name] = pooled
    fused = (outputs["text_softmax"] + outputs["cnn_softmax"]) / 2
    fused[~has] = outputs["text_softmax"][~has]
    outputs["late_fusion"] = fused
    return int(has.sum())


def _space_outputs(
    ctx: EvalContext, s: _Split
) -> tuple[dict[str, ModelOutput], np.ndarray, SpaceOps | None]:
    """The rows of this run's spaces: head-only (refitted when the encoder was tuned), the
    chosen space by each rule (``proposed_<rule>``) and by its own (``proposed``); the
    proposed test vectors; the refitted head-only space (None when the chosen space is
    head-only itself)."""
    n_tr, k = len(s.tr_ids), ctx.params.evaluate.knn_k
    labels = dict(zip(s.labelled["doc_id"], s.labelled["label"], strict=True))
    splits = dict(zip(s.labelled["doc_id"], s.labelled["split"], strict=True))
    outputs: dict[str, ModelOutput] = {}
    head = None
    if not ctx.space.is_head_only:  # what the residual heads alone make of the frozen features
        head = ctx.space.refit(labels, splits, choose="head_only")
        h_vecs = head.documents(head.features, s.tr_ids + s.te_ids)
        outputs["head_only"] = knn_proba(h_vecs[:n_tr], s.y_tr, h_vecs[n_tr:], s.n_classes, k)
    else:
        outputs["head_only"] = "the space chosen on validation is head-only: the proposed row"
    vecs = ctx.space.documents(ctx.space_features, s.tr_ids + s.te_ids)
    p_tr, p_te = vecs[:n_tr], vecs[n_tr:]
    temperature = ctx.params.train.temperature
    for rule in RULES:
        outputs[f"proposed_{rule}"] = rule_proba(
            rule, p_tr, s.y_tr, p_te, s.n_classes, k=k, temperature=temperature
        )
    outputs["proposed"] = outputs[f"proposed_{ctx.space.rule}"]
    return outputs, p_te, head
