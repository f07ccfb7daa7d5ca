"""Full text from the PMC Cloud bucket: versions, metadata, JATS, images, PDFs, licences, skips."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path

import pytest
from lxml import etree

from medsim.config import FetchParams
from medsim.pubmed.bucket import check_versions, is_pdf, object_key
from medsim.pubmed.entrez import fetch_entrez
from medsim.pubmed.http import BadResponse, NcbiHttp, RateLimiter, ResponseCache, RetryPolicy
from medsim.pubmed.pmc import PmcClient
from medsim.pubmed.raw import RawStore
from medsim.pubmed.records import Article, Skipped
from tests.pubmed.fake_eutils import (
    FakeServer,
    add_recorded_fulltexts,
    clone,
    has_abstract,
    make_pdf,
    recorded_articles,
)

MAX_BYTES = 2_000_000


@pytest.fixture
def ncbi():
    with FakeServer() as state:
        yield state


@pytest.fixture(scope="module")
def template(shared_data: Path) -> etree._Element:
    return next(a for a in recorded_articles(shared_data).values() if has_abstract(a))


def test_bucket_urls_listing_and_pdf_magic() -> None:
    url = "s3://pmc-oa-opendata/PMC7759461.1/PMC7759461.1.xml?md5=2ba36e61fa9eb4950c9daef9c9f58812"
    assert object_key(url) == ("PMC7759461.1/PMC7759461.1.xml", "2ba36e61fa9eb4950c9daef9c9f58812")
    with pytest.raises(BadResponse):
        object_key("s3://another-bucket/PMC1.1/PMC1.1.xml")
    listing = (
        b'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult '
        b'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>pmc-oa-opendata</Name>'
        b"<Prefix>PMC11370360.</Prefix><KeyCount>3</KeyCount><Delimiter>/</Delimiter>"
        b"<CommonPrefixes><Prefix>PMC11370360.10/</Prefix></CommonPrefixes>"
        b"<CommonPrefixes><Prefix>PMC11370360.1/</Prefix></CommonPrefixes>"
        b"<CommonPrefixes><Prefix>PMC11370360.2/</Prefix></CommonPrefixes></ListBucketResult>"
    )
    # the echoed request prefix is not a folder; versions sort as numbers
    assert check_versions(listing, None) == ["PMC11370360.1", "PMC11370360.2", "PMC11370360.10"]
    assert is_pdf(b"\n%PDF-1.7\n...") and not is_pdf(b"<!DOCTYPE html><html>")


def make_http(cache: Path) -> NcbiHttp:
    retry = RetryPolicy(tries=3, base_delay_s=0.001, timeout_s=2.0)
    return NcbiHttp(
        ResponseCache(cache / "entrez"),
        identity={"tool": "medsim", "email": "tests@example.org"},
        limiter=RateLimiter(1000.0),
        retry=retry,
        sleep=lambda s: None,
    )


def fetch(
    ncbi, cache: Path, pmids: list[str], max_bytes: int = MAX_BYTES, licenses="all"
) -> tuple[list, RawStore]:
    http = make_http(cache)
    kept = None if licenses == "all" else licenses
    pmc = PmcClient(
        http, cache, max_bytes, cloud_url=ncbi.bucket_url, pmc_url=ncbi.pmc_url, licenses=kept
    )
    store = RawStore(cache / "staging")
    ncbi.searches["q"] = pmids
    params = FetchParams(classes={"breast": "q"}, pdfs=True, batch_size=20)
    records = list(
        fetch_entrez(params, cache, store, http=http, eutils_url=ncbi.eutils_url, pmc=pmc)
    )
    return records, store


def test_full_text_of_recorded_articles_lands_in_the_store(
    ncbi, template, shared_data, tmp_path
) -> None:
    recorded = add_recorded_fulltexts(ncbi, shared_data)
    pmids = []
    for i, text in enumerate(recorded):
        pmid = str(70_000_000 + i)
        # the first one's PMCID is not in its PubMed record: the ID Converter knows it
        ncbi.add_article(clone(template, pmid, None if i == 0 else text.pmcid))
        if i == 0:
            ncbi.idconv[pmid] = text.pmcid
        pmids.append(pmid)
    records, store = fetch(ncbi, tmp_path, pmids)
    articles = {a.doc_id: a for a in records if isinstance(a, Article)}
    assert not [r for r in records if isinstance(r, Skipped)]
    for pmid, text in zip(pmids, recorded, strict=True):
        article = articles[pmid]
        assert article.pmcid == text.pmcid and article.license == "CC BY"
        jats = store.staging / f"pmc/{pmid}/{text.version}.xml"
        assert article.jats_path == f"data/raw/pmc/{pmid}/{text.version}.xml"
        assert jats.read_bytes() == text.xml.read_bytes()
        images = sorted((store.staging / f"pmc/{pmid}").glob("*.jpg"))
        assert len(images) == len(set(ncbi_graphics(text.xml)))
        assert all(p.read_bytes()[:3] == b"\xff\xd8\xff" for p in images)
        if text.has_pdf:
            assert article.pdf_path == f"data/raw/pdfs/{pmid}.pdf"
            assert is_pdf((store.staging / f"pdfs/{pmid}.pdf").read_bytes())
        else:
            assert article.pdf_path is None
    assert recorded[0].version.endswith(".2")  # the newest of two versions
    idconv = [r for r in ncbi.requests if r.endpoint == "idconv"]
    assert len(idconv) == 1 and idconv[0].params["idtype"] == "pmid"

    # warm: nothing asked of the bucket again
    before = len(ncbi.requests)
    again, _ = fetch(ncbi, tmp_path, pmids)
    assert not [r for r in ncbi.requests[before:] if r.endpoint.startswith("s3")]
    assert {a.doc_id: a.jats_path for a in again if isinstance(a, Article)} == {
        p: a.jats_path for p, a in articles.items()
    }


def ncbi_graphics(path: Path) -> list[str]:
    from tests.pubmed.fake_eutils import graphic_names

    return graphic_names(path.read_bytes())


JATS = (
    b'<?xml version="1.0"?><article xmlns:xlink="http://www.w3.org/1999/xlink"><front>'
    b"<article-meta/></front><body><fig id='f1'><label>Figure 1</label><caption><p>A cell."
    b"</p></caption><graphic xlink:href='x.f001'/></fig></body></article>"
)


def test_what_cannot_be_had_is_skipped_remembered_and_retried_on_request(
    ncbi, template, tmp_path, monkeypatch
) -> None:
    monkeypatch.delenv("MEDSIM_RETRY_FAILED", raising=False)
    cases = {
        "1": "PMC0000001",  # open access, a PDF too large for the cap: XML kept, no PDF
        "2": "PMC0000002",  # not open access
        "3": "PMC0000003",  # retracted
        "4": "PMC0000004",  # no version folder in the bucket
        "5": None,  # no PMC id anywhere
        "6": "PMC0000006",  # an image whose bytes never match their md5
    }
    for pmid, pmcid in cases.items():
        ncbi.add_article(clone(template, pmid, pmcid))
    media = {"x.f001.jpg": b"\xff\xd8\xff fake jpeg"}
    ncbi.add_pmc_article("PMC0000001", JATS, media=media, pdf=make_pdf(pad=3_000), pmid="1")
    ncbi.add_pmc_article("PMC0000002", JATS, open_access=False, license_code="CC BY-NC")
    ncbi.add_pmc_article("PMC0000003", JATS, retracted=True)
    name = ncbi.add_pmc_article("PMC0000006", JATS, media=media)
    ncbi.add_object(f"{name}/x.f001.jpg", b"\xff\xd8\xff changed in transit")

    records, store = fetch(ncbi, tmp_path, list(cases), max_bytes=3_000)
    articles = {a.doc_id: a for a in records if isinstance(a, Article)}
    assert sorted(articles) == sorted(cases)  # full text is extra: every article is kept
    assert articles["1"].jats_path == "data/raw/pmc/1/PMC0000001.1.xml"
    assert articles["1"].pdf_path is None and articles["1"].license == "CC BY"
    assert (store.staging / "pmc/1/x.f001.jpg").read_bytes() == media["x.f001.jpg"]
    skips = {r.item: (r.reason, r.detail) for r in records if isinstance(r, Skipped)}
    assert {item: reason for item, (reason, _) in skips.items()} == {
        "pmc/2": "not open access",
        "pmc/3": "retracted",
        "pmc/4": "not in pmc oa",
        "pmc/5": "no pmc id",
        "pmc/1/pdf": "full text unusable",  # each part fails on its own
        "pmc/6/x.f001.jpg": "full text unusable",
    }
    assert "too large" in skips["pmc/1/pdf"][1] and "md5 mismatch" in skips["pmc/6/x.f001.jpg"][1]
    assert all(articles[p].jats_path is None for p in "2345")
    assert articles["6"].jats_path == "data/raw/pmc/6/PMC0000006.1.xml"  # the XML is kept
    # a stale md5 reads the metadata again once (it may be older than the object) before failing
    meta = [r.path.rsplit("/", 1)[-1] for r in ncbi.requests if r.endpoint == "s3-metadata"]
    assert sorted(meta) == sorted(
        [f"PMC000000{i}.1.json" for i in (1, 2, 3)] + ["PMC0000006.1.json"] * 2
    )

    # a re-run does not ask again about what failed ...
    before = len(ncbi.requests)
    again, _ = fetch(ncbi, tmp_path, list(cases), max_bytes=3_000)
    assert not [r for r in ncbi.requests[before:] if r.endpoint.startswith("s3")]
    assert {r.item for r in again if isinstance(r, Skipped)} == set(skips)
    # ... until asked to: the fixed image now arrives
    good = media["x.f001.jpg"]
    ncbi.add_object(f"{name}/x.f001.jpg", good)
    assert hashlib.md5(good).hexdigest() in str(ncbi.bucket[f"metadata/{name}.json"][0])
    ncbi.add_pmc_article("PMC0000004", JATS)  # and an article new to the bucket is found
    monkeypatch.setenv("MEDSIM_RETRY_FAILED", "1")
    third, _ = fetch(ncbi, tmp_path, list(cases), max_bytes=3_000)
    found = {a.doc_id: a.jats_path for a in third if isinstance(a, Article)}
    assert found["6"] and found["4"] == "data/raw/pmc/4/PMC0000004.1.xml"


def closed_port_url() -> str:
    """A bucket URL where nobody listens: connection refused, as with no route to the host."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/pmc-oa-opendata/"


