"""Table 1: document classification metrics (accuracy, macro-F1, macro one-vs-rest AUC).

Every model hands in class probabilities for the same test documents; this module scores them
with scikit-learn and adds percentile-bootstrap 95% intervals. The bootstrap re-scores 1,000
resamples, so it uses vectorised equivalents of the scikit-learn metrics (tested against them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score

from medsim.evaluate.baselines import (
    knn_proba,
    l2,
    logistic_proba,
    mlp_proba,
    pool_by_doc,
    tfidf_features,
)
from medsim.evaluate.stats import bootstrap_indices, null_row, percentile_ci, with_ci

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
    """:func:`macro_ovr_auc` of each resample ``idx[b]`` (Mann-Whitney rank form, ties averaged)."""
    out = np.empty(len(idx))
    n_classes = proba.shape[1]
    for b, rows in enumerate(idx):
        y = y_true[rows]
        ranks = rankdata(proba[rows], axis=0)
        aucs = []
        for c in range(n_classes):
            positive = y == c
            n_pos = int(positive.sum())
            n_neg = len(y) - n_pos
            if n_pos and n_neg:
                u = ranks[positive, c].sum() - n_pos * (n_pos + 1) / 2
                aucs.append(u / (n_pos * n_neg))
        out[b] = np.mean(aucs) if aucs else np.nan
    return out


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
    with_ci(row, "accuracy", acc, *percentile_ci((y_true[idx] == y_pred[idx]).mean(axis=1)))
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


def confusion(y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Confusion matrix (rows = truth, columns = prediction) in ``classes`` order."""
    return confusion_matrix(y_true, np.asarray(proba).argmax(axis=1), labels=range(len(classes)))


def prototype_proba(
    train: np.ndarray, y_train: np.ndarray, test: np.ndarray, n_classes: int, temperature: float
) -> np.ndarray:
    """Nearest class mean (cosine), as a softmax over similarities / ``temperature``."""
    train, test = l2(train), l2(test)
    protos = np.zeros((n_classes, train.shape[1]), dtype=np.float32)
    for c in np.unique(y_train):
        protos[c] = train[y_train == c].mean(axis=0)
    logits = test @ l2(protos).T / temperature
    logits[:, ~np.isin(np.arange(n_classes), y_train)] = -np.inf
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


