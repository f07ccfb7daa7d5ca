"""embed.backend: the ONNX export gives torch's vectors, int8 keeps the space, exports are
cached by weights and written atomically, and a changed backend never reuses cached vectors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from medsim.encoders import backends
from medsim.encoders.backends import QUANTIZATIONS, onnx_model
from medsim.encoders.cache import EmbeddingCache, encode_with_cache
from medsim.encoders.text import load_text_encoder
from medsim.errors import MedsimError
from tests.encoders.conftest import tiny_model_folder
from tests.encoders.test_text import TEXTS


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def minilm_onnx(exports):
    return load_text_encoder(
        "packaged:all-MiniLM-L6-v2", batch_size=4, device="cpu", backend="onnx", cache_dir=exports
    )


@pytest.fixture(scope="module")
def minilm_int8(exports):
    return load_text_encoder(
        "packaged:all-MiniLM-L6-v2",
        batch_size=4,
        device="cpu",
        backend="onnx-int8",
        cache_dir=exports,
    )


def test_onnx_gives_torchs_vectors(minilm, minilm_onnx):
    """Five texts, one of them longer than the window (read as two windows), batches of 4."""
    assert minilm_onnx.longer_than_window(TEXTS) == 1
    got = minilm_onnx.encode(TEXTS)
    assert got.shape == (5, 384) and got.dtype == np.float32
    np.testing.assert_allclose(got, minilm.encode(TEXTS), atol=1e-5)


def test_int8_keeps_the_space(minilm, minilm_int8):
    cosine = (minilm_int8.encode(TEXTS) * minilm.encode(TEXTS)).sum(axis=1)
    assert cosine.mean() >= 0.99 and cosine.min() >= 0.985
    assert cosine.max() < 0.99999  # int8 weights, not the fp32 model under another name


def test_backend_is_in_the_fingerprint(minilm, minilm_onnx, minilm_int8, tmp_path: Path):
    """Vectors cached under one backend are not served to another."""
    prints = {minilm.fingerprint, minilm_onnx.fingerprint, minilm_int8.fingerprint}
    assert len(prints) == 3
    torch_vectors = encode_with_cache(
        TEXTS, minilm, EmbeddingCache(tmp_path, minilm.fingerprint, 384)
    )
    cache = EmbeddingCache(tmp_path, minilm_int8.fingerprint, 384)
    assert len(cache) == 0
    int8_vectors = encode_with_cache(TEXTS, minilm_int8, cache)
    assert not np.allclose(int8_vectors, torch_vectors, atol=1e-4)
    # an int8 recipe change is a new space too
    recipes = dict(backends.BACKEND_QUANTIZATION, **{"onnx-int8": "feed-forward"})
    before = minilm_int8.fingerprint
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("medsim.encoders.text.BACKEND_QUANTIZATION", recipes)
        assert replace(minilm_int8).fingerprint != before


def test_export_is_cached_by_weights(tmp_path: Path, monkeypatch):
    import torch

    from medsim.encoders.text import load_sentence_model

    model = load_sentence_model(tiny_model_folder(tmp_path / "bert", "bert"), torch.device("cpu"))
    first = onnx_model(model, "weights-a", tmp_path / "cache")
    assert first.is_file()

    def no_export(*_):
        raise AssertionError("exported again")

    monkeypatch.setattr(backends, "export_onnx", no_export)
    assert onnx_model(model, "weights-a", tmp_path / "cache") == first
    with pytest.raises(MedsimError, match="exported again"):
        onnx_model(model, "weights-b", tmp_path / "cache")  # new weights: a new export


def test_failed_export_leaves_nothing(tmp_path: Path, monkeypatch):
    import torch

    from medsim.encoders.text import load_sentence_model

    model = load_sentence_model(tiny_model_folder(tmp_path / "bert", "bert"), torch.device("cpu"))

    def half_written(_model, path: Path):
        path.write_bytes(b"half an onnx file")
        raise RuntimeError("killed mid-export")

    monkeypatch.setattr(backends, "export_onnx", half_written)
    with pytest.raises(MedsimError, match="killed mid-export"):
        onnx_model(model, "weights", tmp_path / "cache")
    assert not list((tmp_path / "cache" / "onnx").rglob("*.onnx"))


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_tiny_models_export_with_their_pooling(tmp_path: Path, kind: str):
    """Mean pooling (BERT) and last-token pooling (a decoder) survive the export, for a batch
    of texts of different lengths (padding under the mask)."""
    folder = tiny_model_folder(tmp_path / kind, kind)
    settings = {"batch_size": 8, "max_tokens": 64, "device": "cpu", "cache_dir": tmp_path / "c"}
    reference = load_text_encoder(str(folder), **settings).encode(TEXTS)
    got = load_text_encoder(str(folder), backend="onnx", **settings).encode(TEXTS)
    np.testing.assert_allclose(got, reference, atol=1e-5)


def test_feed_forward_recipe_quantizes_only_feed_forward(tmp_path: Path):
    import onnx
    import torch

    from medsim.encoders.text import load_sentence_model

    model = load_sentence_model(tiny_model_folder(tmp_path / "bert", "bert"), torch.device("cpu"))
    path = onnx_model(model, "w", tmp_path / "cache", "feed-forward")
    nodes = onnx.load(str(path)).graph.node
    quantized = [n.name for n in nodes if n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul")]
    fp32 = [n.name for n in nodes if n.op_type == "MatMul"]
    assert len(quantized) == 4  # 2 layers x (intermediate, output)
    assert all("intermediate" in n or "/output/dense" in n for n in quantized)
    assert not any("attention/output" in n for n in quantized)
    assert any("attention/self/query" in n for n in fp32)
    assert set(QUANTIZATIONS) >= {"naive", "per-channel-all", "per-channel", "feed-forward"}


def test_onnx_runs_on_the_cpu_only():
    with pytest.raises(MedsimError, match="runs on the CPU"):
        load_text_encoder("packaged:all-MiniLM-L6-v2", device="cuda:0", backend="onnx")
    with pytest.raises(MedsimError, match=r"embed\.backend must be one of"):
        load_text_encoder("packaged:all-MiniLM-L6-v2", device="cpu", backend="tensorrt")


def test_params_reach_the_encoder(tmp_path: Path, monkeypatch):
    """embed.backend and embed.tokenize_workers go wherever the embed params build the text
    encoder (the embed stage, evaluate's encodes); the models cache holds the exports."""
    from medsim.config import EmbedParams
    from medsim.encoders import embed
    from medsim.evaluate.encode import load_encoder

    seen = []
    monkeypatch.setattr(embed, "load_text_encoder", lambda spec, **kw: seen.append(kw))
    params = EmbedParams(backend="onnx-int8", tokenize_workers=3)
    embed.text_encoder_from_params(params, tmp_path)
    load_encoder(params, tmp_path)  # fails on the stand-in encoder after building it
    assert len(seen) == 2
    for kw in seen:
        assert kw["backend"] == "onnx-int8" and kw["tokenize_workers"] == 3
        assert kw["cache_dir"] == tmp_path / embed.MODELS_CACHE_DIR
