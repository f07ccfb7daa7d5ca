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
    assert expected_calibration_error(Temperature(1.0, 1e-6)(votes), y) > 0.25
    fitted = fit_temperature(votes, y)
    assert fitted.fitted_on == 2000
    test_votes, test_y = overconfident_votes(2000, 0.7, seed=1)
    calibrated = fitted(test_votes)
    assert expected_calibration_error(calibrated, test_y) < 0.03
    assert calibrated.max(axis=1).mean() == pytest.approx(0.7, abs=0.03)
    np.testing.assert_array_equal(calibrated.argmax(axis=1), test_votes.argmax(axis=1))


def test_similarity_logits_and_no_validation():
    sims = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.5]])
    fitted = fit_temperature(sims, np.array([0, 1, 1]), log_scores=False)
    assert not fitted.log_scores and fitted.temperature > 0
    identity = fit_temperature(sims[:0], np.array([], dtype=int), log_scores=False)
    assert identity.fitted_on == 0 and identity.temperature == 1.0
    np.testing.assert_allclose(identity(sims).sum(axis=1), 1.0)
