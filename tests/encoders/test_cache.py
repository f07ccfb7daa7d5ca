"""Content-hash cache: keys, persistence across instances, atomic shards."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from medsim.encoders.cache import EmbeddingCache, content_hash


def test_content_hash_covers_encoder_and_input():
    expected = hashlib.sha256(b"fp\x00abc").hexdigest()
    assert content_hash("fp", "abc") == expected
    assert content_hash("fp", b"abc") == expected
    assert content_hash("fp2", "abc") != expected
    assert content_hash("fp", "abd") != expected


def test_vectors_survive_a_new_instance(tmp_path: Path):
    cache = EmbeddingCache(tmp_path, "f" * 64, dim=3)
    vectors = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32)
    cache.put(["a", "b"], vectors)
    assert len(cache) == 2

    again = EmbeddingCache(tmp_path, "f" * 64, dim=3)
    found = again.get(["b", "zzz", "a", "b"])
    assert sorted(found) == ["a", "b"]
    np.testing.assert_array_equal(found["a"], [1, 2, 3])
    np.testing.assert_array_equal(found["b"], [4, 5, 6])
    assert EmbeddingCache(tmp_path, "e" * 64, dim=3).get(["a"]) == {}  # other encoder


def test_put_writes_only_new_hashes_once(tmp_path: Path):
    cache = EmbeddingCache(tmp_path, "f" * 64, dim=2)
    cache.put(["a"], np.ones((1, 2), np.float32))
    cache.put(["a", "c", "c"], np.array([[9, 9], [2, 2], [3, 3]], np.float32))
    shards = sorted((tmp_path / ("f" * 16)).glob("part-*.parquet"))
    assert len(shards) == 2
    found = EmbeddingCache(tmp_path, "f" * 64, dim=2).get(["a", "c"])
    np.testing.assert_array_equal(found["a"], [1, 1])  # first vector kept
    np.testing.assert_array_equal(found["c"], [2, 2])
    assert not list((tmp_path / ("f" * 16)).glob(".*tmp"))


def test_unreadable_shard_is_ignored(tmp_path: Path):
    cache = EmbeddingCache(tmp_path, "f" * 64, dim=2)
    cache.put(["a"], np.ones((1, 2), np.float32))
    (tmp_path / ("f" * 16) / "part-broken.parquet").write_bytes(b"garbage")
    again = EmbeddingCache(tmp_path, "f" * 64, dim=2)
    assert len(again) == 1 and "a" in again
