"""Table 2: few-shot classification, by one of two protocols (the table says which).

``heldout_classes`` (the corpus has enough classes): N-way K-shot episodes on classes held
out from metric-learning training. ``low_resource`` (e.g. six cancer types, where no five
classes can be held out): K labelled training documents per class, every model built from
those labels only, the whole test split classified by nearest prototype. Labels are what is
scarce, not text: what learns without labels (the TF-IDF vocabulary and directions, of the
TF-IDF row and of the lexical part of a candidate space) learns from the texts of the whole
training split, as the pretrained encoder learned from unlabelled text.

Held-out protocol. Classes with at least ``max(shots) + queries`` documents are candidates;
``holdout`` of them (drawn with the seed) are held out. The proposed space is chosen and
trained again (encoder tuning included) on the remaining classes only, so no held-out label
shapes it; the candidate is chosen by how it does on some of those remaining classes when
built without them (``held_out_classes``, :mod:`medsim.dml.choice`), not by kNN on the
classes it was trained on. In the low-resource protocol, by folds over the support
(``support_folds``).
Episodes then draw ``ways`` held-out classes, ``shots`` support and ``queries`` query
documents per class, from any split (nothing was trained on these labels). Every model is
scored on the same episodes by nearest prototype (cosine to the mean support vector).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from medsim.dml.prototypes import Episodes, episode_accuracy, prototype_accuracy, sample_episodes
from medsim.evaluate.baselines import pool_by_doc, tfidf_features
from medsim.evaluate.memo import cached
from medsim.evaluate.stats import (
    accuracy_row,
    bootstrap_indices,
    difference_row,
    episode_difference_row,
    mean_ci,
    null_row,
    with_ci,
)

if TYPE_CHECKING:
    from medsim.evaluate.context import EvalContext

__all__ = [
    "AGAINST",
    "MODELS",
    "PROTOCOLS",
    "Episodes",
    "build_heldout",
    "build_low_resource",
    "build_table2",
    "choose_holdout",
    "draw_support",
    "episode_accuracy",
    "fewshot_table",
    "prototype_accuracy",
    "sample_episodes",
]


def choose_holdout(labels: Sequence[str], min_count: int, n_holdout: int, seed: int) -> list[str]:
    """Draw ``n_holdout`` classes among those with at least ``min_count`` documents."""
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    eligible = sorted(values[counts >= min_count].tolist())
    if len(eligible) < n_holdout:
        return []
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(eligible, size=n_holdout, replace=False).tolist())


def fewshot_table(
    models: Mapping[str, np.ndarray | str],
    episodes_by_shots: Mapping[int, Episodes | str],
) -> dict:
    """Table 2: ``"<K>_shot" -> model -> accuracy (+ 95% CI)``, and ``comparison``: per K,
    the proposed row minus :data:`AGAINST` on the same episodes.

    ``models`` maps a name to document vectors (row-aligned with the episode indices) or to a
    reason string; ``episodes_by_shots`` maps K to its episodes or to a reason string.
    """
    table: dict = {}
    comparison: dict = {}
    for shots, episodes in episodes_by_shots.items():
        block: dict = {}
        accuracy: dict[str, np.ndarray] = {}
        for name, vectors in models.items():
            if isinstance(episodes, str):
                block[name] = null_row(episodes, ["accuracy"])
            elif isinstance(vectors, str):
                block[name] = null_row(vectors, ["accuracy"])
            else:
                accuracy[name] = episode_accuracy(vectors, episodes)
                block[name] = with_ci({}, "accuracy", *mean_ci(accuracy[name]))
        table[f"{shots}_shot"] = block
        if {"proposed", AGAINST} <= accuracy.keys():
            comparison[f"{shots}_shot"] = episode_difference_row(
                AGAINST, accuracy["proposed"], accuracy[AGAINST]
            )
    return table | ({"comparison": comparison} if comparison else {})


MODELS = ("cnn_prototype", "tfidf_prototype", "transformer_prototype", "head_only", "proposed")
# seeds of one draw of supports are seed + K; another draw's are this far apart, so no two
# (draw, K) pairs share a seed for any K below it
DRAW_STRIDE = 1000
# the row the proposed one is compared with, K by K: the encoder it starts from, frozen
AGAINST = "transformer_prototype"
PROTOCOLS = ("heldout_classes", "low_resource")


def build_table2(ctx: EvalContext) -> dict:
    """Table 2 by ``evaluate.fewshot_protocol``: ``heldout`` classes when the corpus has
    enough classes (``auto`` falls back to ``low_resource`` otherwise); the table's
    ``protocol`` key says which one ran."""
    wanted = ctx.params.evaluate.fewshot_protocol
    if wanted in ("auto", "heldout"):
        table = build_heldout(ctx)
        if table.get("protocol") == "heldout_classes" or wanted == "heldout":
            return table
    return build_low_resource(ctx)


def _null_table(reason: str, shots: Sequence[int], protocol: str, meta: dict) -> dict:
    block = {m: null_row(reason, ["accuracy"]) for m in MODELS}
    return {f"{k}_shot": dict(block) for k in shots} | {"protocol": protocol, "meta": meta}


def build_heldout(ctx: EvalContext) -> dict:
    """Hold classes out, train every learned row without them, run episodes on them."""
    ev = ctx.params.evaluate
    docs = ctx.docs
    shots = sorted(ev.shots)
    min_count = max(shots) + ev.queries
    labels = docs["label"].astype(str).to_numpy()
    values, counts = np.unique(labels, return_counts=True)
    n_eligible = int((counts >= min_count).sum())
    wanted = ev.holdout_classes or max(ev.ways, math.ceil(len(values) / 3))
    n_holdout = min(wanted, n_eligible, len(values) - 2)
    meta = {"ways": ev.ways, "queries": ev.queries, "episodes": ev.episodes}
    meta["n_classes"] = len(values)
    if n_holdout < ev.ways:
        reason = (
            f"{ev.ways}-way episodes need {ev.ways} held-out classes with >= {min_count} "
            f"documents each while >= 2 classes stay for training; this corpus has "
            f"{len(values)} classes, {n_eligible} of them that large"
        )
        return _null_table(reason, shots, "none", meta)
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
    models["tfidf_prototype"] = _tfidf(ctx, base_texts, ctx.doc_texts(novel))
    models["transformer_prototype"] = ctx.text_vectors(novel_ids)
    base_ids = base["doc_id"].tolist()
    base_labels = dict(zip(base_ids, base["label"], strict=True))
    base_splits = dict(zip(base_ids, base["split"], strict=True))
    # chosen by how candidates do on base classes they were not built on
    learned, chosen = _learned_rows(ctx, base_labels, base_splits, novel_ids, "held_out_classes")
    models, meta = models | learned, meta | chosen
    novel_labels = novel["label"].astype(str).to_numpy()
    episodes: dict[int, Episodes | str] = {
        k: sample_episodes(novel_labels, held, ev.ways, k, ev.queries, ev.episodes, ctx.seed + k)
        for k in shots
    }
    table = fewshot_table(models, episodes)
    table["protocol"] = "heldout_classes"
    table["meta"] = meta
    return table


def _tfidf(ctx: EvalContext, train_texts: list[str], texts: list[str]) -> np.ndarray:
    """TF-IDF features (evaluate cache: no loss or tuning experiment changes them)."""
    key = [train_texts, texts, ctx.seed]
    return cached(
        ctx.cache_root,
        "tfidf",
        key,
        lambda: tfidf_features(train_texts, texts, seed=ctx.seed),
    )


def _learned_rows(
    ctx: EvalContext,
    labels: dict[str, str],
    splits: dict[str, str],
    doc_ids: list[str],
    criterion: str,
    unlabelled: list[str] | None = None,
) -> tuple[dict[str, np.ndarray | str], dict]:
    """Document vectors of ``doc_ids`` from the proposed and head-only spaces retrained
    on ``labels`` only (the proposed one chosen again among the candidates by ``criterion``,
    a key of :data:`medsim.dml.choice.CRITERIA`; its lexical part learns words from the texts
    of ``unlabelled``, default the training documents of ``splits``), and which candidate
    that is with every candidate's scores (``proposed_space``, ``proposed_selection``)."""
    rows: dict[str, np.ndarray | str] = {}
    retrained = ctx.space.refit(labels, splits, criterion=criterion, unlabelled=unlabelled)
    rows["proposed"] = retrained.documents(retrained.features_for(doc_ids), doc_ids)
    if retrained.is_head_only:
        rows["head_only"] = "the proposed space chosen here is the head-only one"
    else:
        head = ctx.space.refit(labels, splits, choose="head_only")
        rows["head_only"] = head.documents(head.features_for(doc_ids), doc_ids)
    chosen = {"proposed_space": retrained.candidate, "proposed_selection": retrained.selection}
    return rows, chosen


