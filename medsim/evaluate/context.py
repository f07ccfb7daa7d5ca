"""Everything a metrics table reads: the corpus as arrays, the trained space, the text encoder.

:class:`EvalContext` is built once per run; the table builders read arrays from it and call
the model through :class:`SpaceOps`, a thin wrapper over :mod:`medsim.dml` (so tests can run
the same builders on synthetic embeddings and a space trained in the test).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from medsim.config import Params
from medsim.dml.data import Features

log = logging.getLogger(__name__)

__all__ = ["EvalContext", "SpaceOps", "TextEncoderFn", "frame", "load_figures_meta"]

# texts -> float32 [n, d] vectors from the same text encoder the embed stage used
TextEncoderFn = Callable[[list[str]], np.ndarray]

FIGURE_META_COLUMNS = ["figure_id", "doc_id", "caption", "modality", "plane", "body_region"]


def frame(doc_ids: Sequence[str], matrix: np.ndarray) -> pd.DataFrame:
    """A (doc_id, vector) table as :func:`medsim.dml.document_vectors` takes it."""
    return pd.DataFrame({"doc_id": list(doc_ids), "vector": list(np.asarray(matrix))})


def load_figures_meta(path: Path) -> pd.DataFrame:
    """The figure table without its PNG bytes (empty frame when the file is absent)."""
    if not path.exists():
        return pd.DataFrame(columns=FIGURE_META_COLUMNS)
    return pq.read_table(path, columns=FIGURE_META_COLUMNS).to_pandas()


@dataclass
class SpaceOps:
    """The trained shared space and the train function behind the proposed rows."""

    space: object
    params: Params

    @property
    def kinds(self) -> list[str]:
        return list(self.space.heads.keys())

    @property
    def bits(self) -> list[int]:
        return [int(b) for b in self.space.bits]

    def project(self, kind: str, vectors: np.ndarray) -> np.ndarray:
        from medsim.dml import project

        return project(self.space, kind, vectors)

    def hash(self, kind: str, vectors: np.ndarray, bits: int) -> np.ndarray:
        from medsim.dml import hash_codes

        return hash_codes(self.space, kind, vectors, bits)

    def documents(self, features: Mapping[str, Features], doc_ids: Sequence[str]) -> np.ndarray:
        """Fused document vectors for ``doc_ids`` (zero rows for documents with nothing)."""
        return document_matrix(self.space, features, doc_ids)

    def retrain(
        self,
        features: Mapping[str, Features],
        labels: Mapping[str, str],
        splits: Mapping[str, str],
        loss: str | None = None,
    ) -> SpaceOps:
        """A new space trained by ``train_space`` with this run's train params and seed."""
        from medsim.dml import train_space

        space, _ = train_space(
            dict(features),
            dict(labels),
            dict(splits),
            self.params.train,
            loss or self.params.loss,
            self.params.seed,
        )
        return SpaceOps(space, self.params)


def document_matrix(
    space: object, features: Mapping[str, Features], doc_ids: Sequence[str]
) -> np.ndarray:
    """Fused document vectors of ``space`` aligned to ``doc_ids``."""
    from medsim.dml import document_vectors

    wanted = set(doc_ids)

    def part(kind: str) -> pd.DataFrame:
        _, docs, matrix = features[kind]
        keep = [i for i, d in enumerate(docs) if d in wanted]
        return frame([docs[i] for i in keep], matrix[keep])

    text = part("text") if "text" in features else frame([], np.zeros((0, 1)))
    parts = {k: part(k) for k in features if k != "text"}
    ids, matrix = document_vectors(space, text, parts)
    index = {d: i for i, d in enumerate(ids)}
    out = np.zeros((len(doc_ids), matrix.shape[1] if len(ids) else space.dim), dtype=np.float32)
    for row, doc in enumerate(doc_ids):
        if doc in index:
            out[row] = matrix[index[doc]]
    return out


@dataclass
class EvalContext:
    """One evaluation run's inputs.

    ``articles``: doc_id, title, abstract, label, split (labelled or not);
    ``features``: kind -> (ids, doc_ids, matrix) from data/embeddings;
    ``figures``: figure metadata (figure_id, doc_id, caption, modality, plane, body_region).
    """

    params: Params
    articles: pd.DataFrame
    features: dict[str, Features]
    figures: pd.DataFrame
    space: SpaceOps
    encode_text: TextEncoderFn | None = None
    encoder_note: str = ""
    root: Path = Path(".")
    artefacts: dict[str, object] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return self.params.seed

    @cached_property
    def text_index(self) -> dict[str, int]:
        ids = self.features["text"][0] if "text" in self.features else []
        return {d: i for i, d in enumerate(ids)}

    @cached_property
    def docs(self) -> pd.DataFrame:
        """Labelled documents that have a text embedding, in articles order."""
        a = self.articles
        keep = (
            a["label"].notna() & (a["label"].astype(str) != "") & a["doc_id"].isin(self.text_index)
        )
        return a.loc[keep].reset_index(drop=True)

    def text_vectors(self, doc_ids: Sequence[str]) -> np.ndarray:
        """Frozen text embeddings for ``doc_ids`` (each must have one)."""
        matrix = self.features["text"][2]
        return matrix[[self.text_index[d] for d in doc_ids]]

    def doc_texts(self, docs: pd.DataFrame) -> list[str]:
        """Title and main text of each document, as one string."""
        return (docs["title"].fillna("") + " " + docs["abstract"].fillna("")).tolist()

    def subset_features(self, doc_ids: Sequence[str] | set[str]) -> dict[str, Features]:
        """Every kind's features restricted to items of ``doc_ids``."""
        wanted = set(doc_ids)
        out: dict[str, Features] = {}
        for kind, (ids, docs, matrix) in self.features.items():
            keep = [i for i, d in enumerate(docs) if d in wanted]
            if keep:
                out[kind] = ([ids[i] for i in keep], [docs[i] for i in keep], matrix[keep])
        return out

    @property
    def has_images(self) -> bool:
        return "image" in self.features and len(self.features["image"][0]) > 0

    def image_reason(self) -> str:
        return (
            "text-only corpus: data/embeddings/images.parquet is empty (no figures), so no "
            "image model can be trained or scored"
        )
