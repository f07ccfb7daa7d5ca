"""Class-balanced batches come from pml's MPerClassSampler, reproducibly."""

from __future__ import annotations

from collections import Counter

import numpy as np
from pytorch_metric_learning.samplers import MPerClassSampler
from pytorch_metric_learning.utils import common_functions as pml_common

from medsim.dml.sampling import class_balanced_batches, make_sampler, seeded_pml

LABELS = np.repeat(np.arange(8), [3, 10, 10, 10, 10, 10, 10, 40])


def test_sampler_is_pmls_m_per_class():
    sampler = make_sampler(LABELS, m=4, batch_size=16, epoch_size=100)
    assert isinstance(sampler, MPerClassSampler)
    assert sampler.m_per_class == 4 and sampler.batch_size == 16


def test_batches_hold_m_per_class_when_classes_suffice():
    batches = class_balanced_batches(LABELS, 4, 16, 96, np.random.RandomState(0))
    assert len(batches) == 6
    for batch in batches:
        counts = Counter(LABELS[batch].tolist())
        assert len(counts) == 4 and set(counts.values()) == {4}  # 16 / 4 classes of 4


def test_fewer_classes_than_a_batch_cycles_every_class():
    labels = np.repeat(np.arange(3), [5, 30, 30])  # 3 classes x m=4 < batch 32
    sampler = make_sampler(labels, m=4, batch_size=32, epoch_size=96)
    assert sampler.batch_size is None
    for batch in class_balanced_batches(labels, 4, 32, 96, np.random.RandomState(0)):
        counts = Counter(labels[batch].tolist())
        assert set(counts) == {0, 1, 2}
        assert max(counts.values()) - min(counts.values()) <= 4


def test_same_seed_same_batches_and_pml_rng_restored():
    before = pml_common.NUMPY_RANDOM
    a = class_balanced_batches(LABELS, 4, 16, 96, np.random.RandomState(3))
    b = class_balanced_batches(LABELS, 4, 16, 96, np.random.RandomState(3))
    c = class_balanced_batches(LABELS, 4, 16, 96, np.random.RandomState(4))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    assert pml_common.NUMPY_RANDOM is before
    rng = np.random.RandomState(0)
    with seeded_pml(rng):
        assert pml_common.NUMPY_RANDOM is rng
