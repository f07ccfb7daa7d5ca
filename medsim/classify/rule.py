"""The evidence of Table 1's proposed rules, on vectors of the trained space.

For each query: the distance-weighted kNN vote (cosine, ``evaluate.knn_k`` neighbours) among
the labelled training documents in the learned space (:func:`medsim.dml.neighbours.knn_proba`,
the one kNN the train stage scores and Table 1 reports) and each class's prototype (the unit
mean of its training documents) with its similarity to the query. Which of the two labels the
document is the space's choice (:class:`medsim.classify.classifier.Classifier`); both are the
evidence a reader checks, and the prototypes are the rule Table 2 uses for classes learned
from a few examples (:meth:`Reference.with_classes`). Classes are the training labels in
sorted order (Table 1's column order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from medsim.dml.neighbours import class_means, knn_proba, l2

__all__ = ["Neighbour", "Reference", "Votes", "class_means", "nearest_rows"]


def nearest_rows(
    reference: np.ndarray, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the ``k`` most cosine-similar reference vectors per query, best first, and their
    similarities: both ``[n_queries, k]``."""
    sims = l2(queries) @ l2(reference).T
    k = max(1, min(k, sims.shape[1]))
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(-sims, part, axis=1).argsort(axis=1, kind="stable")
    rows = np.take_along_axis(part, order, axis=1)
    return rows, np.take_along_axis(sims, rows, axis=1)


@dataclass(frozen=True)
class Neighbour:
    """One labelled training document near the query."""

    doc_id: str
    pmid: str | None
    title: str | None
    label: str
    similarity: float


@dataclass(frozen=True)
class Votes:
    """The rule's answer for a batch of queries: kNN class probabilities (uncalibrated),
    prototype similarities, and the neighbours behind the vote."""

    proba: np.ndarray  # [n, n_classes]: distance-weighted kNN vote shares
    prototype_sims: np.ndarray  # [n, n_classes]: cosine to each class prototype
    neighbours: list[list[Neighbour]]


@dataclass(frozen=True)
class Reference:
    """Labelled training documents in the space: what the rule votes with.

    ``classes`` are the trained classes (sorted, Table 1's order) followed by any classes
    added from a few examples; ``vectors`` hold the trained classes' training documents only
    (an added class has a prototype, no documents), ``y`` their class index.
    """

    classes: list[str]
    doc_ids: list[str]
    vectors: np.ndarray
    y: np.ndarray
    k: int
    titles: list[str | None] = field(default_factory=list)
    pmids: list[str | None] = field(default_factory=list)
    added: np.ndarray | None = None  # [n_added, dim] prototypes of classes added by example

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def n_trained(self) -> int:
        return self.n_classes - (0 if self.added is None else len(self.added))

    @cached_property  # once per reference: a query compares against it, never recomputes it
    def prototypes(self) -> np.ndarray:
        """Every class's unit prototype, trained classes first."""
        trained = class_means(self.vectors, self.y, self.n_trained)
        return trained if self.added is None else np.vstack([trained, self.added])

    def with_classes(self, examples: Mapping[str, np.ndarray]) -> Reference:
        """A reference with new classes, each the prototype (unit mean) of its example vectors,
        as Table 2's protocol learns a class from K examples: nothing is trained."""
        names = list(examples)
        clash = sorted(set(names) & set(self.classes))
        if clash:
            raise ValueError(f"classes already known: {', '.join(clash)}")
        protos = np.vstack([l2(l2(examples[n]).mean(axis=0, keepdims=True)) for n in names])
        added = protos if self.added is None else np.vstack([self.added, protos])
        return replace(self, classes=[*self.classes, *names], added=added.astype(np.float32))

    def votes(
        self, queries: np.ndarray, exclude: Sequence[str | None] | None = None, show: int = 0
    ) -> Votes:
        """The kNN vote of ``queries`` (unit vectors ``[n, dim]``) over the trained classes,
        with ``show`` neighbours each (default: the vote's ``k``).

        ``exclude[i]``: a training doc_id to leave out for query ``i`` (a stored document
        classified by its own vector must not vote for itself)."""
        queries = np.asarray(queries, dtype=np.float32).reshape(len(queries), -1)
        proba = np.zeros((len(queries), self.n_classes))
        index = {d: i for i, d in enumerate(self.doc_ids)}
        own = [index.get(d) if d else None for d in (exclude or [None] * len(queries))]
        plain = [i for i, row in enumerate(own) if row is None]
        if plain:
            proba[plain, : self.n_trained] = knn_proba(
                self.vectors, self.y, queries[plain], self.n_trained, self.k
            )
        for i, row in enumerate(own):
            if row is not None:  # leave-one-out: the vote without the document itself
                keep = np.arange(len(self.y)) != row
                proba[i, : self.n_trained] = knn_proba(
                    self.vectors[keep], self.y[keep], queries[i : i + 1], self.n_trained, self.k
                )[0]
        shown = show or self.k
        rows, sims = nearest_rows(self.vectors, queries, shown + 1)
        neighbours = []
        for i, skip in enumerate(own):
            pairs = [(r, s) for r, s in zip(rows[i], sims[i], strict=True) if r != skip]
            neighbours.append([self._neighbour(r, s) for r, s in pairs[:shown]])
        prototype_sims = l2(queries) @ self.prototypes.T
        return Votes(proba, prototype_sims, neighbours)

    def _neighbour(self, row: int, similarity: float) -> Neighbour:
        return Neighbour(
            self.doc_ids[row],
            self.pmids[row] if self.pmids else None,
            self.titles[row] if self.titles else None,
            self.classes[int(self.y[row])],
            round(float(similarity), 6),
        )