def test_an_unreachable_bucket_skips_full_text_and_the_fetch_goes_on(
    ncbi, template, tmp_path
) -> None:
    pmids = [str(80_000_000 + i) for i in range(5)]
    for i, pmid in enumerate(pmids):
        ncbi.add_article(clone(template, pmid, f"PMC{900 + i}"))
    http = make_http(tmp_path)
    pmc = PmcClient(http, tmp_path, MAX_BYTES, cloud_url=closed_port_url(), pmc_url=ncbi.pmc_url)
    ncbi.searches["q"] = pmids
    params = FetchParams(classes={"breast": "q"}, pdfs=True, batch_size=2)
    store = RawStore(tmp_path / "staging")
    records = list(
        fetch_entrez(params, tmp_path, store, http=http, eutils_url=ncbi.eutils_url, pmc=pmc)
    )
    assert sorted(r.doc_id for r in records if isinstance(r, Article)) == pmids
    skips = {r.item: r for r in records if isinstance(r, Skipped)}
    assert sorted(skips) == [f"pmc/{p}" for p in pmids]
    assert {s.reason for s in skips.values()} == {"pmc bucket unreachable"}
    assert pmc.bucket.stats.requests["s3-list"] == 1  # tried once, then skipped at once
    assert not (tmp_path / "pmc").exists() or not list((tmp_path / "pmc").glob("*.failed.json"))


