"""The live source: PubMed through NCBI E-utilities, one query per class, parsed by lxml.

Flow of :func:`fetch_entrez`:

1. ``esearch`` every class query for its first ``max_per_class`` PMIDs. PubMed's esearch
   serves only the first 9,999 ids of a query (``retstart`` above 9998 is answered with
   ``<ERROR>'retstart' cannot be larger than 9998 ...``, and a page crossing that line is cut
   short; NCBI's E-utilities book, chapter "The E-utilities In-Depth", ESearch), so paging
   never crosses it; a class that wants more than 9,999 of a larger query is split into
   publication-date ranges (``datetype=pdat``, ``mindate``/``maxdate``), newest first, each
   under the cap. ``pdat`` matches print and electronic dates, so an article can fall in two
   ranges: it is counted once and the range read further, so the class still gets exactly
   ``max_per_class``. A single day over the cap is split by PMID range (``<lo>:<hi>[uid]``).
2. Ambiguity, without pulling every pair's intersection: the taken PMIDs are ``epost``-ed to
   the history server (chunks of :data:`EPOST_CHUNK`, one ``WebEnv``), and each class query is
   searched again *within* them (``term=#<query_key> AND (<query>)``, the history-server
   combination the same chapter documents): one small search per class and chunk tells every
   class that matches a taken PMID, even beyond that class's ``max_per_class``.
   :func:`~medsim.pubmed.records.resolve_label` then drops it or keeps the first class in
   params order.
3. ``efetch`` the kept PMIDs in batches of ``batch_size`` (POSTed id lists, PubMed XML), each
   PMID once; parse with lxml and map every ``PubmedArticle`` to an
   :class:`~medsim.pubmed.records.Article`; a record PubMed marks as retracted is skipped
   (``"retracted"``, :func:`~medsim.pubmed.efetch.retraction`).
4. With ``pdfs: true``, attach each open-access article's full text (JATS XML, figure images,
   PDF) from the PMC Cloud Service (:mod:`medsim.pubmed.pmc`); full text is optional, so no
   bucket failure ends the stage.
5. Class sizes, out loud: per class how many PMIDs were asked, PubMed found, were taken and
   kept, and why any are missing (PubMed has fewer, ambiguous, retracted, no abstract, ...),
   a warning when a class is short of ``max_per_class``.

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
not ask again; ``MEDSIM_RETRY_FAILED=1`` asks again. Searches and ID Converter answers older
than ``fetch.refresh_days`` are asked again, so a re-run after that sees what PubMed added and
fetches only PMIDs it has never fetched: the corpus grows.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from medsim.config import FetchParams
from medsim.names import SkipReason
from medsim.pubmed.efetch import articles_from_xml
from medsim.pubmed.eutils import ESEARCH_MAX, EUTILS_URL, EntrezClient
from medsim.pubmed.http import NcbiHttp, OfflineError, ResponseCache, RetryPolicy
from medsim.pubmed.raw import RawStore
from medsim.pubmed.records import Article, Skipped, resolve_label

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


@dataclass
class ClassSize:
    """One class's count at each step, so a class short of ``max_per_class`` says why."""

    asked: int  # fetch.max_per_class
    found: int = 0  # PubMed's hit count for the class query
    taken: int = 0  # distinct PMIDs esearch gave (fewer than asked only when PubMed has fewer)
    kept: int = 0  # articles written with this label
    lost: Counter[str] = field(default_factory=Counter)  # taken PMIDs not kept, by reason
    pmids: set[str] = field(default_factory=set, repr=False)  # the taken ones

    def describe(self) -> str:
        why = [f"{n} {reason}" for reason, n in self.lost.most_common()]
        if self.taken < self.asked:
            why.insert(0, f"{self.asked - self.taken} not in PubMed (it has {self.found})")
        missing = f"; short by {self.asked - self.kept}: {', '.join(why)}" if why else ""
        return (
            f"asked {self.asked}, found {self.found}, taken {self.taken}, kept {self.kept}"
            + missing
        )


def _report_sizes(sizes: Mapping[str, ClassSize]) -> None:
    """Per class: asked, found, taken, kept, and why any are missing (one line each)."""
    for label, size in sizes.items():
        short = size.kept < size.asked
        log.log(logging.WARNING if short else logging.INFO, "class %s: %s", label, size.describe())


def _candidates(
    client: EntrezClient,
    classes: Mapping[str, str],
    limit: int,
    sizes: Mapping[str, ClassSize] | None = None,
) -> dict[str, list]:
    """PMID -> every class whose query matches it, in params order (PMIDs in first-seen order).

    Each class contributes its first ``limit`` PMIDs. A PMID that another class's query also
    matches beyond that class's own ``limit`` would look unambiguous, so the taken PMIDs are
    searched again with every class query on the history server (:meth:`EntrezClient.matching`).
    """
    taken: dict[str, list[str]] = {}
    for label, query in classes.items():
        pmids = client.esearch(query, limit)
        log.info("esearch %s: %d hits, %d taken", label, client.counts.get(query, 0), len(pmids))
        if sizes is not None:
            sizes[label].found, sizes[label].taken = client.counts.get(query, 0), len(pmids)
            sizes[label].pmids = set(pmids)
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


def _pmc_client(params: FetchParams, http: NcbiHttp, cache_dir: Path) -> PmcClient:
    """The full-text client ``params`` ask for: the PDF size cap, the licences kept."""
    from medsim.pubmed.pmc import PmcClient

    licenses = None if params.licenses == "all" else params.licenses
    return PmcClient(http, cache_dir, max_bytes=params.max_pdf_mb * 2**20, licenses=licenses)


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
    if http.cache is not None:  # params decide how old a cached search may be
        http.cache.max_age_s = params.refresh_days * 86_400
    _warn_without_email(http)
    client = EntrezClient(http, eutils_url, esearch_page)
    if params.pdfs and pmc is None:
        pmc = _pmc_client(params, http, Path(cache_dir))
    sizes = {label: ClassSize(params.max_per_class) for label in params.classes}
    candidates = _candidates(client, params.classes, params.max_per_class, sizes)
    labels, unlabelled = _labels(candidates, params.ambiguous)
    skipped = Counter(skip.reason for skip in unlabelled)
    for skip in unlabelled:  # an ambiguous PMID is lost to every class that took it
        for size in sizes.values():
            if skip.item in size.pmids:
                size.lost[skip.reason] += 1
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
        for article in articles:
            sizes[article.label].kept += 1
        for skip in skips:
            if skip.item in labels:  # a PMID's own skip, not one of its full text's
                sizes[labels[skip.item]].lost[skip.reason] += 1
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
    _report_sizes(sizes)
