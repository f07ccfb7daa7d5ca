"""Why two indexed items are close: shared neighbours, label prototypes, weighing sentences."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from medsim.search.index import RESULT_TYPES, IndexStore
from medsim.search.query import ItemRef, QueryEncoder, search_vector

__all__ = ["Explanation", "explain", "explain_query", "split_sentences"]

# head that embeds the text parts of each collection's items
SENTENCE_HEADS = {
    "documents": "text",
    "figures": "caption",
    "captions": "caption",
    "tables": "table",
}
# a sentence end, a semicolon, or a figure panel marker such as "(B)" / "b)" opens a new part
_BOUNDARY = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])|;\s+|\s+(?=\(?[A-Ha-h]\)\s)|\n+")
MAX_PARTS = 64


def split_sentences(text: str | None, min_words: int = 2) -> list[str]:
    """Sentences and caption parts of ``text`` (at most 64, each of ``min_words`` or more)."""
    if not text:
        return []
    parts = (p.strip() for p in _BOUNDARY.split(text))
    return [p for p in parts if len(p.split()) >= min_words][:MAX_PARTS]


@dataclass
class Explanation:
    """The evidence that two items are close, as printed and as written by ``--json``."""

    a: dict[str, Any]
    b: dict[str, Any]
    cosine: float
    hamming: dict[int, int]
    shared_neighbours: list[dict[str, Any]] = field(default_factory=list)
    prototypes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    sentences: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["hamming"] = {str(k): v for k, v in self.hamming.items()}
        return data


def _record(store: IndexStore, ref: ItemRef) -> dict[str, Any]:
    (record,) = store.rows(
        ref.collection, [ref.row], ("id", "doc_id", "pmid", "title", "caption", "text")
    )
    return {"type": RESULT_TYPES[ref.collection], **record}


def shared_neighbours(
    store: IndexStore, a: ItemRef, b: ItemRef, n: int = 5, pool: int = 50
) -> list[dict[str, Any]]:
    """Items among both ``a``'s and ``b``'s ``pool`` nearest, ranked by the lower of their two
    similarities (an item close to both, not just very close to one)."""
    va, vb = store.vector(a.collection, a.row), store.vector(b.collection, b.row)
    return shared_neighbours_of(store, va, vb, [a, b], n, pool)


def shared_neighbours_of(
    store: IndexStore,
    va: np.ndarray,
    vb: np.ndarray,
    exclude: list[ItemRef],
    n: int = 5,
    pool: int = 50,
) -> list[dict[str, Any]]:
    """:func:`shared_neighbours` of two vectors (one may be a new query's), ``exclude`` left out."""
    near_a = {(h.type, h.id): h for h in search_vector(store, va, pool, exclude=exclude)}
    near_b = {(h.type, h.id): h for h in search_vector(store, vb, pool, exclude=exclude)}
    common = [
        {
            "type": near_a[key].type,
            "id": near_a[key].id,
            "doc_id": near_a[key].doc_id,
            "title": near_a[key].title,
            "score_a": near_a[key].score,
            "score_b": near_b[key].score,
        }
        for key in near_a.keys() & near_b.keys()
    ]
    common.sort(key=lambda r: (-min(r["score_a"], r["score_b"]), r["type"], r["id"]))
    return common[:n]


def nearest_prototypes(store: IndexStore, vector: np.ndarray, n: int = 3) -> list[dict[str, Any]]:
    """The ``n`` labels whose training-document prototype is nearest ``vector``."""
    labels, matrix = store.prototypes
    if not labels:
        return []
    scores = matrix @ np.asarray(vector, dtype=np.float32).reshape(-1)
    order = np.argsort(-scores, kind="stable")[:n]
    return [{"label": labels[i], "score": round(float(scores[i]), 6)} for i in order]


def weighing_sentences(
    encoder: QueryEncoder, collection: str, text: str | None, target: np.ndarray, n: int = 3
) -> list[dict[str, Any]]:
    """The ``n`` sentences (or caption parts) of ``text`` whose projection lies nearest
    ``target``: each part is embedded alone, projected by its collection's head, and scored."""
    sentences = split_sentences(text)
    if not sentences:
        return []
    head = SENTENCE_HEADS[collection]
    if head not in encoder.space.heads:
        head = "text"
    scores = encoder.text(sentences, head=head) @ np.asarray(target, dtype=np.float32).reshape(-1)
    order = np.argsort(-scores, kind="stable")[:n]
    return [{"sentence": sentences[i], "score": round(float(scores[i]), 6)} for i in order]


def explain(
    store: IndexStore,
    a: ItemRef,
    b: ItemRef,
    encoder: QueryEncoder | None = None,
    neighbours: int = 5,
    top: int = 3,
) -> Explanation:
    """Why ``a`` and ``b`` are close (or not). ``encoder`` (which loads the text model) adds
    the sentences of each that weigh most toward the other; without it that part is empty."""
    va, vb = store.vector(a.collection, a.row), store.vector(b.collection, b.row)
    record_a, record_b = _record(store, a), _record(store, b)
    hamming = {
        bits: int(
            np.count_nonzero(
                store.code(a.collection, a.row, bits) != store.code(b.collection, b.row, bits)
            )
        )
        for bits in store.bits
    }
    sentences = {}
    if encoder is not None:
        sentences = {
            "a_toward_b": weighing_sentences(encoder, a.collection, record_a["text"], vb, top),
            "b_toward_a": weighing_sentences(encoder, b.collection, record_b["text"], va, top),
        }
    for record in (record_a, record_b):
        record.pop("text")
    return Explanation(
        a=record_a,
        b=record_b,
        cosine=round(float(va.reshape(-1) @ vb.reshape(-1)), 6),
        hamming=hamming,
        shared_neighbours=shared_neighbours(store, a, b, neighbours),
        prototypes={
            "a": nearest_prototypes(store, va, top),
            "b": nearest_prototypes(store, vb, top),
        },
        sentences=sentences,
    )


def explain_query(
    store: IndexStore,
    query: np.ndarray,
    b: ItemRef,
    encoder: QueryEncoder | None = None,
    text: str | None = None,
    neighbours: int = 5,
    top: int = 3,
) -> Explanation:
    """Why a new query (its shared-space vector ``query``; ``text`` when it was a text) is
    close to the stored item ``b``: :func:`explain` with the query as side ``a``. The query
    has no hash code stored, so ``hamming`` is computed from ``encoder``'s codes when given."""
    query = np.asarray(query, dtype=np.float32).reshape(1, -1)
    vb = store.vector(b.collection, b.row)
    record_b = _record(store, b)
    hamming = {}
    sentences = {}
    if encoder is not None:
        hamming = {
            bits: int(
                np.count_nonzero(
                    encoder.codes(query, bits) != store.code(b.collection, b.row, bits)
                )
            )
            for bits in store.bits
        }
        sentences = {
            "a_toward_b": weighing_sentences(encoder, "documents", text, vb, top),
            "b_toward_a": weighing_sentences(encoder, b.collection, record_b["text"], query, top),
        }
    record_b.pop("text")
    record_a = {"type": "query", "id": "query", "doc_id": None, "pmid": None, "title": text}
    return Explanation(
        a={**record_a, "caption": None},
        b=record_b,
        cosine=round(float(query.reshape(-1) @ vb.reshape(-1)), 6),
        hamming=hamming,
        shared_neighbours=shared_neighbours_of(store, query, vb, [b], neighbours),
        prototypes={
            "a": nearest_prototypes(store, query, top),
            "b": nearest_prototypes(store, vb, top),
        },
        sentences=sentences,
    )
