"""Empty, trained FAISS indexes by type (float and binary), filled in one call or by a caller
that streams its corpus, and :func:`search` over either.

One rule sizes every inverted-file index (:func:`nlist_for`), float IVF, IVF-PQ and binary IVF
alike; the ``data/index/`` layout that holds them is :mod:`medsim.search.index`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import faiss
import numpy as np

if TYPE_CHECKING:  # params are only annotations here; yaml need not load for a search
    from medsim.config import IndexParams

__all__ = [
    "BINARY_BUILDERS",
    "FLOAT_BUILDERS",
    "TRAINED",
    "as_matrix",
    "binary_index_type",
    "build_binary_index",
    "build_index",
    "empty_binary_index",
    "empty_index",
    "index_type",
    "ivfpq_index",
    "nlist_for",
    "pack_codes",
    "sample_rows",
    "search",
]


def nlist_for(n: int, train: int) -> int:
    """Coarse lists of every inverted-file index: about sqrt(n) (k-means on 1M vectors stays near
    a minute on two cores), and at least 39 of the ``train`` sampled vectors per list (faiss's
    own minimum: fewer leaves lists trained on a handful of points)."""
    return max(1, min(int(math.sqrt(n)), train // 39))


def _pq_m(dim: int, pq_bytes: int) -> int:
    """The largest sub-quantizer count <= ``pq_bytes`` that divides ``dim``."""
    return next(m for m in range(min(pq_bytes, dim), 0, -1) if dim % m == 0)


def sample_rows(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Sorted row numbers of a uniform sample of ``min(size, n)`` out of ``n`` rows."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(size, n), replace=False))


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


def index_type(n: int, params: IndexParams) -> str:
    """``"flat"`` (exact) under ``params.exact_below`` vectors, else ``params.approximate``."""
    return "flat" if n < params.exact_below else params.approximate


def _flat(train: np.ndarray, n: int, params: IndexParams, seed: int) -> faiss.Index:
    return faiss.IndexFlatIP(train.shape[1])


def _hnsw(train: np.ndarray, n: int, params: IndexParams, seed: int) -> faiss.Index:
    index = faiss.IndexHNSWFlat(train.shape[1], params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efSearch = params.ef_search
    return index


def _ivf(train: np.ndarray, n: int, params: IndexParams, seed: int) -> faiss.Index:
    d = train.shape[1]
    nlist = nlist_for(n, len(train))
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.train(train)
    index.nprobe = min(params.nprobe, nlist)
    index.make_direct_map()  # so a stored item's vector can be read back (search --pmid)
    return index


def _ivfpq(train: np.ndarray, n: int, params: IndexParams, seed: int) -> faiss.Index:
    index = ivfpq_index(train, n, params, seed)
    index.make_direct_map()  # as _ivf: stored items' (decoded) vectors stay readable
    return index


# index type -> builder of an empty, trained index for ``n`` vectors from a training sample
# (rows ``sample_rows(n, params.train_size, seed)``; [0, dim] for the types in no need of one)
FLOAT_BUILDERS: dict[str, Callable[[np.ndarray, int, IndexParams, int], faiss.Index]] = {
    "flat": _flat,
    "hnsw": _hnsw,
    "ivf": _ivf,
    "ivfpq": _ivfpq,
}
TRAINED = frozenset({"ivf", "ivfpq"})  # the types trained on a sample before any add


def as_matrix(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` as the C-contiguous float32 [n, dim] matrix faiss takes."""
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"expected a [n, dim] matrix, got shape {matrix.shape}")
    return matrix


def empty_index(
    n: int,
    dim: int,
    params: IndexParams,
    sample: Callable[[np.ndarray], np.ndarray],
    seed: int = 0,
) -> faiss.Index:
    """The empty float index that :func:`build_index` would fill with ``n`` ``dim``-d vectors.

    ``sample(rows)`` returns those (sorted) rows of the corpus as a matrix; it is called only
    for the types that train (IVF, IVF-PQ), on ``index.train_size`` rows, so a caller that
    streams its corpus reads the sample in one pass and adds the corpus in another.
    """
    chosen = index_type(n, params)
    if chosen in TRAINED:
        train = as_matrix(sample(sample_rows(n, params.train_size, seed)))
    else:
        train = np.zeros((0, dim), dtype=np.float32)
    return FLOAT_BUILDERS[chosen](train, n, params, seed)


