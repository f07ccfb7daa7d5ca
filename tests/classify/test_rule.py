"""The rule on hand-placed vectors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medsim.classify.rule import Reference, class_means, nearest_rows

S = 1 / math.sqrt(2)
# class a near e1, class b near e2
VECTORS = np.array([[1, 0, 0], [S, 0, S], [0, 1, 0], [0, S, S]], dtype=np.float32)
Y = np.array([0, 0, 1, 1])


def reference(k: int = 3) -> Reference:
    return Reference(
        classes=["a", "b"],
        doc_ids=["d0", "d1", "d2", "d3"],
        vectors=VECTORS,
        y=Y,
        k=k,
        titles=["t0", "t1", "t2", "t3"],
        pmids=["10", None, "12", None],
    )


def test_class_means_are_unit_means():
    means = class_means(VECTORS, Y, 3)
    a = np.array([1 + S, 0, S]) / np.linalg.norm([1 + S, 0, S])
    np.testing.assert_allclose(means[0], a, atol=1e-6)
    np.testing.assert_allclose(means[2], 0)  # a class without documents


def test_nearest_rows_best_first():
    rows, sims = nearest_rows(VECTORS, np.array([[1.0, 0.1, 0.0]]), 3)
    assert rows.tolist() == [[0, 1, 2]]
    assert sims[0, 0] > sims[0, 1] > sims[0, 2]


def test_votes_are_distance_weighted_knn():
    # query e1: neighbours d0 (cos 1 -> distance 0: sklearn gives it all the weight)
    votes = reference().votes(np.array([[1.0, 0.0, 0.0]]))
    np.testing.assert_allclose(votes.proba, [[1.0, 0.0]])
    # query between: d1 at cosine S, d3 at cosine S/... weights 1/distance
    q = np.array([[0.0, 0.0, 1.0]])
    votes = reference(k=2).votes(q)
    assert [n.doc_id for n in votes.neighbours[0]] == ["d1", "d3"]
    np.testing.assert_allclose(votes.proba, [[0.5, 0.5]])
    assert votes.neighbours[0][0].label == "a"
    assert votes.neighbours[0][0].similarity == pytest.approx(S, abs=1e-6)


def test_exclude_leaves_the_document_out_of_vote_and_evidence():
    votes = reference(k=1).votes(VECTORS[:1], exclude=["d0"])
    assert [n.doc_id for n in votes.neighbours[0]] == ["d1"]
    np.testing.assert_allclose(votes.proba, [[1.0, 0.0]])


def test_added_classes_are_prototypes_of_their_examples():
    ref = reference().with_classes({"c": np.array([[0, 0, 2.0], [0, 0, 1.0]])})
    assert ref.classes == ["a", "b", "c"]
    assert ref.n_trained == 2
    votes = ref.votes(np.array([[0.0, 0.0, 1.0]]))
    assert votes.prototype_sims[0].argmax() == 2
    assert votes.proba[0, 2] == 0  # the kNN vote knows only trained classes
    with pytest.raises(ValueError, match="already known"):
        ref.with_classes({"a": np.ones((1, 3))})
