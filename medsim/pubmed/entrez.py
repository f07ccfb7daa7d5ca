"""The live source: PubMed through NCBI E-utilities, one query per class, parsed by lxml.

Flow of :func:`fetch_entrez`:

1. ``esearch`` every class query for its first ``max_per_class`` PMIDs. PubMed's esearch
   serves only the first 9,999 ids of a query (``retstart`` above 9998 is answered with
   ``<ERROR>'retstart' cannot be larger than 9998 ...``, and a page crossing that line is cut
   short; NCBI's E-utilities book, chapter "The E-utilities In-Depth", ESearch), so paging
   never crosses it; a class that wants more than 9,999 of a larger query is split into
   publication-date ranges (``datetype=pdat``, ``mindate``/``maxdate``), newest first, each
   under the cap.
2. Ambiguity, without pulling every pair's intersection: the taken PMIDs are ``epost``-ed to
   the history server (chunks of :data:`EPOST_CHUNK`, one ``WebEnv``), and each class query is
   searched again *within* them (``term=#<query_key> AND (<query>)``, the history-server
   combination the same chapter documents): one small search per class and chunk tells every
   class that matches a taken PMID, even beyond that class's ``max_per_class``.
   :func:`~medsim.pubmed.records.resolve_label` then drops it or keeps the first class in
   params order.
3. ``efetch`` the kept PMIDs in batches of ``batch_size`` (POSTed id lists, PubMed XML), each
   PMID once; parse with lxml and map every ``PubmedArticle`` to an
   :class:`~medsim.pubmed.records.Article`.
4. With ``pdfs: true``, attach each open-access article's full text (JATS XML, figure images,
   PDF) from the PMC Cloud Service (:mod:`medsim.pubmed.pmc`).

Error answers: an esearch ``<ERROR>`` that NCBI gives under load ("Search Backend failed",
"Unable to obtain query") and an efetch ``eFetchResult`` error body are retried with backoff;
any other ``<ERROR>`` (a malformed query, the retstart cap) fails at once in one line.

Mapping of a ``PubmedArticle``: :mod:`medsim.pubmed.medline`'s, the one mapper of the live and
the local source (its docstring lists the fields); an article without abstract is skipped
(``"no abstract"``). Parsing reads no DTD and never goes online.

Cache (``data/cache/entrez/``): every esearch and idconv answer is kept per request (the key
hashes the endpoint and parameters: for esearch the query, dates, ``retstart`` and
``retmax``), the ambiguity check per set of taken PMIDs (``ambiguity/``), and every PubMed
record per PMID (``pubmed/``), written once its answer parsed. A PMID efetch never returned
or that never parsed is remembered too (``pubmed/<nnn>/<pmid>.failed.json``), so a re-run does
not ask again; ``MEDSIM_RETRY_FAILED=1`` asks again. A re-run sees the same PMIDs even if
PubMed has grown since, and fetches only PMIDs it has never fetched; there is no expiry:
delete ``data/cache/entrez/esearch`` to search afresh.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, timedelta
from email.message import Message
from pathlib import Path
from typing import TYPE_CHECKING

from lxml import etree
from tqdm import tqdm

from medsim.config import FetchParams
from medsim.io import atomic_path
from medsim.names import SkipReason
from medsim.pubmed.http import (
    BadResponse,
    DamagedResponseError,
    FetchError,
    NcbiHttp,
    OfflineError,
    Rejected,
    ResponseCache,
    RetryPolicy,
    TransientAnswer,
    remember_failures,
)
from medsim.pubmed.medline import (
    SAFE_PARSER,
    MedlineDocumentError,
    parse_article_set,
    record_from_element,
)
from medsim.pubmed.raw import RawStore
from medsim.pubmed.records import Article, Skipped, clean_text, resolve_label

if TYPE_CHECKING:
    from medsim.pubmed.pmc import PmcClient

__all__ = [
    "EUTILS_URL",
    "EntrezClient",
    "OfflineError",
    "articles_from_xml",
    "fetch_entrez",
]

log = logging.getLogger(__name__)

EUTILS_URL = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/"
SOURCE = "entrez"
# PubMed's esearch serves the first 9,999 ids of a query: retstart <= 9998 (see the docstring).
ESEARCH_MAX = 9_999
EPOST_CHUNK = 5_000  # PMIDs per ePost: a class searched within one chunk stays under the cap
FIRST_DAY = date(1781, 1, 1)  # older than any PubMed publication date
_ERROR = re.compile(rb"<ERROR>(.*?)</ERROR>", re.S)
# esearch errors that mean "busy", not "wrong": worth a retry
_TRANSIENT = ("backend failed", "unable to obtain query", "temporarily", "timed out", "try again")


def articles_from_xml(data: bytes) -> list[Article | Skipped]:
    """Map a PubMed XML document (an efetch answer, saved records) to records, in order.

    The mapping is :func:`medsim.pubmed.medline.article_from_element`'s (one mapper for the
    live and the local source); an article without abstract becomes
    ``Skipped(pmid, "no abstract")``. A damaged document raises
    :class:`~medsim.pubmed.http.BadResponse`, so that the answer is asked for again.
    """
    try:
        elements = parse_article_set(data)
    except MedlineDocumentError as exc:
        raise BadResponse(str(exc)) from None
    records = [record_from_element(e, SOURCE, "unknown") for e in elements]
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


def _check_efetch(body: bytes, headers: Message) -> tuple[list[Article | Skipped], bytes]:
    # An eFetchResult error body is no PubmedArticleSet: read its message before parsing.
    if (message := ncbi_error(body)) is not None:
        raise TransientAnswer(f"efetch answered an error: {message}")
    return articles_from_xml(body), body


class RecordCache:
    """One file per PMID, ``<root>/pubmed/<last 3 digits>/<pmid>.xml``: the record's raw XML.

    Cached per record rather than per efetch request, so that a run whose batches are cut
    differently (more classes, a larger ``max_per_class``) still fetches only new PMIDs.
    """

    def __init__(self, root: Path | None) -> None:
        self.root = Path(root) / "pubmed" if root is not None else None

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
        try:
            saved = json.loads(self.path(pmid).with_suffix(".failed.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        return Skipped(pmid, saved["reason"], saved.get("detail", ""))

    def fail(self, skip: Skipped) -> None:
        if self.root is not None and skip.item.isdigit():
            with atomic_path(self.path(skip.item).with_suffix(".failed.json")) as tmp:
                tmp.write_text(json.dumps({"reason": skip.reason, "detail": skip.detail}))


def _check_esearch(body: bytes, headers: Message) -> tuple[int, list[str]]:
    try:
        root = etree.fromstring(body, SAFE_PARSER)
    except etree.XMLSyntaxError as exc:
        raise BadResponse(f"XMLSyntaxError: {exc}") from None
    if (error := root.findtext("ERROR")) is not None:  # busy (retried) or a wrong query
        message = clean_text(error)
        if any(word in message.lower() for word in _TRANSIENT) and "retstart" not in message:
            raise TransientAnswer(f"esearch answered an error: {message}")
        raise Rejected(message)
    if root.tag != "eSearchResult" or root.find("IdList") is None:
        raise BadResponse("not an eSearchResult")
    ids = [clean_text(pmid.text) for pmid in root.iterfind("IdList/Id")]
    return int(root.findtext("Count") or 0), ids


def _day(value: date) -> str:
    return value.strftime("%Y/%m/%d")


def _check_epost(body: bytes, headers: Message) -> tuple[str, str]:
    if (message := ncbi_error(body)) is not None:
        raise TransientAnswer(f"epost answered an error: {message}")
    web_env = re.search(rb"<WebEnv>\s*([^<\s]+)\s*</WebEnv>", body)
    query_key = re.search(rb"<QueryKey>\s*(\d+)\s*</QueryKey>", body)
    if not web_env or not query_key:
        raise BadResponse("not an ePostResult")
    return web_env.group(1).decode(), query_key.group(1).decode()


class EntrezClient:
    """esearch, epost and efetch against E-utilities at ``base_url`` (or ``$MEDSIM_EUTILS_URL``)."""

    def __init__(
        self, http: NcbiHttp, base_url: str | None = None, esearch_page: int = ESEARCH_MAX
    ) -> None:
        url = base_url or os.environ.get("MEDSIM_EUTILS_URL") or EUTILS_URL
        self.base_url = url.rstrip("/") + "/"
        self.http = http
        self.esearch_page = min(esearch_page, ESEARCH_MAX)
        self.counts: dict[str, int] = {}  # query -> PubMed's total hit count
        self.cache_root = http.cache.root if http.cache is not None else None
        self.records = RecordCache(self.cache_root)

    def _page(
        self,
        query: str,
        start: int,
        size: int,
        days: tuple[date, date] | None = None,
        web_env: str | None = None,
    ) -> tuple[int, list[str]]:
        params = {"db": "pubmed", "term": query, "retstart": str(start), "retmax": str(size)}
        if days is not None:
            params |= {"datetype": "pdat", "mindate": _day(days[0]), "maxdate": _day(days[1])}
        if web_env is not None:  # a history search: its WebEnv is this run's, never cached
            params |= {"WebEnv": web_env, "usehistory": "y"}
        try:
            return self.http.request(
                "esearch",
                self.base_url + "esearch.fcgi",
                params,
                check=_check_esearch,
                cache=web_env is None,
            )
        except Rejected as exc:
            raise FetchError(f"PubMed rejected the query {query!r}: {exc}") from None

    def _window(
        self,
        query: str,
        limit: int,
        days: tuple[date, date] | None = None,
        web_env: str | None = None,
    ) -> tuple[int, list[str]]:
        """PubMed's count and up to ``limit`` (at most 9,999) ids, pages never past the cap."""
        limit = min(limit, ESEARCH_MAX)
        page_size = ESEARCH_MAX if web_env is not None else self.esearch_page
        ids: list[str] = []
        while True:
            size = min(page_size, limit - len(ids))
            count, page = self._page(query, len(ids), size, days, web_env)
            ids.extend(page)
            if not page or len(ids) >= min(count, limit):
                return count, ids

    def _by_dates(self, query: str, days: tuple[date, date], wanted: int) -> list[str]:
        """Up to ``wanted`` ids, newest first, from publication-date ranges under the cap."""
        count = self._page(query, 0, 0, days)[0]
        if count == 0:
            return []
        if count <= ESEARCH_MAX or days[0] == days[1]:
            if count > ESEARCH_MAX:
                log.warning(
                    "%d PMIDs of %r are dated %s; esearch serves the first %d of them",
                    count,
                    query,
                    _day(days[0]),
                    ESEARCH_MAX,
                )
            return self._window(query, wanted, days)[1]
        middle = days[0] + timedelta(days=(days[1] - days[0]).days // 2)
        newer = self._by_dates(query, (middle + timedelta(days=1), days[1]), wanted)
        if len(newer) >= wanted:
            return newer
        return newer + self._by_dates(query, (days[0], middle), wanted - len(newer))

    def esearch(self, query: str, max_results: int) -> list[str]:
        """Up to ``max_results`` PMIDs matching ``query``, without repeats.

        Up to 9,999: PubMed's order. Beyond, when the query matches more than 9,999: the query
        split by publication date, newest range first.
        """
        if max_results > ESEARCH_MAX:  # count first: past the cap, paging would be wasted
            count = self._page(query, 0, 0)[0]
            if count > ESEARCH_MAX:
                last = date(date.today().year + 1, 12, 31)
                self.counts[query] = count
                ids = self._by_dates(query, (FIRST_DAY, last), max_results)
                return list(dict.fromkeys(ids))[:max_results]
        count, ids = self._window(query, max_results)
        self.counts[query] = count
        return list(dict.fromkeys(ids))[:max_results]

    def epost(self, pmids: Sequence[str], web_env: str | None = None) -> tuple[str, str]:
        """Post ``pmids`` to the history server: ``(WebEnv, query_key)``."""
        params = {"db": "pubmed", "id": ",".join(pmids)}
        if web_env is not None:
            params["WebEnv"] = web_env
        return self.http.request(
            "epost",
            self.base_url + "epost.fcgi",
            params,
            method="POST",
            check=_check_epost,
            cache=False,
        )

    def matching(self, pmids: Sequence[str], classes: Mapping[str, str]) -> dict[str, set[str]]:
        """PMID -> every class whose query matches it, for the given PMIDs only.

        The PMIDs go to the history server once; each class query is then searched within
        them. The answer is cached per (PMIDs, queries), so a re-run posts nothing.
        """
        key = hashlib.sha256(json.dumps([sorted(pmids), sorted(classes.items())]).encode())
        path = None
        if self.cache_root is not None:
            path = Path(self.cache_root) / "ambiguity" / f"{key.hexdigest()}.json"
            if path.exists():
                self.http.stats.cache_hits["ambiguity"] += 1
                return {p: set(labels) for p, labels in json.loads(path.read_text()).items()}
        found: dict[str, set[str]] = {}
        web_env = None
        for start in range(0, len(pmids), EPOST_CHUNK):
            web_env, query_key = self.epost(pmids[start : start + EPOST_CHUNK], web_env)
            for label, query in classes.items():
                term = f"#{query_key} AND ({query})"
                _count, ids = self._window(term, ESEARCH_MAX, None, web_env)
                for pmid in ids:
                    found.setdefault(pmid, set()).add(label)
        if path is not None:
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps({p: sorted(labels) for p, labels in found.items()}))
        return found

    def efetch(self, pmids: Sequence[str]) -> list[Article | Skipped]:
        """Records for ``pmids``, in their order: saved ones from disk, the rest in one POST.

        PMIDs that failed before (never returned, never parsed) are skipped again without a
        request, unless ``MEDSIM_RETRY_FAILED`` is set.
        """
        saved = {pmid: record for pmid in pmids if (record := self.records.get(pmid)) is not None}
        out: list[Article | Skipped] = []
        if saved:
            try:
                out = articles_from_xml(wrap_records(saved.values()))
                self.http.stats.cache_hits["pubmed record"] += len(saved)
            except BadResponse:  # an unreadable saved record: fetch those again
                log.warning("discarding %d unreadable saved records", len(saved))
                self.records.drop(saved)
                saved = {}
        failed = {p: skip for p in pmids if p not in saved and (skip := self.records.failed(p))}
        out += failed.values()
        self.http.stats.cache_hits["failed pmid"] += len(failed)
        missing = [pmid for pmid in pmids if pmid not in saved and pmid not in failed]
        if missing:
            fresh = self._efetch(missing)
            returned = {r.item if isinstance(r, Skipped) else r.doc_id for r in fresh}
            fresh += [Skipped(p, SkipReason.NOT_RETURNED) for p in missing if p not in returned]
            for record in fresh:
                if isinstance(record, Skipped) and record.reason in REMEMBERED:
                    self.records.fail(record)
            out += fresh
        order = {pmid: i for i, pmid in enumerate(pmids)}
        return sorted(
            out, key=lambda r: order.get(r.item if isinstance(r, Skipped) else r.doc_id, -1)
        )

    def _efetch(self, pmids: Sequence[str]) -> list[Article | Skipped]:
        """One POSTed efetch; a record that never parses is isolated and skipped.

        The answer's records are saved one file per PMID once the whole answer parsed. A batch
        whose answer stays damaged after every retry is split in halves until the bad PMID is
        alone; it becomes ``Skipped(pmid, "malformed record")`` and the rest is kept.
        """
        params = {"db": "pubmed", "id": ",".join(pmids), "retmode": "xml"}
        try:
            records, body = self.http.request(
                "efetch",
                self.base_url + "efetch.fcgi",
                params,
                method="POST",
                check=_check_efetch,
                cache=False,
            )
        except DamagedResponseError as exc:
            if len(pmids) == 1:
                return [Skipped(pmids[0], SkipReason.MALFORMED_RECORD, str(exc))]
            half = len(pmids) // 2
            log.warning("efetch of %d PMIDs keeps failing to parse; splitting it", len(pmids))
            return self._efetch(pmids[:half]) + self._efetch(pmids[half:])
        for pmid, record in split_records(body).items():
            self.records.put(pmid, record)
        return records