def test_bucket_errors_skip_only_their_article_or_part(ncbi, template, tmp_path) -> None:
    cases = {"1": "PMC0000011", "2": "PMC0000012", "3": "PMC0000013", "4": "PMC0000014"}
    for pmid, pmcid in cases.items():
        ncbi.add_article(clone(template, pmid, pmcid))
        ncbi.add_pmc_article(pmcid, JATS, pmid=pmid, pdf=make_pdf())
    # 2: its metadata URL points outside the bucket; 3: 403 (a proxy) on its metadata
    meta = json.loads(ncbi.bucket["metadata/PMC0000012.1.json"][0])
    meta["xml_url"] = "https://example.org/PMC0000012.1.xml"
    ncbi.add_object("metadata/PMC0000012.1.json", json.dumps(meta).encode())
    ncbi.faults["s3-metadata"] += ["ok", "ok", "403"]
    # 1: one 503 SlowDown, retried; 4: its PDF keeps answering SlowDown, its XML arrives
    ncbi.faults["s3-object"] += ["503", "ok", "ok", "ok", "ok", "503", "503", "503"]
    records, _ = fetch(ncbi, tmp_path, list(cases))
    articles = {a.doc_id: a for a in records if isinstance(a, Article)}
    assert sorted(articles) == sorted(cases)
    skips = {r.item: (r.reason, r.detail) for r in records if isinstance(r, Skipped)}
    assert {item: reason for item, (reason, _) in skips.items()} == {
        "pmc/2/xml": "full text unusable",
        "pmc/3": "full text download failed",
        "pmc/4/pdf": "full text download failed",
    }
    assert "not an object of the pmc-oa-opendata bucket" in skips["pmc/2/xml"][1]
    assert "HTTP 403" in skips["pmc/3"][1] and "HTTP 503" in skips["pmc/4/pdf"][1]
    assert articles["1"].jats_path and articles["1"].pdf_path  # the SlowDown was retried
    assert articles["2"].jats_path is None and articles["2"].pdf_path  # the PDF on its own
    assert articles["4"].jats_path and articles["4"].pdf_path is None
    # network failures are not remembered: a re-run asks again and gets what it missed
    again, _ = fetch(ncbi, tmp_path, list(cases))
    fixed = {a.doc_id: a for a in again if isinstance(a, Article)}
    assert fixed["3"].jats_path and fixed["4"].pdf_path
    assert {r.item for r in again if isinstance(r, Skipped)} == {"pmc/2/xml"}


