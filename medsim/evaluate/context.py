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
from types import MappingProxyType

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from medsim.config import Params
from medsim.dml.data import Features
from medsim.dml.model import document_matrix
from medsim.dml.neighbours import space_rule

log = logging.getLogger(__name__)

__all__ = ["Built", "EvalContext", "SpaceOps", "TextEncoderFn", "frame", "load_figures_meta"]

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
    """The trained shared space, what goes into it, and the train function behind it.

    ``features`` are the space's inputs: its own text modalities (a tuned encoder's vectors, or
    with the lexical part beside them) and the frozen image features; None means the frozen
    embed stage's features. ``encode`` turns new texts into text-modality inputs (the space's own
    way, else the frozen encoder). ``frozen``, ``frozen_encode`` and ``items`` (the corpus's
    texts) let :meth:`refit` choose and train a space again on fewer labels.
    """

    space: object
    params: Params
    features: dict[str, Features] | None = None
    encode: TextEncoderFn | None = None
    tuned: object = None
    frozen: dict[str, Features] | None = None
    items: object = None
    root: Path = Path(".")
    lexical: object = None  # medsim.dml.lexical.LexicalEncoder
    frozen_encode: TextEncoderFn | None = None
    # how this space was chosen among the candidates (medsim.dml.choice); empty: not here
    selection: list[dict] = field(default_factory=list)

    @property
    def modalities(self) -> list[str]:
        return list(self.space.heads.keys())

    @property
    def bits(self) -> list[int]:
        return [int(b) for b in self.space.bits]

    @property
    def candidate(self) -> str:
        """Which candidate space this is (spaces from before the choice: by their encoder)."""
        default = "tuned" if self.tuned is not None else "head_only"
        return str(self.space.params.get("candidate", default))

    @property
    def rule(self) -> str:
        """How the space classifies (:func:`medsim.dml.neighbours.space_rule`)."""
        return space_rule(self.space.params)

    @property
    def is_head_only(self) -> bool:
        """The plain head-only candidate (not ``frozen``, not with a lexical part)."""
        return self.candidate == "head_only"

    @property
    def lexical_weight(self) -> float:
        return float(self.space.params.get("lexical_weight", 0.0))

    def project(self, modality: str, vectors: np.ndarray) -> np.ndarray:
        from medsim.dml import project

        return project(self.space, modality, vectors)

    def hash(self, modality: str, vectors: np.ndarray, bits: int) -> np.ndarray:
        from medsim.dml import hash_codes

        return hash_codes(self.space, modality, vectors, bits)

    def texts(self, texts: Sequence[str], modality: str = "text") -> np.ndarray:
        """New texts in the space: encoded (its own way, or the frozen one), then ``modality``'s
        head."""
        if self.encode is None:
            raise ValueError("no text encoder for new texts")
        return self.project(modality, self.encode(list(texts)))

    def documents(self, features: Mapping[str, Features], doc_ids: Sequence[str]) -> np.ndarray:
        """Fused document vectors for ``doc_ids`` (zero rows for documents with nothing)."""
        return document_matrix(self.space, features, doc_ids)

    def features_for(self, doc_ids: Sequence[str]) -> dict[str, Features]:
        """Space inputs of ``doc_ids``'s items, encoding texts the space has not seen."""
        from medsim.dml.candidates import space_inputs

        frozen = self.frozen if self.frozen is not None else (self.features or {})
        return space_inputs(self.space, frozen, self.items, doc_ids, self.tuned, self.lexical)

    def refit(
        self,
        labels: Mapping[str, str],
        splits: Mapping[str, str],
        choose: str | None = None,
        criterion: str = "neighbours",
        unlabelled: Sequence[str] | None = None,
    ) -> SpaceOps:
        """A space chosen and trained again on these labels and splits only (``choose``: None
        as ``train.choose`` says, or a candidate's name, e.g. ``head_only``), chosen by
        ``criterion`` (a key of :data:`medsim.dml.choice.CRITERIA`; ``neighbours`` without
        validation documents, or a criterion that cannot choose here: the candidate this
        space is). Its ``selection`` says how it was chosen. ``unlabelled``: documents whose
        texts, not labels, the lexical part may learn its words from (default: the training
        documents of ``splits``)."""
        from medsim.dml.fit import fit_space
        from medsim.dml.lexical import hybrid_encoder

        if choose is None and criterion == "neighbours" and "val" not in set(splits.values()):
            choose = self.candidate  # nothing to choose on: the train stage's choice
        wanted = set(splits)
        frozen = self.frozen if self.frozen is not None else (self.features or {})
        fitted = fit_space(
            self.params,
            self.root,
            {k: Features(*v).subset(wanted) for k, v in frozen.items()},
            dict(labels),
            dict(splits),
            self.items.subset(wanted) if self.items is not None else None,
            choose=choose,
            criterion=criterion,
            fallback=self.candidate,
            encode_all=False,
            lexical_texts=self._texts(unlabelled),
        )
        dense = fitted.tuned.encode if fitted.tuned is not None else self.frozen_encode
        return SpaceOps(
            fitted.space,
            self.params,
            fitted.features,
            hybrid_encoder(dense, fitted.lexical, fitted.lexical_weight),
            fitted.tuned,
            frozen,
            self.items,
            self.root,
            fitted.lexical,
            self.frozen_encode,
            fitted.selection,
        )

    def _texts(self, doc_ids: Sequence[str] | None) -> list[str] | None:
        """The texts of ``doc_ids`` (None: None; no texts: none)."""
        if doc_ids is None or self.items is None:
            return None
        return self.items.subset(set(doc_ids)).texts

    def retrain(
        self,
        features: Mapping[str, Features],
        labels: Mapping[str, str],
        splits: Mapping[str, str],
        loss: str | None = None,
    ) -> SpaceOps:
        """A new space of MLP heads trained by ``train_space`` on any ``features`` (e.g. the
        TF-IDF baseline) with this run's train params and seed."""
        from medsim.dml import train_space

        space, _ = train_space(
            dict(features),
            dict(labels),
            dict(splits),
            self.params.train,
            loss or self.params.loss,
            self.params.seed,
        )
        return SpaceOps(space, self.params, dict(features))


