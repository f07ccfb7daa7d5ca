import numpy as np
import pytest

from medsim.evaluate.retrieval import cosine_scores, hamming_scores, rank_metrics, relevance


def test_map_and_recall_on_a_3x3_ranking_by_hand():
    scores = np.array(
        [
            [0.9, 0.5, 0.1],  # relevant: item 1 -> ranked 2nd: AP 1/2
            [0.2, 0.8, 0.7],  # relevant: items 1, 2 -> ranked 1st, 2nd: AP 1
            [0.3, 0.2, 0.1],  # relevant: item 2 -> ranked 3rd: AP 1/3
        ]
    )
    rel = np.array([[0, 1, 0], [0, 1, 1], [0, 0, 1]], dtype=bool)
    row = rank_metrics(scores, rel, ks=(1, 2))
    assert row["map"] == pytest.approx((1 / 2 + 1 + 1 / 3) / 3, abs=1e-6)
    assert row["recall_at_1"] == pytest.approx(1 / 3, abs=1e-6)
    assert row["recall_at_2"] == pytest.approx(2 / 3, abs=1e-6)
    assert row["n_queries"] == 3


def test_queries_without_positives_are_left_out():
    row = rank_metrics(np.array([[0.1, 0.2], [0.3, 0.4]]), np.array([[0, 1], [0, 0]], bool))
    assert row["n_queries"] == 1
    assert row["map"] == 1.0


def test_hamming_scores_rank_by_distance():
    q = np.array([[1, 0, 1, 1]], dtype=np.uint8)
    g = np.array([[1, 0, 1, 1], [0, 0, 1, 1], [0, 1, 0, 0]], dtype=np.uint8)
    np.testing.assert_array_equal(hamming_scores(q, g), [[0, -1, -4]])


def test_hamming_ties_are_not_broken_by_gallery_order():
    # every gallery item ties; AP is tie-aware and recall@1 is a seeded draw, not item 0
    scores = hamming_scores(np.zeros((200, 8), np.uint8), np.zeros((2, 8), np.uint8))
    rel = np.tile([True, False], (200, 1))
    row = rank_metrics(scores, rel, ks=(1,), seed=0)
    assert row["map"] == pytest.approx(0.5)
    assert 0.35 < row["recall_at_1"] < 0.65


def test_relevance_by_shared_caption_not_by_row_position():
    rel = relevance(["a", "b", "a"], ["a", "b"])
    np.testing.assert_array_equal(rel, [[True, False], [False, True], [True, False]])


def test_cosine_scores():
    np.testing.assert_allclose(
        cosine_scores(np.array([[2.0, 0]]), np.array([[1, 1], [0, 3]])), [[2**-0.5, 0]]
    )
