"""Frozen embeddings and document labels from the embed and fetch stages, as arrays."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from medsim.errors import MedsimError
from medsim.io import read_table
from medsim.names import Modality
from medsim.schemas import ARTICLES, embedding_schema

__all__ = [
    "EMBEDDING_FILES",
    "Features",
    "load_features",
    "load_labels",
    "vectors_to_numpy",
]

log = logging.getLogger(__name__)

# modality -> file written by the embed stage under data/embeddings/
EMBEDDING_FILES = {m.value: f"{m.embeddings}.parquet" for m in Modality}


class Features(NamedTuple):
    """One modality's embeddings: item ids, the document of each item, float32 ``[n, d]``.

    A tuple, so ``ids, doc_ids, vectors = features`` works, and so do plain 3-tuples
    wherever a function takes features."""

    ids: list[str]
    doc_ids: list[str]
    vectors: np.ndarray

    def subset(self, wanted: set[str]) -> Features:
        """Only the items of the documents in ``wanted``, in order."""
        keep = [i for i, d in enumerate(self.doc_ids) if d in wanted]
        return Features(
            [self.ids[i] for i in keep], [self.doc_ids[i] for i in keep], self.vectors[keep]
        )


def vectors_to_numpy(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A fixed-size-list vector column as a float32 ``[n, d]`` matrix."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], column.type)
    n = len(column)
    width = column.type.list_size if pa.types.is_fixed_size_list(column.type) else None
    flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    if width is None:
        width = flat.size // n if n else 0
    return flat.reshape(n, width)


def load_features(directory: str | Path) -> dict[str, Features]:
    """Every non-empty ``data/embeddings/<modality>.parquet`` as (ids, doc_ids, matrix).

    Missing or empty files (a text-only corpus has no captions, tables or images) are left out.
    """
    directory = Path(directory)
    features: dict[str, Features] = {}
    for modality, name in EMBEDDING_FILES.items():
        path = directory / name
        if not path.exists():
            continue
        raw = pq.read_table(path)
        if raw.num_rows == 0:
            continue
        dim = raw.schema.field("vector").type.list_size
        table = read_table(path, embedding_schema(dim))
        features[modality] = Features(
            table.column("id").to_pylist(),
            table.column("doc_id").to_pylist(),
            vectors_to_numpy(table.column("vector")),
        )
        log.info("%s: %d vectors of %d-d from %s", modality, table.num_rows, dim, path)
    if not features:
        raise MedsimError(f"no embeddings in {directory} (run `dvc repro embed` first)")
    return features


def load_labels(articles: str | Path) -> tuple[dict[str, str], dict[str, str]]:
    """(doc_id -> label, doc_id -> split) from ``data/articles.parquet``; unlabelled documents
    appear in the splits only."""
    table = read_table(articles, ARTICLES, columns=["doc_id", "label", "split"])
    doc_ids = table.column("doc_id").to_pylist()
    labels = {
        d: lab for d, lab in zip(doc_ids, table.column("label").to_pylist(), strict=True) if lab
    }
    splits = dict(zip(doc_ids, table.column("split").to_pylist(), strict=True))
    return labels, splits
