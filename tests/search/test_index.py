"""Pure index builders and the data/index/ layout, on hand-checkable vectors."""

from __future__ import annotations

import json
import math

import faiss
import numpy as np
import pytest

from medsim.config import IndexParams
from medsim.errors import MedsimError
from medsim.search.builders import (
    binary_index_type,
    build_binary_index,
    build_index,
    empty_binary_index,
    index_type,
    pack_codes,
    search,
)
from medsim.search.index import (
    CollectionArrays,
    CollectionStream,
    load_index,
    write_index_dir,
)
from medsim.search.prototypes import label_prototypes
from tests.search.conftest import VECTORS, items_table

S = 1 / math.sqrt(2)


def test_index_type_switches_at_exact_below():
    params = IndexParams(exact_below=100)
    assert index_type(99, params) == "flat"
    assert index_type(100, params) == "hnsw"
    assert index_type(100, IndexParams(exact_below=100, approximate="ivf")) == "ivf"


def test_flat_index_ranks_by_inner_product():
    index = build_index(VECTORS, IndexParams())
    assert isinstance(index, faiss.IndexFlatIP)
    scores, rows = search(index, np.array([[1, 0, 0]], dtype=np.float32), 4)
    assert rows[0].tolist() == [0, 2, 1, 3]
    np.testing.assert_allclose(scores[0], [1, S, 0, -1], atol=1e-6)


def test_search_clips_k_to_the_index_size():
    _, rows = search(build_index(VECTORS, IndexParams()), VECTORS[:2], 10)
    assert rows.shape == (2, 4)


