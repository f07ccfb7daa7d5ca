"""Cross-modal retrieval: mAP over the whole gallery and recall@k, float and Hamming ranking.

Relevance always comes from keys (a caption's text, a document id), never from row positions:
several MedPix images share one caption, so an image's positives are every gallery item with
its key. Ties (frequent under Hamming distance) are broken by a seeded random order so that
no model gains from the gallery's storage order; mAP is
:func:`medsim.dml.neighbours.average_precisions` (scikit-learn's tie-aware average precision),
the one training's validation reports too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from medsim.dml.neighbours import average_precisions
from medsim.evaluate.baselines import lsh_codes, ridge_map
from medsim.evaluate.crossdomain import normalise_text
from medsim.evaluate.stats import null_row

if TYPE_CHECKING:
    from medsim.evaluate.context import EvalContext

__all__ = [
    "KS",
    "TASKS",
    "build_retrieval",
    "cosine_scores",
    "hamming_scores",
    "rank_metrics",
    "relevance",
]

KS = (1, 5, 10)


def relevance(query_keys: Sequence[str], gallery_keys: Sequence[str]) -> np.ndarray:
    """Boolean [n_query, n_gallery]: gallery item j is relevant to query i iff their keys match."""
    return np.asarray(query_keys, dtype=object)[:, None] == np.asarray(gallery_keys, dtype=object)


def cosine_scores(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Cosine similarity of every query with every gallery vector."""
    q = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    g = gallery / np.maximum(np.linalg.norm(gallery, axis=1, keepdims=True), 1e-12)
    return q @ g.T


def hamming_scores(query_codes: np.ndarray, gallery_codes: np.ndarray) -> np.ndarray:
    """Negative Hamming distance between 0/1 codes (higher = closer), for ranking."""
    q = np.asarray(query_codes, dtype=np.int32)
    g = np.asarray(gallery_codes, dtype=np.int32)
    matches = q @ g.T + (1 - q) @ (1 - g).T
    return -(q.shape[1] - matches).astype(float)


def rank_metrics(
    scores: np.ndarray, relevant: np.ndarray, ks: Sequence[int] = KS, seed: int = 0
) -> dict:
    """mAP and recall@k (share of queries with a relevant item in the top k).

    Queries without any relevant gallery item are left out (and counted in ``n_queries``
    only when they have one).
    """
    scores = np.asarray(scores, dtype=float)
    relevant = np.asarray(relevant, dtype=bool)
    keep = relevant.any(axis=1)
    scores, relevant = scores[keep], relevant[keep]
    n = len(scores)
    if n == 0:
        return {"map": None, **{f"recall_at_{k}": None for k in ks}, "n_queries": 0}
    aps = average_precisions(scores, relevant)
    tiebreak = np.random.default_rng(seed).random(scores.shape)
    order = np.lexsort((tiebreak, -scores), axis=1)
    hits = np.take_along_axis(relevant, order, axis=1)
    row = {"map": round(float(aps.mean()), 6)}
    for k in ks:
        row[f"recall_at_{k}"] = round(float(hits[:, :k].any(axis=1).mean()), 6)
    row["n_queries"] = n
    row["n_gallery"] = int(relevant.shape[1])
    return row


TASKS = ("image_to_caption", "caption_to_image", "image_to_document", "document_to_image")
RANK_METRICS = ("map", *(f"recall_at_{k}" for k in KS))


def _unique_first(keys: Sequence[str]) -> list[int]:
    seen: dict[str, int] = {}
    for i, key in enumerate(keys):
        seen.setdefault(key, i)
    return list(seen.values())


def build_retrieval(ctx: EvalContext) -> dict:
    """Image <-> caption and image <-> document retrieval on the test split's figures."""
    needed = [k for k in ("image", "caption", "text") if k not in ctx.features]
    if needed:
        reason = (
            ctx.image_reason()
            if "image" in needed
            else f"no {', '.join(needed)} embeddings to retrieve between"
        )
        return {t: {"proposed_float": null_row(reason, RANK_METRICS)} for t in TASKS}
    test, train = _figure_rows(ctx, {"test"}), _figure_rows(ctx, {"train", "val"})
    if not test or not train:
        reason = f"{len(train)} train and {len(test)} test figures with image, caption and text"
        return {t: {"proposed_float": null_row(reason, RANK_METRICS)} for t in TASKS}
    g = _galleries(ctx, test)
    # side -> (raw vectors, space modality); tasks pair a query side with a gallery side
    sides = {
        "image": (g.images, "image"),
        "caption": (g.captions, "caption"),
        "document": (g.documents, "text"),
    }
    pairs = {
        "image_to_caption": ("image", g.image_captions, "caption", g.caption_keys),
        "caption_to_image": ("caption", g.caption_keys, "image", g.image_captions),
        "image_to_document": ("image", g.image_docs, "document", g.doc_keys),
        "document_to_image": ("document", g.doc_keys, "image", g.image_docs),
    }
    mapped = _ridge_maps(ctx, train, g.images)
    # the proposed space reads its own inputs: the tuned encoder's captions and documents
    space_sides = {
        "image": (g.images, "image"),
        "caption": (ctx.space_inputs("caption", g.caption_ids), "caption"),
        "document": (ctx.space_inputs("text", g.doc_keys), "text"),
    }
    table: dict = {}
    for task, (q_side, q_keys, g_side, g_keys) in pairs.items():
        relevant = relevance(q_keys, g_keys)
        text_side = g_side if q_side == "image" else q_side
        img_m, txt = mapped[text_side], sides[text_side][0]
        ridge_pair = (img_m, txt) if q_side == "image" else (txt, img_m)
        score_fns = _proposed_scores(ctx.space, space_sides, q_side, g_side)
        score_fns |= _baseline_scores(ridge_pair, relevant, ctx.seed)
        table[task] = {
            name: (
                null_row(fn, RANK_METRICS)
                if isinstance(fn, str)
                else rank_metrics(fn(), relevant, seed=ctx.seed)
            )
            for name, fn in score_fns.items()
        }
    table["meta"] = {
        "n_test_images": len(test),
        "n_test_captions": len(g.caption_keys),
        "n_test_documents": len(g.doc_keys),
        "n_train_images": len(train),
    }
    return table