def test_newest_open_access_version_and_kept_licences(ncbi, template, tmp_path) -> None:
    # 1: v2 an author manuscript outside the OA subset above the OA v1; 2-6 licence codes
    ncbi.add_pmc_article("PMC0000021", JATS, version=1, license_code="CC BY")
    ncbi.add_pmc_article(
        "PMC0000021", JATS, version=2, manuscript=True, open_access=False, license_code=None
    )
    codes = {"2": "CC0", "3": "CC BY-NC", "4": None, "5": "TDM", "6": "CC BY"}
    for pmid, code in codes.items():
        ncbi.add_pmc_article(f"PMC000002{pmid}", JATS, license_code=code)
    for pmid in ["1", *codes]:
        ncbi.add_article(clone(template, pmid, f"PMC000002{pmid}"))
    records, _ = fetch(ncbi, tmp_path, ["1", *codes], licenses=["CC BY", "CC0"])
    articles = {a.doc_id: a for a in records if isinstance(a, Article)}
    assert articles["1"].jats_path == "data/raw/pmc/1/PMC0000021.1.xml"
    kept = {p: a.license for p, a in articles.items() if a.jats_path}
    assert kept == {"1": "CC BY", "2": "CC0", "6": "CC BY"}
    skips = {r.item: (r.reason, r.detail) for r in records if isinstance(r, Skipped)}
    assert sorted(skips) == ["pmc/3", "pmc/4", "pmc/5"]
    assert {reason for reason, _ in skips.values()} == {"licence not in fetch.licenses"}
    assert "None" in skips["pmc/4"][1] and "'TDM'" in skips["pmc/5"][1]
    # every licence by default, null and TDM included
    everything, _ = fetch(ncbi, tmp_path, ["1", *codes])
    assert all(a.jats_path for a in everything if isinstance(a, Article))


def test_a_replaced_object_is_fetched_with_its_new_metadata(ncbi, template, tmp_path) -> None:
    ncbi.add_article(clone(template, "1", "PMC0000031"))
    ncbi.add_pmc_article("PMC0000031", JATS, pmid="1")
    ncbi.faults["s3-object"] += ["403"]  # first run: metadata cached, the XML refused
    first, _ = fetch(ncbi, tmp_path, ["1"])
    assert [r.reason for r in first if isinstance(r, Skipped)] == ["full text download failed"]
    # NCBI replaces the XML (new md5 in new metadata); the cached metadata still has the old md5
    new = JATS.replace(b"A cell.", b"A corrected cell.")
    ncbi.add_pmc_article("PMC0000031", new, pmid="1")
    second, store = fetch(ncbi, tmp_path, ["1"])
    (article,) = [r for r in second if isinstance(r, Article)]
    assert article.jats_path == "data/raw/pmc/1/PMC0000031.1.xml"
    assert (store.staging / "pmc/1/PMC0000031.1.xml").read_bytes() == new
    assert not [r for r in second if isinstance(r, Skipped)]


