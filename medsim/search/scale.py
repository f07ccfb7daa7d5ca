"""Indexes that fit PubMed: IVF-PQ trained on a sample and filled by streaming batches.

36M MiniLM vectors are 55 GB as float32; a flat or HNSW index holds them all in memory. IVF-PQ
keeps ``index.pq_bytes`` bytes of code per vector (64 B: 2.3 GB for 36M) plus its id, and is
built without ever holding the corpus: the codebooks are trained on ``index.train_size``
sampled vectors, then the corpus is added one batch at a time.
"""

from __future__ import annotations

from collections.abc import Iterable

import faiss
import numpy as np

from medsim.config import IndexParams
from medsim.search.builders import ivfpq_index

__all__ = ["build_streaming"]


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
