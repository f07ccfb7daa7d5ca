"""The live source under NCBI's real conditions: overlapping date ranges, a day over the cap,
retracted records, class sizes said out loud, 429 without Retry-After, an invalid API key,
pacing under NCBI's own rate limit, a cache that ages, and the fake as strict as NCBI."""

from __future__ import annotations

import datetime
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from lxml import etree

from medsim.pubmed.entrez import fetch_entrez
from medsim.pubmed.http import (
    FetchError,
    NcbiHttp,
    RateLimiter,
    ResponseCache,
    RetryPolicy,
    paced_rate,
)
from medsim.pubmed.raw import RawStore
from medsim.pubmed.records import Article, Skipped
from tests.pubmed.fake_eutils import FakeServer
from tests.pubmed.test_entrez import (
    IDENTITY,
    _client,
    fetch_params,
    make_http,
    populate,
    run,
)
from tests.pubmed.test_entrez import templates as templates


@pytest.fixture
def ncbi():
    with FakeServer() as state:
        yield state


# -- date splitting ---------------------------------------------------------------------------


def test_overlapping_date_ranges_never_count_an_article_twice(ncbi, tmp_path) -> None:
    ids = [str(i) for i in range(1, 12_001)]
    ncbi.searches["big[query]"] = ids
    start = datetime.date(2001, 1, 1)
    for i, pmid in enumerate(ids):  # printed 60 days after its electronic date: two ranges
        online = start + datetime.timedelta(days=i // 10)
        ncbi.pubdates[pmid] = (online + datetime.timedelta(days=60), online)
    client = _client(ncbi, tmp_path)
    got = client.esearch("big[query]", 11_000)
    assert len(got) == len(set(got)) == 11_000  # exactly what was asked, no repeat counted
    terms = [r.params for r in ncbi.requests]
    assert all(int(p["retstart"]) + int(p["retmax"]) <= 9_999 for p in terms)


def test_a_day_over_the_cap_is_split_by_pmid_range(ncbi, tmp_path) -> None:
    one_day = [str(i) for i in range(1_000_001, 1_010_501)]  # 10,500 on one day
    other = [str(i) for i in range(2_000_001, 2_000_501)]  # 500 the day after
    ncbi.searches["big[query]"] = other + one_day
    for pmid in one_day:
        ncbi.pubdates[pmid] = datetime.date(2020, 3, 1)
    for pmid in other:
        ncbi.pubdates[pmid] = datetime.date(2020, 3, 2)
    got = _client(ncbi, tmp_path).esearch("big[query]", 10_800)
    assert len(got) == len(set(got)) == 10_800
    assert set(other) <= set(got)  # the newer day whole, then the big day, not cut at 9,999
    assert any("[uid]" in r.params["term"] for r in ncbi.requests)


# -- records and classes ----------------------------------------------------------------------


def _retract(ncbi, pmid: str, how: str) -> None:
    record = etree.fromstring(ncbi.articles[pmid])
    citation = record.find("MedlineCitation")
    if how == "type":
        types = citation.find("Article/PublicationTypeList")
        etree.SubElement(types, "PublicationType", UI="D016441").text = "Retracted Publication"
    else:
        links = etree.SubElement(citation, "CommentsCorrectionsList")
        link = etree.SubElement(links, "CommentsCorrections", RefType="RetractionIn")
        etree.SubElement(link, "RefSource").text = "Cell. 2021;1:1"
        etree.SubElement(link, "PMID", Version="1").text = "99000001"
    ncbi.articles[pmid] = etree.tostring(record)


def test_retracted_records_are_dropped_with_a_reason(ncbi, templates, tmp_path) -> None:
    searches = populate(ncbi, templates, {"breast": range(0, 6)})
    _retract(ncbi, "90000001", "type")
    _retract(ncbi, "90000004", "link")
    records = run(fetch_params(searches), tmp_path, ncbi, make_http(tmp_path))
    kept = sorted(r.doc_id for r in records if isinstance(r, Article))
    assert kept == ["90000000", "90000002", "90000003", "90000005"]
    skips = {r.item: r for r in records if isinstance(r, Skipped)}
    assert {p: s.reason for p, s in skips.items()} == dict.fromkeys(
        ["90000001", "90000004"], "retracted"
    )
    assert "Retracted Publication" in skips["90000001"].detail
    assert skips["90000004"].detail == "RetractionIn 99000001"


def test_class_sizes_are_said_out_loud(ncbi, templates, tmp_path, caplog) -> None:
    # breast 0-11 (10, 11 also lung); lung 10-19; colorectal has only 4 in PubMed
    searches = populate(
        ncbi,
        templates,
        {"breast": range(0, 12), "lung": range(10, 20), "colorectal": range(30, 34)},
    )
    _retract(ncbi, "90000003", "type")
    params = fetch_params(searches, max_per_class=10)
    with caplog.at_level("INFO", logger="medsim.pubmed.entrez"):
        run(params, tmp_path, ncbi, make_http(tmp_path))
    lines = {r.getMessage().split(":")[0]: r for r in caplog.records if "class " in r.message}
    assert lines["class breast"].getMessage() == (
        "class breast: asked 10, found 12, taken 10, kept 9; short by 1: 1 retracted"
    )
    assert lines["class lung"].getMessage() == (
        "class lung: asked 10, found 10, taken 10, kept 8; short by 2: 2 ambiguous label"
    )
    assert lines["class colorectal"].getMessage() == (
        "class colorectal: asked 10, found 4, taken 4, kept 4; short by 6: 6 not in PubMed "
        "(it has 4)"
    )
    assert all(r.levelname == "WARNING" for r in lines.values())


# -- NCBI's limits ----------------------------------------------------------------------------


def test_a_429_without_retry_after_backs_off(ncbi, templates, tmp_path, caplog) -> None:
    searches = populate(ncbi, templates, {"breast": range(0, 3)})
    ncbi.faults["esearch"] += ["429", "429"]
    sleeps: list[float] = []
    http = make_http(tmp_path, sleeps, base_delay_s=1.0)
    with caplog.at_level("INFO", logger="medsim.pubmed.http"):
        records = run(fetch_params(searches), tmp_path, ncbi, http)
    assert len([r for r in records if isinstance(r, Article)]) == 3
    assert sleeps[:2] == [1.0, 2.0]  # NCBI's 429 names no wait: backoff from a second
    assert "API rate limit exceeded (4 requests, limit 3/s)" in caplog.text


def test_an_invalid_api_key_is_named_in_one_line(ncbi, templates, tmp_path) -> None:
    searches = populate(ncbi, templates, {"breast": range(0, 2)})
    ncbi.api_keys = {"the-real-key"}
    http = make_http(tmp_path)
    http.identity = IDENTITY | {"api_key": "a-typo"}
    with pytest.raises(FetchError) as raised:
        run(fetch_params(searches), tmp_path, ncbi, http)
    message = str(raised.value)
    assert "NCBI_API_KEY" in message and "API key invalid" in message and "\n" not in message
    assert ncbi.count("esearch") == 1  # a wrong key is not retried
    http.identity = IDENTITY | {"api_key": "the-real-key"}
    assert len(run(fetch_params(searches), tmp_path, ncbi, http)) == 2


def test_pacing_stays_under_ncbis_own_limit(ncbi, templates, tmp_path) -> None:
    searches = populate(ncbi, templates, {"breast": range(0, 9)})
    ncbi.rate_limit = 3.0  # the fake answers 429 past 3 arrivals in any second
    http = NcbiHttp(
        ResponseCache(tmp_path / "entrez"),
        identity=IDENTITY,
        retry=RetryPolicy(tries=2, base_delay_s=0.001, timeout_s=2.0),
        sleep=lambda s: None,
    )
    assert http.limiter.interval == pytest.approx(1 / paced_rate(IDENTITY))
    assert paced_rate(IDENTITY) < 3.0
    records = run(fetch_params(searches, batch_size=1), tmp_path, ncbi, http)
    assert len(records) == 9 and ncbi.rate_limited == 0 and ncbi.count("efetch") == 9


def test_the_fakes_rate_limit_answers_429_and_nothing_is_lost(ncbi, templates, tmp_path) -> None:
    searches = populate(ncbi, templates, {"breast": range(0, 8)})
    ncbi.rate_limit = 3.0
    http = NcbiHttp(
        ResponseCache(tmp_path / "entrez"),
        identity=IDENTITY,
        limiter=RateLimiter(1000.0),  # no pacing at all
        retry=RetryPolicy(tries=6, base_delay_s=0.4, timeout_s=2.0),
    )
    records = run(fetch_params(searches, batch_size=1), tmp_path, ncbi, http)
    assert sorted(r.doc_id for r in records) == searches["breast"]
    assert ncbi.rate_limited > 0 and http.stats.retries["efetch"] == ncbi.rate_limited


# -- a cache that ages ------------------------------------------------------------------------


def _age(root: Path, days: float) -> None:
    then = time.time() - days * 86_400
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (then, then))


