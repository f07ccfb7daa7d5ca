"""A fake NCBI on 127.0.0.1: E-utilities (esearch, epost, efetch) and the PMC ID Converter.

Answers use NCBI's recorded formats and limits; efetch serves real ``PubmedArticle`` XML from
the shared pubmed-xml folder (cloned under new PMIDs where a test needs more records).
esearch serves only the first 9,999 ids of a query: a page crossing that line is cut short
and ``retstart`` above 9998 gets PubMed's ``<ERROR>``; ``mindate``/``maxdate`` filter on
:attr:`FakeNcbi.pubdates`; ``#<query_key> AND (<term>)`` with a ``WebEnv`` searches within
posted PMIDs (``usehistory=y`` required, as NCBI does); ``<a>:<b>[uid]`` is a PMID range.
A PMID may carry two publication dates (print and electronic): ``[dp]``/``pdat`` matches either,
so two date ranges can overlap as PubMed's do. ePost takes at most 10,000 ids. Like NCBI, the
fake counts arrivals at E-utilities and the ID Converter: over ``rate_limit`` per second (when
set) it answers 429 with NCBI's JSON body and no ``Retry-After``; with ``api_keys`` set, another
key gets NCBI's HTTP 400 ``API key invalid``. The ID Converter answers only on its v1 path.

Faults are injected per endpoint, first come first served: ``"429"`` (NCBI's JSON body, no
Retry-After), ``"429:<seconds>"`` (with it), ``"500"``, ``"404"``, ``"403"`` (S3's AccessDenied),
``"503"`` (S3's SlowDown), ``"reset"`` (TCP RST), ``"slow:<seconds>"``, ``"truncate"`` (a
complete HTTP answer whose XML stops halfway), ``"error:<message>"`` (an
E-utilities error body at HTTP 200); ``fault_rate`` draws random ones. The bucket (``s3-*``)
is :mod:`tests.pubmed.fake_pmc`'s; real records come from :mod:`tests.pubmed.fake_records`.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import random
import socket
import struct
import threading
import time
import urllib.parse
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from lxml import etree

from tests.pubmed.fake_pmc import (  # noqa: F401  (re-exported: tests import them from here)
    RANDOM_FAULTS_S3,
    S3_ERRORS,
    FakeBucket,
    add_recorded_fulltexts,
    as_jpeg,
    graphic_names,
    make_pdf,
    recorded_fulltexts,
    recorded_images,
)
from tests.pubmed.fake_records import (  # noqa: F401  (re-exported)
    clone,
    has_abstract,
    main,
    populate_classes,
    recorded_articles,
)

PUBMED_DOCTYPE = (
    b'<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN" '
    b'"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">'
)
ESEARCH_DOCTYPE = (
    b'<!DOCTYPE eSearchResult PUBLIC "-//NLM//DTD esearch 20060628//EN" '
    b'"https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20060628/esearch.dtd">'
)
EPOST_DOCTYPE = (
    b'<!DOCTYPE ePostResult PUBLIC "-//NLM//DTD epost 20090526//EN" '
    b'"https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20090526/epost.dtd">'
)
EFETCH_ERROR_DOCTYPE = (
    b'<!DOCTYPE eEfetchResult PUBLIC "-//NLM//DTD efetch 20131226//EN" '
    b'"https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20131226/efetch.dtd">'
)
ESEARCH_CAP = 9_999
# What ``fault_rate`` draws from: what NCBI and S3 send under load, all worth a retry
RANDOM_FAULTS = ("500", "reset", "truncate", "slow:0.3")
EPOST_CAP = 10_000
NCBI_ENDPOINTS = frozenset({"esearch", "efetch", "epost", "idconv"})
RETSTART_ERROR = (
    "Search Backend failed: Exception:\n'retstart' cannot be larger than 9998. For PubMed, "
    "ESearch can only retrieve the first 9,999 records matching the query. To obtain more than "
    "9,999 PubMed records, consider using EDirect that contains additional logic to batch "
    "PubMed search results automatically so that an arbitrary number can be retrieved. For "
    "details see https://www.ncbi.nlm.nih.gov/books/NBK25499/"
)


@dataclass
class Request:
    endpoint: str
    params: dict[str, str]
    at: float
    path: str = ""


@dataclass
class FakeNcbi(FakeBucket):
    """State of the fake: what it knows, what it was asked, which faults to inject."""

    searches: dict[str, list[str]] = field(default_factory=dict)  # term -> PMIDs
    # PMID -> publication date, or (print, electronic) dates: [dp] matches either
    pubdates: dict[str, datetime.date | tuple[datetime.date, ...]] = field(default_factory=dict)
    history: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # WebEnv -> key -> ids
    articles: dict[str, bytes] = field(default_factory=dict)  # PMID -> <PubmedArticle> XML
    broken: set[str] = field(default_factory=set)  # PMIDs always served as broken XML
    idconv: dict[str, str] = field(default_factory=dict)  # PMID -> PMCID (not in the record)
    bucket: dict[str, tuple[bytes, str, bool]] = field(default_factory=dict)  # key -> body,...
    faults: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    requests: list[Request] = field(default_factory=list)
    rate_limit: float | None = None  # NCBI's requests per second, counted at arrival
    api_keys: set[str] | None = None  # the valid keys; None: any key
    rate_limited: int = 0  # 429s answered for exceeding rate_limit
    fault_rate: float = 0.0  # share of requests answered with a random fault (benchmarks)
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    injected: Counter = field(default_factory=Counter)  # random faults sent, by kind
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def eutils_url(self) -> str:
        return self.root + "entrez/eutils/"

    @property
    def pmc_url(self) -> str:
        """PMC's site root; the ID Converter is under ``tools/idconv/api/v1/articles/``."""
        return self.root + "pmc/"

    @property
    def bucket_url(self) -> str:
        """The fake ``https://pmc-oa-opendata.s3.amazonaws.com/``."""
        return self.root + "pmc-oa-opendata/"

    def add_article(self, article: etree._Element) -> str:
        pmid = article.findtext("MedlineCitation/PMID")
        self.articles[pmid] = etree.tostring(article)
        return pmid

    def count(self, endpoint: str) -> int:
        return sum(1 for r in self.requests if r.endpoint == endpoint)

    def fetched_pmids(self) -> list[str]:
        """Every PMID asked of efetch, in order, with repeats."""
        return [
            pmid
            for r in self.requests
            if r.endpoint == "efetch"
            for pmid in r.params.get("id", "").split(",")
            if pmid
        ]

    # -- answers -------------------------------------------------------------------------
    def search(self, term: str, web_env: str | None = None) -> list[str]:
        """A term's PMIDs; ``(A) AND (B)`` is the intersection, in A's order; ``#k AND (B)``
        intersects posted set ``k`` of ``web_env`` with B; ``a:b[uid]`` is a PMID range."""
        if term.endswith("[uid]") and ":" in term:
            low, high = (int(n) for n in term.removesuffix("[uid]").split(":"))
            return [pmid for pmid in self.articles if low <= int(pmid) <= high]
        if term.startswith("#") and " AND (" in term:
            key, right = term[1:].split(" AND (", 1)
            posted = self.history[web_env][key]  # KeyError: an unknown WebEnv or key
            other = set(self.search(right[:-1]))
            return [pmid for pmid in posted if pmid in other]
        if term.startswith("(") and ") AND (" in term:
            left, right = term[1:-1].split(") AND (", 1)
            if right.endswith("[uid]"):  # a PMID range: numbers, whether records exist or not
                low, high = (int(n) for n in right.removesuffix("[uid]").split(":"))
                return [pmid for pmid in self.search(left) if low <= int(pmid) <= high]
            other = set(self.search(right))
            return [pmid for pmid in self.search(left) if pmid in other]
        return self.searches.get(term, [])

    def _dated(self, ids: list[str], params: dict[str, str]) -> list[str]:
        if "mindate" not in params:
            return ids
        low, high = (
            datetime.datetime.strptime(params[k], "%Y/%m/%d").date() for k in ("mindate", "maxdate")
        )

        def dates(pmid: str) -> tuple[datetime.date, ...]:
            value = self.pubdates.get(pmid, ())
            return value if isinstance(value, tuple) else (value,)

        return [pmid for pmid in ids if any(low <= day <= high for day in dates(pmid))]

    @staticmethod
    def error_body(root: str, message: str, doctype: bytes = ESEARCH_DOCTYPE) -> bytes:
        head = b'<?xml version="1.0" encoding="UTF-8" ?>\n' + doctype + b"\n"
        return head + f"<{root}>\n\t<ERROR>{message}</ERROR>\n</{root}>\n".encode()

    def esearch(self, params: dict[str, str]) -> bytes:
        ids = self._dated(self.search(params["term"], params.get("WebEnv")), params)
        start, count = int(params.get("retstart", 0)), int(params.get("retmax", 20))
        if start > ESEARCH_CAP - 1:
            return self.error_body("eSearchResult", RETSTART_ERROR)
        page = ids[start : min(start + count, ESEARCH_CAP)]
        id_xml = "".join(f"<Id>{pmid}</Id>\n" for pmid in page)
        body = (
            f"<eSearchResult><Count>{len(ids)}</Count><RetMax>{len(page)}</RetMax>"
            f"<RetStart>{start}</RetStart><IdList>\n{id_xml}</IdList><TranslationSet/>"
            f"<QueryTranslation>{params['term']}</QueryTranslation></eSearchResult>\n"
        )
        return (
            b'<?xml version="1.0" encoding="UTF-8" ?>\n' + ESEARCH_DOCTYPE + b"\n" + body.encode()
        )

    def epost(self, params: dict[str, str]) -> bytes:
        if len(params.get("id", "").split(",")) > EPOST_CAP:
            message = f"Too many UIDs: at most {EPOST_CAP} may be posted at once"
            return self.error_body("ePostResult", message, EPOST_DOCTYPE)
        web_env = params.get("WebEnv") or f"MCID_{len(self.history) + 1:08d}"
        posted = self.history.setdefault(web_env, {})
        key = str(len(posted) + 1)
        posted[key] = [pmid for pmid in params.get("id", "").split(",") if pmid]
        body = f"<ePostResult>\n\t<QueryKey>{key}</QueryKey>\n\t<WebEnv>{web_env}</WebEnv>\n"
        return (
            b'<?xml version="1.0" encoding="UTF-8" ?>\n'
            + EPOST_DOCTYPE
            + b"\n"
            + (body + "</ePostResult>\n").encode()
        )

    def efetch(self, params: dict[str, str]) -> bytes:
        parts = [b'<?xml version="1.0" ?>\n', PUBMED_DOCTYPE, b"\n<PubmedArticleSet>\n"]
        for pmid in params.get("id", "").split(","):
            if pmid in self.broken:
                parts.append(b"<PubmedArticle><MedlineCitation><PMID>" + pmid.encode() + b"</PM")
            elif pmid in self.articles:
                parts.append(self.articles[pmid] + b"\n")
        parts.append(b"</PubmedArticleSet>\n")
        return b"".join(parts)

    def over_limit(self, endpoint: str, params: dict[str, str]) -> tuple[bytes, int] | None:
        """NCBI's own answers before any work: an invalid API key, too many requests."""
        if endpoint not in NCBI_ENDPOINTS:
            return None
        key = params.get("api_key")
        if key and self.api_keys is not None and key not in self.api_keys:
            body = {"error": "API key invalid", "api-key": key, "type": "api-key"}
            return json.dumps(body).encode(), 400
        if self.rate_limit is None:
            return None
        now = time.monotonic()
        recent = sum(1 for r in self.requests if r.endpoint in NCBI_ENDPOINTS and now - r.at < 1.0)
        if recent <= self.rate_limit:
            return None
        self.rate_limited += 1
        body = {
            "error": "API rate limit exceeded",
            "api-key": "127.0.0.1",
            "count": str(recent),
            "limit": str(int(self.rate_limit)),
        }
        return json.dumps(body).encode(), 429

    def idconv_answer(self, params: dict[str, str]) -> tuple[bytes, int]:
        """The ID Converter API v1 (pmc.ncbi.nlm.nih.gov/tools/idconv/api/v1/articles/): one
        ``idtype`` per request (PMIDs by default); a non-PMID in a PMID request is a 400."""
        ids = params["ids"].split(",")
        if params.get("idtype", "pmid") == "pmid" and not all(i.isdigit() for i in ids):
            error = {
                "message": "All values of query param `ids` must be PubMed IDs "
                "(Positive Integers).",
                "code": "invalid_pmids",
            }
            body = {"status": "error", "http_status": "400", "errors": [error]}
            return json.dumps(body).encode(), 400
        records = []
        for pmid in ids:
            if pmid in self.idconv:
                records.append(
                    {"pmcid": self.idconv[pmid], "pmid": int(pmid), "requested-id": pmid}
                )
            else:
                records.append(
                    {
                        "requested-id": pmid,
                        "status": "error",
                        "errmsg": "Identifier not found in PMC",
                    }
                )
        return json.dumps(
            {"status": "ok", "responseDate": "2026-11-26 10:00:00", "records": records}
        ).encode(), 200


