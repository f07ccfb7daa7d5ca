"""The fetch stage at its edges: any source's records into ``data/articles.parquet``, ``data/raw/``.

Sources are generators of :class:`~medsim.pubmed.records.Article`,
:class:`~medsim.pubmed.records.CorpusImage` and :class:`~medsim.pubmed.records.Skipped`
(see :mod:`medsim.pubmed.entrez` and :mod:`medsim.pubmed.local`). This module owns what is
common to all of them: duplicate ids, split assignment, schema validation, atomic outputs
and the counts a user sees at the end.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from tqdm import tqdm

from medsim.config import FetchParams, Params
from medsim.errors import MedsimError
from medsim.io import ParquetSink, SkipLog, atomic_dir, rows_to_table, write_table
from medsim.names import SkipReason
from medsim.paths import ARTICLES_PATH, CACHE_DIR, RAW_DIR
from medsim.pubmed.raw import RawStore
from medsim.pubmed.records import CorpusImage, Record, Skipped
from medsim.schemas import ARTICLES, IMAGES

__all__ = ["FetchSummary", "run_fetch", "write_articles"]

log = logging.getLogger(__name__)


@dataclass
class FetchSummary:
    articles: int = 0
    images: int = 0
    labels: Counter[str] = field(default_factory=Counter)
    splits: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)

    def describe(self) -> str:
        lines = [
            f"articles written: {self.articles}",
            f"images in manifest: {self.images}",
            f"splits: {dict(sorted(self.splits.items()))}",
            f"labels ({len(self.labels)}): {dict(sorted(self.labels.items()))}",
            f"skipped: {sum(self.skipped.values())} {dict(self.skipped.most_common())}",
        ]
        return "\n".join(lines)


def _batched(items: Iterable[Record], size: int) -> Iterator[list[Record]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def write_articles(
    records: Iterable[Record],
    articles_path: Path,
    store: RawStore,
    skips: SkipLog,
    params: FetchParams,
    seed: int,
    batch_size: int = 5_000,
) -> FetchSummary:
    """Stream records into ``articles_path`` (atomically), the store and the skip log.

    Memory is bound by ``batch_size`` records plus the set of ids seen (to drop duplicates).
    """
    summary = FetchSummary()
    seen: set[str] = set()
    with ParquetSink(articles_path, ARTICLES) as sink:
        progress = tqdm(desc="fetch", unit="doc", disable=None)
        for chunk in _batched(records, batch_size):
            rows = []
            for record in chunk:
                if isinstance(record, Skipped):
                    skips.add(record.item, record.reason, record.detail)
                elif isinstance(record, CorpusImage):
                    store.add_image(record)
                elif record.doc_id in seen:
                    skips.add(record.doc_id, SkipReason.DUPLICATE_DOC_ID, record.source)
                elif not record.abstract.strip():
                    skips.add(record.doc_id, SkipReason.EMPTY_TEXT, record.source)
                else:
                    seen.add(record.doc_id)
                    row = record.to_row(seed, params.val_fraction, params.test_fraction)
                    rows.append(row)
                    summary.labels[row["label"] or "(none)"] += 1
                    summary.splits[row["split"]] += 1
            sink.write_rows(rows)
            progress.update(len(rows))
        progress.close()
        summary.articles = sink.rows
        if summary.articles == 0:
            raise MedsimError(
                "fetch produced no articles; the skipped reasons were: "
                f"{dict(skips.counts().most_common(5))}"
            )
    summary.images = len(store.images)
    summary.skipped = skips.counts()
    return summary


def _open_source(params: Params, root: Path, store: RawStore) -> Iterable[Record]:
    fetch = params.fetch
    if fetch.source == "local":
        from medsim.pubmed.local import read_local

        return read_local(fetch.local, root=root, store=store, ambiguous=fetch.ambiguous)
    from medsim.pubmed.entrez import fetch_entrez

    return fetch_entrez(fetch, cache_dir=root / CACHE_DIR, store=store)


def run_fetch(params: Params, root: str | Path = ".") -> FetchSummary:
    """Run the fetch stage under ``root``: articles, raw files, image manifest, skipped log."""
    root = Path(root)
    skips = SkipLog("fetch")
    with atomic_dir(root / RAW_DIR) as staging:
        store = RawStore(staging)
        records = _open_source(params, root, store)
        summary = write_articles(
            records, root / ARTICLES_PATH, store, skips, params.fetch, params.seed
        )
        write_table(rows_to_table(store.images, IMAGES), staging / "images.parquet", IMAGES)
    skips.write(root)
    log.info("fetch done (%s source)\n%s", params.fetch.source, summary.describe())
    return summary
