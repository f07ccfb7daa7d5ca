import numpy as np
import pytest

from medsim.dml.neighbours import (
    RULES,
    average_precisions,
    knn_proba,
    mean_average_precision,
    prototype_proba,
    rule_proba,
)


def test_mean_average_precision_hand_values():
    gallery = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    gallery_keys = np.array(["a", "b", "a"])
    query = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    relevant = np.array(["a", "b", "c"])[:, None] == gallery_keys[None, :]
    # q0 (a): a, b, a -> (1/1 + 2/3) / 2; q1 (b): a, b, a -> 1/2; q2 (c): no relevant, left out
    got = mean_average_precision(query @ gallery.T, relevant)
    assert got == pytest.approx(((1 + 2 / 3) / 2 + 0.5) / 2)
    assert mean_average_precision(query[2:] @ gallery.T, relevant[2:]) is None


def test_tied_scores_do_not_depend_on_gallery_order():
    """The trap: training's own mAP broke ties by gallery order (1.0 or 0.5 for the same
    ranking), evaluate's did not; both now read this one."""
    scores = np.array([[0.7, 0.7, 0.1]])
    first = average_precisions(scores, np.array([[True, False, False]]))
    second = average_precisions(scores, np.array([[False, True, False]]))
    assert first.tolist() == second.tolist() == [0.5]


def test_validation_and_evaluate_report_the_same_map():
    from medsim.evaluate.retrieval import rank_metrics

    rng = np.random.default_rng(0)
    scores = np.round(rng.random((30, 12)), 1)  # coarse: many ties
    relevant = rng.random((30, 12)) < 0.3
    assert rank_metrics(scores, relevant)["map"] == pytest.approx(
        mean_average_precision(scores, relevant), abs=1e-6
    )


def test_knn_proba_votes_by_distance_over_all_classes():
    train = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    proba = knn_proba(train, np.array([0, 0, 2]), np.array([[1.0, 0.05]]), n_classes=3, k=1)
    assert proba.shape == (1, 3) and proba[0, 0] == 1.0 and proba[0, 1] == 0.0


def test_prototype_proba_picks_the_nearest_class_mean():
    train = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    y = np.array([0, 0, 2, 2])
    proba = prototype_proba(train, y, np.array([[1, 0.2], [0.2, 1]]), 3, temperature=0.1)
    assert proba.argmax(axis=1).tolist() == [0, 2]
    assert proba[:, 1].max() == 0  # a class without training documents gets nothing
    np.testing.assert_allclose(proba.sum(axis=1), 1)


def test_rules_by_name_agree_with_their_functions():
    # two tight classes and one query near each; the kNN vote and the class mean agree here
    train = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    y = np.array([0, 0, 1, 1])
    queries = np.array([[1, 0.2], [0.2, 1]], dtype=np.float32)
    for rule in RULES:
        proba = rule_proba(rule, train, y, queries, 2, k=3, temperature=0.1)
        assert proba.argmax(axis=1).tolist() == [0, 1], rule
    np.testing.assert_allclose(
        rule_proba("prototype", train, y, queries, 2, k=3, temperature=0.1),
        prototype_proba(train, y, queries, 2, temperature=0.1),
    )
    with pytest.raises(ValueError, match="unknown classification rule 'svm'"):
        rule_proba("svm", train, y, queries, 2, k=3, temperature=0.1)


def test_a_noisy_label_is_outvoted_by_the_class_mean_not_by_its_neighbours():
    # class 0: three points along x, one mislabelled point sits right beside the query; with
    # k=1 the neighbour's wrong label wins, the class means still put the query in class 0
    train = np.array([[1, 0], [0.95, 0.05], [0.9, 0.1], [0.6, 0.4], [0, 1]], dtype=np.float32)
    y = np.array([0, 0, 0, 1, 1])
    query = np.array([[0.62, 0.38]], dtype=np.float32)
    assert rule_proba("knn", train, y, query, 2, k=1, temperature=0.1).argmax() == 1
    assert rule_proba("prototype", train, y, query, 2, k=1, temperature=0.1).argmax() == 0