def _handler(state: FakeNcbi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            self._answer(url.path, dict(urllib.parse.parse_qsl(url.query)))

        def do_POST(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length", 0))
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            self._answer(url.path, {**dict(urllib.parse.parse_qsl(url.query)), **form})

        def _answer(self, path: str, params: dict[str, str]) -> None:
            endpoint = self._endpoint(path)
            with state.lock:
                state.requests.append(Request(endpoint, params, time.monotonic(), path))
                refused = state.over_limit(endpoint, params)
                queue = state.faults.get(endpoint) if refused is None else None
                fault = queue.pop(0) if queue else None
                if refused is None and fault is None and state.rng.random() < state.fault_rate:
                    s3 = endpoint.startswith("s3-")
                    fault = state.rng.choice(RANDOM_FAULTS_S3 if s3 else RANDOM_FAULTS)
                    state.injected[fault] += 1
            if refused is not None:
                self._send(refused[1], refused[0], "application/json")
                return
            if endpoint == "esearch" and "WebEnv" in params and params.get("usehistory") != "y":
                body = state.error_body("eSearchResult", "WebEnv without usehistory=y")
                self._send(200, body, "text/xml")
                return
            kind, _, arg = (fault or "").partition(":")
            if kind == "reset":
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()
                self.close_connection = True
                return
            if kind == "slow":
                time.sleep(float(arg))
            if kind == "429" and arg:  # a proxy's answer, with Retry-After
                self._send(429, b"", "text/plain", {"Retry-After": arg})
                return
            if kind == "429":  # NCBI's own: a JSON body, no Retry-After
                body = {"error": "API rate limit exceeded", "count": "4", "limit": "3"}
                self._send(429, json.dumps(body).encode(), "application/json")
                return
            if kind in S3_ERRORS:
                self._send(int(kind), S3_ERRORS[kind], "application/xml")
                return
            if kind in ("500", "404"):
                self._send(int(kind), b"", "text/plain")
                return

            body, content_type, send_length = self._body(endpoint, path, params)
            status = 200 if body is not None else 404
            if isinstance(body, tuple):
                body, status = body
            if kind == "error":
                root = "eFetchResult" if endpoint == "efetch" else "eSearchResult"
                doctype = EFETCH_ERROR_DOCTYPE if endpoint == "efetch" else ESEARCH_DOCTYPE
                body = state.error_body(root, arg, doctype)
            if kind == "truncate":
                body = body[: len(body) // 2]
            self.send_response(status)
            body = body or b""
            self.send_header("Content-Type", content_type)
            if send_length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the client gave up (timeout test)
                self.wfile.write(body)

        def _send(
            self, status: int, body: bytes, content_type: str, headers: dict | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(body)

        @staticmethod
        def _endpoint(path: str) -> str:
            if path.startswith("/pmc-oa-opendata/"):
                key = path.removeprefix("/pmc-oa-opendata/")
                return (
                    "s3-list"
                    if not key
                    else "s3-metadata"
                    if key.startswith("metadata/")
                    else "s3-object"
                )
            if "/idconv/" in path:
                return "idconv"
            return path.rstrip("/").rsplit("/", 1)[-1].removesuffix(".fcgi")

        @staticmethod
        def _body(
            endpoint: str, path: str, params: dict[str, str]
        ) -> tuple[bytes | None, str, bool]:
            if endpoint == "esearch":
                return state.esearch(params), "text/xml; charset=UTF-8", True
            if endpoint == "efetch":
                return state.efetch(params), "text/xml; charset=UTF-8", True
            if endpoint == "epost":
                return state.epost(params), "text/xml; charset=UTF-8", True
            if endpoint == "idconv":
                if not path.endswith("/tools/idconv/api/v1/articles/"):  # the only path
                    return None, "text/html", True
                return state.idconv_answer(params), "application/json", True
            if endpoint == "s3-list":
                return state.listing(params), "application/xml", True
            key = urllib.parse.unquote(path.removeprefix("/pmc-oa-opendata/"))
            if key in state.bucket:
                return state.bucket[key]
            error = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NoSuchKey</Code></Error>"
            return (error, 404), "application/xml", True

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # resets and timeouts are on purpose
        pass


class FakeServer:
    """Runs a :class:`FakeNcbi` in a thread; ``with FakeServer() as ncbi: ...``."""

    def __init__(self, state: FakeNcbi | None = None, port: int = 0) -> None:
        self.state = state or FakeNcbi()
        self._server = _Server(("127.0.0.1", port), _handler(self.state))
        self.state.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    def __enter__(self) -> FakeNcbi:
        self._thread.start()
        return self.state

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


if __name__ == "__main__":
    main()