def test_after_refresh_days_a_rerun_asks_again_and_the_corpus_grows(
    ncbi, templates, tmp_path
) -> None:
    searches = populate(ncbi, templates, {"breast": range(0, 5)})
    params = fetch_params(searches, refresh_days=7.0)
    first = run(params, tmp_path, ncbi, make_http(tmp_path))
    populate(ncbi, templates, {"breast": range(0, 8)})  # PubMed grew meanwhile
    again = run(params, tmp_path, ncbi, make_http(tmp_path))
    assert len(first) == len(again) == 5  # within the week: the cached search
    _age(tmp_path / "entrez", 8)
    before = len(ncbi.requests)
    grown = run(params, tmp_path, ncbi, make_http(tmp_path))
    assert sorted(a.doc_id for a in grown) == [str(90_000_000 + i) for i in range(8)]
    fetched = [
        p
        for r in ncbi.requests[before:]
        if r.endpoint == "efetch"
        for p in r.params["id"].split(",")
    ]
    assert sorted(fetched) == ["90000005", "90000006", "90000007"]  # only what is new


# -- the fake is as strict as NCBI ------------------------------------------------------------


def _get(url: str, data: dict | None = None) -> tuple[int, bytes]:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_fake_keeps_ncbis_paths_caps_and_history_rules(ncbi) -> None:
    ncbi.idconv["1"] = "PMC1"
    good = ncbi.pmc_url + "tools/idconv/api/v1/articles/?ids=1&idtype=pmid&format=json"
    assert json.loads(_get(good)[1])["records"][0]["pmcid"] == "PMC1"
    assert _get(ncbi.pmc_url + "utils/idconv/v1.0/?ids=1&format=json")[0] == 404
    ids = ",".join(str(i) for i in range(1, 10_002))
    status, body = _get(ncbi.eutils_url + "epost.fcgi", {"db": "pubmed", "id": ids})
    assert status == 200 and b"<ERROR>" in body and b"10000" in body
    _get(ncbi.eutils_url + "epost.fcgi", {"db": "pubmed", "id": "1"})
    term = urllib.parse.quote("#1 AND (x)")
    url = ncbi.eutils_url + f"esearch.fcgi?db=pubmed&term={term}&WebEnv=MCID_00000001"
    assert b"usehistory" in _get(url)[1]
    assert b"<ERROR>" not in _get(url + "&usehistory=y")[1]


