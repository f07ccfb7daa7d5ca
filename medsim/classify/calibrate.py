"""Calibrated probabilities from the rule's scores: temperature scaling fitted on validation.

The rule's scores for a document are its kNN vote shares (in [0, 1], summing to 1) or, for
classes added from examples, its cosine similarities to the class prototypes. Similarities are
taken as the logits of a softmax; vote shares as their logarithms, after one neighbour's vote
is spread evenly over the classes (``floor``: a class no neighbour voted for is unlikely, not
impossible), so that temperature 1 gives the shares back, nearly, and other temperatures
sharpen or soften them (the shares as logits, tried first, raised OHSUMED's test ECE from
0.050 to 0.071: a softmax of numbers in [0, 1] cannot make a zero-vote class unlikely). The
temperature is fitted by minimising the negative log-likelihood of the validation documents'
true classes (Guo et al. 2017, "On calibration of modern neural networks"). The floor is
fitted with it (the pair of least validation NLL over a grid of floors) when the validation
split has at least :data:`MIN_FIT_FLOOR` documents, else fixed by k (with a few dozen
documents a fitted floor only found the bounds of its range, on MedPix's 26). A temperature
keeps every row's order of the classes, so the label is the rule's own. The test
split is never read here; the evaluate stage reports the expected calibration error on it
(:func:`expected_calibration_error`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

__all__ = [
    "Temperature",
    "expected_calibration_error",
    "fit_temperature",
    "fit_vote_temperature",
    "vote_floor",
]

ECE_BINS = 15  # Guo et al.'s number of equal-width confidence bins
# the search range of log(temperature): 1/1000 (near one-hot) to 100 (near uniform)
LOG_T_BOUNDS = (np.log(1e-3), np.log(1e2))
MIN_FIT_FLOOR = 100  # validation documents to fit a floor beside the temperature (two parameters)
# floors tried: from almost none (a zero-vote class all but impossible) to a third of a vote
FLOOR_GRID = tuple(float(f) for f in np.geomspace(1e-4, 0.3, 25))


@dataclass(frozen=True)
class Temperature:
    """``softmax(logits / temperature)``, the logits being the scores, or with ``floor`` the
    log of vote shares plus ``floor``; ``temperature`` None: the scores as they are (vote shares
    that nothing calibrated). ``fitted_on``: validation documents used (0: nothing to fit on)."""

    temperature: float | None = None
    fitted_on: int = 0
    floor: float | None = None

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        """Class probabilities ``[n, n_classes]`` of ``scores``."""
        scores = np.asarray(scores, dtype=float)
        if self.temperature is not None:
            return softmax(_logits(scores, self.floor) / self.temperature, axis=1)
        shares = np.clip(scores, 0.0, None)
        total = shares.sum(axis=1, keepdims=True)
        uniform = np.full_like(shares, 1.0 / max(shares.shape[1], 1))
        return np.where(total > 0, shares / np.where(total > 0, total, 1.0), uniform)


def vote_floor(k: int, n_classes: int) -> float:
    """One of ``k`` neighbours' votes spread evenly over ``n_classes``: the share a class
    keeps when no neighbour voted for it."""
    return 1.0 / (max(k, 1) * max(n_classes, 1))


def _logits(scores: np.ndarray, floor: float | None) -> np.ndarray:
    return scores if floor is None else np.log(np.clip(scores, 0.0, None) + floor)


def _nll(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    return float(-log_softmax(logits / temperature, axis=1)[np.arange(len(y)), y].mean())


def fit_temperature(
    scores: np.ndarray, y: np.ndarray, default: float | None = None, floor: float | None = None
) -> Temperature:
    """The temperature minimising validation NLL of ``softmax(logits / T)``.

    ``scores``: ``[n_val, n_classes]`` similarities, or vote shares with their ``floor``
    (:func:`vote_floor`); ``y``: true class indices. With no validation documents,
    ``default`` (None: the scores as they are)."""
    scores = np.asarray(scores, dtype=float)
    y = np.asarray(y, dtype=int)
    if len(y) == 0:
        return Temperature(default)
    logits = _logits(scores, floor)
    result = minimize_scalar(
        lambda log_t: _nll(logits, y, float(np.exp(log_t))), bounds=LOG_T_BOUNDS, method="bounded"
    )
    return Temperature(float(np.exp(result.x)), len(y), floor)


def fit_vote_temperature(shares: np.ndarray, y: np.ndarray, k: int, n_classes: int) -> Temperature:
    """The calibration of kNN vote ``shares``: floor and temperature of least validation NLL
    (floor from :data:`FLOOR_GRID`) with at least :data:`MIN_FIT_FLOOR` validation documents,
    else the temperature beside the fixed :func:`vote_floor`."""
    y = np.asarray(y, dtype=int)
    if len(y) < MIN_FIT_FLOOR:
        return fit_temperature(shares, y, floor=vote_floor(k, n_classes))
    fits = [fit_temperature(shares, y, floor=f) for f in FLOOR_GRID]
    shares = np.asarray(shares, dtype=float)
    return min(fits, key=lambda t: _nll(_logits(shares, t.floor), y, t.temperature))


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
