"""PubMed / MEDLINE XML -> :class:`~medsim.pubmed.records.Article`, streamed with lxml.

Both layouts NLM has shipped are read:

* ``PubmedArticleSet/PubmedArticle`` (EFetch answers, annual baseline and update files since
  2017, the 2024/2025 DTDs), where identifiers sit in ``PubmedData/ArticleIdList``;
* ``MedlineCitationSet/MedlineCitation`` (the MEDLINE distribution up to 2016), which has no
  ``PubmedData``.

Mapping convention, the one for PubMed XML in medsim (the Entrez source maps its efetch
answers with the same :func:`record_from_element`):

==========  =================================================================================
doc_id      the PMID, as a string
pmid        the PMID, as a string
title       ``Article/ArticleTitle`` (inline markup such as ``<i>`` flattened to its text),
            else ``VernacularTitle``; whitespace collapsed
abstract    ``Article/Abstract/AbstractText`` sections through
            :func:`~medsim.pubmed.records.format_abstract`: a section with a ``Label``
            attribute becomes ``"LABEL: text"`` (label upper-cased), sections joined by "\\n"
journal     ``Article/Journal/Title``
year        ``PubDate/Year``, else the first 4-digit year of ``PubDate/MedlineDate``
mesh        MeSH **descriptor UIs** (``DescriptorName/@UI``, e.g. ``"D001943"``), in the
            record's order, without duplicates. UIs rather than names because the labelling
            rule (``fetch.local.mesh_labels``) is written in UIs, which never change spelling
keywords    ``KeywordList/Keyword`` texts, in order
doi         ``PubmedData/ArticleIdList/ArticleId[@IdType="doi"]``, else
            ``Article/ELocationID[@EIdType="doi"]``
pmcid       ``PubmedData/ArticleIdList/ArticleId[@IdType="pmc"]``, else (2016 MEDLINE, which
            has no PubmedData) an ``OtherID`` that starts with ``PMC``
label       ``None`` here; the reader applies the MeSH rule (MeSH stays its own column and
            never enters title or abstract)
==========  =================================================================================

Only the record's own ``PubmedData/ArticleIdList`` is read: the ``ArticleIdList`` elements
under ``ReferenceList`` belong to cited papers. ``DeleteCitation`` blocks yield
:class:`DeletedCitation` markers. ``PubmedBookArticle`` records (NCBI Bookshelf) are skipped.

Parsing never loads a DTD nor touches the network (``load_dtd=False``, ``no_network=True``,
``resolve_entities=False``), and each record is cleared once mapped, so memory stays bound by
one record whatever the file size.
"""

from __future__ import annotations

import bisect
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from lxml import etree

from medsim.names import SkipReason
from medsim.pubmed.records import Article, Skipped, clean_text, format_abstract

__all__ = [
    "SAFE_PARSER",
    "DeletedCitation",
    "MedlineDocumentError",
    "MedlineRecordError",
    "article_from_element",
    "iter_medline",
    "parse_article_set",
    "record_from_element",
]

RECORD_TAGS = ("PubmedArticle", "MedlineCitation", "PubmedBookArticle", "DeleteCitation")
SET_TAGS = ("PubmedArticleSet", "MedlineCitationSet")
_YEAR = re.compile(r"\b(1[89]\d\d|2\d\d\d)\b")


class MedlineRecordError(ValueError):
    """A record that cannot become an article (no PMID, no title)."""


class MedlineDocumentError(ValueError):
    """A whole document that is no readable ``PubmedArticleSet``."""


@dataclass(frozen=True)
class DeletedCitation:
    """A PMID listed in a ``DeleteCitation`` block (baseline update files)."""

    pmid: str


def _text(elem: etree._Element | None) -> str:
    """All text under ``elem`` (inline markup flattened), whitespace collapsed."""
    if elem is None:
        return ""
    # str.split() splits on exactly the characters re's \s matches, so this equals clean_text,
    # about 3x faster on the many short fields of a record
    return " ".join("".join(elem.itertext()).split())


def _year(pub_date: etree._Element | None) -> int | None:
    if pub_date is None:
        return None
    for text in (pub_date.findtext("Year"), pub_date.findtext("MedlineDate")):
        match = _YEAR.search(text or "")
        if match:
            return int(match.group(1))
    return None


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(item for item in items if item))


def _citation_of(record: etree._Element) -> tuple[etree._Element, etree._Element | None]:
    """The record's ``MedlineCitation`` and its ``PubmedData`` (none in 2016 MEDLINE files)."""
    if record.tag == "PubmedArticle":
        citation, pubmed_data = record.find("MedlineCitation"), record.find("PubmedData")
    elif record.tag == "MedlineCitation":
        citation, pubmed_data = record, None
    else:
        raise MedlineRecordError(f"not a citation record: <{record.tag}>")
    if citation is None:
        raise MedlineRecordError("PubmedArticle without MedlineCitation")
    return citation, pubmed_data


