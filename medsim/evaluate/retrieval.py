"""Cross-modal retrieval: mAP over the whole gallery and recall@k, float and Hamming ranking.

Relevance always comes from keys (a caption's text, a document id), never from row positions:
several MedPix images share one caption, so an image's positives are every gallery item with
its key. Ties (frequent under Hamming distance) are broken by a seeded random order so that
no model gains from the gallery's storage order; mAP uses scikit-learn's tie-aware
``average_precision_score``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from sklearn.metrics import average_precision_score

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
    aps = np.array([average_precision_score(relevant[i], scores[i]) for i in range(n)])
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
    split_of = dict(zip(ctx.articles["doc_id"], ctx.articles["split"], strict=True))
    caption_of = dict(zip(ctx.figures["figure_id"], ctx.figures["caption"], strict=True))
    img_ids, img_docs, images = ctx.features["image"]
    cap_row = {fid: i for i, fid in enumerate(ctx.features["caption"][0])}
    captions = ctx.features["caption"][2]

    def rows(side: set[str]) -> list[int]:
        return [
            i
            for i, (fid, doc) in enumerate(zip(img_ids, img_docs, strict=True))
            if split_of.get(doc) in side
            and fid in cap_row
            and fid in caption_of
            and doc in ctx.text_index
        ]

    test, train = rows({"test"}), rows({"train", "val"})
    if not test or not train:
        reason = f"{len(train)} train and {len(test)} test figures with image, caption and text"
        return {t: {"proposed_float": null_row(reason, RANK_METRICS)} for t in TASKS}
    q_img = images[test]
    keys = [normalise_text(caption_of[img_ids[i]]) for i in test]
    cap_first = _unique_first(keys)
    cap_keys = [keys[i] for i in cap_first]
    cap_vecs = captions[[cap_row[img_ids[test[i]]] for i in cap_first]]
    fig_docs = [img_docs[i] for i in test]
    doc_keys = sorted({d for d, s in split_of.items() if s == "test" and d in ctx.text_index})
    doc_vecs = ctx.text_vectors(doc_keys)

    # side -> (raw vectors, space kind, keys); tasks pair a query side with a gallery side
    sides = {
        "image": (q_img, "image"),
        "caption": (cap_vecs, "caption"),
        "document": (doc_vecs, "text"),
    }
    pairs = {
        "image_to_caption": ("image", keys, "caption", cap_keys),
        "caption_to_image": ("caption", cap_keys, "image", keys),
        "image_to_document": ("image", fig_docs, "document", doc_keys),
        "document_to_image": ("document", doc_keys, "image", fig_docs),
    }
    # baseline: ridge maps from image features into each text embedding space
    tr_caps = captions[[cap_row[img_ids[i]] for i in train]]
    tr_docs = ctx.text_vectors([img_docs[i] for i in train])
    mapped = {
        "caption": ridge_map(images[train], tr_caps, q_img),
        "document": ridge_map(images[train], tr_docs, q_img),
    }
    space, seed = ctx.space, ctx.seed
    # the proposed space reads its own inputs: the tuned encoder's captions and documents
    cap_ids = [img_ids[test[i]] for i in cap_first]
    space_sides = {
        "image": (q_img, "image"),
        "caption": (ctx.space_inputs("caption", cap_ids), "caption"),
        "document": (ctx.space_inputs("text", doc_keys), "text"),
    }
    projected = {
        side: (space.project(kind, x) if kind in space.kinds else None)
        for side, (x, kind) in space_sides.items()
    }
    table: dict = {}
    for task, (q_side, q_keys, g_side, g_keys) in pairs.items():
        relevant = relevance(q_keys, g_keys)
        text_side = g_side if q_side == "image" else q_side
        block: dict = {}
        score_fns: dict[str, Callable[[], np.ndarray] | str] = {}
        missing = [s for s in (q_side, g_side) if projected[s] is None]
        if missing:
            score_fns["proposed_float"] = f"the trained space has no head for {missing}"
        else:
            score_fns["proposed_float"] = lambda q=q_side, g=g_side: cosine_scores(
                projected[q], projected[g]
            )
        for bits in (32, 64, 128):
            name = f"proposed_{bits}bit"
            if missing or bits not in space.bits:
                score_fns[name] = f"the trained space has no {bits}-bit hashing head"
            else:
                score_fns[name] = lambda q=q_side, g=g_side, b=bits: hamming_scores(
                    space.hash(space_sides[q][1], space_sides[q][0], b),
                    space.hash(space_sides[g][1], space_sides[g][0], b),
                )
        img_m, txt = mapped[text_side], sides[text_side][0]
        pair = (img_m, txt) if q_side == "image" else (txt, img_m)
        score_fns["ridge_float"] = lambda p=pair: cosine_scores(*p)
        for bits in (32, 64, 128):
            score_fns[f"ridge_{bits}bit"] = lambda p=pair, b=bits: hamming_scores(
                lsh_codes(p[0], b, seed), lsh_codes(p[1], b, seed)
            )
        score_fns["random"] = lambda r=relevant: np.random.default_rng(seed).random(r.shape)
        for name, fn in score_fns.items():
            block[name] = (
                null_row(fn, RANK_METRICS)
                if isinstance(fn, str)
                else rank_metrics(fn(), relevant, seed=seed)
            )
        table[task] = block
    table["meta"] = {
        "n_test_images": len(test),
        "n_test_captions": len(cap_keys),
        "n_test_documents": len(doc_keys),
        "n_train_images": len(train),
    }
    return table
