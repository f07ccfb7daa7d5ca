"""HTTP requests per 1,000 records of the Entrez source (E-utilities and PMC Cloud), parse rate.

Runs ``fetch_entrez`` against the fake NCBI of ``tests/pubmed/fake_eutils.py`` on loopback
(real recorded PubmedArticle XML cloned under new PMIDs), so the request counts are exactly
what the code sends to NCBI; the wall time excludes NCBI's latency and its rate limit, and the
projected times at 3 and 10 requests/s are printed beside it.

    .venv/bin/python benchmarks/entrez_requests.py [--records 1000] [--classes 3]

``--conditions`` runs it under NCBI's real conditions instead: the fake enforces its own rate
limit (``--ncbi-limit``, 3 requests/s, answering NCBI's JSON 429) and injects random faults into
``--faults`` of all requests (5xx, S3 SlowDown, resets, truncated XML), while the client paces
and retries as it does live; the records (and full text) must equal an uninterrupted run's, and
the fake counts the 429s that pacing alone caused (there must be none).

    .venv/bin/python benchmarks/entrez_requests.py --conditions --records 3000 --pdf-share 0.1
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medsim.config import FetchParams  # noqa: E402
from medsim.pubmed.entrez import articles_from_xml, fetch_entrez  # noqa: E402
from medsim.pubmed.http import NcbiHttp, RateLimiter, ResponseCache, RetryPolicy  # noqa: E402
from medsim.pubmed.medline import iter_medline  # noqa: E402
from medsim.pubmed.pmc import PmcClient  # noqa: E402
from medsim.pubmed.raw import RawStore  # noqa: E402
from medsim.pubmed.records import Article  # noqa: E402
from tests.conftest import SHARED  # noqa: E402
from tests.pubmed.fake_eutils import (  # noqa: E402
    PUBMED_DOCTYPE,
    FakeNcbi,
    FakeServer,
    clone,
    has_abstract,
    make_pdf,
    recorded_articles,
)


def populate(ncbi: FakeNcbi, records: int, classes: int, pdf_share: float) -> None:
    """``classes`` queries over ``records`` cloned real records, 5% of each class shared with the
    next; half the records carry a PMCID, ``pdf_share`` of those have full text in the bucket."""
    templates = [a for a in recorded_articles(SHARED / "data").values() if has_abstract(a)]
    per_class = records // classes
    overlap = per_class // 20  # 5% of each class also matched by the next one
    pdf = make_pdf("benchmark article")
    jats_doc = b'<?xml version="1.0"?><article><body><fig id="F1"><label>Figure 1</label>'
    jats_doc += b"<caption><p>x</p></caption><graphic/></fig></body></article>"
    jpeg = b"\xff\xd8\xff" + bytes(20_000)  # the size of a small figure; never decoded here
    start = 0
    for c in range(classes):
        pmids = [str(50_000_000 + i) for i in range(start, start + per_class + overlap)]
        ncbi.searches[f"class{c}"] = pmids
        start += per_class
    every = sorted({p for ids in ncbi.searches.values() for p in ids})
    for n, pmid in enumerate(every):
        pmcid = f"PMC{pmid}" if n % 2 == 0 else None  # half the records carry a PMC id
        ncbi.add_article(clone(templates[n % len(templates)], pmid, pmcid))
        if pmcid and n % int(1 / pdf_share) == 0:
            ncbi.add_pmc_article(pmcid, jats_doc, pdf=pdf, media={"f1.jpg": jpeg})


def outcome(records: list) -> tuple[set, set]:
    """What a run delivered: articles with their full-text paths, and the skips."""
    articles = {
        (r.doc_id, r.label, r.jats_path, r.pdf_path, r.license)
        for r in records
        if isinstance(r, Article)
    }
    return articles, {(r.item, r.reason) for r in records if not isinstance(r, Article)}


def one_run(args: argparse.Namespace, params: FetchParams, live: bool) -> dict:
    """One fetch: ``live`` under the fake's rate limit and faults with the live client's pacing
    and retries, else uninterrupted and unpaced."""
    with FakeServer() as ncbi, tempfile.TemporaryDirectory() as tmp:
        populate(ncbi, args.records, args.classes, args.pdf_share)
        cache = Path(tmp)
        limiter = None if live else RateLimiter(1e6)  # None: paced under NCBI's limit
        if live:
            ncbi.rate_limit, ncbi.fault_rate = args.ncbi_limit, args.faults
        http = NcbiHttp(
            ResponseCache(cache / "entrez"), identity={"tool": "medsim"}, limiter=limiter
        )
        pmc = PmcClient(http, cache, 1 << 30, cloud_url=ncbi.bucket_url, pmc_url=ncbi.pmc_url)
        began = time.perf_counter()
        store = RawStore(cache / "raw")
        out = fetch_entrez(params, cache, store, http=http, eutils_url=ncbi.eutils_url, pmc=pmc)
        got = outcome(list(out))
        return {
            "outcome": got,
            "requests": dict(http.stats.requests) | dict(pmc.bucket.stats.requests),
            "wall_s": time.perf_counter() - began,
            "rate_limited": ncbi.rate_limited,
            "injected": dict(ncbi.injected),
        }


def conditions_run(args: argparse.Namespace) -> None:
    """The fetch under NCBI's own rate limit and random faults, against an uninterrupted one."""
    params = FetchParams(
        classes={f"c{c}": f"class{c}" for c in range(args.classes)},
        max_per_class=args.records,
        batch_size=args.batch_size,
        pdfs=True,
    )
    base = one_run(args, params, live=False)
    run = one_run(args, params, live=True)
    articles, skips = run["outcome"]
    fetched = len(articles)
    print(f"records: {fetched} articles, {sum(1 for a in articles if a[2])} with JATS")
    print(f"fake: {args.ncbi_limit} NCBI requests/s, {args.faults:.0%} faults {run['injected']}")
    print(
        f"same articles and full text as uninterrupted: {articles == base['outcome'][0]}; "
        f"same skips: {skips == base['outcome'][1]}"
    )
    print(f"429 from the fake's rate limit (pacing alone): {run['rate_limited']}")
    total = sum(run["requests"].values())
    for kind, n in sorted(run["requests"].items()):
        print(f"  {kind:12s} {n:5d} requests  = {1000 * n / fetched:7.1f} per 1,000 records")
    print(f"  total        {total:5d} requests  = {1000 * total / fetched:7.1f} per 1,000 records")
    print(f"wall: {run['wall_s']:.0f} s (uninterrupted, unpaced: {base['wall_s']:.1f} s)")


