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


class _CountingEncoder:
    fingerprint = "counting-v1"
    dim = 2

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.seen.extend(texts)
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)


def test_encode_with_cache_encodes_each_new_text_once(tmp_path) -> None:
    from medsim.encoders import encode_with_cache

    encoder = _CountingEncoder()
    cache = EmbeddingCache(tmp_path, encoder.fingerprint, encoder.dim)
    first = encode_with_cache(["ab", "abc", "ab"], encoder, cache)
    assert first.tolist() == [[2, 1], [3, 1], [2, 1]]
    assert encoder.seen == ["ab", "abc"]
    again = encode_with_cache(["abc", "abcd"], encoder, EmbeddingCache(tmp_path, "counting-v1", 2))
    assert again.tolist() == [[3, 1], [4, 1]]
    assert encoder.seen == ["ab", "abc", "abcd"]  # "abc" came from the shards on disk
    assert encode_with_cache([], encoder, cache).shape == (0, 2)
