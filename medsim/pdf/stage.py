"""The extract stage at its edges: read the inputs, fan PDFs out to workers, stream the rows.

An article with a JATS full text (PMC) gets its figures and tables from the XML
(:mod:`medsim.pdf.jats`) unless ``extract.prefer`` is ``pdf`` and it has a PDF too; other PDFs
go through the PDF extractor. Both write the same schemas, with ``origin`` telling them apart.

Outputs (all written atomically): ``data/figures.parquet``, ``data/tables.parquet`` and
``data/skipped.parquet/extract.parquet``.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pyarrow.parquet as pq
from tqdm import tqdm

from medsim import schemas
from medsim.config import ComputeParams, ExtractParams, Params
from medsim.errors import MedsimError
from medsim.io import ParquetSink, SkipLog, iter_batches, read_table
from medsim.names import SkipReason
from medsim.paths import ARTICLES_PATH, FIGURES_PATH, IMAGES_PATH, TABLES_PATH
from medsim.pdf.extract import PdfResult, corpus_figures, extract_pdf
from medsim.pdf.jats import extract_jats
from medsim.pdf.worker import Outcome, TimedPool

__all__ = ["ExtractInputError", "ExtractSummary", "extract_task", "run_extract", "timed_batch"]

log = logging.getLogger(__name__)


@dataclass
class ExtractSummary:
    pdfs: int = 0
    pages: int = 0
    layout_pages: int = 0
    table_pages: int = 0
    corpus_images: int = 0
    jats: int = 0
    figures: int = 0
    tables: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def describe(self) -> str:
        return "\n".join(
            [
                f"PDFs in: {self.pdfs} ({self.pages} pages; layout model on {self.layout_pages}, "
                f"camelot on {self.table_pages})",
                f"corpus images in: {self.corpus_images}",
                f"JATS full texts in: {self.jats}",
                f"figures out: {self.figures}",
                f"tables out: {self.tables}",
                f"skipped: {sum(self.skipped.values())} {dict(self.skipped.most_common())}",
            ]
        )


def extract_task(task: tuple[str, str, ExtractParams]) -> PdfResult:
    """Worker entry point: ``(pdf_path, doc_id, params)`` -> :class:`PdfResult`."""
    pdf_path, doc_id, params = task
    return extract_pdf(Path(pdf_path), doc_id, params)


def timed_batch(fn: Callable, items: list, timeout_s: float) -> list[Outcome]:
    """One Ray task of the extract stage: ``items`` through the local engine's timed worker
    (one process; ``fn`` on each item under ``timeout_s``; a hang or crash costs its item)."""
    return list(TimedPool(fn, workers=1, timeout_s=timeout_s).imap_unordered(items))


def _pdf_task_size(pdfs: int, workers: int) -> int:
    """PDFs per Ray task: up to 8, to spread a worker's start (PyMuPDF's layout model loads
    on import, seconds) over several PDFs, while every worker still gets about four tasks."""
    return max(1, min(8, math.ceil(pdfs / (4 * max(1, workers)))))


def _pdf_outcomes(
    tasks: list[tuple[str, str, ExtractParams]], extract: ExtractParams, compute: ComputeParams
) -> Iterator[Outcome]:
    """Each PDF's outcome, in completion order, from the local pool or from Ray tasks."""
    if compute.engine == "local":
        pool = TimedPool(extract_task, workers=extract.workers, timeout_s=extract.timeout_s)
        yield from pool.imap_unordered(tasks)
        return
    from medsim.compute import map_unordered

    yield from map_unordered(
        partial(timed_batch, extract_task, timeout_s=extract.timeout_s),
        tasks,
        compute,
        per_task=_pdf_task_size(len(tasks), compute.workers),
        on_error=lambda chunk, detail: [Outcome(t, "error", detail=detail) for t in chunk],
    )


class ExtractInputError(MedsimError):
    """The fetch stage's outputs are missing."""


