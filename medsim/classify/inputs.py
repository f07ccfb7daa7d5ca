"""What ``medsim classify`` classifies, as vectors of the trained space.

A text is embedded exactly as a search query is (:class:`~medsim.search.query.QueryEncoder`:
the index's text model, whole-text windows, the lexical part, the text head), which is how
the index embedded a text-only document. A PMID of the corpus is its stored document vector
(text fused with its figures, captions and tables: Table 1's own vector); another PMID is
fetched through the fetch stage's E-utilities client and response cache. A PDF gives its first
page's text (title and abstract) and, through the extract code, its figures and tables, fused
by the index's rule (:func:`medsim.dml.fusion.fuse_documents`). A figure alone is its image
vector, classified among the documents by the same rule.

Bad input raises :class:`~medsim.errors.MedsimError` with one line.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medsim.errors import MedsimError
from medsim.search.index import IndexStore
from medsim.search.query import QueryEncoder

__all__ = ["MAX_IMAGE_BYTES", "Inputs", "Query", "pdf_parts"]

MAX_IMAGE_BYTES = 10 * 2**20  # as `medsim serve`'s upload cap: a figure is rarely over a few MB
PDF_TEXT_PAGES = 1  # a paper's title and abstract are on its first page


@dataclass(frozen=True)
class Query:
    """One input in the space: ``vector`` [1, dim]; ``exclude``: the stored document itself
    (it must not vote for itself)."""

    source: str  # text | pmid | pdf | image
    label: str  # what is shown as the query
    vector: np.ndarray
    exclude: str | None = None
    features: np.ndarray | None = None  # a figure's image-model features (its modality probe)


@dataclass
class PdfParts:
    """What a PDF contributes: its text, figures (PNG bytes, caption) and table texts."""

    text: str
    figures: list[tuple[bytes, str | None]]
    tables: list[str]


def pdf_parts(path: Path) -> PdfParts:
    """Text of the first page, figures and tables of the PDF at ``path``; a MedsimError for
    a missing, unreadable, encrypted or text-less PDF."""
    import pymupdf

    from medsim.config import ExtractParams
    from medsim.pdf.extract import extract_pdf

    path = Path(path)
    result = extract_pdf(path, path.stem, ExtractParams())
    bad = [s for s in result.skipped if s[0] == path.stem]
    if bad:
        _, reason, detail = bad[0]
        raise MedsimError(f"cannot read PDF {path}: {reason}" + (f" ({detail})" if detail else ""))
    with pymupdf.open(path, filetype="pdf") as doc:
        text = "\n".join(doc[i].get_text("text") for i in range(min(PDF_TEXT_PAGES, len(doc))))
    figures = [(row["image"], row.get("caption")) for row in result.figures]
    tables = [
        "\n".join(filter(None, (row.get("caption"), row.get("text")))) for row in result.tables
    ]
    return PdfParts(" ".join(text.split()), figures, [t for t in tables if t.strip()])


class Inputs:
    """Turns texts, PMIDs, PDFs and images into :class:`Query` vectors (models load on use)."""

    def __init__(
        self,
        store: IndexStore,
        encoder: QueryEncoder,
        root: Path,
        lock: AbstractContextManager | None = None,
    ) -> None:
        self.store = store
        self.encoder = encoder
        self.root = Path(root)
        # held around each model call only (a server's encoders are shared and not
        # re-entrant), never around a PubMed request or a PDF's extraction
        self.lock = lock if lock is not None else nullcontext()
        self._entrez = None
        self._labellers: list | None = None
        self._documents: dict[str, int] | None = None

    def texts(self, texts: list[str], head: str = "text") -> np.ndarray:
        """Vectors [n, dim] of non-empty texts through ``head``, encoded in one batch."""
        with self.lock:
            return self.encoder.text(texts, head)

    def text(self, text: str) -> Query:
        if not text or not text.strip():
            raise MedsimError("the text is empty")
        return Query("text", _short(text), self.texts([text]))

    def stored(self, pmid: str) -> Query | None:
        """The corpus's document with this PMID or doc id, or None."""
        if self._documents is None:  # one dict for every lookup of a batch
            items = self.store.collection_items("documents", ("pmid", "doc_id"))
            pmids, doc_ids = items.column(0).to_pylist(), items.column(1).to_pylist()
            self._documents = {d: row for row, d in enumerate(doc_ids)}
            for row, p in reversed(list(enumerate(pmids))):  # a PMID wins, the first one
                if p:
                    self._documents[p] = row
        row = self._documents.get(str(pmid).strip())
        if row is None:
            return None
        (record,) = self.store.rows("documents", [row], ("doc_id", "title"))
        label = f"PMID {pmid}: {record['title'] or ''}".strip()
        return Query("pmid", label, self.store.vector("documents", row), record["doc_id"])

    def fetch_texts(self, pmids: list[str]) -> dict[str, str | None]:
        """PMID -> title and abstract from E-utilities (None: PubMed has no such record)."""
        from medsim.pubmed.entrez import EntrezClient
        from medsim.pubmed.http import NcbiHttp, ResponseCache, RetryPolicy
        from medsim.pubmed.records import Skipped
        from medsim.pubmed.stage import CACHE_DIR

        if self._entrez is None:
            # the fetch stage's client and response cache, with a person's patience: 3 tries
            # within seconds, where a fetch of thousands waits out minutes
            retry = RetryPolicy(tries=3, base_delay_s=0.5, max_delay_s=2.0, timeout_s=15.0)
            cache = ResponseCache(self.root / CACHE_DIR / "entrez")
            self._entrez = EntrezClient(NcbiHttp(cache, retry=retry))
        out: dict[str, str | None] = dict.fromkeys(pmids)
        for record in self._entrez.efetch(pmids):
            if not isinstance(record, Skipped):
                text = "\n".join(filter(None, (record.title, record.abstract)))
                out[record.pmid or record.doc_id] = text if text.strip() else None
        return out

    def pmid(self, pmid: str) -> Query:
        pmid = str(pmid).strip()
        if not pmid:
            raise MedsimError("the PMID is empty")
        stored = self.stored(pmid)
        if stored is not None:
            return stored
        if not pmid.isdigit():
            raise MedsimError(f"'{pmid}' is neither a PMID nor a doc id of the corpus")
        text = self.fetch_texts([pmid])[pmid]
        if text is None:
            raise MedsimError(f"PubMed has no record with PMID {pmid}")
        return Query("pmid", f"PMID {pmid} (fetched): {_short(text)}", self.texts([text]))

    def pdf(self, path: Path) -> Query:
        parts = pdf_parts(Path(path))
        return Query("pdf", f"{Path(path).name}: {_short(parts.text)}", self.fuse(parts))

    def fuse(self, parts: PdfParts) -> np.ndarray:
        """The document vector [1, dim] of a PDF's parts, by the index's fusion rule."""
        from medsim.dml.fusion import fuse_documents
        from medsim.dml.model import fuses_text_only

        heads = self.encoder.space.heads
        text = self.texts([parts.text]) if parts.text else np.zeros((0, self.encoder.space.dim))
        found: dict[str, np.ndarray] = {}
        captions = [c for _, c in parts.figures if c]
        if captions and "caption" in heads:
            found["caption"] = self.texts(captions, "caption")
        if parts.tables and "table" in heads:
            found["table"] = self.texts(parts.tables, "table")
        images = []
        for png, _ in parts.figures if "image" in heads else []:
            try:
                with self.lock:
                    images.append(self.encoder.image_bytes(png))
            except MedsimError:  # a figure the image model cannot read: the rest still count
                continue
        if images:
            found["image"] = np.vstack(images)
        if not len(text) and not found:
            raise MedsimError("the PDF has no text, figures or tables to classify")
        ids = ["pdf"] * len(text)
        parts = {k: (["pdf"] * len(v), v) for k, v in found.items()}
        _, fused = fuse_documents(ids, text, parts, fuses_text_only(self.encoder.space))
        return fused

    def image(self, path: Path) -> Query:
        path = Path(path)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise MedsimError(f"cannot read image {path}: {exc.strerror or exc}") from exc
        if size > MAX_IMAGE_BYTES:
            raise MedsimError(f"image {path} is over {MAX_IMAGE_BYTES / 2**20:.0f} MB")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise MedsimError(f"cannot read image {path}: {exc.strerror or exc}") from exc
        return self.image_bytes(data, str(path), path.name)

    def image_bytes(self, data: bytes, name: str = "the image", label: str | None = None) -> Query:
        """A figure's query (``name`` words errors, ``label`` is shown; default ``name``)."""
        if len(data) > MAX_IMAGE_BYTES:
            raise MedsimError(f"{name} is over {MAX_IMAGE_BYTES / 2**20:.0f} MB")
        with self.lock:
            features = self.encoder.image_features(data, name)
            vector = self.encoder.project("image", features)
        return Query("image", label or name, vector, features=features)

    def figure_labels(self) -> list:
        """The figure labellers of the project (:mod:`medsim.classify.figure`), fitted once."""
        if self._labellers is None:
            from medsim.classify.figure import load_labellers

            self._labellers = load_labellers(self.root, lambda texts: self.texts(texts, "caption"))
        return self._labellers

    def label_figure(self, query: Query) -> list:
        """A figure query's modality and plane labels (FigureLabel), [] for other inputs."""
        from medsim.classify.figure import FigureLabel

        if query.features is None:
            return []
        return [
            item if isinstance(item, FigureLabel) else item.label(query.features, query.vector)
            for item in self.figure_labels()
        ]


def _short(text: str, width: int = 80) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"
