"""Text encoder: pooling, the packaged MiniLM against sentence-transformers, decoder path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medsim.encoders.text import (
    choose_pooling,
    last_token_pool,
    load_text_encoder,
    mean_pool,
)
from tests.encoders.conftest import tiny_model_folder

TEXTS = [
    "Breast cancer screening with mammography.",
    "EGFR mutations in lung adenocarcinoma predict response to gefitinib. " * 20,
    "Troponin.",
    "Melanoma of the skin: sentinel node biopsy in thick primary tumours.",
    "Acute lymphoblastic leukemia in children.",
]


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert mean_pool(hidden, mask).tolist() == [[2.0, 3.0]]


def test_last_token_pool_handles_left_and_right_padding():
    hidden = torch.arange(12, dtype=torch.float32).reshape(2, 3, 2)
    right = torch.tensor([[1, 1, 0], [1, 1, 1]])
    left = torch.tensor([[0, 1, 1], [1, 1, 1]])
    assert last_token_pool(hidden, right).tolist() == [[2.0, 3.0], [10.0, 11.0]]
    assert last_token_pool(hidden, left).tolist() == [[4.0, 5.0], [10.0, 11.0]]


def test_minilm_matches_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    bare = SentenceTransformer(str(minilm.folder), device="cpu")
    bare.max_seq_length = minilm.max_tokens
    expected = bare.encode(TEXTS, batch_size=4)
    got = minilm.encode(TEXTS)
    assert got.shape == (5, 384) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-5)
    assert minilm.pooling == "mean"


def test_order_is_kept_despite_length_sorting(minilm):
    together = minilm.encode(TEXTS)
    alone = np.stack([minilm.encode([t])[0] for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=2e-5)


def test_instruction_changes_vectors_and_fingerprint(minilm):
    from dataclasses import replace

    instructed = replace(minilm, instruction="Represent the medical abstract: ")
    assert instructed.fingerprint != minilm.fingerprint
    assert not np.allclose(instructed.encode(TEXTS[:1]), minilm.encode(TEXTS[:1]), atol=1e-3)


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_decoder_model_uses_last_token_pooling(tmp_path: Path, kind: str):
    folder = tiny_model_folder(tmp_path / kind, kind)
    encoder = load_text_encoder(str(folder), batch_size=8, max_tokens=64, device="cpu")
    assert encoder.pooling == "last"
    assert encoder.dim == 16
    vectors = encoder.encode(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # the vector is the final state of the last real token, whatever else is in the batch
    inputs = encoder.tokenizer(TEXTS[2], return_tensors="pt")
    with torch.inference_mode():
        hidden = encoder.model(input_ids=inputs["input_ids"]).last_hidden_state[0, -1]
    np.testing.assert_allclose(vectors[2], (hidden / hidden.norm()).numpy(), atol=1e-5)


def test_encoder_model_uses_mean_pooling(tmp_path: Path):
    folder = tiny_model_folder(tmp_path / "bert", "bert")
    encoder = load_text_encoder(str(folder), device="cpu")
    assert encoder.pooling == "mean"
    assert encoder.max_tokens == 128  # capped by the model's position embeddings


def test_declared_pooling_wins_over_model_kind(tmp_path: Path):
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling/config.json").write_text(json.dumps({"pooling_mode_lasttoken": True}))
    (tmp_path / "modules.json").write_text(
        json.dumps([{"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}])
    )
    assert choose_pooling(tmp_path, "bert") == "last"
    assert choose_pooling(tmp_path / "1_Pooling", "bert") == "mean"
    assert choose_pooling(tmp_path / "1_Pooling", "qwen3") == "last"
