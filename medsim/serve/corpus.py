"""What a result page shows beyond the index: article links, figure pictures, table cells.

Read from the pipeline's own tables under ``data/`` (``articles.parquet``, ``figures.parquet``,
``tables.parquet``), looked up by id only: a request names an item, never a file. Every table
is optional, so a server over an index without its corpus (a synthetic benchmark index) still
answers, with cards that have no picture.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from medsim.paths import ARTICLES_PATH, FIGURES_PATH, TABLES_PATH

__all__ = ["Corpus", "LRUCache", "pmc_url", "pubmed_url"]

log = logging.getLogger(__name__)

ARTICLE_COLUMNS = ("doc_id", "pmid", "pmcid", "title", "journal", "year", "doi")
THUMB_PX = 240  # longest side of a result card's thumbnail
TABLE_PREVIEW = (6, 6)  # rows, columns of a table shown on a card


def pubmed_url(pmid: str | None) -> str | None:
    return f"https://pubmed.ncbi.nlm.nih.gov/{pmid}/" if pmid else None


def pmc_url(pmcid: str | None) -> str | None:
    if not pmcid:
        return None
    pmcid = pmcid if pmcid.upper().startswith("PMC") else f"PMC{pmcid}"
    return f"https://pmc.ncbi.nlm.nih.gov/articles/{pmcid}/"


class LRUCache:
    """A small thread-safe least-recently-used map."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        return None

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)


def _columns(path: Path, wanted: tuple[str, ...]) -> list[str]:
    names = set(pq.ParquetFile(path).schema_arrow.names)
    return [c for c in wanted if c in names]


class Corpus:
    """Article metadata, figures (by id, read from their Parquet row group) and tables."""

    def __init__(self, data_dir: str | Path) -> None:
        data = Path(data_dir)
        self.articles: dict[str, dict[str, Any]] = {}
        self.figures: dict[str, dict[str, Any]] = {}  # id -> doc_id, caption, group, line
        self.tables: dict[str, dict[str, Any]] = {}  # id -> doc_id, caption, cells
        self.doc_figures: dict[str, list[str]] = {}
        self.doc_tables: dict[str, list[str]] = {}
        self._figures_file: pq.ParquetFile | None = None
        self._groups = LRUCache(2)  # decoded row groups of figure images
        self._thumbs = LRUCache(2048)
        self._read_lock = threading.Lock()
        articles = data / ARTICLES_PATH.name
        if articles.is_file():
            table = pq.read_table(articles, columns=_columns(articles, ARTICLE_COLUMNS))
            self.articles = {row["doc_id"]: row for row in table.to_pylist()}
        figures = data / FIGURES_PATH.name
        if figures.is_file():
            self._load_figures(figures)
        tables = data / TABLES_PATH.name
        if tables.is_file():
            rows = pq.read_table(tables, columns=["table_id", "doc_id", "caption", "cells"])
            for row in rows.to_pylist():
                self.tables[row["table_id"]] = row
                self.doc_tables.setdefault(row["doc_id"], []).append(row["table_id"])
        log.info(
            "corpus: %d articles, %d figures, %d tables",
            len(self.articles),
            len(self.figures),
            len(self.tables),
        )

    def _load_figures(self, path: Path) -> None:
        self._figures_file = pq.ParquetFile(path)
        for group in range(self._figures_file.num_row_groups):
            rows = self._figures_file.read_row_group(
                group, columns=["figure_id", "doc_id", "caption"]
            ).to_pylist()
            for line, row in enumerate(rows):
                self.figures[row["figure_id"]] = {**row, "group": group, "line": line}
                self.doc_figures.setdefault(row["doc_id"], []).append(row["figure_id"])

    def figure_png(self, figure_id: str) -> bytes | None:
        """The stored PNG of a figure; None if there is no such figure."""
        entry = self.figures.get(figure_id)
        if entry is None or self._figures_file is None:
            return None
        images = self._groups.get(entry["group"])
        if images is None:
            with self._read_lock:  # one reader: a row group of pictures can be large
                images = self._groups.get(entry["group"])
                if images is None:
                    images = self._figures_file.read_row_group(entry["group"], columns=["image"])
                    images = images.column("image")
                    self._groups.put(entry["group"], images)
        return images[entry["line"]].as_py()

    def thumbnail(self, figure_id: str) -> bytes | None:
        """A JPEG of the figure, at most :data:`THUMB_PX` on its longest side (cached)."""
        cached = self._thumbs.get(figure_id)
        if cached is not None:
            return cached
        data = self.figure_png(figure_id)
        if data is None:
            return None
        from PIL import Image

        from medsim.encoders.image import to_rgb

        with Image.open(io.BytesIO(data)) as image:
            picture = to_rgb(image)
            picture.thumbnail((THUMB_PX, THUMB_PX))
            out = io.BytesIO()
            picture.save(out, format="JPEG", quality=85)
        thumb = out.getvalue()
        self._thumbs.put(figure_id, thumb)
        return thumb

    def table_cells(self, table_id: str, preview: bool = True) -> list[list[str]]:
        """A table's cells (rows of strings); the card's corner of it when ``preview``."""
        entry = self.tables.get(table_id)
        if entry is None:
            return []
        try:
            cells = json.loads(entry["cells"])
        except (TypeError, ValueError):
            return []
        if not isinstance(cells, list):
            return []
        rows = [[str(c) for c in row] for row in cells if isinstance(row, list)]
        if preview:
            n_rows, n_cols = TABLE_PREVIEW
            rows = [row[:n_cols] for row in rows[:n_rows]]
        return rows
