"""Search across collections on the hand-made index (see conftest.small_store for its geometry)."""

from __future__ import annotations

import numpy as np
import pytest

from medsim.errors import MedsimError
from medsim.search.query import (
    ItemRef,
    collections_for,
    find_item,
    find_pmid,
    search_codes,
    search_vector,
)

E1 = np.array([1, 0, 0], dtype=np.float32)


def _ids(hits):
    return [(h.type, h.id) for h in hits]


def test_float_search_merges_kinds_by_score(small_store):
    hits = search_vector(small_store, E1, k=4)
    assert _ids(hits) == [
        ("document", "d1"),
        ("figure", "f1"),
        ("document", "d2"),
        ("figure", "f2"),
    ]
    assert [h.score for h in hits] == pytest.approx([1, 2**-0.5, 0, -1], abs=1e-6)
    assert [h.rank for h in hits] == [1, 2, 3, 4]
    assert hits[0].pmid == "11" and hits[0].title == "T1" and hits[0].hamming is None
    assert hits[1].caption == "c1" and hits[1].doc_id == "d1"


def test_float_search_excludes_the_query_item_and_filters_kinds(small_store):
    hits = search_vector(small_store, E1, k=2, exclude=[ItemRef("documents", 0)])
    assert _ids(hits) == [("figure", "f1"), ("document", "d2")]
    hits = search_vector(small_store, E1, k=5, collections=["figures"])
    assert _ids(hits) == [("figure", "f1"), ("figure", "f2")]


def test_binary_search_ranks_by_hamming(small_store):
    hits = search_codes(small_store, np.zeros(8, dtype=np.uint8), k=4)
    assert _ids(hits) == [
        ("document", "d1"),
        ("document", "d2"),
        ("figure", "f1"),
        ("figure", "f2"),
    ]
    assert [h.hamming for h in hits] == [0, 1, 3, 8]
    assert [h.score for h in hits] == [1.0, 0.875, 0.625, 0.0]


def test_kinds_for_user_types(small_store):
    assert collections_for(small_store, None) == ["documents", "figures"]
    assert collections_for(small_store, ["Figure", "caption"]) == ["figures"]
    with pytest.raises(MedsimError, match="unknown modality 'video'"):
        collections_for(small_store, ["video"])
    with pytest.raises(MedsimError, match="holds no captions"):
        collections_for(small_store, ["caption"])


def test_find_pmid_by_pmid_or_doc_id(small_store):
    assert find_pmid(small_store, "11") == ItemRef("documents", 0)
    assert find_pmid(small_store, " d2 ") == ItemRef("documents", 1)
    for bad in ("f1", "", "99"):
        with pytest.raises(MedsimError, match="no document"):
            find_pmid(small_store, bad)


def test_find_item_with_and_without_type(small_store):
    assert find_item(small_store, "f2") == ItemRef("figures", 1)
    assert find_item(small_store, "figure:f1") == ItemRef("figures", 0)
    assert find_item(small_store, "documents:11") == ItemRef("documents", 0)
    with pytest.raises(MedsimError, match="no item 'document:f1'"):
        find_item(small_store, "document:f1")
    with pytest.raises(MedsimError, match="empty"):
        find_item(small_store, "  ")
