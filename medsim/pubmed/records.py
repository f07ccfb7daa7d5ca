"""The records every fetch source yields, and the rules that turn them into article rows.

Sources (Entrez, local readers) are generators of :class:`Article`, :class:`CorpusImage` and
:class:`Skipped` (together a :data:`Record`); :mod:`medsim.pubmed.stage` streams them into
Parquet. Nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from medsim.names import SkipReason
from medsim.splits import assign_split

__all__ = [
    "Article",
    "CorpusImage",
    "Record",
    "Skipped",
    "clean_text",
    "format_abstract",
    "labels_from_mesh",
    "mesh_detail",
    "mesh_label",
    "resolve_label",
]


@dataclass
class Article:
    """One document. ``split`` is set only when the corpus brings its own split."""

    doc_id: str
    title: str
    abstract: str  # the main text; a structured abstract's sections as "LABEL: text" paragraphs
    source: str  # the reader that made it: "entrez", "local:pdfs", ...
    pmid: str | None = None
    label: str | None = None  # the class; None when the corpus has none for this document
    split: str | None = None
    journal: str | None = None
    year: int | None = None
    mesh: list[str] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    doi: str | None = None
    pmcid: str | None = None
    pdf_path: str | None = None
    jats_path: str | None = None
    license: str | None = None
    # what a drawn split is hashed from (None: the doc_id); a reader that keeps one text under
    # several ids (a multi-label row per label) gives them one key, so that the copies share a
    # side: a test document whose text was trained on under another label is a leak
    split_key: str | None = None

    def to_row(self, seed: int, val_fraction: float, test_fraction: float) -> dict[str, Any]:
        """The ARTICLES row, with the split drawn for this document."""
        row = dict(self.__dict__)
        key = row.pop("split_key") or self.doc_id
        row["split"] = assign_split(key, seed, val_fraction, test_fraction, self.split)
        return row


@dataclass
class CorpusImage:
    """An image a corpus brings itself (MedPix). ``source_path`` is where to copy it from."""

    image_id: str
    doc_id: str
    source_path: str
    caption: str
    modality: str | None = None
    modality_detail: str | None = None
    plane: str | None = None
    body_region: str | None = None


@dataclass
class Skipped:
    """An input item that was not used: ``reason`` is a short category, ``detail`` specifics."""

    item: str
    reason: str
    detail: str | None = None


# What a fetch source yields.
Record = Article | CorpusImage | Skipped

_SPACE = re.compile(r"\s+")


def clean_text(text: str | None) -> str:
    """Collapse runs of whitespace; ``None`` becomes the empty string."""
    return _SPACE.sub(" ", text or "").strip()


def format_abstract(sections: Iterable[tuple[str | None, str]]) -> str:
    """Join abstract sections, keeping structured-abstract labels (``"METHODS: ..."``).

    Unlabelled sections are joined as plain paragraphs; empty sections are dropped.
    """
    parts = []
    for label, text in sections:
        text = clean_text(text)
        if not text:
            continue
        label = clean_text(label)
        parts.append(f"{label.upper()}: {text}" if label else text)
    return "\n".join(parts)


def labels_from_mesh(mesh_ids: Iterable[str], rule: Mapping[str, Sequence[str]]) -> list[str]:
    """Labels whose MeSH descriptor UIs intersect ``mesh_ids``, in the rule's order."""
    ids = {m.strip().upper() for m in mesh_ids if m}
    return [label for label, uis in rule.items() if ids & {u.upper() for u in uis}]


def resolve_label(candidates: Sequence[str], ambiguous: str) -> tuple[str | None, str | None]:
    """Pick one label from the classes a document matched.

    Returns ``(label, None)`` or ``(None, reason)``. The documented rule: a document matched by
    several classes is dropped (``ambiguous="drop"``) or given the first class listed in params
    (``ambiguous="first"``); either way the stage counts it.
    """
    unique = list(dict.fromkeys(candidates))
    if not unique:
        return None, SkipReason.NO_CLASS_MATCHED
    if len(unique) == 1 or ambiguous == "first":
        return unique[0], None
    return None, SkipReason.AMBIGUOUS_LABEL


def mesh_label(
    mesh_ids: Iterable[str], rule: Mapping[str, Sequence[str]], ambiguous: str
) -> tuple[str | None, str | None]:
    """Apply a MeSH rule (label -> descriptor UIs) to one document's MeSH ids.

    Returns ``(label, None)``, or ``(None, reason)`` when the rule rejects the document. An
    empty rule labels nothing and rejects nothing: ``(None, None)``.
    """
    if not rule:
        return None, None
    return resolve_label(labels_from_mesh(mesh_ids, rule), ambiguous)


def mesh_detail(mesh_ids: Sequence[str], rule: Mapping[str, Sequence[str]]) -> str:
    """Why :func:`mesh_label` rejected a document, for the skipped log: the classes matched."""
    matched = labels_from_mesh(mesh_ids, rule)
    return f"matched {', '.join(matched)}" if matched else f"{len(mesh_ids)} MeSH ids, none in rule"
