"""Calibrated probabilities from the rule's scores: temperature scaling fitted on validation.

The rule's scores for a document are its kNN vote shares (in [0, 1], summing to 1) or, for
classes added from examples, its cosine similarities to the class prototypes. Either is taken
as the logits of a softmax whose temperature is fitted by minimising the negative
log-likelihood of the validation documents' true classes (Guo et al. 2017, "On calibration of
modern neural networks"). One parameter: with a few dozen validation documents a second one
(a floor under the log of the shares was tried) only found the bounds of its range. A
temperature keeps every row's order of the classes, so the label is the rule's own. The test
split is never read here; the evaluate stage reports the expected calibration error on it
(:func:`expected_calibration_error`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

__all__ = ["Temperature", "expected_calibration_error", "fit_temperature"]

ECE_BINS = 15  # Guo et al.'s number of equal-width confidence bins
# the search range of log(temperature): 1/1000 (near one-hot) to 100 (near uniform)
LOG_T_BOUNDS = (np.log(1e-3), np.log(1e2))


@dataclass(frozen=True)
class Temperature:
    """``softmax(scores / temperature)``; ``None``: the scores as they are (vote shares that
    nothing calibrated). ``fitted_on``: validation documents used (0: nothing to fit on)."""

    temperature: float | None = None
    fitted_on: int = 0

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        """Class probabilities ``[n, n_classes]`` of ``scores``."""
        scores = np.asarray(scores, dtype=float)
        if self.temperature is not None:
            return softmax(scores / self.temperature, axis=1)
        shares = np.clip(scores, 0.0, None)
        total = shares.sum(axis=1, keepdims=True)
        uniform = np.full_like(shares, 1.0 / max(shares.shape[1], 1))
        return np.where(total > 0, shares / np.where(total > 0, total, 1.0), uniform)


def _nll(scores: np.ndarray, y: np.ndarray, temperature: float) -> float:
    return float(-log_softmax(scores / temperature, axis=1)[np.arange(len(y)), y].mean())


def fit_temperature(scores: np.ndarray, y: np.ndarray, default: float | None = None) -> Temperature:
    """The temperature minimising validation NLL of ``softmax(scores / T)``.

    ``scores``: ``[n_val, n_classes]`` vote shares or similarities, ``y``: true class
    indices. With no validation documents, ``default`` (None: the scores as they are)."""
    scores = np.asarray(scores, dtype=float)
    y = np.asarray(y, dtype=int)
    if len(y) == 0:
        return Temperature(default)
    result = minimize_scalar(
        lambda log_t: _nll(scores, y, float(np.exp(log_t))), bounds=LOG_T_BOUNDS, method="bounded"
    )
    return Temperature(float(np.exp(result.x)), len(y))


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