def _tasks(
    root: Path, params: ExtractParams
) -> tuple[list[tuple[str, str, ExtractParams]], list[tuple[str, str]]]:
    """``(pdf tasks, jats tasks)``: each article's one source of figures and tables."""
    if not (root / ARTICLES_PATH).exists():
        raise ExtractInputError(
            f"{ARTICLES_PATH} not found under {root.resolve()}: run the fetch stage first "
            "(`dvc repro fetch`)"
        )
    articles = read_table(
        root / ARTICLES_PATH, schemas.ARTICLES, columns=["doc_id", "pdf_path", "jats_path"]
    ).to_pylist()
    pdfs, jats = [], []
    for row in articles:
        if row["jats_path"] and (params.prefer == "jats" or not row["pdf_path"]):
            jats.append((str(root / row["jats_path"]), row["doc_id"]))
        elif row["pdf_path"]:
            pdfs.append((str(root / row["pdf_path"]), row["doc_id"], params))
    return pdfs, jats


def _write_result(
    result: PdfResult,
    figures: ParquetSink,
    tables: ParquetSink,
    skips: SkipLog,
    summary: ExtractSummary,
) -> None:
    """Stream one document's rows out and add its counts and skips."""
    summary.pages += result.pages
    summary.layout_pages += result.layout_pages
    summary.table_pages += result.table_pages
    figures.write_rows(result.figures)
    tables.write_rows(result.tables)
    for item, reason, detail in result.skipped:
        skips.add(item, reason, detail)


def _image_rows(root: Path) -> Iterator[dict]:
    path = root / IMAGES_PATH
    if not path.exists():
        return
    for batch in iter_batches(path, batch_size=256):
        yield from schemas.validate(batch, schemas.IMAGES, name=str(path)).to_pylist()


def run_extract(params: Params, root: str | Path = ".") -> ExtractSummary:
    """Run the extract stage under ``root`` (see the module docstring for the outputs)."""
    root = Path(root)
    extract = params.extract
    skips = SkipLog("extract")
    summary = ExtractSummary()
    tasks, jats_tasks = _tasks(root, extract)
    images_path = root / IMAGES_PATH
    image_count = pq.ParquetFile(images_path).metadata.num_rows if images_path.exists() else 0
    if not tasks and not jats_tasks and not image_count:
        log.info("text-only corpus: no PDFs, no full texts, no images; empty figures and tables")

    with (
        ParquetSink(root / FIGURES_PATH, schemas.FIGURES) as figures,
        ParquetSink(root / TABLES_PATH, schemas.TABLES) as tables,
    ):
        batch: list[dict] = []
        for out in tqdm(
            corpus_figures(_image_rows(root), root, extract.min_figure_px),
            total=image_count,
            desc="extract images",
            unit="img",
            disable=None,
        ):
            summary.corpus_images += 1
            if isinstance(out, tuple):
                skips.add(*out)
                continue
            batch.append(out)
            if len(batch) >= 256:
                figures.write_rows(batch)
                batch = []
        figures.write_rows(batch)

        for xml_path, doc_id in tqdm(jats_tasks, desc="extract jats", unit="doc", disable=None):
            summary.jats += 1
            _write_result(
                extract_jats(Path(xml_path), doc_id, extract), figures, tables, skips, summary
            )

        progress = tqdm(total=len(tasks), desc="extract pdfs", unit="pdf", disable=None)
        for outcome in _pdf_outcomes(tasks, extract, params.compute):
            progress.update(1)
            summary.pdfs += 1
            doc_id = outcome.item[1]
            if outcome.status != "ok":
                timeout = outcome.status == "timeout"
                reason = SkipReason.TIMEOUT if timeout else SkipReason.EXTRACTOR_FAILED
                skips.add(doc_id, reason, outcome.detail)
                continue
            _write_result(outcome.result, figures, tables, skips, summary)
        progress.close()
        summary.figures, summary.tables = figures.rows, tables.rows
    skips.write(root)
    summary.skipped = skips.counts()
    log.info("extract done\n%s", summary.describe())
    return summary