# Per-PMID outcomes worth remembering: asking again would get the same answer.
REMEMBERED = frozenset({SkipReason.NOT_RETURNED, SkipReason.MALFORMED_RECORD})


def _candidates(client: EntrezClient, classes: Mapping[str, str], limit: int) -> dict[str, list]:
    """PMID -> every class whose query matches it, in params order (PMIDs in first-seen order).

    Each class contributes its first ``limit`` PMIDs. A PMID that another class's query also
    matches beyond that class's own ``limit`` would look unambiguous, so the taken PMIDs are
    searched again with every class query on the history server (:meth:`EntrezClient.matching`).
    """
    taken: dict[str, list[str]] = {}
    for label, query in classes.items():
        pmids = client.esearch(query, limit)
        log.info("esearch %s: %d hits, %d taken", label, client.counts.get(query, 0), len(pmids))
        for pmid in pmids:
            taken.setdefault(pmid, []).append(label)
    also = client.matching(list(taken), classes) if len(classes) > 1 else {}
    order = list(classes)
    return {
        pmid: sorted(set(labels) | also.get(pmid, set()), key=order.index)
        for pmid, labels in taken.items()
    }


def _default_http(cache_dir: Path) -> NcbiHttp:
    """The live client: responses cached under ``cache_dir/entrez``, retries with backoff."""
    return NcbiHttp(ResponseCache(Path(cache_dir) / "entrez"), retry=RetryPolicy())