def fetch_run(records: int, classes: int, batch_size: int, pdf_share: float) -> dict:
    with FakeServer() as ncbi, tempfile.TemporaryDirectory() as tmp:
        populate(ncbi, records, classes, pdf_share)
        cache = Path(tmp)
        http = NcbiHttp(
            ResponseCache(cache / "entrez"),
            identity={"tool": "medsim"},
            limiter=RateLimiter(1e6),
            retry=RetryPolicy(tries=3, base_delay_s=0.01),
        )
        params = FetchParams(
            classes={f"c{c}": f"class{c}" for c in range(classes)},
            max_per_class=records,
            batch_size=batch_size,
            pdfs=True,
        )
        pmc = PmcClient(
            http,
            cache,
            max_bytes=params.max_pdf_mb * 2**20,
            cloud_url=ncbi.bucket_url,
            pmc_url=ncbi.pmc_url,
        )
        began = time.perf_counter()
        out = list(
            fetch_entrez(
                params,
                cache,
                RawStore(cache / "raw"),
                http=http,
                eutils_url=ncbi.eutils_url,
                pmc=pmc,
            )
        )
        wall = time.perf_counter() - began
        fetched = sum(isinstance(r, Article) for r in out)
        pdfs = sum(isinstance(r, Article) and r.pdf_path is not None for r in out)
        counts = dict(http.stats.requests) | dict(pmc.bucket.stats.requests)
        began = time.perf_counter()
        warm = NcbiHttp(
            ResponseCache(cache / "entrez"), identity={"tool": "medsim"}, limiter=RateLimiter(1e6)
        )
        again = list(
            fetch_entrez(
                params,
                cache,
                RawStore(cache / "raw2"),
                http=warm,
                eutils_url=ncbi.eutils_url,
                pmc=PmcClient(
                    warm, cache, 1 << 30, cloud_url=ncbi.bucket_url, pmc_url=ncbi.pmc_url
                ),
            )
        )
        warm_wall = time.perf_counter() - began
    return {
        "fetched": fetched,
        "pdfs": pdfs,
        "requests": counts,
        "wall_s": wall,
        "warm_requests": sum(warm.stats.requests.values()),
        "warm_wall_s": warm_wall,
        "warm_same": len(again) == len(out),
    }


