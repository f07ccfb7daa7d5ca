import numpy as np
import pytest

from medsim.evaluate.stats import (
    accuracy_row,
    bootstrap_indices,
    difference_row,
    episode_difference_row,
    mean_ci,
    null_row,
    percentile_ci,
    with_ci,
)


def test_bootstrap_indices_shape_and_range_are_reproducible():
    a = bootstrap_indices(7, 20, seed=3)
    assert a.shape == (20, 7)
    assert a.min() >= 0 and a.max() <= 6
    np.testing.assert_array_equal(a, bootstrap_indices(7, 20, seed=3))


def test_bootstrap_interval_contains_the_point_estimate():
    rng = np.random.default_rng(0)
    correct = rng.random(300) < 0.7
    idx = bootstrap_indices(len(correct), 500, seed=1)
    lo, hi = percentile_ci(correct[idx].mean(axis=1))
    assert lo <= correct.mean() <= hi
    p = correct.mean()
    expected_width = 2 * 1.959964 * np.sqrt(p * (1 - p) / len(correct))
    assert hi - lo == pytest.approx(expected_width, rel=0.2)


def test_percentile_ci_ignores_nan_resamples():
    assert percentile_ci(np.array([np.nan, 0.5, 0.5])) == (0.5, 0.5)


def test_mean_ci_by_hand():
    # mean 0.5, sample std 0.5773..., n = 4: half width 1.959964 * 0.57735 / 2 = 0.565792
    mean, lo, hi = mean_ci(np.array([0.0, 1.0, 0.0, 1.0]))
    assert mean == 0.5
    assert lo == pytest.approx(0.0)  # 0.5 - 0.5658 clipped at 0
    assert hi == pytest.approx(1.0)  # clipped at 1
    mean, lo, hi = mean_ci(np.array([0.4, 0.6] * 50))
    assert (lo, hi) == pytest.approx((0.5 - 1.959964 * 0.1005038 / 10, 0.5 + 0.0196985), abs=1e-4)


def test_mean_ci_honours_other_levels():
    # 0.4, 0.6 alternating: sample std 0.1005038, n = 100; z(0.90) = 1.644854, z(0.99) = 2.575829
    values = np.array([0.4, 0.6] * 50)
    _, lo90, hi90 = mean_ci(values, level=0.90)
    _, lo99, hi99 = mean_ci(values, level=0.99)
    assert (lo90, hi90) == pytest.approx((0.5 - 0.0165314, 0.5 + 0.0165314), abs=1e-6)
    assert (lo99, hi99) == pytest.approx((0.5 - 0.0258880, 0.5 + 0.0258880), abs=1e-6)
    with pytest.raises(ValueError, match="confidence level"):
        mean_ci(values, level=95)


def test_with_ci_writes_sibling_numbers_and_null_row_keeps_reason():
    row = with_ci({}, "accuracy", 0.5, 0.4, float("nan"))
    assert row == {"accuracy": 0.5, "accuracy_ci_low": 0.4, "accuracy_ci_high": None}
    assert null_row("text-only", ["accuracy"]) == {"accuracy": None, "reason": "text-only"}


def test_accuracy_row_by_hand():
    hits = np.array([1.0, 0.0, 1.0, 1.0])
    assert accuracy_row(hits, None) == {"accuracy": 0.75}
    # two resamples: documents 0, 1, 1, 1 (0.25) and 0, 2, 3, 3 (1.0)
    idx = np.array([[0, 1, 1, 1], [0, 2, 3, 3]])
    row = accuracy_row(hits, idx)
    assert row["accuracy"] == 0.75
    assert (row["accuracy_ci_low"], row["accuracy_ci_high"]) == pytest.approx(
        (0.25 + 0.025 * 0.75, 1.0 - 0.025 * 0.75)
    )


def test_difference_row_resamples_both_rows_together():
    proposed = np.array([1.0, 1.0, 0.0, 1.0])
    other = np.array([1.0, 0.0, 0.0, 0.0])
    assert difference_row("tfidf", proposed, other, None) == {
        "against": "tfidf",
        "accuracy_difference": 0.5,
    }
    # resample 0, 0, 2, 2: the documents both get right or both wrong, so the difference is 0;
    # resample 1, 1, 3, 3: proposed right and other wrong on all, 1.0
    row = difference_row("tfidf", proposed, other, np.array([[0, 0, 2, 2], [1, 1, 3, 3]]))
    assert row["accuracy_difference"] == 0.5
    assert (row["accuracy_difference_ci_low"], row["accuracy_difference_ci_high"]) == (
        pytest.approx(0.025),
        pytest.approx(0.975),
    )


def test_a_difference_that_falls_below_zero_is_not_clipped():
    # per-episode differences -0.2, 0.0 alternating: mean -0.1, sample std 0.1005038, n = 100
    row = episode_difference_row("frozen", np.array([0.6, 0.8] * 50), np.array([0.8, 0.8] * 50))
    half = 1.959964 * 0.1005038 / 10
    assert row["against"] == "frozen"
    assert row["accuracy_difference"] == pytest.approx(-0.1)
    assert row["accuracy_difference_ci_low"] == pytest.approx(-0.1 - half, abs=1e-6)
    assert row["accuracy_difference_ci_high"] == pytest.approx(-0.1 + half, abs=1e-6)