def _warn_without_email(http: NcbiHttp) -> None:
    if "email" not in http.identity:
        log.warning(
            "NCBI_EMAIL is not set: NCBI asks every E-utilities client for a contact address "
            "(and may block anonymous heavy use); export NCBI_EMAIL=you@example.org"
        )


def _labels(
    candidates: Mapping[str, list[str]], ambiguous: str
) -> tuple[dict[str, str], list[Skipped]]:
    """PMID -> its one label, and a skip for each PMID no class or several classes claim."""
    labels: dict[str, str] = {}
    skips: list[Skipped] = []
    for pmid, matched in candidates.items():
        label, reason = resolve_label(matched, ambiguous)
        if label is None:
            skips.append(Skipped(pmid, reason or SkipReason.NO_LABEL, ",".join(matched)))
        else:
            labels[pmid] = label
    return labels, skips


def _fetch_batch(
    client: EntrezClient, batch: Sequence[str], labels: Mapping[str, str]
) -> tuple[list[Article], list[Skipped]]:
    """One efetch batch: the labelled articles asked for, and a skip for everything else."""
    asked, requested = set(batch), set(batch)
    articles: list[Article] = []
    skips: list[Skipped] = []
    for record in client.efetch(batch):
        if isinstance(record, Skipped):
            skips.append(record)
        elif record.doc_id not in requested:
            why = "repeated in the answer" if record.doc_id in asked else "not requested"
            skips.append(Skipped(record.doc_id, SkipReason.UNEXPECTED_RECORD, why))
        else:
            requested.discard(record.doc_id)  # a repeat in the answer is not kept twice
            record.label = labels[record.doc_id]
            articles.append(record)
    returned = {a.doc_id for a in articles} | {s.item for s in skips}
    skips += [Skipped(p, SkipReason.NOT_RETURNED) for p in batch if p not in returned]
    return articles, skips