def draw_support(labels: Sequence[str], shots: int, seed: int) -> tuple[np.ndarray, dict[str, int]]:
    """Indices of ``shots`` documents per class (all of a smaller class), seeded; and how
    many each class got."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    picked, got = [], {}
    for c in sorted(set(labels.tolist())):
        members = np.flatnonzero(labels == c)
        take = rng.choice(members, size=min(shots, len(members)), replace=False)
        picked.append(np.sort(take))
        got[str(c)] = len(take)
    return np.concatenate(picked), got


def build_low_resource(ctx: EvalContext, draw: int = 0) -> dict:
    """K labelled training documents per class; every model is built from those K x classes
    documents only (no other label) and classifies the whole test split by nearest
    prototype. Accuracy with a percentile-bootstrap 95% interval over test documents.

    ``draw`` picks which seeded draw of the K documents (0: the table's own); the others
    measure how much the draw decides (``benchmarks/support_draws.py``)."""
    ev, docs, seed = ctx.params.evaluate, ctx.docs, ctx.seed
    shots = sorted(ev.shots)
    train = docs[docs["split"] == "train"].reset_index(drop=True)
    test = docs[(docs["split"] == "test") & docs["label"].isin(set(train["label"]))]
    test = test.reset_index(drop=True)
    meta: dict = {"n_test": len(test), "n_classes": int(train["label"].nunique())}
    if train["label"].nunique() < 2 or test.empty:
        reason = "low-resource few-shot needs training documents of >= 2 classes and a test split"
        return _null_table(reason, shots, "low_resource", meta)
    test_ids = test["doc_id"].tolist()
    y_test = test["label"].astype(str).to_numpy()
    idx = bootstrap_indices(len(test), ev.bootstrap, seed) if ev.bootstrap > 0 else None
    table: dict = {}
    comparison: dict = {}
    for k in shots:
        support_seed = seed + k + DRAW_STRIDE * draw
        rows, got = draw_support(train["label"].astype(str).tolist(), k, support_seed)
        support = train.iloc[rows]
        s_ids, y_s = support["doc_id"].tolist(), support["label"].astype(str).to_numpy()
        models, chosen = _low_resource_models(ctx, train, support, test, s_ids + test_ids)
        meta |= {f"{key}_{k}_shot": value for key, value in chosen.items()}
        hits = {
            name: prototype_accuracy(vectors[: len(s_ids)], y_s, vectors[len(s_ids) :], y_test)
            for name, vectors in models.items()
            if not isinstance(vectors, str)
        }
        table[f"{k}_shot"] = {
            name: accuracy_row(hits[name], idx) if name in hits else null_row(vectors, ["accuracy"])
            for name, vectors in models.items()
        }
        if {"proposed", AGAINST} <= hits.keys():
            comparison[f"{k}_shot"] = difference_row(AGAINST, hits["proposed"], hits[AGAINST], idx)
        meta[f"support_{k}_shot"] = len(s_ids)
        meta[f"smallest_class_{k}_shot"] = min(got.values())
    table["protocol"] = "low_resource"
    table["meta"] = meta
    return table | ({"comparison": comparison} if comparison else {})


def _low_resource_models(
    ctx: EvalContext, train, support, test, doc_ids: list[str]
) -> tuple[dict[str, np.ndarray | str], dict]:
    """Vectors of ``doc_ids`` (support then test) per model, each fitted on the labels of
    ``support`` only (and on the texts of ``train``, without labels, where a model learns
    without them); and how the proposed space was chosen."""
    models: dict[str, np.ndarray | str] = {}
    if ctx.has_images:
        _, fig_docs, images = ctx.features["image"]
        models["cnn_prototype"] = pool_by_doc(fig_docs, images, doc_ids)[0]
    else:
        models["cnn_prototype"] = ctx.image_reason()
    texts = [*ctx.doc_texts(support), *ctx.doc_texts(test)]
    models["tfidf_prototype"] = _tfidf(ctx, ctx.doc_texts(train), texts)
    models["transformer_prototype"] = ctx.text_vectors(doc_ids)
    s_ids = support["doc_id"].tolist()
    labels = dict(zip(s_ids, support["label"], strict=True))
    # chosen by folds over the support (no other labelled document is read)
    splits, unlabelled = dict.fromkeys(s_ids, "train"), train["doc_id"].tolist()
    learned, chosen = _learned_rows(ctx, labels, splits, doc_ids, "support_folds", unlabelled)
    return models | learned, chosen
