"""``pubmed-xml``: PubMed/MEDLINE XML files (``.xml`` or ``.xml.gz``), one file or a folder.

A folder is searched recursively, e.g. the annual baseline (``pubmed25n0001.xml.gz`` ...) plus
its update files. Files are read **newest first** (reverse name order, which for NLM's
numbered files is reverse release order): the fetch stage keeps the first version of a
doc_id it sees, so a citation revised in an update file keeps its latest version, and PMIDs
listed in a ``DeleteCitation`` block are dropped from the older files read afterwards (the
set of deleted PMIDs is the only state kept across files; memory is otherwise bound by one
record). The element -> article mapping is :func:`medsim.pubmed.medline.article_from_element`.

Labels come from ``fetch.local.mesh_labels`` over each citation's MeSH descriptor UIs; with an
empty rule every article is kept unlabelled. Citations without abstract are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from medsim.config import LocalSourceParams
from medsim.names import SkipReason
from medsim.pubmed.local import LocalSourceError
from medsim.pubmed.medline import DeletedCitation, iter_medline
from medsim.pubmed.raw import RawStore
from medsim.pubmed.records import Article, Record, Skipped, mesh_detail, mesh_label

SOURCE = "local:pubmed-xml"


def xml_files(path: Path) -> list[Path]:
    """The PubMed XML files under ``path`` (or ``path`` itself), newest (highest name) first."""
    if path.is_file():
        return [path]
    files = [
        p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith((".xml", ".xml.gz"))
    ]
    return sorted(files, key=lambda p: p.relative_to(path).as_posix(), reverse=True)


def read(path: Path, opts: LocalSourceParams, store: RawStore, ambiguous: str) -> Iterator[Record]:
    """Yield one article per citation with an abstract (and a label, when a rule is set)."""
    files = xml_files(path)
    if not files:
        raise LocalSourceError(f"no .xml or .xml.gz files under {path}")
    deleted: set[str] = set()
    for file in tqdm(files, desc="pubmed-xml files", unit="file", disable=None):
        name = file.name if file == path else file.relative_to(path).as_posix()
        deleted_here: list[str] = []
        for record in iter_medline(file, name, SOURCE):
            if isinstance(record, DeletedCitation):
                deleted_here.append(record.pmid)
            elif isinstance(record, Skipped):
                yield record
            elif record.doc_id in deleted:
                yield Skipped(record.doc_id, SkipReason.DELETED_CITATION, name)
            else:
                yield from _finish(record, opts, ambiguous)
        deleted.update(deleted_here)


def _finish(article: Article, opts: LocalSourceParams, ambiguous: str) -> Iterator[Record]:
    if not article.abstract:
        yield Skipped(article.doc_id, SkipReason.NO_ABSTRACT, article.source)
        return
    label, reason = mesh_label(article.mesh, opts.mesh_labels, ambiguous)
    if reason:
        yield Skipped(article.doc_id, reason, mesh_detail(article.mesh, opts.mesh_labels))
        return
    article.label = label
    yield article
