"""``SharedSpace``: the trained heads, and the functions other stages call on it."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch import nn

from medsim.dml.data import vectors_to_numpy
from medsim.dml.fusion import fuse_documents
from medsim.dml.heads import HashingHead, ProjectionHead, make_head
from medsim.errors import MedsimError
from medsim.names import Modality

__all__ = [
    "CONFIG_FILE",
    "LEXICAL_DIR",
    "MODALITIES",
    "TEXT_MODEL_DIR",
    "WEIGHTS_FILE",
    "SharedSpace",
    "codes_from_projected",
    "document_matrix",
    "document_vectors",
    "fuses_text_only",
    "hash_codes",
    "load_shared_space",
    "project",
]

MODALITIES = tuple(m.value for m in Modality)
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"
TEXT_MODEL_DIR = "text_model"  # the tuned text encoder, inside the model folder
LEXICAL_DIR = "lexical"  # the lexical encoder (medsim.dml.lexical), inside the model folder


class SharedSpace(nn.Module):
    """One projection head per modality into a ``dim``-d space, one hashing head per size.

    The hashing heads act on the shared space, so every modality hashes with the same hyperplanes
    and codes of an image and of a text are comparable in Hamming distance.
    """

    def __init__(
        self,
        input_dims: Mapping[str, int],
        dim: int,
        hidden: int,
        bits: Sequence[int] = (32, 64, 128),
        dropout: float = 0.0,
        loss: str = "",
        params: Mapping[str, Any] | None = None,
        head_types: Mapping[str, str] | None = None,
        text_model: str | None = None,
        lexical: str | None = None,
    ) -> None:
        super().__init__()
        unknown = set(input_dims) - set(MODALITIES)
        if unknown:
            raise MedsimError(f"unknown modalities {sorted(unknown)}; known: {MODALITIES}")
        self.input_dims = dict(input_dims)
        self.dim = dim
        self.hidden = hidden
        self.bits = [int(b) for b in bits]
        self.dropout = dropout
        self.loss = loss
        self.params = dict(params or {})
        # "mlp" (standardise, two layers, dim-d), "residual" (x + MLP(x), zero-initialised) or
        # "identity" (a tuned encoder's own vectors); spaces saved before head types were
        # recorded are all "mlp"
        self.head_types = {k: (head_types or {}).get(k, "mlp") for k in self.input_dims}
        # folder name (inside the model folder) of the tuned text encoder whose vectors the
        # text modalities' heads take; None when the text heads sit on the frozen embed stage
        self.text_model = text_model
        # folder name (inside the model folder) of the lexical encoder whose vectors sit
        # beside the dense ones in the text modalities' inputs (medsim.dml.lexical); None: dense
        self.lexical = lexical
        self.heads = nn.ModuleDict(
            {
                modality: make_head(self.head_types[modality], d, dim, hidden, dropout)
                for modality, d in self.input_dims.items()
            }
        )
        self.hashers = nn.ModuleDict({str(b): HashingHead(dim, b) for b in self.bits})

    @property
    def own_text_inputs(self) -> bool:
        """Its text modalities take vectors of its own (a tuned encoder's, or with the lexical part
        beside them) rather than the embed stage's."""
        return bool(self.text_model or self.lexical)

    @property
    def modalities(self) -> list[str]:
        return list(self.heads.keys())

    def head(self, modality: str) -> ProjectionHead | nn.Module:
        if modality not in self.heads:
            raise MedsimError(
                f"this shared space has no head for '{modality}' (it has {self.modalities})"
            )
        return self.heads[modality]

    def hasher(self, bits: int) -> HashingHead:
        if str(bits) not in self.hashers:
            raise MedsimError(f"this shared space has no {bits}-bit codes (it has {self.bits})")
        return self.hashers[str(bits)]

    def forward(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        return self.head(modality)(x)

    def config(self) -> dict[str, Any]:
        return {
            "input_dims": self.input_dims,
            "dim": self.dim,
            "hidden": self.hidden,
            "bits": self.bits,
            "dropout": self.dropout,
            "modalities": self.modalities,
            "loss": self.loss,
            "params": self.params,
            "head_types": self.head_types,
            "text_model": self.text_model,
            "lexical": self.lexical,
        }

    def save(self, directory: str | Path) -> None:
        """Write ``weights.pt`` (state dict) and ``config.json`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), directory / WEIGHTS_FILE)
        (directory / CONFIG_FILE).write_text(json.dumps(self.config(), indent=2) + "\n")


def load_shared_space(directory: str | Path) -> SharedSpace:
    """Read a space written by :meth:`SharedSpace.save`; returned in eval mode on the CPU."""
    directory = Path(directory)
    try:
        config = json.loads((directory / CONFIG_FILE).read_text())
        state = torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise MedsimError(f"no trained model in {directory} (run `dvc repro train`)") from exc
    space = SharedSpace(
        input_dims=config["input_dims"],
        dim=config["dim"],
        hidden=config["hidden"],
        bits=config["bits"],
        dropout=config.get("dropout", 0.0),
        loss=config.get("loss", ""),
        params=config.get("params"),
        head_types=config.get("head_types"),
        text_model=config.get("text_model"),
        lexical=config.get("lexical"),
    )
    space.load_state_dict(state)
    return space.eval()


def _as_tensor(vectors: np.ndarray, in_dim: int, modality: str) -> torch.Tensor:
    array = np.require(vectors, dtype=np.float32, requirements=["C", "W"])
    if array.ndim != 2 or array.shape[1] != in_dim:
        raise MedsimError(
            f"{modality} vectors have shape {array.shape}; this space expects [n, {in_dim}] "
            "(were the embeddings made with another model than the one it was trained on?)"
        )
    return torch.from_numpy(array)


@torch.no_grad()
def project(
    space: SharedSpace, modality: str, vectors: np.ndarray, batch_size: int = 4096
) -> np.ndarray:
    """Project frozen ``modality`` embeddings ``[n, d_modality]`` into the space: float32
    ``[n, dim]``, every row of unit length."""
    head = space.head(modality)
    was_training = head.training
    head.eval()
    x = _as_tensor(vectors, head.in_dim, modality)
    out = [head(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    head.train(was_training)
    if not out:
        return np.zeros((0, space.dim), dtype=np.float32)
    return torch.cat(out).numpy().astype(np.float32, copy=False)


@torch.no_grad()
def codes_from_projected(space: SharedSpace, projected: np.ndarray, bits: int) -> np.ndarray:
    """Binary codes (uint8 0/1, ``[n, bits]``) of vectors already in the shared space
    (e.g. fused document vectors from :func:`document_vectors`)."""
    hasher = space.hasher(bits)
    z = torch.from_numpy(np.asarray(projected, dtype=np.float32).reshape(-1, space.dim))
    return hasher.codes(z).numpy()


def hash_codes(space: SharedSpace, modality: str, vectors: np.ndarray, bits: int) -> np.ndarray:
    """Binary codes (uint8 0/1, ``[n, bits]``) of frozen ``modality`` embeddings."""
    space.hasher(bits)  # fail on an unknown size before projecting
    return codes_from_projected(space, project(space, modality, vectors), bits)


def _ids_and_matrix(table: pd.DataFrame | pa.Table) -> tuple[list[str], np.ndarray]:
    if isinstance(table, pa.Table):
        return table.column("doc_id").to_pylist(), vectors_to_numpy(table.column("vector"))
    ids = table["doc_id"].astype(str).tolist()
    if not ids:
        return [], np.zeros((0, 0), dtype=np.float32)
    return ids, np.stack(table["vector"].to_numpy()).astype(np.float32)


def document_vectors(
    space: SharedSpace,
    text: pd.DataFrame | pa.Table,
    parts: Mapping[str, pd.DataFrame | pa.Table],
) -> tuple[list[str], np.ndarray]:
    """Document embeddings by the fusion rule of :mod:`medsim.dml.fusion`.

    ``text``: (doc_id, vector) frozen text embeddings; ``parts``: modality -> (doc_id, vector)
    tables of captions, tables and images. Modalities without a head in ``space`` are ignored.
    """
    text_ids, text_matrix = _ids_and_matrix(text)
    text_projected = (
        project(space, "text", text_matrix)
        if text_ids and "text" in space.heads
        else np.zeros((0, space.dim), dtype=np.float32)
    )
    if "text" not in space.heads:
        text_ids = []
    projected_parts = {}
    for modality, table in parts.items():
        if modality not in space.heads:
            continue
        ids, matrix = _ids_and_matrix(table)
        if ids:
            projected_parts[modality] = (ids, project(space, modality, matrix))
    return fuse_documents(text_ids, text_projected, projected_parts, fuses_text_only(space))


def fuses_text_only(space: SharedSpace) -> bool:
    """Whether a document with text is its text alone (:mod:`medsim.dml.fusion`)."""
    return bool(space.params.get("text_only", False))


def document_matrix(
    space: SharedSpace, features: Mapping[str, Sequence], doc_ids: Sequence[str]
) -> np.ndarray:
    """Fused document vectors of ``space`` aligned to ``doc_ids`` (zero rows for documents
    with nothing); ``features``: modality -> (ids, doc_ids, matrix)."""
    wanted = set(doc_ids)

    def part(modality: str) -> pd.DataFrame:
        _, docs, matrix = features[modality]
        keep = [i for i, d in enumerate(docs) if d in wanted]
        return pd.DataFrame({"doc_id": [docs[i] for i in keep], "vector": list(matrix[keep])})

    empty = pd.DataFrame({"doc_id": [], "vector": []})
    text = part("text") if "text" in features else empty
    parts = {k: part(k) for k in features if k != "text"}
    ids, matrix = document_vectors(space, text, parts)
    index = {d: i for i, d in enumerate(ids)}
    out = np.zeros((len(doc_ids), matrix.shape[1] if len(ids) else space.dim), dtype=np.float32)
    for row, doc in enumerate(doc_ids):
        if doc in index:
            out[row] = matrix[index[doc]]
    return out