def _identifiers(
    citation: etree._Element, article: etree._Element, pubmed_data: etree._Element | None
) -> tuple[str | None, str | None]:
    """``(doi, pmcid)`` from the record's own ``ArticleIdList``, else their fallbacks."""
    ids: dict[str, str] = {}
    if pubmed_data is not None:
        for article_id in pubmed_data.iterfind("ArticleIdList/ArticleId"):
            id_type = article_id.get("IdType")
            if id_type and id_type not in ids and article_id.text:
                ids[id_type] = article_id.text.strip()
    doi = ids.get("doi") or next(
        (
            location.text.strip()
            for location in article.iterfind("ELocationID")
            if location.get("EIdType") == "doi" and location.text
        ),
        None,
    )
    pmcid = ids.get("pmc") or next(
        (
            other.text.strip()
            for other in citation.iterfind("OtherID")
            if (other.text or "").strip().startswith("PMC")
        ),
        None,
    )
    return doi or None, pmcid or None


def article_from_element(record: etree._Element, source: str = "local:pubmed-xml") -> Article:
    """Map one ``PubmedArticle`` or ``MedlineCitation`` element to an :class:`Article`.

    Raises :class:`MedlineRecordError` for a record without PMID or title. An article without
    abstract is returned with ``abstract=""``; callers decide whether to keep it.
    """
    citation, pubmed_data = _citation_of(record)
    pmid = clean_text(citation.findtext("PMID"))
    if not pmid:
        raise MedlineRecordError("record without PMID")
    article = citation.find("Article")
    if article is None:
        raise MedlineRecordError(f"PMID {pmid}: no Article element")
    title = _text(article.find("ArticleTitle")) or _text(article.find("VernacularTitle"))
    if not title:
        raise MedlineRecordError(f"PMID {pmid}: no title")
    abstract = format_abstract(
        (section.get("Label"), "".join(section.itertext()))
        for section in article.iterfind("Abstract/AbstractText")
    )
    doi, pmcid = _identifiers(citation, article, pubmed_data)
    return Article(
        doc_id=pmid,
        pmid=pmid,
        title=title,
        abstract=abstract,
        source=source,
        journal=_text(article.find("Journal/Title")) or None,
        year=_year(article.find("Journal/JournalIssue/PubDate")),
        mesh=_unique(
            [d.get("UI", "").strip() for d in citation.iterfind("MeshHeadingList/*/DescriptorName")]
        ),
        keywords=_unique([_text(k) for k in citation.iterfind("KeywordList/Keyword")]),
        doi=doi,
        pmcid=pmcid,
    )


def record_from_element(record: etree._Element, source: str, item: str) -> Article | Skipped:
    """A citation element as an :class:`Article`, or a :class:`Skipped` (a book, a malformed
    record) named by its PMID, else ``item``. Never raises for bad records."""
    if record.tag == "PubmedBookArticle":
        return Skipped(_pmid_of(record) or item, SkipReason.BOOK_RECORD, record.tag)
    try:
        return article_from_element(record, source)
    except MedlineRecordError as exc:
        return Skipped(_pmid_of(record) or item, SkipReason.MALFORMED_RECORD, str(exc))


# A whole document in memory (an E-utilities answer): no DTD, no network, no entity expansion.
SAFE_PARSER = etree.XMLParser(
    load_dtd=False, no_network=True, resolve_entities=False, huge_tree=True
)


def parse_article_set(data: bytes) -> list[etree._Element]:
    """The ``PubmedArticle`` and ``PubmedBookArticle`` elements of a ``PubmedArticleSet``.

    Strict, unlike :func:`iter_medline`: a damaged document (truncated, not XML, another root)
    raises :class:`MedlineDocumentError`, so that a network answer can be asked for again.
    """
    try:
        root = etree.fromstring(data, SAFE_PARSER)
    except etree.XMLSyntaxError as exc:
        raise MedlineDocumentError(f"XMLSyntaxError: {exc}") from None
    if root.tag != "PubmedArticleSet":
        raise MedlineDocumentError(f"not a PubmedArticleSet: root element <{root.tag}>")
    return list(root.iterchildren("PubmedArticle", "PubmedBookArticle"))


def _last_line(elem: etree._Element) -> int:
    """The line of ``elem``'s last descendant: where the record (nearly) ends."""
    while len(elem):
        elem = elem[-1]
    return elem.sourceline or 0