def build_index(vectors: np.ndarray, params: IndexParams, seed: int = 0) -> faiss.Index:
    """A float index over unit ``vectors`` [n, dim], row ``i`` = vector ``i``.

    Exact inner product (``IndexFlatIP``) under ``params.exact_below`` vectors, otherwise the
    approximate type ``params.approximate`` (HNSW, IVF or IVF-PQ, its search breadth set from
    params; IVF and IVF-PQ train on ``params.train_size`` sampled rows).
    """
    matrix = as_matrix(vectors)
    index = empty_index(len(matrix), matrix.shape[1], params, matrix.__getitem__, seed)
    if len(matrix):
        index.add(matrix)
    return index


def pack_codes(codes: np.ndarray) -> np.ndarray:
    """0/1 codes ``[n, bits]`` -> packed bytes ``[n, bits / 8]`` as faiss binary indexes take."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] % 8:
        raise ValueError(f"codes must be [n, bits] with bits a multiple of 8, got {codes.shape}")
    return np.ascontiguousarray(np.packbits(codes.astype(np.uint8, copy=False), axis=1))


def binary_index_type(n: int, params: IndexParams) -> str:
    """``"flat"`` (exact Hamming) under ``params.exact_below`` codes; above, ``"hnsw"`` beside a
    float HNSW index, else ``"ivf"`` (24 bytes a 64-bit code with its id and direct-map entry:
    the one that fits PubMed)."""
    if n < params.exact_below:
        return "flat"
    return "hnsw" if params.approximate == "hnsw" else "ivf"


def _binary_flat(train: np.ndarray, n: int, params: IndexParams, seed: int) -> faiss.IndexBinary:
    return faiss.IndexBinaryFlat(train.shape[1] * 8)


def _binary_hnsw(train: np.ndarray, n: int, params: IndexParams, seed: int) -> faiss.IndexBinary:
    index = faiss.IndexBinaryHNSW(train.shape[1] * 8, params.hnsw_m)
    index.hnsw.efSearch = params.ef_search
    return index


def _binary_ivf(train: np.ndarray, n: int, params: IndexParams, seed: int) -> faiss.IndexBinary:
    bits, nlist = train.shape[1] * 8, nlist_for(n, len(train))
    index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(bits), bits, nlist)
    index.cp.seed = seed
    index.train(train)
    index.nprobe = min(params.binary_nprobe, nlist)
    index.make_direct_map()  # so a stored item's code can be read back (search --binary --pmid)
    return index


# binary index type -> builder of an empty, trained Hamming index from packed training codes
# ([0, bits / 8] for the types in no need of them)
BINARY_BUILDERS: dict[str, Callable[[np.ndarray, int, IndexParams, int], faiss.IndexBinary]] = {
    "flat": _binary_flat,
    "hnsw": _binary_hnsw,
    "ivf": _binary_ivf,
}


def empty_binary_index(
    n: int,
    bits: int,
    params: IndexParams,
    sample: Callable[[np.ndarray], np.ndarray] | None = None,
    seed: int = 0,
) -> faiss.IndexBinary:
    """The empty Hamming index that :func:`build_binary_index` would fill with ``n`` codes of
    ``bits`` (type by :func:`binary_index_type`). ``sample(rows)`` gives those 0/1 codes rows
    of the corpus, as for :func:`empty_index`; it is called only for IVF."""
    chosen = binary_index_type(n, params)
    if chosen in TRAINED:
        if sample is None:
            raise ValueError(f"a binary {chosen} index over {n} codes needs a training sample")
        train = pack_codes(sample(sample_rows(n, params.train_size, seed)))
    else:
        train = np.zeros((0, bits // 8), dtype=np.uint8)
    return BINARY_BUILDERS[chosen](train, n, params, seed)


def build_binary_index(codes: np.ndarray, params: IndexParams, seed: int = 0) -> faiss.IndexBinary:
    """A Hamming index over 0/1 ``codes`` [n, bits] (see :func:`empty_binary_index`)."""
    codes = np.asarray(codes)
    packed = pack_codes(codes)
    index = empty_binary_index(len(packed), packed.shape[1] * 8, params, codes.__getitem__, seed)
    if len(packed):
        index.add(packed)
    return index


def search(
    index: faiss.Index | faiss.IndexBinary, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest rows of ``index`` for each query: ``(scores, rows)``, both [m, k].

    Float index: ``queries`` are unit vectors [m, dim], scores are inner products (highest
    first). Binary index: ``queries`` are 0/1 codes [m, bits], scores are Hamming distances
    (lowest first). Where the index holds fewer than ``k`` items the result has fewer columns;
    approximate indexes may return row ``-1`` for an empty slot.
    """
    k = min(k, index.ntotal)
    if isinstance(index, faiss.IndexBinary):
        scores, rows = index.search(pack_codes(queries), k)
    else:
        scores, rows = index.search(as_matrix(queries), k)
    return scores, rows