def test_an_aged_answer_is_kept_when_asking_again_fails(ncbi, templates, tmp_path, caplog) -> None:
    from tests.pubmed.test_pmc import closed_port_url

    searches = populate(ncbi, templates, {"breast": range(0, 4)})
    params = fetch_params(searches, refresh_days=7.0)
    first = run(params, tmp_path, ncbi, make_http(tmp_path))
    _age(tmp_path / "entrez", 8)
    offline = closed_port_url().replace("pmc-oa-opendata/", "entrez/eutils/")
    store = RawStore(tmp_path / "staging2")
    with caplog.at_level("WARNING", logger="medsim.pubmed.http"):
        again = list(
            fetch_entrez(params, tmp_path, store, http=make_http(tmp_path), eutils_url=offline)
        )
    assert [a.doc_id for a in again] == [a.doc_id for a in first]
    assert "keeping the older cached answer" in caplog.text


def test_a_remembered_missing_record_is_asked_again_after_refresh_days(
    ncbi, templates, tmp_path, monkeypatch
) -> None:
    monkeypatch.delenv("MEDSIM_RETRY_FAILED", raising=False)
    searches = populate(ncbi, templates, {"breast": range(0, 2)})
    ncbi.searches["breast[query]"].append("99999999")  # listed, not returned by efetch
    params = fetch_params(searches)
    run(params, tmp_path, ncbi, make_http(tmp_path))
    run(params, tmp_path, ncbi, make_http(tmp_path))
    assert ncbi.fetched_pmids().count("99999999") == 1  # remembered
    _age(tmp_path / "entrez" / "pubmed", 8)
    run(params, tmp_path, ncbi, make_http(tmp_path))
    assert ncbi.fetched_pmids().count("99999999") == 2  # aged: asked again
