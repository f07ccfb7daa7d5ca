"""Model specs: packaged, folder, hub id (against a dead local endpoint), split-zip assembly."""

from __future__ import annotations

import importlib.metadata
import io
import zipfile
from pathlib import Path

import pytest
import torch

from medsim.encoders import specs
from medsim.encoders.specs import (
    MPNET_PACKAGES,
    ModelSpecError,
    assemble_split_zip,
    resolve_text_model,
    state_dict_hash,
)
from medsim.errors import MedsimError


def test_packaged_minilm_resolves_to_the_installed_weights():
    folder = resolve_text_model("packaged:all-MiniLM-L6-v2")
    assert (folder / "config.json").is_file()
    assert (folder / "model.safetensors").stat().st_size > 80_000_000
    assert resolve_text_model("packaged:ALL-MINILM-L6-V2") == folder


def test_unknown_packaged_model_names_the_known_ones():
    with pytest.raises(ModelSpecError, match="packaged:all-minilm-l6-v2"):
        resolve_text_model("packaged:biobert")


def test_relative_folder_resolves_under_root(tmp_path: Path):
    (tmp_path / "models/mine").mkdir(parents=True)
    (tmp_path / "models/mine/config.json").write_text("{}")
    assert resolve_text_model("models/mine", root=tmp_path) == tmp_path / "models/mine"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelSpecError, match=r"no config\.json"):
        resolve_text_model("empty", root=tmp_path)


def test_spec_that_is_neither_folder_nor_hub_id(tmp_path: Path):
    with pytest.raises(ModelSpecError, match="neither"):
        resolve_text_model("no such model", root=tmp_path)


def test_unreachable_hub_gives_a_clear_error(tmp_path: Path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf/hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # no retry waits
    with pytest.raises(MedsimError) as info:
        resolve_text_model(
            "NeuML/pubmedbert-base-embeddings", root=tmp_path, endpoint="http://127.0.0.1:9"
        )
    message = str(info.value)
    assert "NeuML/pubmedbert-base-embeddings" in message
    assert "packaged:all-MiniLM-L6-v2" in message


def test_mpnet_without_its_packages_names_them(tmp_path: Path, monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(specs.importlib.metadata, "distribution", missing)
    with pytest.raises(ModelSpecError) as info:
        resolve_text_model("packaged:all-mpnet-base-v2", cache_dir=tmp_path)
    for package in MPNET_PACKAGES:
        assert package in str(info.value)


def _split(data: bytes, parts: int, folder: Path) -> list[Path]:
    size = -(-len(data) // parts)
    paths = []
    for i in range(parts):
        path = folder / f"model.zip.{i + 1:03d}"
        path.write_bytes(data[i * size : (i + 1) * size])
        paths.append(path)
    return paths


def test_split_zip_is_joined_and_unpacked(tmp_path: Path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("all-mpnet-base-v2/config.json", '{"model_type": "mpnet"}')
        archive.writestr("all-mpnet-base-v2/1_Pooling/config.json", "{}")
        archive.writestr("all-mpnet-base-v2/model.safetensors", bytes(range(256)) * 400)
    (tmp_path / "parts").mkdir()
    parts = _split(buffer.getvalue(), 5, tmp_path / "parts")
    folder = assemble_split_zip(parts, tmp_path / "cache", "all-mpnet-base-v2")
    assert folder == tmp_path / "cache/all-mpnet-base-v2"
    assert (folder / "config.json").read_text() == '{"model_type": "mpnet"}'
    assert (folder / "model.safetensors").read_bytes() == bytes(range(256)) * 400
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["all-mpnet-base-v2"]


def test_split_zip_with_a_missing_piece_fails_cleanly(tmp_path: Path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("all-mpnet-base-v2/config.json", "{}" * 5000)
    (tmp_path / "parts").mkdir()
    parts = _split(buffer.getvalue(), 3, tmp_path / "parts")
    with pytest.raises(ModelSpecError, match="corrupt"):
        assemble_split_zip(parts[1:], tmp_path / "cache", "all-mpnet-base-v2")
    assert not (tmp_path / "cache/all-mpnet-base-v2").exists()
    assert list((tmp_path / "cache").iterdir()) == []


def test_state_dict_hash_changes_with_any_weight():
    torch.manual_seed(0)
    a = torch.nn.Linear(3, 2)
    b = torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    assert state_dict_hash(a) == state_dict_hash(b)
    with torch.no_grad():
        b.bias[1] += 1e-6
    assert state_dict_hash(a) != state_dict_hash(b)
