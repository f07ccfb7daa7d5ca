"""Class prototypes of the index: one unit vector per label, the normalised mean of its
training documents, accumulated batch by batch so the index stage never holds the corpus
(``data/index/prototypes.npy``; ``medsim explain`` ranks them)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["LabelMeans", "label_prototypes"]


class LabelMeans:
    """Per-label unit mean vectors, accumulated batch by batch (float64 sums)."""

    def __init__(self) -> None:
        self.sums: dict[str, np.ndarray] = {}
        self.counts: dict[str, int] = {}
        self.dim = 0

    def add(self, vectors: np.ndarray, labels: Sequence[str | None]) -> None:
        self.dim = int(np.shape(vectors)[1]) if np.ndim(vectors) == 2 else self.dim
        label_array = np.asarray([label or "" for label in labels])
        for name in set(label_array) - {""}:
            rows = np.asarray(vectors[label_array == name], dtype=np.float64)
            self.sums[name] = self.sums.get(name, 0.0) + rows.sum(axis=0)
            self.counts[name] = self.counts.get(name, 0) + len(rows)

    def result(self) -> tuple[list[str], np.ndarray]:
        """Label names (sorted) and their normalised means ``[labels, dim]``."""
        names = sorted(self.sums)
        if not names:
            return [], np.zeros((0, self.dim), dtype=np.float32)
        means = np.stack([self.sums[name] / self.counts[name] for name in names])
        means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
        return names, means.astype(np.float32)


def label_prototypes(vectors: np.ndarray, labels: list[str | None]) -> tuple[list[str], np.ndarray]:
    """One unit vector per label: the normalised mean of the vectors carrying it."""
    means = LabelMeans()
    means.dim = int(np.shape(vectors)[1])
    means.add(vectors, labels)
    return means.result()
