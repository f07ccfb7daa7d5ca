"""SharedSpace: save/load, project, document vectors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

from medsim.dml import SharedSpace, document_vectors, load_shared_space, project
from medsim.dml.fusion import fuse_documents
from medsim.errors import MedsimError


@pytest.fixture
def space() -> SharedSpace:
    torch.manual_seed(0)
    return SharedSpace(
        {"text": 6, "image": 10}, dim=4, hidden=8, bits=[8, 16], loss="triplet"
    ).eval()


def test_project_gives_unit_float32_rows_in_batches(space):
    x = np.random.RandomState(0).normal(size=(7, 6)).astype(np.float64)
    z = project(space, "text", x, batch_size=3)
    assert z.dtype == np.float32 and z.shape == (7, 4)
    assert np.linalg.norm(z, axis=1) == pytest.approx(np.ones(7), abs=1e-6)
    assert z == pytest.approx(project(space, "text", x, batch_size=100), abs=1e-6)
    assert project(space, "text", np.zeros((0, 6))).shape == (0, 4)


def test_project_rejects_unknown_modalities_and_wrong_dims(space):
    with pytest.raises(MedsimError, match="no head for 'caption'"):
        project(space, "caption", np.zeros((2, 6)))
    with pytest.raises(MedsimError, match=r"expects \[n, 6\]"):
        project(space, "text", np.zeros((2, 5)))
    with pytest.raises(MedsimError, match="unknown modalities"):
        SharedSpace({"audio": 3}, dim=4, hidden=8)


def test_save_and_load_round_trip(space, tmp_path):
    space.heads["text"].fit_standardization(torch.randn(5, 6) * 3)
    space.save(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["input_dims"] == {"text": 6, "image": 10}
    assert config["modalities"] == ["text", "image"] and config["bits"] == [8, 16]
    assert config["dim"] == 4 and config["loss"] == "triplet"
    loaded = load_shared_space(tmp_path / "model")
    assert not loaded.training
    x = np.random.RandomState(1).normal(size=(3, 6))
    assert project(loaded, "text", x) == pytest.approx(project(space, "text", x))


def test_loading_a_missing_model_says_what_to_run(tmp_path):
    with pytest.raises(MedsimError, match="dvc repro train"):
        load_shared_space(tmp_path)


def test_document_vectors_apply_the_fusion_rule_to_projections(space):
    rng = np.random.RandomState(2)
    text = rng.normal(size=(2, 6)).astype(np.float32)
    images = rng.normal(size=(3, 10)).astype(np.float32)
    text_frame = pd.DataFrame({"doc_id": ["a", "b"], "vector": list(text)})
    image_table = pa.table(
        {"doc_id": ["b", "b", "c"], "vector": pa.array(list(images), pa.list_(pa.float32(), 10))}
    )
    ids, fused = document_vectors(space, text_frame, {"image": image_table, "table": text_frame})
    want_ids, want = fuse_documents(
        ["a", "b"],
        project(space, "text", text),
        {"image": (["b", "b", "c"], project(space, "image", images))},
    )
    assert ids == want_ids == ["a", "b", "c"]
    assert fused == pytest.approx(want, abs=1e-6)
