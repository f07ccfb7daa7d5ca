"""Nearest-neighbour classification in an embedding space: the rule of Table 1's proposed row,
which the train stage also uses to choose a space on the validation split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import normalize

__all__ = ["expand_proba", "knn_proba", "l2"]


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
