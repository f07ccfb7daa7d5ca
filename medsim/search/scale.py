"""Indexes that fit PubMed: IVF-PQ trained on a sample and filled by streaming batches.

36M MiniLM vectors are 55 GB as float32; a flat or HNSW index holds them all in memory. IVF-PQ
keeps ``index.pq_bytes`` bytes of code per vector (64 B: 2.3 GB for 36M) plus its id, and is
built without ever holding the corpus: the codebooks are trained on ``index.train_size``
sampled vectors, then the corpus is added one batch at a time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import faiss
import numpy as np

from medsim.config import IndexParams

__all__ = ["build_streaming", "ivfpq_index", "nlist_for", "sample_rows"]


def nlist_for(n: int, train: int) -> int:
    """Coarse lists: about sqrt(n), and at least 39 training vectors per list (faiss's minimum)."""
    return max(1, min(int(math.sqrt(n)), train // 39))


def _pq_m(dim: int, pq_bytes: int) -> int:
    """The largest sub-quantizer count <= ``pq_bytes`` that divides ``dim``."""
    return next(m for m in range(min(pq_bytes, dim), 0, -1) if dim % m == 0)


def ivfpq_index(train: np.ndarray, n: int, params: IndexParams, seed: int = 0) -> faiss.Index:
    """An empty, trained inner-product IVF-PQ index for ``n`` vectors like ``train``."""
    train = np.ascontiguousarray(train, dtype=np.float32)
    dim = train.shape[1]
    nlist = nlist_for(n, len(train))
    quantizer = faiss.IndexFlatIP(dim)
    m = _pq_m(dim, params.pq_bytes)
    index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.pq.cp.seed = seed
    index.train(train)
    index.nprobe = min(params.nprobe, nlist)
    return index


def sample_rows(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Sorted row numbers of a uniform sample of ``min(size, n)`` out of ``n`` rows."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(size, n), replace=False))


def build_streaming(
    train: np.ndarray,
    batches: Iterable[np.ndarray],
    n: int,
    params: IndexParams,
    seed: int = 0,
) -> faiss.Index:
    """An IVF-PQ index trained on ``train`` and filled with ``batches`` (rows in order).

    Memory is the codes (``n * (pq_bytes + 8)`` bytes), the codebooks and one batch.
    """
    index = ivfpq_index(train, n, params, seed)
    for batch in batches:
        index.add(np.ascontiguousarray(batch, dtype=np.float32))
    return index
