"""IVF-PQ at small scale: trained on a sample, filled by batches, compared with exact search."""

from __future__ import annotations

import dataclasses

import faiss
import numpy as np
import pytest

from medsim.config import IndexParams
from medsim.search.builders import build_binary_index, build_index, nlist_for, sample_rows
from medsim.search.scale import build_streaming


def _clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dim))
    x = centres[rng.integers(0, 20, n)] + 0.3 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_nlist_is_sqrt_n_but_bounded_by_the_training_sample():
    assert nlist_for(1_000_000, 100_000) == 1000
    assert nlist_for(1_000_000, 3900) == 100  # 39 training vectors per list
    assert nlist_for(10, 10) == 1


def test_sample_rows_is_sorted_unique_and_seeded():
    rows = sample_rows(100, 10, seed=3)
    assert len(set(rows)) == 10 and list(rows) == sorted(rows)
    assert list(rows) == list(sample_rows(100, 10, seed=3))
    assert len(sample_rows(5, 10)) == 5


def test_streamed_ivfpq_equals_whole_matrix_build_and_recalls_exact_neighbours():
    x = _clustered(6000, 32, seed=0)
    params = IndexParams(exact_below=100, approximate="ivfpq", pq_bytes=16, nprobe=16)
    train = x[sample_rows(len(x), 4000, seed=0)]
    streamed = build_streaming(train, (x[i : i + 1000] for i in range(0, 6000, 1000)), 6000, params)
    assert isinstance(streamed, faiss.IndexIVFPQ) and streamed.ntotal == 6000
    assert streamed.code_size == 16  # bytes per vector

    whole = build_index(x, dataclasses.replace(params, train_size=4000))
    queries = x[:50]
    _, a = streamed.search(queries, 10)
    _, b = whole.search(queries, 10)
    np.testing.assert_array_equal(a, b)  # same sample, same seed: the same index

    flat = faiss.IndexFlatIP(32)
    flat.add(x)
    _, exact = flat.search(queries, 10)
    recall = np.mean([len(set(a[i]) & set(exact[i])) / 10 for i in range(len(queries))])
    assert recall > 0.5, recall  # compressed 8x, still finds most true neighbours


@pytest.mark.parametrize("approximate", ["ivf", "ivfpq"])
def test_every_inverted_file_index_follows_the_one_nlist_rule(approximate):
    """Float IVF sized its lists by n // 39 while training on the sample: 2,000 vectors with a
    390-vector sample gave 44 lists of ~9 training points each."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((2000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    params = IndexParams(exact_below=100, approximate=approximate, train_size=390, pq_bytes=8)
    index = build_index(vectors, params)
    assert faiss.extract_index_ivf(index).nlist == nlist_for(2000, 390) == 10
    binary = build_binary_index(vectors[:, :8] > 0, params)
    assert binary.nlist == nlist_for(2000, 390)
