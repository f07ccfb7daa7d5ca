"""Domain adaptation: pairs from the corpus, a few InfoNCE steps on a tiny model, the stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from medsim.config import params_from_dict
from medsim.encoders import adapt
from medsim.encoders.adapt import adapt_text_model, corpus_pairs, fine_tune
from medsim.encoders.specs import state_dict_hash
from medsim.encoders.stage import run_embed
from medsim.encoders.text import load_text_encoder
from tests.encoders.conftest import tiny_model_folder

PAIRS = [
    ("Breast cancer screening", "Mammography reduces mortality in women over fifty."),
    ("Lung adenocarcinoma", "EGFR mutations predict response to kinase inhibitors."),
    ("Myocardial infarction", "Troponin rises within hours of coronary occlusion."),
    ("Childhood leukemia", "Most children with acute lymphoblastic leukemia are cured."),
]


def test_corpus_pairs(tiny_corpus: Path):
    pairs = corpus_pairs(
        tiny_corpus / "data/articles.parquet", tiny_corpus / "data/figures.parquet"
    )
    assert pairs[0] == (
        "Breast cancer screening",
        "Mammography reduces mortality in women over fifty.",
    )
    assert len([p for p in pairs if p[0].startswith("Coronal MR")]) == 1  # f2, f3 share it
    assert ("Axial CT of the chest.", "Breast cancer screening\n" + pairs[0][1]) in pairs
    assert not any(not a or not b for a, b in pairs)  # d4 (empty) and f4 (no caption) absent


def test_contrastive_steps_lower_the_loss(tmp_path: Path):
    folder = tiny_model_folder(tmp_path / "bert", "bert")
    encoder = load_text_encoder(str(folder), batch_size=4, device="cpu")
    settings = {"steps": 8, "lr": 3e-3, "seed": 0, "temperature": 0.05}
    losses = fine_tune(encoder, PAIRS, tmp_path / "work", **settings)
    assert len(losses) == 8
    assert losses[-1] < 0.5 * losses[0]


def test_batches_never_hold_a_text_twice(tmp_path: Path):
    """Two pairs share an anchor: in one batch each would be the other's false negative."""
    folder = tiny_model_folder(tmp_path / "bert", "bert")
    encoder = load_text_encoder(str(folder), batch_size=4, device="cpu")
    pairs = [*PAIRS[:3], (PAIRS[0][0], "Screening also finds ductal carcinoma in situ.")]
    seen: list[list[str]] = []
    forward = encoder.sentence_model.forward

    def spy(features, **kwargs):
        seen.append(encoder.tokenizer.batch_decode(features["input_ids"], skip_special_tokens=True))
        return forward(features, **kwargs)

    encoder.sentence_model.forward = spy
    fine_tune(encoder, pairs, tmp_path / "work", steps=4, lr=1e-3, seed=0, temperature=0.05)
    anchors = [texts for texts in seen[::2]]  # anchors, then positives, per step
    assert anchors and all(len(set(texts)) == len(texts) for texts in anchors)
    assert all(len(texts) < 4 for texts in anchors)


def test_adapted_model_is_saved_reloaded_and_reused(tmp_path: Path, monkeypatch):
    folder = tiny_model_folder(tmp_path / "llama", "llama")
    base = load_text_encoder(str(folder), batch_size=4, device="cpu")
    base_hash = base.weight_hash
    out = adapt_text_model(base, PAIRS, tmp_path / "cache", steps=3, lr=1e-3, seed=0)
    assert (out / "config.json").is_file()
    assert json.loads((out / "medsim_adapt.json").read_text())["steps"] == 3

    adapted = load_text_encoder(str(out), batch_size=4, device="cpu")
    assert adapted.pooling == "last"  # kept through the saved pooling config
    assert adapted.weight_hash != base_hash
    assert adapted.weight_hash == state_dict_hash(base.model)  # trained in place, then saved
    vectors = adapted.encode([a for a, _ in PAIRS])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    def no_training(*args, **kwargs):
        raise AssertionError("an unchanged corpus must reuse the adapted model")

    monkeypatch.setattr(adapt, "fine_tune", no_training)
    fresh = load_text_encoder(str(folder), batch_size=4, device="cpu")
    assert adapt_text_model(fresh, PAIRS, tmp_path / "cache", steps=3, lr=1e-3, seed=0) == out


def test_stage_with_adapt_uses_and_ships_the_adapted_model(tiny_corpus: Path, tmp_path: Path):
    folder = tiny_model_folder(tmp_path / "bert", "bert")
    params = params_from_dict(
        {"embed": {"text_model": str(folder), "adapt": True, "adapt_steps": 2, "batch_size": 2}}
    )
    run_embed(params, tiny_corpus)
    shipped = tiny_corpus / "data/embeddings/text_model"
    assert (shipped / "config.json").is_file()
    meta = pq.read_schema(tiny_corpus / "data/embeddings/text.parquet").metadata
    assert meta[b"model_spec"] == b"data/embeddings/text_model"
    assert meta[b"dim"] == b"16"
    reloaded = load_text_encoder("data/embeddings/text_model", root=tiny_corpus, device="cpu")
    assert meta[b"weight_hash"].decode() == reloaded.weight_hash
