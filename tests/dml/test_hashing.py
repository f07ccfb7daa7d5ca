"""Hash codes of 32/64/128 bits: shapes, consistency with the space, neighbourhoods kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsim.dml import SharedSpace, codes_from_projected, hash_codes, project
from medsim.errors import MedsimError


@pytest.fixture
def space() -> SharedSpace:
    torch.manual_seed(0)
    return SharedSpace({"text": 12}, dim=16, hidden=32, bits=[32, 64, 128]).eval()


@pytest.mark.parametrize("bits", [32, 64, 128])
def test_codes_are_0_1_of_the_requested_length(space, bits):
    x = np.random.RandomState(0).normal(size=(9, 12)).astype(np.float32)
    codes = hash_codes(space, "text", x, bits)
    assert codes.shape == (9, bits) and codes.dtype == np.uint8
    assert set(np.unique(codes)) <= {0, 1}
    assert np.array_equal(codes, codes_from_projected(space, project(space, "text", x), bits))


def test_unknown_code_length_is_an_error(space):
    with pytest.raises(MedsimError, match="no 48-bit codes"):
        hash_codes(space, "text", np.zeros((1, 12), dtype=np.float32), 48)


def test_hamming_distance_follows_cosine_distance(space):
    rng = np.random.RandomState(0)
    base = rng.normal(size=(1, 16))
    near = base + 0.1 * rng.normal(size=(20, 16))
    far = rng.normal(size=(20, 16))
    unit = lambda v: (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    q = codes_from_projected(space, unit(base), 128)
    near_d = (codes_from_projected(space, unit(near), 128) != q).sum(1)
    far_d = (codes_from_projected(space, unit(far), 128) != q).sum(1)
    assert near_d.mean() < 20 < far_d.mean()


def test_trained_codes_keep_class_neighbourhoods(tiny_corpus, fast_params):
    from medsim.dml import train_space

    space, _ = train_space(**tiny_corpus, params=fast_params, loss="triplet", seed=0)
    _ids, docs, x = tiny_corpus["features"]["text"]
    labels = np.array([tiny_corpus["labels"][d] for d in docs])
    codes = hash_codes(space, "text", x, 16).astype(bool)
    hamming = (codes[:, None, :] != codes[None, :, :]).sum(-1) + np.eye(len(x), dtype=int) * 99
    nearest = hamming.argmin(1)
    assert (labels[nearest] == labels).mean() > 0.6  # chance is 0.25 with 4 balanced classes
    # the relaxed codes were pushed towards +-1 by the quantisation term
    z = torch.from_numpy(project(space, "text", x))
    assert space.hasher(16)(z).abs().mean() > 0.5
