"""Nearest neighbours in an embedding space: kNN classification (the rule of Table 1's proposed
row, which the train stage also uses to choose a space on the validation split) and the one
mean average precision that training's validation and evaluate's retrieval rows both report."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import average_precision_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import normalize

__all__ = ["average_precisions", "expand_proba", "knn_proba", "l2", "mean_average_precision"]


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
