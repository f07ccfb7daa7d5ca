"""Nearest-prototype few-shot scoring: episodes over classes, and the accuracy of the
nearest class prototype (cosine to the mean support vector).

Shared by Table 2 (:mod:`medsim.evaluate.fewshot`) and the choices that score a candidate
space by how it does from a few examples (:mod:`medsim.dml.choice`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medsim.dml.neighbours import class_means, l2

__all__ = ["Episodes", "episode_accuracy", "prototype_accuracy", "sample_episodes"]


@dataclass(frozen=True)
class Episodes:
    """Row indices of ``n`` episodes: support [n, ways, shots] and query [n, ways, queries]."""

    support: np.ndarray
    query: np.ndarray

    @property
    def n(self) -> int:
        return self.support.shape[0]


def sample_episodes(
    labels: Sequence[str],
    classes: Sequence[str],
    ways: int,
    shots: int,
    queries: int,
    n_episodes: int,
    seed: int,
) -> Episodes:
    """Draw episodes over ``classes``; support and query documents never overlap in one episode."""
    labels = np.asarray(labels)
    members = {c: np.flatnonzero(labels == c) for c in classes}
    short = [c for c, idx in members.items() if len(idx) < shots + queries]
    if short or len(classes) < ways:
        raise ValueError(
            f"{ways}-way {shots}-shot episodes with {queries} queries need {ways} classes of "
            f">= {shots + queries} documents; too small: {short or list(classes)}"
        )
    rng = np.random.default_rng(seed)
    class_list = list(classes)
    support = np.empty((n_episodes, ways, shots), dtype=np.int64)
    query = np.empty((n_episodes, ways, queries), dtype=np.int64)
    for e in range(n_episodes):
        chosen = rng.choice(len(class_list), size=ways, replace=False)
        for w, c in enumerate(chosen):
            picked = rng.choice(members[class_list[c]], size=shots + queries, replace=False)
            support[e, w], query[e, w] = picked[:shots], picked[shots:]
    return Episodes(support=support, query=query)


def episode_accuracy(vectors: np.ndarray, episodes: Episodes, chunk: int = 100) -> np.ndarray:
    """Nearest-prototype (cosine) accuracy of each episode, as a float array [n_episodes]."""
    x = l2(vectors)
    out = np.empty(episodes.n)
    for start in range(0, episodes.n, chunk):
        sl = slice(start, start + chunk)
        protos = l2(x[episodes.support[sl]].mean(axis=2).reshape(-1, x.shape[1]))
        protos = protos.reshape(*episodes.support[sl].shape[:2], x.shape[1])
        q = x[episodes.query[sl]]  # [e, ways, queries, d]
        sims = np.einsum("ewqd,evd->ewqv", q, protos)
        truth = np.arange(q.shape[1])[None, :, None]
        out[sl] = (sims.argmax(axis=-1) == truth).mean(axis=(1, 2))
    return out


def prototype_accuracy(
    support: np.ndarray, y_support: np.ndarray, test: np.ndarray, y_test: np.ndarray
) -> np.ndarray:
    """Per-test-document correctness (0/1) of the nearest class prototype (cosine)."""
    classes, y_index = np.unique(y_support, return_inverse=True)
    protos = class_means(support, y_index, len(classes))
    return (classes[(l2(test) @ protos.T).argmax(axis=1)] == y_test).astype(float)