def build_table1(ctx: EvalContext) -> dict:
    """Every Table 1 row on the corpus's test split; models fitted on its training split."""
    docs = ctx.docs
    train = docs[docs["split"] == "train"]
    classes = sorted(train["label"].unique())
    test = docs[(docs["split"] == "test") & docs["label"].isin(classes)]
    if train.empty or test.empty:
        reason = f"no labelled train ({len(train)}) or test ({len(test)}) documents"
        return {"meta": {"n_test": len(test)}, "proposed": null_row(reason, METRICS)}
    cls = {c: i for i, c in enumerate(classes)}
    n_classes, seed, k = len(classes), ctx.seed, ctx.params.evaluate.knn_k
    y_tr = train["label"].map(cls).to_numpy()
    y_te = test["label"].map(cls).to_numpy()
    tr_ids, te_ids = train["doc_id"].tolist(), test["doc_id"].tolist()
    outputs: dict[str, ModelOutput] = {}

    val = docs[(docs["split"] == "val") & docs["label"].isin(classes)]
    va_ids, y_va = val["doc_id"].tolist(), val["label"].map(cls).to_numpy()
    x_tr, x_te = ctx.text_vectors(tr_ids), ctx.text_vectors(te_ids)
    x_va = ctx.text_vectors(va_ids)
    outputs["text_softmax"] = logistic_proba(x_tr, y_tr, x_te, n_classes, seed, (x_va, y_va))
    labelled = docs[docs["label"].isin(classes)]
    tfidf = tfidf_features(ctx.doc_texts(train), ctx.doc_texts(labelled), seed=seed)
    tfidf_of = dict(zip(labelled["doc_id"], tfidf, strict=True))
    t_tr = np.stack([tfidf_of[d] for d in tr_ids])
    t_te = np.stack([tfidf_of[d] for d in te_ids])
    t_va = np.stack([tfidf_of[d] for d in va_ids]) if va_ids else t_tr[:0]
    outputs["tfidf_softmax"] = logistic_proba(t_tr, y_tr, t_te, n_classes, seed, (t_va, y_va))

    baseline_features: dict = {
        "text": (labelled["doc_id"].tolist(), labelled["doc_id"].tolist(), tfidf)
    }
    if ctx.has_images:
        _, fig_docs, images = ctx.features["image"]
        label_of = dict(zip(train["doc_id"], y_tr, strict=True))
        test_set = set(te_ids)
        rows_tr = [i for i, d in enumerate(fig_docs) if d in label_of]
        rows_te = [i for i, d in enumerate(fig_docs) if d in test_set]
        y_fig = np.array([label_of[fig_docs[i]] for i in rows_tr])
        prior = np.bincount(y_tr, minlength=n_classes) / len(y_tr)
        has = np.zeros(len(te_ids), dtype=bool)
        for name, head in (("cnn_softmax", logistic_proba), ("cnn_mlp_softmax", mlp_proba)):
            fig_proba = head(images[rows_tr], y_fig, images[rows_te], n_classes, seed)
            pooled, has = pool_by_doc([fig_docs[i] for i in rows_te], fig_proba, te_ids)
            pooled[~has] = prior  # a test document without figures: the image model can only guess
            outputs[name] = pooled
        fused = (outputs["text_softmax"] + outputs["cnn_softmax"]) / 2
        fused[~has] = outputs["text_softmax"][~has]
        outputs["late_fusion"] = fused
        baseline_features["image"] = ctx.features["image"]
        ctx.artefacts["table1_test_with_images"] = int(has.sum())
    else:
        for name in ("cnn_softmax", "cnn_mlp_softmax", "late_fusion"):
            outputs[name] = ctx.image_reason()

    labels = dict(zip(labelled["doc_id"], labelled["label"], strict=True))
    splits = dict(zip(labelled["doc_id"], labelled["split"], strict=True))
    no_llm = ctx.space.retrain(baseline_features, labels, splits, loss="triplet")
    b_vecs = no_llm.documents(baseline_features, tr_ids + te_ids)
    outputs["metric_learning_no_llm"] = knn_proba(
        b_vecs[: len(tr_ids)], y_tr, b_vecs[len(tr_ids) :], n_classes, k
    )

    outputs["frozen_knn"] = knn_proba(x_tr, y_tr, x_te, n_classes, k)
    if ctx.space.is_tuned:  # what the residual heads alone make of the frozen features
        head = ctx.space.refit(labels, splits, tune=False)
        ctx.artefacts["head_only_space"] = head
        h_vecs = head.documents(head.features, tr_ids + te_ids)
        outputs["head_only"] = knn_proba(
            h_vecs[: len(tr_ids)], y_tr, h_vecs[len(tr_ids) :], n_classes, k
        )
    else:
        outputs["head_only"] = (
            "train.tune_encoder is false: the proposed row is the head-only space"
        )
    vecs = ctx.space.documents(ctx.space_features, tr_ids + te_ids)
    p_tr, p_te = vecs[: len(tr_ids)], vecs[len(tr_ids) :]
    outputs["proposed"] = knn_proba(p_tr, y_tr, p_te, n_classes, k)
    outputs["proposed_prototype"] = prototype_proba(
        p_tr, y_tr, p_te, n_classes, ctx.params.train.temperature
    )
    table = classification_table(outputs, y_te, ctx.params.evaluate.bootstrap, seed)
    table["meta"] = {
        "n_train": len(tr_ids),
        "n_test": len(te_ids),
        "n_classes": n_classes,
        "knn_k": k,
        "bootstrap": ctx.params.evaluate.bootstrap,
    }
    ctx.artefacts["table1"] = {
        "classes": classes,
        "y_test": y_te,
        "proba": {k_: v for k_, v in outputs.items() if not isinstance(v, str)},
        "test_vectors": p_te,
    }
    return table