@dataclass
class _Galleries:
    """The test figures' query and gallery sides, with the keys that decide relevance."""

    images: np.ndarray  # one row per test image
    image_captions: list[str]  # each image's normalised caption text
    image_docs: list[str]  # each image's document
    caption_ids: list[str]  # one figure id per distinct caption text
    caption_keys: list[str]
    captions: np.ndarray  # frozen caption vectors, one per distinct caption
    doc_keys: list[str]  # test documents with a text embedding
    documents: np.ndarray


def _figure_rows(ctx: EvalContext, side: set[str]) -> list[int]:
    """Image rows of documents in ``side`` splits that have a caption and a text vector."""
    split_of = dict(zip(ctx.articles["doc_id"], ctx.articles["split"], strict=True))
    caption_of = set(ctx.figures["figure_id"])
    img_ids, img_docs, _ = ctx.features["image"]
    cap_row = set(ctx.features["caption"][0])
    return [
        i
        for i, (fid, doc) in enumerate(zip(img_ids, img_docs, strict=True))
        if split_of.get(doc) in side
        and fid in cap_row
        and fid in caption_of
        and doc in ctx.text_index
    ]


def _galleries(ctx: EvalContext, test: list[int]) -> _Galleries:
    split_of = dict(zip(ctx.articles["doc_id"], ctx.articles["split"], strict=True))
    caption_of = dict(zip(ctx.figures["figure_id"], ctx.figures["caption"], strict=True))
    img_ids, img_docs, images = ctx.features["image"]
    cap_row = {fid: i for i, fid in enumerate(ctx.features["caption"][0])}
    keys = [normalise_text(caption_of[img_ids[i]]) for i in test]
    cap_first = _unique_first(keys)
    doc_keys = sorted({d for d, s in split_of.items() if s == "test" and d in ctx.text_index})
    return _Galleries(
        images=images[test],
        image_captions=keys,
        image_docs=[img_docs[i] for i in test],
        caption_ids=[img_ids[test[i]] for i in cap_first],
        caption_keys=[keys[i] for i in cap_first],
        captions=ctx.features["caption"][2][[cap_row[img_ids[test[i]]] for i in cap_first]],
        doc_keys=doc_keys,
        documents=ctx.text_vectors(doc_keys),
    )


def _ridge_maps(ctx: EvalContext, train: list[int], queries: np.ndarray) -> dict:
    """Baseline: ridge maps from image features into each frozen text embedding space."""
    img_ids, img_docs, images = ctx.features["image"]
    cap_row = {fid: i for i, fid in enumerate(ctx.features["caption"][0])}
    tr_caps = ctx.features["caption"][2][[cap_row[img_ids[i]] for i in train]]
    tr_docs = ctx.text_vectors([img_docs[i] for i in train])
    return {
        "caption": ridge_map(images[train], tr_caps, queries),
        "document": ridge_map(images[train], tr_docs, queries),
    }


ScoreFn = Callable[[], np.ndarray] | str  # a score matrix, or why the row is null


def _proposed_scores(space, sides: dict, q_side: str, g_side: str) -> dict[str, ScoreFn]:
    """The proposed space's float (cosine) and hash-code (Hamming) rows of one task."""
    missing = [s for s in (q_side, g_side) if sides[s][1] not in space.modalities]
    fns: dict[str, ScoreFn] = {}
    if missing:
        fns["proposed_float"] = f"the trained space has no head for {missing}"
    else:
        fns["proposed_float"] = lambda: cosine_scores(
            space.project(sides[q_side][1], sides[q_side][0]),
            space.project(sides[g_side][1], sides[g_side][0]),
        )
    for bits in (32, 64, 128):
        name = f"proposed_{bits}bit"
        if missing or bits not in space.bits:
            fns[name] = f"the trained space has no {bits}-bit hashing head"
        else:
            fns[name] = lambda b=bits: hamming_scores(
                space.hash(sides[q_side][1], sides[q_side][0], b),
                space.hash(sides[g_side][1], sides[g_side][0], b),
            )
    return fns


def _baseline_scores(pair: tuple, relevant: np.ndarray, seed: int) -> dict[str, ScoreFn]:
    """Ridge-map rows (cosine, and random-hyperplane codes) and the random ranking."""
    fns: dict[str, ScoreFn] = {"ridge_float": lambda: cosine_scores(*pair)}
    for bits in (32, 64, 128):
        fns[f"ridge_{bits}bit"] = lambda b=bits: hamming_scores(
            lsh_codes(pair[0], b, seed), lsh_codes(pair[1], b, seed)
        )
    fns["random"] = lambda: np.random.default_rng(seed).random(relevant.shape)
    return fns