def fetch_entrez(
    params: FetchParams,
    cache_dir: Path,
    store: RawStore,
    *,
    http: NcbiHttp | None = None,
    eutils_url: str | None = None,
    pmc: PmcClient | None = None,
    esearch_page: int = ESEARCH_MAX,
) -> Iterator[Article | Skipped]:
    """Stream labelled PubMed articles (and what was skipped) for ``params.classes``.

    Memory is bound by one efetch batch. Every response is cached under ``cache_dir``, so a
    re-run makes no request that an earlier run completed. Raises :class:`OfflineError` within
    seconds when NCBI cannot be reached at all.
    """
    http = http or _default_http(cache_dir)
    _warn_without_email(http)
    client = EntrezClient(http, eutils_url, esearch_page)
    if params.pdfs and pmc is None:
        from medsim.pubmed.pmc import PmcClient

        pmc = PmcClient(http, Path(cache_dir), max_bytes=params.max_pdf_mb * 2**20)
    candidates = _candidates(client, params.classes, params.max_per_class)
    labels, unlabelled = _labels(candidates, params.ambiguous)
    skipped = Counter(skip.reason for skip in unlabelled)
    yield from unlabelled
    todo, fetched = list(labels), 0
    progress = tqdm(total=len(todo), desc="efetch", unit="pmid", disable=None)
    for start in range(0, len(todo), params.batch_size):
        batch = todo[start : start + params.batch_size]
        articles, skips = _fetch_batch(client, batch, labels)
        if pmc is not None and articles:
            skips += list(pmc.attach(articles, store))
        skipped.update(skip.reason for skip in skips)
        fetched += len(articles)
        yield from articles
        yield from skips
        progress.update(len(batch))
    progress.close()
    log.info(
        "entrez: %d candidate PMIDs, %d articles fetched, skipped %s; NCBI %s%s",
        len(candidates),
        fetched,
        dict(skipped.most_common()),
        http.stats.describe(),
        f"; PMC Cloud {pmc.bucket.stats.describe()}" if pmc is not None else "",
    )
