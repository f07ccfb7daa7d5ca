"""Text encoder: the packaged MiniLM against bare sentence-transformers, pooling per model
kind, the decoder path against a hand-picked hidden state."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medsim.encoders.text import load_text_encoder
from tests.encoders.conftest import tiny_model_folder

TEXTS = [
    "Breast cancer screening with mammography.",
    "EGFR mutations in lung adenocarcinoma predict response to gefitinib. " * 20,
    "Troponin.",
    "Melanoma of the skin: sentinel node biopsy in thick primary tumours.",
    "Acute lymphoblastic leukemia in children.",
]


def test_minilm_matches_sentence_transformers(minilm):
    """Texts within the window: bare sentence-transformers' vectors. The one longer text
    (280 tokens): the normalised mean of its windows' vectors, which bare
    sentence-transformers gives for the windows' text."""
    from sentence_transformers import SentenceTransformer

    from medsim.encoders.windows import split_windows

    bare = SentenceTransformer(str(minilm.folder), device="cpu")
    bare.max_seq_length = minilm.max_tokens
    expected = bare.encode(TEXTS, batch_size=4)
    pieces, owner, longer = split_windows(TEXTS, minilm.tokenizer, minilm.windows)
    assert longer == 1 and list(owner).count(1) == 2
    windows = bare.encode([p for p, o in zip(pieces, owner, strict=True) if o == 1])
    expected[1] = windows.mean(axis=0) / np.linalg.norm(windows.mean(axis=0))
    got = minilm.encode(TEXTS)
    assert got.shape == (5, 384) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-5)
    assert minilm.pooling == "mean"


def test_truncate_reads_only_the_first_window(minilm):
    from dataclasses import replace

    from sentence_transformers import SentenceTransformer

    cut = replace(minilm, long_text="truncate")
    assert cut.fingerprint != minilm.fingerprint
    bare = SentenceTransformer(str(minilm.folder), device="cpu")
    bare.max_seq_length = minilm.max_tokens
    np.testing.assert_allclose(cut.encode(TEXTS), bare.encode(TEXTS, batch_size=4), atol=2e-5)
    assert cut.longer_than_window(TEXTS) == minilm.longer_than_window(TEXTS) == 1


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
    folder = tiny_model_folder(tmp_path / "bert", "bert")
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling/config.json").write_text(
        json.dumps({"word_embedding_dimension": 16, "pooling_mode_lasttoken": True})
    )
    (folder / "modules.json").write_text(
        json.dumps(
            [
                {
                    "idx": 0,
                    "name": "0",
                    "path": "",
                    "type": "sentence_transformers.models.Transformer",
                },
                {
                    "idx": 1,
                    "name": "1",
                    "path": "1_Pooling",
                    "type": "sentence_transformers.models.Pooling",
                },
            ]
        )
    )
    encoder = load_text_encoder(str(folder), device="cpu")
    assert encoder.pooling == "last"
    vectors = encoder.encode(TEXTS[:2])  # normalised although the folder declares no Normalize
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_empty_input_gives_an_empty_matrix(minilm):
    assert minilm.encode([]).shape == (0, 384)
