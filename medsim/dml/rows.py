"""A corpus's features as training sees them: each modality's rows (text, caption, table,
image) with their split and class, the cross-modal positive pairs, and the class pool.

Pure and shared by :mod:`medsim.dml.train` (the loop), :mod:`medsim.dml.validation` and
:mod:`medsim.dml.fit` (the choice among candidate spaces).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from medsim.dml.data import Features
from medsim.dml.model import SharedSpace
from medsim.errors import MedsimError

__all__ = [
    "RIDGE_ALPHA",
    "ClassPool",
    "ModalityRows",
    "Pairs",
    "fit_linear_heads",
    "positive_pairs",
    "prepare_modalities",
    "project_rows",
]

log = logging.getLogger(__name__)


@dataclass
class ModalityRows:
    """One modality's rows, as tensors, with what each row belongs to."""

    x: torch.Tensor
    ids: list[str]
    doc_ids: list[str]
    split: np.ndarray  # split name per row ("" when the document is unknown)
    label: np.ndarray  # class index per row, -1 when unlabelled


@dataclass
class Pairs:
    """Cross-modal positive pairs: rows of modality ``a`` and ``b`` sharing a key are positives."""

    a: str
    b: str
    a_rows: np.ndarray
    b_rows: np.ndarray
    keys: np.ndarray


def prepare_modalities(
    features: Mapping[str, Features], labels: Mapping[str, str], splits: Mapping[str, str]
) -> tuple[dict[str, ModalityRows], list[str]]:
    """Each modality's rows as tensors with their split and class index; the class names."""
    classes = sorted({labels[d] for d in splits if d in labels})
    index = {c: i for i, c in enumerate(classes)}
    modalities: dict[str, ModalityRows] = {}
    for modality, (ids, doc_ids, matrix) in features.items():
        matrix = np.asarray(matrix, dtype=np.float32)
        if matrix.ndim != 2 or len(matrix) != len(ids) or len(ids) != len(doc_ids):
            raise MedsimError(f"{modality}: ids, doc_ids and vectors disagree in length")
        if not len(ids):
            continue
        split = np.array([splits.get(d, "") for d in doc_ids])
        label = np.array([index.get(labels.get(d, ""), -1) for d in doc_ids], dtype=np.int64)
        unknown = int((split == "").sum())
        if unknown:
            log.warning(
                "%s: %d rows belong to documents not in the articles table", modality, unknown
            )
        modalities[modality] = ModalityRows(
            torch.from_numpy(matrix.copy()), list(ids), list(doc_ids), split, label
        )
    if not modalities:
        raise MedsimError("no features to train on")
    return modalities, classes


def _caption_groups(caption: ModalityRows) -> dict[str, int]:
    """figure id -> group of identical captions (several images can share one caption)."""
    groups: dict[bytes, int] = {}
    out = {}
    for row, fid in enumerate(caption.ids):
        # rounded: one text encoded in two batches can differ in the last bits (padding)
        key = np.round(caption.x[row].numpy(), 4).tobytes()
        out[fid] = groups.setdefault(key, len(groups))
    return out


def positive_pairs(modalities: Mapping[str, ModalityRows], split: str) -> list[Pairs]:
    """Positive cross-modal pairs within ``split``: part <-> own text, image <-> own caption."""
    found: list[Pairs] = []
    text = modalities.get("text")
    if text is not None:
        text_row = {d: r for r, d in enumerate(text.doc_ids) if text.split[r] == split}
        for modality, part in modalities.items():
            if modality == "text":
                continue
            rows = [
                r for r, d in enumerate(part.doc_ids) if part.split[r] == split and d in text_row
            ]
            if rows:
                b_rows = np.array([text_row[part.doc_ids[r]] for r in rows])
                found.append(Pairs(modality, "text", np.array(rows), b_rows, b_rows.copy()))
    if "image" in modalities and "caption" in modalities:
        image, caption = modalities["image"], modalities["caption"]
        caption_row = {f: r for r, f in enumerate(caption.ids) if caption.split[r] == split}
        group = _caption_groups(caption)
        rows = [r for r, f in enumerate(image.ids) if image.split[r] == split and f in caption_row]
        if rows:
            b_rows = np.array([caption_row[image.ids[r]] for r in rows])
            keys = np.array([group[image.ids[r]] for r in rows])
            found.append(Pairs("image", "caption", np.array(rows), b_rows, keys))
    return found


@dataclass
class ClassPool:
    """Every labelled training row of every modality: (modality index, row, label)."""

    modality: np.ndarray
    row: np.ndarray
    label: np.ndarray

    @classmethod
    def of(cls, modalities: Mapping[str, ModalityRows]) -> ClassPool:
        chosen = [(k.split == "train") & (k.label >= 0) for k in modalities.values()]
        return cls(
            np.concatenate([np.full(int(c.sum()), i) for i, c in enumerate(chosen)]),
            np.concatenate([np.flatnonzero(c) for c in chosen]),
            np.concatenate([k.label[c] for k, c in zip(modalities.values(), chosen, strict=True)]),
        )


def project_rows(
    space: SharedSpace, modality: ModalityRows, name: str, rows: np.ndarray
) -> torch.Tensor:
    """The rows ``rows`` of ``modality`` through the space's head ``name`` (with gradients)."""
    return space.heads[name](modality.x[torch.from_numpy(np.asarray(rows, dtype=np.int64))])


RIDGE_ALPHA = 10.0  # the ridge baseline's (medsim.evaluate.baselines.ridge_map) penalty


def fit_linear_heads(
    space: SharedSpace, modalities: Mapping[str, ModalityRows], types: Mapping[str, str]
) -> None:
    """Start each "linear" head at the ridge map from its training rows onto the space
    vectors of their own captions (images), else of their own documents' texts."""
    pairs = {(p.a, p.b): p for p in positive_pairs(modalities, "train")}
    for name, head_type in types.items():
        if head_type != "linear":
            continue
        pair = pairs.get((name, "caption")) or pairs.get((name, "text"))
        if pair is None or len(pair.a_rows) < 2:
            log.warning("%s: no training pairs to start its linear head from", name)
            continue
        with torch.no_grad():
            target = project_rows(space, modalities[pair.b], pair.b, pair.b_rows)
        x = modalities[name].x[torch.from_numpy(pair.a_rows)]
        space.heads[name].fit_ridge(x, target, RIDGE_ALPHA)
        log.info("%s head: ridge start on %d %s pairs", name, len(pair.a_rows), pair.b)
