"""The document fusion rule, on hand-computed vectors."""

from __future__ import annotations

import numpy as np
import pytest

from medsim.dml.fusion import fuse_documents

S = 1 / np.sqrt(2)


def test_text_weighs_as_much_as_all_parts_of_a_kind():
    text = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    captions = (["a", "a", "a"], np.array([[0, 1, 0], [0, 1, 0], [0, 1, 0]], dtype=np.float32))
    ids, fused = fuse_documents(["a", "b"], text, {"caption": captions})
    assert ids == ["a", "b"]
    # a: mean(text, mean(captions)) = (0.5, 0.5, 0) -> unit; b: text only
    assert fused[0] == pytest.approx([S, S, 0.0], abs=1e-6)
    assert fused[1] == pytest.approx([0.0, 0.0, 1.0])


def test_each_kind_counts_once_and_part_only_documents_are_kept():
    text = np.array([[1.0, 0.0]], dtype=np.float32)
    parts = {
        "caption": (["a", "c"], np.array([[0.0, 1.0], [S, S]], dtype=np.float32)),
        "image": (["a", "a"], np.array([[0.0, 1.0], [0.0, -1.0]], dtype=np.float32)),
    }
    ids, fused = fuse_documents(["a"], text, parts)
    assert ids == ["a", "c"]
    # a: mean(text (1,0), caption (0,1), image mean (0,0)) = (1/3, 1/3) -> unit
    assert fused[0] == pytest.approx([S, S], abs=1e-6)
    assert fused[1] == pytest.approx([S, S], abs=1e-6)
    assert np.linalg.norm(fused, axis=1) == pytest.approx([1.0, 1.0])


def test_nothing_in_nothing_out():
    ids, fused = fuse_documents([], np.zeros((0, 4), dtype=np.float32), {})
    assert ids == [] and fused.shape == (0, 4)


def test_text_only_keeps_parts_for_documents_without_text():
    text = np.array([[1.0, 0.0]], dtype=np.float32)
    images = (["a", "b"], np.array([[0.0, 1.0], [0.0, 2.0]], dtype=np.float32))
    ids, fused = fuse_documents(["a"], text, {"image": images}, text_only=True)
    assert ids == ["a", "b"]
    # a: its text alone (not the mean with its image, [0.707, 0.707]); b: its image
    np.testing.assert_allclose(fused, [[1.0, 0.0], [0.0, 1.0]])
