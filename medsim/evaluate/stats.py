"""Confidence intervals: percentile bootstrap over test items, normal interval over episodes;
and the paired difference of two rows scored on the same items."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.stats import norm

__all__ = [
    "accuracy_row",
    "bootstrap_indices",
    "difference_row",
    "episode_difference_row",
    "mean_ci",
    "null_row",
    "percentile_ci",
    "with_ci",
]


def bootstrap_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """``n_boot`` resamples (with replacement) of ``range(n)``, as an int array [n_boot, n]."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_boot, n))


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap ``samples`` (NaNs, from degenerate resamples, ignored)."""
    samples = np.asarray(samples, dtype=float)
    samples = samples[~np.isnan(samples)]
    if samples.size == 0:
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    lo, hi = np.quantile(samples, [alpha, 1 - alpha])
    return float(lo), float(hi)


def mean_ci(
    values: np.ndarray, level: float = 0.95, bounds: tuple[float, float] = (0.0, 1.0)
) -> tuple[float, float, float]:
    """Mean of per-episode ``values`` with its normal-approximation interval, clipped to
    ``bounds`` ([0, 1] for accuracies; [-1, 1] for a difference of two)."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if values.size < 2:
        return mean, mean, mean
    if not 0 < level < 1:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    z = float(norm.ppf(0.5 + level / 2))
    half = z * float(values.std(ddof=1)) / np.sqrt(values.size)
    return mean, max(bounds[0], mean - half), min(bounds[1], mean + half)


def accuracy_row(hits: np.ndarray, idx: np.ndarray | None) -> dict:
    """Accuracy of 0/1 ``hits`` (one per test item) with its percentile-bootstrap 95%
    interval over the resamples ``idx`` (``None``: the accuracy alone)."""
    hits = np.asarray(hits, dtype=float)
    if idx is None:
        return {"accuracy": _num(hits.mean())}
    return with_ci({}, "accuracy", hits.mean(), *percentile_ci(hits[idx].mean(axis=1)))


def difference_row(
    against: str, hits: np.ndarray, other: np.ndarray, idx: np.ndarray | None
) -> dict:
    """Accuracy of ``hits`` minus that of ``other`` (0/1 correctness of two rows on the same
    test documents), with a paired percentile-bootstrap 95% interval: each resample in
    ``idx`` (the ones the rows' own intervals used; ``None``: no interval) draws the same
    documents for both rows, so the interval is the difference's own rather than two rows'
    intervals side by side. ``against`` names the other row."""
    diff = np.asarray(hits, dtype=float) - np.asarray(other, dtype=float)
    row: dict = {"against": against}
    if idx is None:
        row["accuracy_difference"] = _num(diff.mean())
        return row
    return with_ci(row, "accuracy_difference", diff.mean(), *percentile_ci(diff[idx].mean(axis=1)))


def episode_difference_row(against: str, accuracy: np.ndarray, other: np.ndarray) -> dict:
    """Mean per-episode accuracy minus ``other``'s on the same episodes, with the normal
    interval of the per-episode differences (paired, as :func:`difference_row`). Episodes
    are drawn again and again from one pool of documents, so the interval says how sure the
    mean over such episodes is, not how a new set of documents would come out: it is
    narrower than a bootstrap over the documents would be."""
    diff = np.asarray(accuracy, dtype=float) - np.asarray(other, dtype=float)
    return with_ci({"against": against}, "accuracy_difference", *mean_ci(diff, bounds=(-1.0, 1.0)))


def with_ci(row: dict, name: str, value: float, lo: float, hi: float) -> dict:
    """Add ``name``, ``name_ci_low`` and ``name_ci_high`` to ``row`` as plain floats.

    Intervals are sibling numbers (not lists) because ``dvc metrics show/diff`` drops lists.
    """
    row[name] = _num(value)
    row[f"{name}_ci_low"] = _num(lo)
    row[f"{name}_ci_high"] = _num(hi)
    return row


def null_row(reason: str, metrics: Mapping[str, object] | None = None) -> dict:
    """A row that cannot be computed on this corpus: nulls plus a plain-language ``reason``."""
    row: dict[str, object] = dict.fromkeys(metrics or (), None)
    row["reason"] = reason
    return row


def _num(value: float) -> float | None:
    value = float(value)
    return None if np.isnan(value) else round(value, 6)
