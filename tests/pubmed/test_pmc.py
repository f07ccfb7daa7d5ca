"""PMC open-access PDFs: link lookup, capped download, magic check, cache, skips."""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest
from lxml import etree

from medsim.config import FetchParams
from medsim.fetch import RawStore
from medsim.pubmed.entrez import fetch_entrez
from medsim.pubmed.http import BadResponse, NcbiHttp, RateLimiter, ResponseCache, RetryPolicy
from medsim.pubmed.pmc import PmcClient, is_pdf, oa_pdf_href, rewrite_ftp
from medsim.pubmed.records import Article, Skipped
from tests.pubmed.fake_eutils import FakeServer, clone, has_abstract, make_pdf, recorded_articles

MAX_BYTES = 20_000


@pytest.fixture
def ncbi():
    with FakeServer() as state:
        yield state


@pytest.fixture(scope="module")
def template(shared_data: Path) -> etree._Element:
    return next(a for a in recorded_articles(shared_data).values() if has_abstract(a))


def test_oa_answers_in_ncbi_format() -> None:
    answer = (
        b'<OA><responseDate>2024-05-01 10:00:00</responseDate><request id="PMC5334499">'
        b"https://www.ncbi.nlm.nih.gov/pmc/utils/oa/oa.fcgi?id=PMC5334499</request>"
        b'<records returned-count="1" total-count="1"><record id="PMC5334499" '
        b'citation="World J Radiol. 2017 Feb 28; 9(2):27-33" license="CC BY-NC" retracted="no">'
        b'<link format="tgz" updated="2017-03-06 11:03:50" '
        b'href="ftp://ftp.ncbi.nlm.nih.gov/pub/pmc/oa_package/8e/71/PMC5334499.tar.gz" />'
        b'<link format="pdf" updated="2017-03-02 09:40:22" '
        b'href="ftp://ftp.ncbi.nlm.nih.gov/pub/pmc/oa_pdf/8e/71/WJR-9-27.PMC5334499.pdf" />'
        b"</record></records></OA>"
    )
    href, reason, _ = oa_pdf_href(answer)
    assert reason == ""
    assert rewrite_ftp(href) == (
        "https://ftp.ncbi.nlm.nih.gov/pub/pmc/oa_pdf/8e/71/WJR-9-27.PMC5334499.pdf"
    )
    assert rewrite_ftp(href, "http://127.0.0.1:8080") == (
        "http://127.0.0.1:8080/pub/pmc/oa_pdf/8e/71/WJR-9-27.PMC5334499.pdf"
    )
    assert rewrite_ftp("https://example.org/a.pdf", "http://x/") == "https://example.org/a.pdf"
    not_oa = (
        b'<OA><responseDate>2024-05-01</responseDate><request id="PMC13901">x</request>'
        b"<error code=\"idIsNotOpenAccess\">identifier 'PMC13901' is not Open Access</error></OA>"
    )
    assert oa_pdf_href(not_oa)[:2] == (None, "not open access")
    tgz_only = answer.replace(b'format="pdf"', b'format="tgz"')
    assert oa_pdf_href(tgz_only) == (None, "no pdf link", "formats: tgz")
    with pytest.raises(BadResponse):
        oa_pdf_href(answer[: len(answer) // 2])
    assert is_pdf(b"\n%PDF-1.7\n...") and not is_pdf(b"<!DOCTYPE html><html>")


def make_http(cache: Path) -> NcbiHttp:
    retry = RetryPolicy(tries=3, base_delay_s=0.001, timeout_s=2.0)
    return NcbiHttp(
        ResponseCache(cache / "entrez"),
        identity={"tool": "medsim"},
        limiter=RateLimiter(1000.0),
        retry=retry,
        sleep=lambda s: None,
    )


def fetch(
    ncbi, cache: Path, pmids: list[str], staging: str = "staging"
) -> tuple[list, RawStore, NcbiHttp]:
    http = make_http(cache)
    pmc = PmcClient(http, cache, MAX_BYTES, base_url=ncbi.pmc_url, ftp_url=ncbi.root)
    store = RawStore(cache / staging)
    ncbi.searches["q"] = pmids
    params = FetchParams(classes={"breast": "q"}, pdfs=True, batch_size=10)
    records = list(
        fetch_entrez(params, cache, store, http=http, eutils_url=ncbi.eutils_url, pmc=pmc)
    )
    return records, store, http


def test_pdfs_land_in_the_store_and_failures_only_skip_the_pdf(ncbi, template, tmp_path) -> None:
    pdf = make_pdf("Open access article")
    cases = {
        "1": "PMC0000001",  # open access with a PDF
        "2": "PMC0000002",  # not open access
        "3": None,  # no PMC id in the record: the ID converter knows it
        "4": "PMC0000004",  # the "PDF" is an HTML error page
        "5": "PMC0000005",  # PDF over the size cap, announced by Content-Length
        "6": "PMC0000006",  # PDF over the size cap, no Content-Length
        "7": "PMC0000007",  # open access, tgz only
        "8": None,  # not in PMC at all
    }
    for pmid, pmcid in cases.items():
        ncbi.add_article(clone(template, pmid, pmcid))
    ncbi.add_pdf("PMC0000001", pdf)
    ncbi.idconv["3"] = "PMC0000003"
    ncbi.add_pdf("PMC0000003", pdf, content_type="application/octet-stream", send_length=False)
    ncbi.add_pdf("PMC0000004", b"<!DOCTYPE html><html>Not found</html>", "text/html")
    ncbi.add_pdf("PMC0000005", make_pdf(pad=MAX_BYTES))
    ncbi.add_pdf("PMC0000006", make_pdf(pad=MAX_BYTES), send_length=False)
    ncbi.oa["PMC0000007"] = None
    ncbi.faults["oa"] += ["500"]  # retried like any NCBI request

    records, store, http = fetch(ncbi, tmp_path, list(cases))
    articles = {r.doc_id: r for r in records if isinstance(r, Article)}
    assert sorted(articles) == sorted(cases)  # every article kept, PDF or not
    assert articles["1"].pdf_path == "data/raw/pdfs/1.pdf"
    assert articles["3"].pdf_path == "data/raw/pdfs/3.pdf"
    assert articles["3"].pmcid == "PMC0000003"
    assert {d for d, a in articles.items() if a.pdf_path} == {"1", "3"}
    for doc_id in ("1", "3"):
        placed = store.staging / "pdfs" / f"{doc_id}.pdf"
        assert placed.read_bytes() == pdf
        with pymupdf.open(placed) as doc:
            assert "Open access article" in doc[0].get_text()
    reasons = {r.item: r.reason for r in records if isinstance(r, Skipped)}
    assert reasons == {
        "pdfs/2.pdf": "not open access",
        "pdfs/4.pdf": "not a pdf",
        "pdfs/5.pdf": "pdf too large",
        "pdfs/6.pdf": "pdf too large",
        "pdfs/7.pdf": "no pdf link",
        "pdfs/8.pdf": "no pmc id",
    }
    assert ncbi.count("idconv") == 1  # one batched lookup for the records without PMC id
    assert ncbi.count("oa") == 8  # 7 PMC ids (one via idconv) + one retried 500
    assert not list(tmp_path.rglob("*.tmp"))  # nothing half-written left behind
    assert sorted(p.name for p in (tmp_path / "pdfs").glob("*.pdf")) == [
        "PMC0000001.pdf",
        "PMC0000003.pdf",
    ]

    # second run, warm cache: the same answer and not a single request
    before = len(ncbi.requests)
    again, _, http = fetch(ncbi, tmp_path, list(cases), staging="staging2")
    assert len(ncbi.requests) == before
    assert sum(http.stats.requests.values()) == 0
    assert {r.doc_id: r.pdf_path for r in again if isinstance(r, Article)} == {
        d: a.pdf_path for d, a in articles.items()
    }
    assert {r.item: r.reason for r in again if isinstance(r, Skipped)} == reasons


def test_oversized_download_stops_reading_at_the_cap(ncbi, template, tmp_path) -> None:
    ncbi.add_article(clone(template, "1", "PMC0000001"))
    big = make_pdf(pad=50 * MAX_BYTES)
    ncbi.add_pdf("PMC0000001", big, send_length=False)
    records, _, _ = fetch(ncbi, tmp_path, ["1"])
    (skip,) = [r for r in records if isinstance(r, Skipped)]
    assert skip.reason == "pdf too large"
    assert f"over {MAX_BYTES} bytes" in skip.detail
