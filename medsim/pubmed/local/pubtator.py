"""``pubtator``: PubTator text files (the NCBI Disease corpus, PubTator Central exports).

One document is ``PMID|t|title``, ``PMID|a|abstract`` and then tab-separated mentions
``PMID  start  end  text  type  ids``, documents separated by blank lines. Mention ids may be
joined (``D001943|D010051``, ``D007153+D040181``), prefixed (``MESH:D001943``) or not MeSH at
all (``OMIM:114480``, gene ids): the MeSH-looking ones (``D`` or ``C`` + digits) become the
article's ``mesh`` column, in order of first mention, and the MeSH rule
(``fetch.local.mesh_labels``) labels the document from them. Mention texts never enter the
text (it is exactly title and abstract).

A split is taken from the file names (``NCBItrainset`` / ``NCBIdevelopset`` /
``NCBItestset``: train / val / test) when one of the files is a train file. Files are read
line by line; memory is bound by one document.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from medsim.config import LocalSourceParams
from medsim.names import SkipReason
from medsim.pubmed.local import LocalSourceError, splits_from_names
from medsim.pubmed.raw import RawStore
from medsim.pubmed.records import Article, Record, Skipped, clean_text, mesh_detail, mesh_label

SOURCE = "local:pubtator"
_MESH_ID = re.compile(r"^(?:MESH:)?([CD]\d{6,9})$", re.IGNORECASE)
_ID_SEPARATORS = re.compile(r"[|+,;\s]+")
_TEXT_LINE = re.compile(r"^([^|\t]+)\|([ta])\|(.*)$")


@dataclass
class _Doc:
    pmid: str
    title: str = ""
    abstract: str = ""
    mesh: list[str] = field(default_factory=list)


def mesh_ids(field_value: str) -> list[str]:
    """MeSH UIs in a PubTator id field: ``"MESH:D001943|OMIM:114480"`` -> ``["D001943"]``."""
    ids = []
    for part in _ID_SEPARATORS.split(field_value.strip()):
        match = _MESH_ID.match(part)
        if match:
            ids.append(match.group(1).upper())
    return ids


def iter_documents(file: Path) -> Iterator[_Doc | Skipped]:
    """Parse one PubTator file into documents, line by line."""
    doc: _Doc | None = None
    with file.open(encoding="utf-8", errors="replace") as fh:
        for number, raw in enumerate(fh, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                if doc is not None:
                    yield doc
                doc = None
                continue
            text = _TEXT_LINE.match(line)
            if text:
                pmid, field, content = text.group(1).strip(), text.group(2), text.group(3)
                if doc is not None and doc.pmid != pmid:
                    yield doc  # no blank line between two documents
                    doc = None
                if doc is None:
                    doc = _Doc(pmid)
                if field == "t":
                    doc.title = clean_text(content)
                else:
                    doc.abstract = clean_text(content)
                continue
            columns = line.split("\t")
            if doc is None or columns[0].strip() != doc.pmid or len(columns) < 5:
                item = doc.pmid if doc is not None else f"{file.name}:{number}"
                yield Skipped(
                    item, SkipReason.MALFORMED_LINE, f"{file.name}:{number}: {line[:80]!r}"
                )
                continue
            if len(columns) >= 6:
                doc.mesh.extend(mesh_ids(columns[5]))
    if doc is not None:
        yield doc


def pubtator_files(path: Path) -> list[Path]:
    """``path`` itself, or the ``.txt``/``.pubtator`` files under it that hold PubTator lines."""
    if path.is_file():
        return [path]
    from medsim.pubmed.local import looks_like_pubtator

    candidates = sorted(
        p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in (".txt", ".pubtator")
    )
    return [p for p in candidates if looks_like_pubtator(p)]


def read(path: Path, opts: LocalSourceParams, store: RawStore, ambiguous: str) -> Iterator[Record]:
    """Yield one article per PubTator document with a title and an abstract."""
    files = pubtator_files(path)
    if not files:
        raise LocalSourceError(f"no PubTator files (PMID|t|title lines) under {path}")
    splits = splits_from_names(files)
    for file in files:
        for doc in iter_documents(file):
            if isinstance(doc, Skipped):
                yield doc
                continue
            if not doc.abstract:
                yield Skipped(doc.pmid, SkipReason.NO_ABSTRACT, file.name)
                continue
            if not doc.title:
                yield Skipped(doc.pmid, SkipReason.NO_TITLE, file.name)
                continue
            mesh = list(dict.fromkeys(doc.mesh))
            label, reason = mesh_label(mesh, opts.mesh_labels, ambiguous)
            if reason:
                yield Skipped(doc.pmid, reason, mesh_detail(mesh, opts.mesh_labels))
                continue
            yield Article(
                doc_id=doc.pmid,
                pmid=doc.pmid if doc.pmid.isdigit() else None,
                title=doc.title,
                abstract=doc.abstract,
                source=SOURCE,
                label=label,
                split=splits[file],
                mesh=mesh,
            )
