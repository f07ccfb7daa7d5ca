"""efetch answers: PubMed XML to records, one saved record per PMID, retraction marks.

The mapping of a ``PubmedArticle`` is :mod:`medsim.pubmed.medline`'s (one mapper for the live
and the local source); this module adds what only the live source needs: splitting an answer
into per-PMID records for :class:`RecordCache`, the ``eFetchResult`` error body, and the
retraction marks PubMed puts in a record (see :func:`retraction`).
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterable
from email.message import Message
from pathlib import Path

from lxml import etree

from medsim.io import atomic_path
from medsim.names import SkipReason
from medsim.pubmed.cache import ResponseCache
from medsim.pubmed.http import BadResponse, TransientAnswer, remember_failures
from medsim.pubmed.medline import MedlineDocumentError, parse_article_set, record_from_element
from medsim.pubmed.records import Article, Skipped, clean_text

__all__ = [
    "REMEMBERED",
    "RecordCache",
    "articles_from_xml",
    "check_efetch",
    "ncbi_error",
    "retraction",
    "split_records",
    "wrap_records",
]

SOURCE = "entrez"
_ERROR = re.compile(rb"<ERROR>(.*?)</ERROR>", re.S)
# Per-PMID outcomes worth remembering: asking again would get the same answer.
REMEMBERED = frozenset({SkipReason.NOT_RETURNED, SkipReason.MALFORMED_RECORD})


def retraction(element: etree._Element) -> str | None:
    """How PubMed marks a ``PubmedArticle`` as retracted, else None.

    PubMed gives a retracted article the publication type "Retracted Publication" and links
    its retraction notice with ``CommentsCorrections RefType="RetractionIn"`` (MEDLINE/PubMed
    XML element descriptions); either mark is enough.
    """
    citation = element.find("MedlineCitation")
    if citation is None:
        return None
    for publication_type in citation.iterfind("Article/PublicationTypeList/PublicationType"):
        if clean_text(publication_type.text).lower() == "retracted publication":
            return "PublicationType Retracted Publication"
    for link in citation.iterfind("CommentsCorrectionsList/CommentsCorrections"):
        if link.get("RefType") == "RetractionIn":
            notice = clean_text(link.findtext("PMID")) or clean_text(link.findtext("RefSource"))
            return f"RetractionIn {notice}".strip()
    return None


def articles_from_xml(data: bytes) -> list[Article | Skipped]:
    """Map a PubMed XML document (an efetch answer, saved records) to records, in order.

    The mapping is :func:`medsim.pubmed.medline.article_from_element`'s (one mapper for the
    live and the local source); an article without abstract becomes
    ``Skipped(pmid, "no abstract")`` and a retracted one ``Skipped(pmid, "retracted")``. A
    damaged document raises :class:`~medsim.pubmed.http.BadResponse`, so that the answer is
    asked for again.
    """
    try:
        elements = parse_article_set(data)
    except MedlineDocumentError as exc:
        raise BadResponse(str(exc)) from None
    records = [
        Skipped(clean_text(e.findtext("MedlineCitation/PMID")), SkipReason.RETRACTED, why)
        if (why := retraction(e))
        else record_from_element(e, SOURCE, "unknown")
        for e in elements
    ]
    return [
        Skipped(r.doc_id, SkipReason.NO_ABSTRACT)
        if isinstance(r, Article) and not r.abstract
        else r
        for r in records
    ]


_RECORD = re.compile(rb"<(PubmedArticle|PubmedBookArticle)>.*?</\1>", re.S)
_PMID = re.compile(rb"<PMID[^>]*>\s*(\d+)\s*</PMID>")


def split_records(data: bytes) -> dict[str, bytes]:
    """PMID -> the raw ``<PubmedArticle>`` (or book) element of an efetch answer.

    The first ``<PMID>`` of a record is its own (``MedlineCitation/PMID``); cited PMIDs come
    later. Records do not nest, so a non-greedy match finds each one.
    """
    records: dict[str, bytes] = {}
    for match in _RECORD.finditer(data):
        if pmid := _PMID.search(match.group(0)):
            records.setdefault(pmid.group(1).decode(), match.group(0))
    return records


def wrap_records(records: Iterable[bytes]) -> bytes:
    """Saved record elements as one PubmedArticleSet document."""
    return (
        b'<?xml version="1.0" ?>\n'
        + b"<PubmedArticleSet>\n"
        + b"\n".join(records)
        + b"\n</PubmedArticleSet>\n"
    )


def ncbi_error(body: bytes) -> str | None:
    """The message of an E-utilities error answer (an ``<ERROR>`` element), else None."""
    head = body[:65536]
    if b"<PubmedArticleSet" in head or b"<IdList" in head:
        return None
    match = _ERROR.search(head)
    return clean_text(html.unescape(match.group(1).decode("utf-8", "replace"))) if match else None


def check_efetch(body: bytes, headers: Message) -> tuple[list[Article | Skipped], bytes]:
    # An eFetchResult error body is no PubmedArticleSet: read its message before parsing.
    if (message := ncbi_error(body)) is not None:
        raise TransientAnswer(f"efetch answered an error: {message}")
    return articles_from_xml(body), body


class RecordCache:
    """One file per PMID, ``<root>/pubmed/<last 3 digits>/<pmid>.xml``: the record's raw XML.

    Cached per record rather than per efetch request, so that a run whose batches are cut
    differently (more classes, a larger ``max_per_class``) still fetches only new PMIDs. A
    remembered failure ages like the response cache's answers (``cache.max_age_s``).
    """

    def __init__(self, root: Path | None, cache: ResponseCache | None = None) -> None:
        self.root = Path(root) / "pubmed" if root is not None else None
        self.cache = cache

    def path(self, pmid: str) -> Path:
        assert self.root is not None
        return self.root / pmid[-3:] / f"{pmid}.xml"

    def get(self, pmid: str) -> bytes | None:
        if self.root is None:
            return None
        try:
            return self.path(pmid).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, pmid: str, record: bytes) -> None:
        if self.root is not None:
            with atomic_path(self.path(pmid)) as tmp:
                tmp.write_bytes(record)

    def drop(self, pmids: Iterable[str]) -> None:
        if self.root is not None:
            for pmid in pmids:
                self.path(pmid).unlink(missing_ok=True)

    def failed(self, pmid: str) -> Skipped | None:
        """The remembered failure of ``pmid`` (unless ``MEDSIM_RETRY_FAILED`` asks again)."""
        if self.root is None or not remember_failures():
            return None
        path = self.path(pmid).with_suffix(".failed.json")
        try:
            saved = json.loads(path.read_text())
            max_age = self.cache.max_age_s if self.cache is not None else None
            if max_age is not None and time.time() - path.stat().st_mtime > max_age:
                return None  # past fetch.refresh_days: ask again
        except (FileNotFoundError, ValueError):
            return None
        return Skipped(pmid, saved["reason"], saved.get("detail", ""))

    def fail(self, skip: Skipped) -> None:
        if self.root is not None and skip.item.isdigit():
            with atomic_path(self.path(skip.item).with_suffix(".failed.json")) as tmp:
                tmp.write_text(json.dumps({"reason": skip.reason, "detail": skip.detail}))