def parse_rate(records: int = 1000, repeats: int = 3) -> tuple[float, float]:
    """Records/s of the Entrez path (whole answer, strict) and of the streaming MEDLINE reader."""
    templates = [a for a in recorded_articles(SHARED / "data").values() if has_abstract(a)]
    from lxml import etree

    body = b"".join(
        etree.tostring(clone(templates[i % len(templates)], str(60_000_000 + i)))
        for i in range(records)
    )
    doc = b'<?xml version="1.0" ?>\n' + PUBMED_DOCTYPE + b"\n<PubmedArticleSet>\n" + body
    doc += b"</PubmedArticleSet>\n"
    best_bio = best_lxml = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        assert len(articles_from_xml(doc)) == records
        best_bio = min(best_bio, time.perf_counter() - began)
        began = time.perf_counter()
        assert sum(1 for _ in iter_medline(io.BytesIO(doc), "bench")) == records
        best_lxml = min(best_lxml, time.perf_counter() - began)
    print(f"parse document: {records} records, {len(doc) / 2**20:.1f} MiB")
    return records / best_bio, records / best_lxml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--pdf-share", type=float, default=0.25)
    parser.add_argument("--conditions", action="store_true", help="NCBI's limit and faults")
    parser.add_argument("--ncbi-limit", type=float, default=3.0)
    parser.add_argument("--faults", type=float, default=0.05)
    args = parser.parse_args()
    if args.conditions:
        conditions_run(args)
        return
    result = fetch_run(args.records, args.classes, args.batch_size, args.pdf_share)
    fetched = result["fetched"]
    total = sum(result["requests"].values())
    print(f"records fetched: {fetched} ({args.classes} classes), with PDF: {result['pdfs']}")
    for kind, n in sorted(result["requests"].items()):
        print(f"  {kind:12s} {n:5d} requests  = {1000 * n / fetched:7.1f} per 1,000 records")
    print(f"  total        {total:5d} requests  = {1000 * total / fetched:7.1f} per 1,000 records")
    print(f"wall (loopback, no rate limit): {result['wall_s']:.2f} s")
    ncbi = sum(n for kind, n in result["requests"].items() if not kind.startswith("s3-"))
    bucket = total - ncbi
    print(
        f"projected: {ncbi} NCBI requests take {ncbi / 3:.0f} s without an API key (3/s), "
        f"{ncbi / 10:.0f} s with one (10/s); {bucket} PMC Cloud requests {bucket / 20:.0f} s at "
        "medsim's 20/s; plus the servers' response times"
    )
    print(
        f"warm re-run: {result['warm_requests']} requests, {result['warm_wall_s']:.2f} s, "
        f"same records: {result['warm_same']}"
    )
    bio, lxml_rate = parse_rate()
    print(f"parse rate: Entrez path {bio:,.0f} records/s; streaming reader {lxml_rate:,.0f}")


if __name__ == "__main__":
    main()