def _recovery_problem(record: etree._Element, errors: list[tuple[int, str]]) -> str | None:
    """Why a record the recovering parser returned is not trustworthy, or ``None``.

    The parser runs with ``recover=True`` so that one broken record does not end the file.
    A record is rejected when an XML error lies within its lines, or when another record
    ended up nested inside it (an unclosed tag swallowed its neighbour). ``errors`` are the
    parser's ``(line, message)`` so far, sorted.
    """
    first, last = record.sourceline or 0, _last_line(record) + 1
    i = bisect.bisect_left(errors, (first, ""))
    if i < len(errors) and errors[i][0] <= last:
        return f"line {errors[i][0]}: {errors[i][1]}"
    nested = next(
        (e for e in record.iterdescendants(*RECORD_TAGS) if e.tag != "MedlineCitation"), None
    )
    if nested is not None or (
        record.tag == "PubmedArticle" and record.find("MedlineCitation") is None
    ):
        return "XML error in or around this record (an unclosed tag)"
    return None


def _pmid_of(record: etree._Element) -> str | None:
    """The record's PMID, searched anywhere under it (a broken record may be mis-nested)."""
    pmid = record.findtext("MedlineCitation/PMID") or record.findtext("PMID")
    if pmid is None:
        pmid = record.findtext(".//PMID")
    return clean_text(pmid) or None


def _release(elem: etree._Element) -> None:
    """Free a finished record and the already-processed records before it.

    Siblings are dropped only under the set element: a record that recovery nested inside a
    broken one must not take the broken record's own elements with it.
    """
    elem.clear()
    parent = elem.getparent()
    if parent is not None and parent.tag in SET_TAGS:
        while elem.getprevious() is not None:
            del parent[0]


def _iterparse(source: BinaryIO | str | Path) -> etree.iterparse:
    """Record elements as they end; recovering, so one broken record does not end the file."""
    return etree.iterparse(
        source,
        events=("end",),
        tag=RECORD_TAGS,
        load_dtd=False,  # no DTD, network or entities: the XML is untrusted (XXE)
        no_network=True,
        resolve_entities=False,
        huge_tree=True,  # a baseline file or a PMC article can pass libxml2's default limits
        recover=True,
    )


def _map_record(
    elem: etree._Element, problem: str | None, item: str, article_source: str
) -> Iterator[Article | Skipped | DeletedCitation]:
    """What one record element of :func:`iter_medline` yields."""
    if elem.tag == "DeleteCitation":
        for pmid in elem.iterfind("PMID"):
            if pmid.text and pmid.text.strip():
                yield DeletedCitation(pmid.text.strip())
    elif problem and elem.tag != "PubmedBookArticle":
        yield Skipped(_pmid_of(elem) or item, SkipReason.MALFORMED_RECORD, problem)
    else:
        yield record_from_element(elem, article_source, item)


def iter_medline(
    source: str | Path | BinaryIO, name: str, article_source: str = "local:pubmed-xml"
) -> Iterator[Article | Skipped | DeletedCitation]:
    """Stream one PubMed/MEDLINE XML document (a path, ``.xml.gz`` included, or a binary file).

    Yields an :class:`Article` per citation (abstract possibly empty), a :class:`Skipped` per
    record that cannot be mapped, a :class:`DeletedCitation` per PMID in ``DeleteCitation``,
    and, when the file breaks off (truncated gzip, malformed XML that the parser cannot
    recover from) or is not PubMed XML at all, one ``Skipped(name, ...)`` after the records
    read so far. ``name`` identifies the file in those records.
    """
    if isinstance(source, str | Path) and str(source).endswith(".gz"):
        import gzip

        with gzip.open(source, "rb") as fh:
            yield from iter_medline(fh, name, article_source)
        return
    context = _iterparse(source)
    records = 0
    errors: list[tuple[int, str]] = []
    try:
        for _, elem in context:
            parent = elem.getparent()
            if elem.tag == "MedlineCitation" and getattr(parent, "tag", None) == "PubmedArticle":
                continue  # mapped with its PubmedArticle, which ends later
            records += 1
            if len(context.error_log) != len(errors):
                errors = sorted((e.line, e.message.strip()) for e in context.error_log)
            problem = _recovery_problem(elem, errors) if errors else None
            yield from _map_record(elem, problem, f"{name}#{records}", article_source)
            _release(elem)
    except (etree.XMLSyntaxError, OSError, EOFError, zlib.error) as exc:
        yield Skipped(name, SkipReason.UNREADABLE_XML, f"stopped after {records} records: {exc}")
        return
    root = context.root
    if records == 0 and (root is None or root.tag not in SET_TAGS):
        found = "no root element" if root is None else f"root element <{root.tag}>"
        yield Skipped(name, SkipReason.NOT_PUBMED_XML, found)
