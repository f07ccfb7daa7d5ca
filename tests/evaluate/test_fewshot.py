import numpy as np
import pytest

from medsim.evaluate.fewshot import (
    choose_holdout,
    episode_accuracy,
    fewshot_table,
    sample_episodes,
)

LABELS = np.array(["a"] * 10 + ["b"] * 8 + ["c"] * 12 + ["d"] * 3)


def test_episodes_have_the_right_class_counts_and_no_overlap():
    ep = sample_episodes(LABELS, ["a", "b", "c"], ways=2, shots=3, queries=4, n_episodes=50, seed=0)
    assert ep.support.shape == (50, 2, 3)
    assert ep.query.shape == (50, 2, 4)
    for e in range(50):
        for w in range(2):
            classes = set(LABELS[ep.support[e, w]]) | set(LABELS[ep.query[e, w]])
            assert len(classes) == 1  # one class per way, support and query alike
        assert LABELS[ep.support[e, 0, 0]] != LABELS[ep.support[e, 1, 0]]
        used = np.concatenate([ep.support[e].ravel(), ep.query[e].ravel()])
        assert len(set(used)) == len(used)
    assert not np.isin(np.flatnonzero(LABELS == "d"), ep.support).any()


def test_episodes_refuse_classes_too_small():
    with pytest.raises(ValueError, match="too small"):
        sample_episodes(LABELS, ["a", "d"], ways=2, shots=2, queries=2, n_episodes=1, seed=0)


def test_choose_holdout_draws_only_large_enough_classes():
    held = choose_holdout(LABELS, min_count=8, n_holdout=2, seed=0)
    assert len(held) == 2 and set(held) <= {"a", "b", "c"}
    assert choose_holdout(LABELS, min_count=11, n_holdout=2, seed=0) == []


def test_prototype_accuracy_on_separable_and_on_swapped_vectors():
    vectors = np.eye(4)[[0] * 10 + [1] * 8 + [2] * 12 + [3] * 3]
    ep = sample_episodes(LABELS, ["a", "b", "c"], ways=3, shots=2, queries=3, n_episodes=20, seed=1)
    np.testing.assert_array_equal(episode_accuracy(vectors, ep), np.ones(20))
    # identical vectors for every document: every query ties, argmax picks way 0 -> 1/3
    np.testing.assert_allclose(episode_accuracy(np.ones((33, 4)), ep), np.full(20, 1 / 3))


def test_table_shape_and_null_rows():
    ep = sample_episodes(LABELS, ["a", "b"], ways=2, shots=2, queries=2, n_episodes=5, seed=0)
    table = fewshot_table(
        {"m": np.eye(4)[[0] * 10 + [1] * 8 + [2] * 15], "img": "no images"}, {2: ep}
    )
    assert table["2_shot"]["m"]["accuracy"] == 1.0
    assert table["2_shot"]["m"]["accuracy_ci_low"] == 1.0
    assert table["2_shot"]["img"] == {"accuracy": None, "reason": "no images"}
