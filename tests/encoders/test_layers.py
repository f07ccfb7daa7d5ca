"""SplitEncoder: the cut model gives the whole model's vectors; lower states are cached."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsim.encoders.layers import LayerCache, SplitEncoder
from medsim.encoders.text import load_text_encoder
from medsim.errors import MedsimError
from tests.encoders.conftest import tiny_model_folder

TEXTS = [
    "Breast cancer screening with mammography",
    "EGFR mutations in lung adenocarcinoma predict response",
    "short",
]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    folder = tiny_model_folder(tmp_path_factory.mktemp("bert"), "bert")
    return load_text_encoder(str(folder), max_tokens=32, batch_size=2, device="cpu")


@pytest.mark.parametrize("tune_layers", [1, 2, 0])
def test_split_encoder_equals_the_whole_model(tiny_bert, tmp_path, tune_layers):
    split = SplitEncoder(tiny_bert, tune_layers, 32, tmp_path)
    expected = tiny_bert.encode(TEXTS)
    got = split.encode(TEXTS, batch_size=2)
    np.testing.assert_allclose(got, expected, atol=2e-3)  # lower states are float16
    assert split.cut == (2 - tune_layers if tune_layers == 1 else 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (run on a lent one)")
def test_split_encoder_on_a_gpu_gives_the_cpu_vectors(tiny_bert, tmp_path):
    folder = tiny_bert.folder
    on_gpu = load_text_encoder(str(folder), max_tokens=32, batch_size=2, device="cuda")
    split = SplitEncoder(on_gpu, 1, 32, tmp_path)
    np.testing.assert_allclose(
        split.encode(TEXTS, batch_size=2), tiny_bert.encode(TEXTS), atol=3e-3
    )


def test_lower_states_are_cached_and_shared_by_a_tuned_copy(tiny_bert, tmp_path):
    split = SplitEncoder(tiny_bert, 1, 32, tmp_path)
    first = split.lower(TEXTS)
    assert [len(s) for s in first][:2] == [len(s) for s in split.lower(TEXTS[:2])]
    again = SplitEncoder(tiny_bert, 1, 32, tmp_path)
    assert len(again.cache) == len(TEXTS)  # read back from disk
    # changing only the tuned (upper) layer keeps the cache key: a tuned model reuses it
    state = split.upper_state()
    split.load_upper({k: v + 1.0 for k, v in state.items()})
    assert SplitEncoder(tiny_bert, 1, 32, tmp_path).lower_key == again.lower_key
    split.load_upper(state)
    # another cut or token limit is another cache
    assert SplitEncoder(tiny_bert, 2, 32, tmp_path).lower_key != again.lower_key
    assert SplitEncoder(tiny_bert, 1, 16, tmp_path).lower_key != again.lower_key


def test_bfloat16_upper_layers_give_float32_vectors_near_the_float32_ones(tiny_bert, tmp_path):
    split = SplitEncoder(tiny_bert, 1, 32, tmp_path)
    states = split.lower(TEXTS)
    full = split.upper(states)
    mixed = split.upper(states, dtype=torch.bfloat16)
    assert mixed.dtype == torch.float32
    np.testing.assert_allclose((full * mixed).sum(1).detach().numpy(), 1.0, atol=1e-2)
    mixed.sum().backward()  # gradients reach the float32 weights
    grads = [p.grad for p in split.upper_layers.parameters()]
    assert all(g is not None and g.dtype == torch.float32 for g in grads)


def test_only_the_upper_layers_can_learn(tiny_bert, tmp_path):
    SplitEncoder(tiny_bert, 1, 32, tmp_path)
    trainable = {n for n, p in tiny_bert.model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("encoder.layer.1.") for n in trainable)


def test_layer_cache_ignores_a_half_written_shard(tmp_path):
    cache = LayerCache(tmp_path, 4)
    cache.put(["a"], [np.ones((3, 4), dtype=np.float32)])
    (tmp_path / "part-broken.parquet").write_bytes(b"not parquet")
    reread = LayerCache(tmp_path, 4)
    assert "a" in reread and reread.get("a").shape == (3, 4)


def test_a_decoder_model_is_refused_with_a_hint(tmp_path):
    folder = tiny_model_folder(tmp_path / "llama", "llama")
    encoder = load_text_encoder(str(folder), max_tokens=16, device="cpu")
    with pytest.raises(MedsimError, match="tune_encoder false"):
        SplitEncoder(encoder, 1, 16, tmp_path)
