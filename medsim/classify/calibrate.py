"""Calibrated probabilities from the rule's scores: temperature scaling fitted on validation.

kNN vote shares are often exactly 0 or 1 (every neighbour of one class), which overstates
certainty. Their logs (with a floor for classes no neighbour voted for) are divided by a
temperature; both are fitted by minimising the negative log-likelihood of the validation
documents' true classes (Guo et al. 2017, "On calibration of modern neural networks").
Every row's ranking is kept (a monotone map per row), so the label is the rule's own.
Prototype similarities (classes added from examples) get the same treatment with logits =
cosine similarities. The test split is never read here; the evaluate stage reports the
expected calibration error on it (:func:`expected_calibration_error`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax

__all__ = ["Temperature", "expected_calibration_error", "fit_temperature"]

ECE_BINS = 15  # Guo et al.'s number of equal-width confidence bins
# floor of an unvoted class's share before the fit; also the floor when there is nothing to fit
DEFAULT_FLOOR = 1e-2


@dataclass(frozen=True)
class Temperature:
    """``softmax(log(scores + floor) / temperature)`` for vote shares (``log_scores``), or
    ``softmax(scores / temperature)`` for similarities. ``fitted_on``: validation documents
    used (0: the identity, nothing to fit on)."""

    temperature: float = 1.0
    floor: float = DEFAULT_FLOOR
    log_scores: bool = True
    fitted_on: int = 0

    def logits(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=float)
        return np.log(scores + self.floor) if self.log_scores else scores

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities ``[n, n_classes]`` of ``scores``."""
        return softmax(self.logits(scores) / self.temperature, axis=1)


def _nll(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    return float(-log_softmax(logits / temperature, axis=1)[np.arange(len(y)), y].mean())


def fit_temperature(scores: np.ndarray, y: np.ndarray, log_scores: bool = True) -> Temperature:
    """The temperature (and, for vote shares, the floor) minimising validation NLL.

    ``scores``: ``[n_val, n_classes]`` vote shares or similarities, ``y``: true class
    indices. With no validation documents, the identity (temperature 1)."""
    scores = np.asarray(scores, dtype=float)
    y = np.asarray(y, dtype=int)
    if len(y) == 0:
        return Temperature(log_scores=log_scores)
    if not log_scores:
        result = minimize(
            lambda t: _nll(scores, y, float(np.exp(t[0]))), x0=[0.0], method="L-BFGS-B"
        )
        return Temperature(float(np.exp(result.x[0])), DEFAULT_FLOOR, False, len(y))

    def loss(theta: np.ndarray) -> float:
        return _nll(np.log(scores + np.exp(theta[1])), y, float(np.exp(theta[0])))

    # floor between 1e-6 and 1 share; temperature between 1/100 and 100
    result = minimize(
        loss,
        x0=[0.0, np.log(DEFAULT_FLOOR)],
        method="L-BFGS-B",
        bounds=[(np.log(1e-2), np.log(1e2)), (np.log(1e-6), 0.0)],
    )
    return Temperature(float(np.exp(result.x[0])), float(np.exp(result.x[1])), True, len(y))


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the mean over equal-width confidence bins of |accuracy - confidence|, weighted by
    the share of documents in each bin (confidence = the top class's probability)."""
    proba = np.asarray(proba, dtype=float)
    y = np.asarray(y, dtype=int)
    if len(y) == 0:
        return float("nan")
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)
