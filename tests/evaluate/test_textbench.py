import numpy as np
import pytest

from medsim.evaluate.textbench import (
    classification_task,
    clustering_task,
    pair_classification_task,
    retrieval_task,
    sample_pairs,
)

Y = np.array([0] * 10 + [1] * 10 + [2] * 10)


def _separable(seed=0):
    rng = np.random.default_rng(seed)
    return np.eye(3)[Y] * 5 + rng.normal(0, 0.1, (30, 3))


def test_classification_and_clustering_on_separable_embeddings():
    x = _separable()
    assert classification_task(x, Y, x, Y, seed=0) == {"accuracy": 1.0, "macro_f1": 1.0}
    assert clustering_task(x, Y, seed=0)["v_measure"] == pytest.approx(1.0)
    noise = np.random.default_rng(3).normal(size=(30, 3))
    assert clustering_task(noise, Y, seed=0)["v_measure"] < 0.5


def test_pairs_are_balanced_and_ap_ranks_same_label_pairs():
    left, right, same = sample_pairs(Y, 40, seed=0)
    assert same.sum() == 40 and (1 - same).sum() == 40
    assert (Y[left] == Y[right]).tolist() == same.astype(bool).tolist()
    assert (left != right).all()
    assert pair_classification_task(_separable(), Y, 40, seed=0)["cosine_ap"] == pytest.approx(1.0)


def test_retrieval_ndcg_by_hand():
    corpus = np.eye(3)
    assert retrieval_task(corpus, corpus)["ndcg_at_10"] == 1.0
    # query 0 finds its own abstract second (1/log2(3)), the others first
    queries = np.array([[0.1, 1, 0], [0, 1, 0.1], [0, 0, 1]])
    expected = (1 / np.log2(3) + 1 + 1) / 3
    assert retrieval_task(queries, corpus)["ndcg_at_10"] == pytest.approx(expected, abs=1e-6)
