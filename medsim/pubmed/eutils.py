"""The E-utilities client: esearch under the 9,999-id cap, ePost and history searches, efetch.

See :mod:`medsim.pubmed.entrez` for the flow of a fetch and the reasons behind each request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from email.message import Message
from pathlib import Path

from lxml import etree

from medsim.io import atomic_path
from medsim.names import SkipReason
from medsim.pubmed.efetch import (
    REMEMBERED,
    RecordCache,
    articles_from_xml,
    check_efetch,
    ncbi_error,
    split_records,
    wrap_records,
)
from medsim.pubmed.http import (
    BadResponse,
    DamagedResponseError,
    FetchError,
    NcbiHttp,
    Rejected,
    TransientAnswer,
)
from medsim.pubmed.medline import SAFE_PARSER
from medsim.pubmed.records import Article, Skipped, clean_text

__all__ = ["ESEARCH_MAX", "EUTILS_URL", "EntrezClient"]

log = logging.getLogger(__name__)

EUTILS_URL = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/"
# PubMed's esearch serves the first 9,999 ids of a query: retstart <= 9998 (see the docstring).
ESEARCH_MAX = 9_999
EPOST_CHUNK = 5_000  # PMIDs per ePost: a class searched within one chunk stays under the cap
FIRST_DAY = date(1781, 1, 1)  # older than any PubMed publication date
MAX_PMID = 99_999_999  # PMIDs have at most 8 digits (about 41 million in 2026)
# esearch errors that mean "busy", not "wrong": worth a retry
_TRANSIENT = ("backend failed", "unable to obtain query", "temporarily", "timed out", "try again")


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
        self.records = RecordCache(self.cache_root, http.cache)

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

    def _take(
        self, query: str, days: tuple[date, date], count: int, seen: dict[str, None], wanted: int
    ) -> None:
        """Add a range's ids to ``seen`` until it holds ``wanted``, paging past repeats.

        ``[dp]`` matches print and electronic dates, so an article can be in two ranges: a
        repeat is not counted, and the range is read further instead.
        """
        start = 0
        while len(seen) < wanted and start < min(count, ESEARCH_MAX):
            size = min(self.esearch_page, wanted - len(seen), ESEARCH_MAX - start)
            page = self._page(query, start, size, days)[1]
            if not page:
                return
            seen.update(dict.fromkeys(page))
            start += len(page)

    def _by_dates(
        self, query: str, days: tuple[date, date], seen: dict[str, None], wanted: int
    ) -> None:
        """Ids into ``seen`` (up to ``wanted``), newest first, from date ranges under the cap."""
        if len(seen) >= wanted:
            return
        count = self._page(query, 0, 0, days)[0]
        if count == 0:
            return
        if count > ESEARCH_MAX and days[0] == days[1]:  # one day over the cap: PMID ranges
            self._by_pmids(f"({query}) AND ", days, (1, MAX_PMID), seen, wanted)
        elif count <= ESEARCH_MAX:
            self._take(query, days, count, seen, wanted)
        else:
            middle = days[0] + timedelta(days=(days[1] - days[0]).days // 2)
            self._by_dates(query, (middle + timedelta(days=1), days[1]), seen, wanted)
            self._by_dates(query, (days[0], middle), seen, wanted)

    def _by_pmids(
        self,
        prefix: str,
        days: tuple[date, date],
        pmids: tuple[int, int],
        seen: dict[str, None],
        wanted: int,
    ) -> None:
        """One day's ids by PMID ranges (``<lo>:<hi>[uid]``) under the cap, newest first."""
        if len(seen) >= wanted:
            return
        term = f"{prefix}({pmids[0]}:{pmids[1]}[uid])"
        count = self._page(term, 0, 0, days)[0]
        if count <= ESEARCH_MAX or pmids[0] == pmids[1]:
            self._take(term, days, count, seen, wanted)
            return
        middle = (pmids[0] + pmids[1]) // 2
        self._by_pmids(prefix, days, (middle + 1, pmids[1]), seen, wanted)
        self._by_pmids(prefix, days, (pmids[0], middle), seen, wanted)

    def esearch(self, query: str, max_results: int) -> list[str]:
        """Up to ``max_results`` PMIDs matching ``query``, without repeats.

        Up to 9,999: PubMed's order. Beyond, when the query matches more than 9,999: the query
        split by publication date, newest range first, and a single day over the cap by PMID
        range; an article dated in two ranges counts once.
        """
        if max_results > ESEARCH_MAX:  # count first: past the cap, paging would be wasted
            count = self._page(query, 0, 0)[0]
            if count > ESEARCH_MAX:
                last = date(date.today().year + 1, 12, 31)
                self.counts[query] = count
                seen: dict[str, None] = {}
                self._by_dates(query, (FIRST_DAY, last), seen, max_results)
                return list(seen)[:max_results]
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
                check=check_efetch,
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