@pytest.mark.parametrize("approximate", ["hnsw", "ivf"])
def test_approximate_index_above_exact_below_finds_exact_neighbours(approximate):
    rng = np.random.default_rng(0)
    base = rng.standard_normal((400, 8)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    params = IndexParams(exact_below=100, approximate=approximate, nprobe=64)
    index = build_index(base, params, seed=0)
    assert isinstance(index, faiss.IndexHNSWFlat if approximate == "hnsw" else faiss.IndexIVFFlat)
    _, exact = search(build_index(base, IndexParams()), base[:20], 5)
    _, approx = search(index, base[:20], 5)
    # a tiny index with a wide search is exact; each vector finds itself first
    assert approx[:, 0].tolist() == list(range(20))
    assert np.mean([len(set(a) & set(e)) for a, e in zip(approx, exact, strict=True)]) >= 4.8
    np.testing.assert_allclose(index.reconstruct(7), base[7], atol=1e-6)


def test_pack_codes_is_msb_first_and_rejects_odd_sizes():
    codes = np.array([[1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0]], dtype=np.uint8)
    assert pack_codes(codes).tolist() == [[129, 2]]
    with pytest.raises(ValueError):
        pack_codes(np.zeros((1, 12), dtype=np.uint8))


def test_binary_index_returns_hamming_distances():
    codes = np.zeros((3, 8), dtype=np.uint8)
    codes[1, :2] = 1  # distance 2 from row 0
    codes[2, :] = 1  # distance 8
    index = build_binary_index(codes, IndexParams())
    assert isinstance(index, faiss.IndexBinaryFlat)
    dist, rows = search(index, codes[:1], 3)
    assert rows[0].tolist() == [0, 1, 2]
    assert dist[0].tolist() == [0, 2, 8]
    hnsw = build_binary_index(codes, IndexParams(exact_below=2))
    assert isinstance(hnsw, faiss.IndexBinaryHNSW)
    assert search(hnsw, codes[2:], 1)[1][0].tolist() == [2]


def test_binary_index_type_follows_the_float_choice():
    params = IndexParams(exact_below=100)
    assert binary_index_type(99, params) == "flat"
    assert binary_index_type(100, params) == "hnsw"
    for approximate in ("ivf", "ivfpq"):
        assert (
            binary_index_type(100, IndexParams(exact_below=100, approximate=approximate)) == "ivf"
        )


def test_binary_ivf_scanning_every_list_is_exact_and_reads_codes_back():
    codes = np.random.default_rng(0).integers(0, 2, (400, 16), dtype=np.uint8)
    params = IndexParams(exact_below=100, approximate="ivf", train_size=200)
    index = build_binary_index(codes, params)
    assert isinstance(index, faiss.IndexBinaryIVF)
    assert index.nlist == 5 and index.nprobe == 5  # 200 training codes: 39 a list at least
    dist, _ = search(index, codes[:20], 10)
    exact, _ = search(build_binary_index(codes, IndexParams()), codes[:20], 10)
    np.testing.assert_array_equal(dist, exact)  # every list scanned: the same distances
    assert dist[:, 0].tolist() == [0] * 20
    assert np.unpackbits(index.reconstruct(7)).tolist() == codes[7].tolist()
    with pytest.raises(ValueError, match="needs a training sample"):
        empty_binary_index(400, 16, params)


def test_kind_stream_sample_reads_sorted_rows_across_batches():
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    codes = (np.arange(10)[:, None] >> np.arange(8)[::-1] & 1).astype(np.uint8)  # row -> bits
    batches = [CollectionArrays(x[a:b], {8: codes[a:b]}) for a, b in ((0, 3), (3, 4), (4, 10))]
    stream = CollectionStream(10, 2, (8,), lambda: iter(batches))
    sample = stream.sample(np.array([0, 3, 4, 9]))
    np.testing.assert_array_equal(sample.vectors, x[[0, 3, 4, 9]])
    assert np.packbits(sample.codes[8], axis=1).ravel().tolist() == [0, 3, 4, 9]
    empty = stream.sample(np.array([], dtype=np.int64))
    assert empty.vectors.shape == (0, 2) and empty.codes[8].shape == (0, 8)


def test_a_written_binary_ivf_is_memory_mapped_and_gives_codes_back(tmp_path):
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((300, 4)).astype(np.float32)
    codes = rng.integers(0, 2, (300, 16), dtype=np.uint8)
    ids = [f"t{i}" for i in range(300)]
    collections = {"tables": CollectionArrays(vectors, {16: codes}, items_table(ids, ids))}
    params = IndexParams(exact_below=100, approximate="ivfpq", pq_bytes=2, train_size=300)
    manifest = write_index_dir(tmp_path, collections, params, {"dim": 4})
    assert manifest["collections"]["tables"]["binary_type"] == "ivf"
    store = load_index(tmp_path)
    assert isinstance(store.binary_index("tables", 16), faiss.IndexBinaryIVF)
    assert store.code("tables", 123, 16).tolist() == [codes[123].tolist()]


def test_label_prototypes_are_normalised_means():
    names, protos = label_prototypes(VECTORS[:3], ["a", "a", "b"])
    assert names == ["a", "b"]
    np.testing.assert_allclose(protos[0], [S, S, 0], atol=1e-6)
    np.testing.assert_allclose(protos[1], [S, S, 0], atol=1e-6)
    assert label_prototypes(VECTORS[:2], [None, None])[0] == []


def test_written_index_round_trips(small_store):
    store = small_store
    assert store.collections == ["documents", "figures"]
    assert store.bits == [8]
    assert store.count("figures") == 2
    assert store.rows("figures", [1, 0], ("id", "caption", "title")) == [
        {"id": "f2", "caption": "c2", "title": None},
        {"id": "f1", "caption": "c1", "title": None},
    ]
    np.testing.assert_allclose(store.vector("figures", 0), VECTORS[2:3], atol=1e-6)
    assert store.code("figures", 0, 8).tolist() == [[1, 1, 1, 0, 0, 0, 0, 0]]
    assert store.find("11", ["documents"], ("pmid",)) == ("documents", 0)
    assert store.find("f2", ["documents", "figures"]) == ("figures", 1)
    assert store.find("nope", store.collections) is None
    labels, protos = store.prototypes
    assert labels == ["x", "y"]
    np.testing.assert_allclose(protos, VECTORS[:2])
    with pytest.raises(MedsimError, match="16-bit"):
        store.binary_index("documents", 16)


def test_load_index_errors_are_clear(tmp_path):
    with pytest.raises(MedsimError, match="dvc repro index"):
        load_index(tmp_path / "missing")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(MedsimError, match="corrupt"):
        load_index(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"version": 0, "collections": {}}))
    with pytest.raises(MedsimError, match="another medsim version"):
        load_index(tmp_path)


def test_write_index_dir_rejects_misaligned_items(tmp_path):
    collections = {"tables": CollectionArrays(VECTORS, {}, items_table(["t1"], ["d1"]))}
    with pytest.raises(ValueError, match="4 vectors but 1 items"):
        write_index_dir(tmp_path, collections, IndexParams(), {"dim": 3})


def test_item_lookups_across_row_groups(tmp_path):
    n = 10_000  # three row groups of items.parquet
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, 4)).astype(np.float32)
    ids = [f"x{i}" for i in range(n)]
    collections = {
        "documents": CollectionArrays(
            vectors[:3], {}, items_table(["a", "b", "c"], ["a", "b", "c"])
        ),
        "tables": CollectionArrays(
            vectors, {}, items_table(ids, ids, caption=[f"c{i}" for i in range(n)])
        ),
    }
    write_index_dir(tmp_path, collections, IndexParams(), {"dim": 4})
    store = load_index(tmp_path)
    assert store._items_file.metadata.num_row_groups == 3
    picked = [9_999, 0, 4_093, 4_094, 8_200]
    assert store.rows("tables", picked, ("id", "caption")) == [
        {"id": f"x{i}", "caption": f"c{i}"} for i in picked
    ]
    assert store.find("x9999", ["documents", "tables"]) == ("tables", 9_999)
    assert store.find("c", ["documents", "tables"]) == ("documents", 2)
