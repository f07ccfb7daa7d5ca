import numpy as np
import pytest
from sklearn.metrics import f1_score

from medsim.evaluate.classification import (
    classification_metrics,
    classification_table,
    macro_f1_batched,
    macro_ovr_auc,
    macro_ovr_auc_batched,
    versus_best_other,
)
from medsim.evaluate.stats import bootstrap_indices


def test_metrics_by_hand():
    y = np.array([0, 0, 1, 2])
    proba = np.array(
        [
            [0.8, 0.1, 0.1],  # right
            [0.2, 0.7, 0.1],  # wrong: predicts 1
            [0.1, 0.8, 0.1],  # right
            [0.1, 0.2, 0.7],  # right
        ]
    )
    row = classification_metrics(y, proba, n_boot=0)
    assert row["accuracy"] == 0.75
    # F1: class 0 = 2*1/(2*1+0+1) = 2/3, class 1 = 2/(2+1) = 2/3, class 2 = 1 -> 7/9
    assert row["macro_f1"] == pytest.approx(7 / 9, abs=1e-6)
    # AUC class 0: positives 0.8, 0.2 vs negatives 0.1, 0.1 -> 1; class 1: 0.8 vs 0.1,0.7,0.2
    # -> 1; class 2: 0.7 vs 0.1,0.1,0.1 -> 1
    assert row["auc"] == 1.0


def test_auc_skips_classes_absent_from_the_test_set():
    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.9, 0.1, 0], [0.4, 0.6, 0], [0.3, 0.7, 0], [0.6, 0.4, 0]])
    # class 0: pos 0.9,0.4 vs neg 0.3,0.6 -> 3/4; class 1: pos 0.7,0.4 vs neg 0.1,0.6 -> 3/4
    assert macro_ovr_auc(y, proba) == pytest.approx(0.75)


def test_batched_metrics_equal_scikit_learn_on_every_resample():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 60)
    proba = rng.random((60, 4)).round(1)  # rounding makes ties
    pred = proba.argmax(axis=1)
    idx = bootstrap_indices(60, 15, seed=2)
    f1 = macro_f1_batched(y, pred, idx, 4)
    auc = macro_ovr_auc_batched(y, proba, idx)
    for b, rows in enumerate(idx):
        assert f1[b] == pytest.approx(f1_score(y[rows], pred[rows], average="macro"))
        assert auc[b] == pytest.approx(macro_ovr_auc(y[rows], proba[rows]))


def _rank_sum_auc(y: np.ndarray, proba: np.ndarray) -> float:
    """The Mann-Whitney rank-sum form (average ranks for ties), the oracle of the counting form."""
    from scipy.stats import rankdata

    ranks = rankdata(proba, axis=0)
    aucs = []
    for c in range(proba.shape[1]):
        positive = y == c
        n_pos, n_neg = int(positive.sum()), len(y) - int(positive.sum())
        if n_pos and n_neg:
            aucs.append((ranks[positive, c].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    return np.mean(aucs) if aucs else np.nan


def test_batched_auc_is_bit_identical_to_the_rank_sum_form():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 5, 300)
    y[y == 4] = 3  # class 4 never occurs: skipped, as in macro_ovr_auc
    proba = rng.random((300, 5)).round(2)  # many ties, duplicates within a resample
    idx = bootstrap_indices(300, 40, seed=4)
    auc = macro_ovr_auc_batched(y, proba, idx)
    expected = [_rank_sum_auc(y[rows], proba[rows]) for rows in idx]
    assert auc.tolist() == expected


def test_intervals_bracket_the_point_estimates():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 200)
    proba = rng.random((200, 3)) + np.eye(3)[y] * 0.5
    row = classification_metrics(y, proba, n_boot=200, seed=0)
    for name in ("accuracy", "macro_f1", "auc"):
        assert row[f"{name}_ci_low"] <= row[name] <= row[f"{name}_ci_high"]


def test_table_has_null_rows_with_reasons():
    y = np.array([0, 1])
    table = classification_table({"a": np.eye(2), "b": "no images"}, y, n_boot=10, seed=0)
    assert table["a"]["accuracy"] == 1.0
    assert table["b"] == {"accuracy": None, "macro_f1": None, "auc": None, "reason": "no images"}


def test_the_proposed_row_is_compared_with_the_best_other_row():
    y = np.array([0, 1, 0, 1])
    right, one_wrong, two_wrong = np.eye(2)[y], np.eye(2)[[1, 1, 0, 1]], np.eye(2)[[1, 0, 0, 1]]
    proba = {
        "text_softmax": two_wrong,
        "tfidf_softmax": one_wrong,
        "proposed_knn": right,  # the proposed space's own rule: not another row
        "proposed": one_wrong,
    }
    table = classification_table(proba, y, n_boot=0, seed=0)
    table["cnn_softmax"] = {"accuracy": None, "reason": "no images"}
    table["meta"] = {"n_test": 4}
    assert versus_best_other(table, proba, y, n_boot=0, seed=0) == {
        "against": "tfidf_softmax",
        "accuracy_difference": 0.0,
    }
    # with a bootstrap: the same resamples as the rows' own intervals, drawn for both rows
    row = versus_best_other(table, proba, y, n_boot=50, seed=0)
    assert row["accuracy_difference"] == 0.0
    assert row["accuracy_difference_ci_low"] == row["accuracy_difference_ci_high"] == 0.0
    assert versus_best_other(table, {"tfidf_softmax": one_wrong}, y, n_boot=0, seed=0) == {}
