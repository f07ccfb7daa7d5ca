"""Class-balanced batches: pytorch-metric-learning's ``MPerClassSampler``, seeded."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
from pytorch_metric_learning.samplers import MPerClassSampler
from pytorch_metric_learning.utils import common_functions as pml_common

__all__ = ["class_balanced_batches", "make_sampler", "seeded_pml"]


@contextlib.contextmanager
def seeded_pml(rng: np.random.RandomState) -> Iterator[None]:
    """Make pml draw from ``rng`` inside the block (its sampler uses a module-level RNG)."""
    previous = pml_common.NUMPY_RANDOM
    pml_common.NUMPY_RANDOM = rng
    try:
        yield
    finally:
        pml_common.NUMPY_RANDOM = previous


def make_sampler(labels: np.ndarray, m: int, batch_size: int, epoch_size: int) -> MPerClassSampler:
    """An ``MPerClassSampler`` giving ``m`` items per class.

    pml can fix the classes per batch (``batch_size / m`` classes of ``m`` items) only when
    there are at least that many classes; with fewer (5 MedPix body regions, 23 OHSUMED
    categories at batch 256) the sampler runs without a batch size, cycling through every class
    ``m`` items at a time, and batches cut that stream, so each batch still holds every class.
    """
    n_classes = len(np.unique(labels))
    fixed = batch_size % m == 0 and m * n_classes >= batch_size
    length = max(epoch_size, batch_size)
    return MPerClassSampler(
        labels, m=m, batch_size=batch_size if fixed else None, length_before_new_iter=length
    )


def class_balanced_batches(
    labels: np.ndarray, m: int, batch_size: int, epoch_size: int, rng: np.random.RandomState
) -> list[np.ndarray]:
    """One epoch of index batches into ``labels`` from :func:`make_sampler`, drawn from ``rng``."""
    sampler = make_sampler(labels, m, batch_size, epoch_size)
    with seeded_pml(rng):
        order = np.fromiter(iter(sampler), dtype=np.int64)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
