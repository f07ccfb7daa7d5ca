"""Temperature scaling and expected calibration error, on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from medsim.classify.calibrate import Temperature, expected_calibration_error, fit_temperature


def test_ece_by_hand():
    # two bins used: confidence 0.9 (right, wrong) and 0.6 (right)
    proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6]])
    y = np.array([0, 1, 1])
    # bin of 0.9: accuracy 0.5, gap 0.4, weight 2/3; bin of 0.6: accuracy 1, gap 0.4, 1/3
    assert expected_calibration_error(proba, y) == pytest.approx(0.4)
    assert expected_calibration_error(np.array([[1.0, 0.0]]), np.array([0])) == 0.0


def overconfident_votes(n: int, accuracy: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unanimous votes (share 1) that are right ``accuracy`` of the time, over 4 classes."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    guess = np.where(rng.random(n) < accuracy, y, (y + 1) % 4)
    return np.eye(4)[guess], y


def test_fit_brings_confidence_to_accuracy():
    votes, y = overconfident_votes(2000, 0.7, seed=0)
    assert expected_calibration_error(Temperature()(votes), y) > 0.25  # shares as they are
    fitted = fit_temperature(votes, y)
    assert fitted.fitted_on == 2000
    # the likeliest confidence is the sample's accuracy a, and softmax(e_c / T) over 4
    # classes puts a on c when exp(1 / T) = 3a / (1 - a)
    a = (votes.argmax(axis=1) == y).mean()
    assert fitted.temperature == pytest.approx(1 / np.log(3 * a / (1 - a)), rel=1e-3)
    test_votes, test_y = overconfident_votes(2000, 0.7, seed=1)
    calibrated = fitted(test_votes)
    assert expected_calibration_error(calibrated, test_y) < 0.03
    np.testing.assert_array_equal(calibrated.argmax(axis=1), test_votes.argmax(axis=1))


def test_without_validation_documents():
    shares = np.array([[0.75, 0.25, 0.0], [0.0, 0.0, 0.0]])
    uncalibrated = fit_temperature(shares[:0], np.array([], dtype=int))
    assert uncalibrated.fitted_on == 0 and uncalibrated.temperature is None
    np.testing.assert_allclose(uncalibrated(shares), [[0.75, 0.25, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    sims = np.array([[0.9, 0.1, 0.3]])
    assert fit_temperature(sims[:0], np.array([], dtype=int), 0.1).temperature == 0.1
    np.testing.assert_allclose(Temperature(0.1)(sims).sum(axis=1), 1.0)


def test_vote_shares_with_a_floor():
    from medsim.classify.calibrate import vote_floor

    floor = vote_floor(k=10, n_classes=4)
    assert floor == pytest.approx(1 / 40)
    shares = np.array([[0.7, 0.3, 0.0, 0.0]])
    # temperature 1: the shares themselves, one neighbour's vote spread over the classes
    np.testing.assert_allclose(
        Temperature(1.0, 1, floor)(shares), (shares + floor) / (1 + 4 * floor)
    )
    votes, y = overconfident_votes(2000, 0.7, seed=0)
    fitted = fit_temperature(votes, y, floor=floor)
    # softmax(log(e_c + f) / T) puts a on c when ((1 + f) / f) ** (1 / T) = 3a / (1 - a)
    a = (votes.argmax(axis=1) == y).mean()
    expected = np.log((1 + floor) / floor) / np.log(3 * a / (1 - a))
    assert fitted.floor == floor and fitted.temperature == pytest.approx(expected, rel=1e-3)
    test_votes, test_y = overconfident_votes(2000, 0.7, seed=1)
    assert expected_calibration_error(fitted(test_votes), test_y) < 0.03


def test_the_floor_is_fitted_only_on_enough_validation_documents():
    from medsim.classify.calibrate import (
        FLOOR_GRID,
        MIN_FIT_FLOOR,
        _logits,
        _nll,
        fit_vote_temperature,
        vote_floor,
    )

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    # split votes: the true class gets 0.6 of them, another class the rest, 70% of the time
    other = (y + rng.integers(1, 4, len(y))) % 4
    right = rng.random(len(y)) < 0.7
    shares = 0.4 * np.eye(4)[np.where(right, other, y)] + 0.6 * np.eye(4)[np.where(right, y, other)]
    few = fit_vote_temperature(shares[: MIN_FIT_FLOOR - 1], y[: MIN_FIT_FLOOR - 1], 10, 4)
    assert few.floor == vote_floor(10, 4)
    many = fit_vote_temperature(shares, y, 10, 4)
    assert many.floor in FLOOR_GRID and many.fitted_on == 400
    nll = _nll(_logits(shares, many.floor), y, many.temperature)
    for floor in (FLOOR_GRID[0], vote_floor(10, 4), FLOOR_GRID[-1]):  # no other floor fits better
        other_fit = fit_temperature(shares, y, floor=floor)
        assert nll <= _nll(_logits(shares, floor), y, other_fit.temperature) + 1e-9
