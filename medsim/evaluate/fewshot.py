"""Table 2: N-way K-shot episodes on classes held out from metric-learning training.

Protocol. Classes with at least ``max(shots) + queries`` documents are candidates; ``holdout``
of them (drawn with the seed) are held out. The proposed head is retrained with
``train_space`` on the remaining classes only, so no held-out label ever shapes the space.
Episodes then draw ``ways`` held-out classes, ``shots`` support and ``queries`` query
documents per class, from any split (nothing was trained on these labels). Every model is
scored on the same episodes by nearest prototype (cosine to the mean support vector).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from medsim.evaluate.baselines import l2, pool_by_doc, tfidf_features
from medsim.evaluate.stats import mean_ci, null_row, with_ci

if TYPE_CHECKING:
    from medsim.evaluate.context import EvalContext

__all__ = [
    "MODELS",
    "Episodes",
    "build_table2",
    "choose_holdout",
    "episode_accuracy",
    "fewshot_table",
    "sample_episodes",
]


@dataclass(frozen=True)
class Episodes:
    """Row indices of ``n`` episodes: support [n, ways, shots] and query [n, ways, queries]."""

    support: np.ndarray
    query: np.ndarray

    @property
    def n(self) -> int:
        return self.support.shape[0]


def choose_holdout(labels: Sequence[str], min_count: int, n_holdout: int, seed: int) -> list[str]:
    """Draw ``n_holdout`` classes among those with at least ``min_count`` documents."""
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    eligible = sorted(values[counts >= min_count].tolist())
    if len(eligible) < n_holdout:
        return []
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(eligible, size=n_holdout, replace=False).tolist())


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


def fewshot_table(
    models: Mapping[str, np.ndarray | str],
    episodes_by_shots: Mapping[int, Episodes | str],
) -> dict:
    """Table 2: ``"<K>_shot" -> model -> accuracy (+ 95% CI)``.

    ``models`` maps a name to document vectors (row-aligned with the episode indices) or to a
    reason string; ``episodes_by_shots`` maps K to its episodes or to a reason string.
    """
    table: dict = {}
    for shots, episodes in episodes_by_shots.items():
        block: dict = {}
        for name, vectors in models.items():
            if isinstance(episodes, str):
                block[name] = null_row(episodes, ["accuracy"])
            elif isinstance(vectors, str):
                block[name] = null_row(vectors, ["accuracy"])
            else:
                block[name] = with_ci({}, "accuracy", *mean_ci(episode_accuracy(vectors, episodes)))
        table[f"{shots}_shot"] = block
    return table


MODELS = ("cnn_prototype", "tfidf_prototype", "transformer_prototype", "proposed")


def build_table2(ctx: EvalContext) -> dict:
    """Table 2 on the corpus: hold classes out, retrain the head without them, run episodes."""
    ev = ctx.params.evaluate
    docs = ctx.docs
    shots = sorted(ev.shots)
    min_count = max(shots) + ev.queries
    labels = docs["label"].astype(str).to_numpy()
    values, counts = np.unique(labels, return_counts=True)
    n_eligible = int((counts >= min_count).sum())
    wanted = ev.holdout_classes or max(ev.ways, math.ceil(len(values) / 3))
    n_holdout = min(wanted, n_eligible, len(values) - 2)
    meta = {
        "ways": ev.ways,
        "queries": ev.queries,
        "episodes": ev.episodes,
        "n_classes": len(values),
    }
    if n_holdout < ev.ways:
        reason = (
            f"{ev.ways}-way episodes need {ev.ways} held-out classes with >= {min_count} "
            f"documents each while >= 2 classes stay for training; this corpus has "
            f"{len(values)} classes, {n_eligible} of them that large"
        )
        return {f"{k}_shot": {m: null_row(reason, ["accuracy"]) for m in MODELS} for k in shots} | {
            "meta": meta
        }
    held = choose_holdout(labels, min_count, n_holdout, ctx.seed)
    base = docs[~docs["label"].isin(held)]
    novel = docs[docs["label"].isin(held)].reset_index(drop=True)
    novel_ids = novel["doc_id"].tolist()
    meta |= {
        "heldout_classes": ",".join(held),
        "n_base_classes": len(values) - len(held),
        "n_heldout_docs": len(novel_ids),
    }

    models: dict[str, np.ndarray | str] = {}
    if ctx.has_images:
        _, fig_docs, images = ctx.features["image"]
        pooled, has = pool_by_doc(fig_docs, images, novel_ids)
        models["cnn_prototype"] = pooled
        meta["heldout_docs_without_images"] = int((~has).sum())
    else:
        models["cnn_prototype"] = ctx.image_reason()
    base_texts = ctx.doc_texts(base[base["split"] == "train"])
    models["tfidf_prototype"] = tfidf_features(base_texts, ctx.doc_texts(novel), seed=ctx.seed)
    models["transformer_prototype"] = ctx.text_vectors(novel_ids)
    base_ids = base["doc_id"].tolist()
    retrained = ctx.space.retrain(
        ctx.subset_features(base_ids),
        dict(zip(base_ids, base["label"], strict=True)),
        dict(zip(base_ids, base["split"], strict=True)),
    )
    models["proposed"] = retrained.documents(ctx.features, novel_ids)

    episodes: dict[int, Episodes | str] = {}
    novel_labels = novel["label"].astype(str).to_numpy()
    for k in shots:
        episodes[k] = sample_episodes(
            novel_labels, held, ev.ways, k, ev.queries, ev.episodes, ctx.seed + k
        )
    table = fewshot_table(models, episodes)
    table["meta"] = meta
    ctx.artefacts["table2"] = {"shots": shots, "table": table}
    return table