def test_not_in_pmc_answers_age_after_refresh_days(ncbi, template, tmp_path) -> None:
    ncbi.add_article(clone(template, "1", "PMC0000041"))
    first, _ = fetch(ncbi, tmp_path, ["1"])
    assert [r.reason for r in first if isinstance(r, Skipped)] == ["not in pmc oa"]
    ncbi.add_pmc_article("PMC0000041", JATS, pmid="1")  # PMC adds it later
    again, _ = fetch(ncbi, tmp_path, ["1"])
    assert [r.reason for r in again if isinstance(r, Skipped)] == ["not in pmc oa"]
    then = time.time() - 8 * 86_400  # past the default fetch.refresh_days
    os.utime(tmp_path / "pmc" / "PMC0000041.failed.json", (then, then))
    third, _ = fetch(ncbi, tmp_path, ["1"])
    assert [a.jats_path for a in third] == ["data/raw/pmc/1/PMC0000041.1.xml"]


def test_a_bucket_lost_mid_run_is_given_up_after_three_articles(ncbi, template, tmp_path) -> None:
    pmids = [str(i) for i in range(1, 8)]
    for pmid in pmids:
        ncbi.add_article(clone(template, pmid, f"PMC00000{50 + int(pmid)}"))
        ncbi.add_pmc_article(f"PMC00000{50 + int(pmid)}", JATS, pmid=pmid)
    ncbi.faults["s3-list"] += ["ok"] + ["reset"] * 9  # the first article, then the bucket is gone
    records, _ = fetch(ncbi, tmp_path, pmids)
    skips = {r.item: r.reason for r in records if isinstance(r, Skipped)}
    assert skips == {f"pmc/{p}": "full text download failed" for p in "234"} | {
        f"pmc/{p}": "pmc bucket unreachable" for p in "567"
    }
    assert ncbi.count("s3-list") == 1 + 3 * 3  # 3 tries for each of 3 articles, then none


def test_a_newer_version_is_taken_after_refresh_days_and_the_old_kept_offline(
    ncbi, template, tmp_path
) -> None:
    ncbi.add_article(clone(template, "1", "PMC0000061"))
    ncbi.add_pmc_article("PMC0000061", JATS, pmid="1")
    first, _ = fetch(ncbi, tmp_path, ["1"])
    assert [a.jats_path for a in first] == ["data/raw/pmc/1/PMC0000061.1.xml"]
    ncbi.add_pmc_article("PMC0000061", JATS, version=2, pmid="1")  # a corrected version
    within, _ = fetch(ncbi, tmp_path, ["1"])
    assert [a.jats_path for a in within] == ["data/raw/pmc/1/PMC0000061.1.xml"]
    then = time.time() - 8 * 86_400  # past the default fetch.refresh_days
    for path in (tmp_path / "pmc").glob("*.json"):
        os.utime(path, (then, then))
    for path in (tmp_path / "entrez" / "s3-metadata").rglob("*.json"):
        os.utime(path, (then, then))
    # the bucket unreachable: the saved version is kept rather than nothing
    http = make_http(tmp_path)
    pmc = PmcClient(http, tmp_path, MAX_BYTES, cloud_url=closed_port_url(), pmc_url=ncbi.pmc_url)
    params = FetchParams(classes={"breast": "q"}, pdfs=True)
    offline = list(
        fetch_entrez(
            params,
            tmp_path,
            RawStore(tmp_path / "s2"),
            http=http,
            eutils_url=ncbi.eutils_url,
            pmc=pmc,
        )
    )
    assert [a.jats_path for a in offline] == ["data/raw/pmc/1/PMC0000061.1.xml"]
    after, _ = fetch(ncbi, tmp_path, ["1"])  # the bucket back: the newer version
    assert [a.jats_path for a in after] == ["data/raw/pmc/1/PMC0000061.2.xml"]
