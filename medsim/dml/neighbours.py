"""Nearest neighbours in an embedding space: the classification rules of Table 1's proposed row
(:data:`RULES`: kNN vote or nearest class prototype, the one the train stage chose on the
validation split) and the one mean average precision that training's validation and evaluate's
retrieval rows both report."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import normalize

__all__ = [
    "RULES",
    "average_precisions",
    "class_means",
    "expand_proba",
    "knn_proba",
    "l2",
    "mean_average_precision",
    "prototype_proba",
    "rule_proba",
    "space_rule",
]


def l2(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    return normalize(np.asarray(x, dtype=np.float32))


def expand_proba(proba: np.ndarray, fitted: Sequence[int], n_classes: int) -> np.ndarray:
    """Put the columns of a classifier fitted on ``fitted`` classes into all ``n_classes``."""
    out = np.zeros((proba.shape[0], n_classes), dtype=float)
    out[:, np.asarray(fitted, dtype=int)] = proba
    return out


def knn_proba(
    train: np.ndarray, y_train: np.ndarray, test: np.ndarray, n_classes: int, k: int
) -> np.ndarray:
    """Distance-weighted kNN votes by cosine similarity, as class probabilities."""
    k = max(1, min(k, len(y_train)))
    model = KNeighborsClassifier(n_neighbors=k, weights="distance", metric="cosine")
    model.fit(train, y_train)
    return expand_proba(model.predict_proba(test), model.classes_, n_classes)


def class_means(vectors: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Unit mean of each class's unit vectors, ``[n_classes, dim]`` (zero for an empty class):
    the prototype of Table 1's ``proposed_prototype`` row, of ``medsim classify`` and of
    Table 2."""
    vectors = l2(vectors)
    out = np.zeros((n_classes, vectors.shape[1]), dtype=np.float32)
    for c in np.unique(y):
        out[int(c)] = vectors[y == c].mean(axis=0)
    return l2(out)


def prototype_proba(
    train: np.ndarray, y_train: np.ndarray, test: np.ndarray, n_classes: int, temperature: float
) -> np.ndarray:
    """Nearest class mean (cosine), as a softmax over similarities / ``temperature``."""
    logits = l2(test) @ class_means(train, y_train, n_classes).T / temperature
    logits[:, ~np.isin(np.arange(n_classes), y_train)] = -np.inf
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


# How a document is classified among labelled ones, by name (``train.rule``): arguments are
# (train vectors, their classes, query vectors, n_classes, k, temperature). Neither rule wins
# everywhere: OHSUMED's classes span several topics each, so a query's neighbours beat its
# class mean by 11 points there (validation), while on corpora with noisy labels the mean
# averages the noise out. So the train stage scores both on validation; the first wins a tie.
RULES: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray, int, int, float], np.ndarray]] = {
    "knn": lambda train, y, test, n, k, _t: knn_proba(train, y, test, n, k),
    "prototype": lambda train, y, test, n, _k, t: prototype_proba(train, y, test, n, t),
}


def space_rule(space_params: Mapping[str, Any]) -> str:
    """The rule a space classifies by: the one its choice on validation recorded (or the
    pinned ``train.rule`` it was trained with); ``knn`` for a space never scored on
    validation under ``auto``, and for spaces from before the choice."""
    rule = space_params.get("rule", "knn")
    return rule if rule in RULES else "knn"


def rule_proba(
    rule: str,
    train: np.ndarray,
    y_train: np.ndarray,
    test: np.ndarray,
    n_classes: int,
    *,
    k: int,
    temperature: float,
) -> np.ndarray:
    """Class probabilities of ``test`` by the named rule of :data:`RULES`."""
    if rule not in RULES:
        raise ValueError(f"unknown classification rule '{rule}'; known: {sorted(RULES)}")
    return RULES[rule](train, y_train, test, n_classes, k, temperature)


def average_precisions(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Average precision of each query (row) over its whole ranking by ``scores`` (higher
    first), ``relevant`` marking its relevant gallery columns; sklearn's, so tied scores share
    their precision instead of depending on gallery order. Queries with no relevant column are
    left out."""
    scores = np.asarray(scores, dtype=float)
    relevant = np.asarray(relevant, dtype=bool)
    keep = relevant.any(axis=1)
    return np.array(
        [average_precision_score(r, s) for r, s in zip(relevant[keep], scores[keep], strict=True)]
    )


def mean_average_precision(scores: np.ndarray, relevant: np.ndarray) -> float | None:
    """Mean of :func:`average_precisions`; None when no query has a relevant column."""
    aps = average_precisions(scores, relevant)
    return float(aps.mean()) if len(aps) else None