@dataclass(frozen=True)
class Built:
    """What one table builder returns: its metrics file, and what it made that a later
    builder or a plot reads (test vectors, probabilities, a refitted space), read-only."""

    table: dict
    products: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "products", MappingProxyType(dict(self.products)))


@dataclass
class EvalContext:
    """One evaluation run's inputs.

    ``articles``: doc_id, title, abstract, label, split (labelled or not);
    ``features``: modality -> (ids, doc_ids, matrix) from data/embeddings;
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
    # where rows that no loss or tuning experiment changes are cached (medsim.evaluate.memo);
    # None: always computed
    cache_root: Path | None = None

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
        """Every modality's features restricted to items of ``doc_ids``."""
        subsets = {k: Features(*v).subset(set(doc_ids)) for k, v in self.features.items()}
        return {k: v for k, v in subsets.items() if v.ids}

    @property
    def space_features(self) -> dict[str, Features]:
        """The proposed space's inputs (tuned text modalities when the encoder was tuned)."""
        return self.space.features if self.space.features is not None else self.features

    def space_inputs(self, modality: str, ids: Sequence[str]) -> np.ndarray:
        """The proposed space's input vectors of ``modality`` for item ids (text: doc ids)."""
        item_ids, _, matrix = self.space_features[modality]
        row = {item: i for i, item in enumerate(item_ids)}
        return matrix[[row[i] for i in ids]]

    def space_texts(self, texts: Sequence[str], modality: str = "text") -> np.ndarray | None:
        """New texts in the proposed space (its own encoder, else the frozen one, then the
        ``modality`` head); None when no encoder could be loaded."""
        if self.space.encode is not None:
            return self.space.texts(texts, modality)
        if self.encode_text is None:
            return None
        return self.space.project(modality, self.encode_text(list(texts)))

    @property
    def has_images(self) -> bool:
        return "image" in self.features and len(self.features["image"][0]) > 0

    def image_reason(self) -> str:
        return (
            "text-only corpus: data/embeddings/images.parquet is empty (no figures), so no "
            "image model can be trained or scored"
        )
