"""The search service behind ``medsim serve``: the index, the models and the corpus, loaded once.

Everything here calls :mod:`medsim.search`'s public functions, so a result of the web page or
of ``/api/search`` is the same :class:`~medsim.search.query.Hit` that ``medsim search --json``
prints. Bad input raises a :class:`RequestError` carrying its HTTP status and a one-line message.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medsim.errors import MedsimError
from medsim.paths import DATA_DIR
from medsim.search.explain import explain, explain_query
from medsim.search.index import RESULT_TYPES, IndexStore, load_index
from medsim.search.query import (
    Hit,
    ItemRef,
    QueryEncoder,
    bits_for,
    collections_for,
    find_item,
    find_pmid,
    nearest,
)
from medsim.serve.corpus import Corpus, LRUCache, pmc_url, pubmed_url

__all__ = [
    "MAX_K",
    "MAX_QUERY_CHARS",
    "MAX_UPLOAD_BYTES",
    "NotFoundError",
    "Query",
    "RequestError",
    "SearchService",
    "TooLargeError",
]

log = logging.getLogger(__name__)

MAX_K = 100  # a page of results, not a dump of the index
MAX_QUERY_CHARS = 10_000  # an abstract fits; MiniLM reads only the first 256 tokens anyway
MAX_UPLOAD_BYTES = 10 * 2**20  # a figure is rarely over a few MB; larger is refused unread


class RequestError(MedsimError):
    """Bad input from a request: HTTP ``status`` with a one-line message."""

    status = 400


class NotFoundError(RequestError):
    status = 404


class TooLargeError(RequestError):
    status = 413


@dataclass(frozen=True)
class Query:
    """A resolved query: what was asked (for the page) and its shared-space vector."""

    source: str  # text | image | pmid | id
    label: str  # what the page shows as the query
    vector: np.ndarray
    text: str | None = None
    ref: ItemRef | None = None  # stored-item queries
    token: str | None = None  # image queries: key of the in-memory vector, never a file


def _png(size: int = 64) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (size, size), (128, 128, 128)).save(out, format="PNG")
    return out.getvalue()


class SearchService:
    """One loaded index with its encoders and corpus, answering queries from many threads."""

    def __init__(
        self,
        index_dir: str | Path,
        model_dir: str | Path,
        root: str | Path = ".",
        data_dir: str | Path | None = None,
        max_k: int = MAX_K,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
    ) -> None:
        import faiss
        import torch

        # One thread per query, for faiss and torch alike (they share the OpenMP runtime): a
        # team of threads per small query only adds barrier waits, which on a busy machine
        # cost more than the work (MiniLM on one short query: 2 threads were 7x slower in wall
        # time on the shared 2-core machine), and concurrent requests already use the cores.
        faiss.omp_set_num_threads(1)
        torch.set_num_threads(1)
        self.store: IndexStore = load_index(index_dir)
        self.encoder = QueryEncoder(self.store, model_dir, root)
        self.corpus = Corpus(Path(data_dir) if data_dir else Path(root) / DATA_DIR)
        self.max_k = max_k
        self.max_upload_bytes = max_upload_bytes
        self._model_lock = threading.Lock()  # the encoders load lazily and are not re-entrant
        self._text_vectors = LRUCache(1024)
        self._image_vectors = LRUCache(64)

    def warm(self) -> float:
        """Load the model and encoders now, so the first query is as fast as the rest."""
        start = time.perf_counter()
        self.text_vector("warm up")
        if "image" in self.encoder.space.heads and "figures" in self.store.collections:
            with self._model_lock:
                self.encoder.image_bytes(_png())
        return time.perf_counter() - start

    def health(self) -> dict[str, Any]:
        manifest = self.store.manifest
        return {
            "status": "ok",
            "items": {RESULT_TYPES[k]: self.store.count(k) for k in self.store.collections},
            "dim": int(manifest["dim"]),
            "bits": self.store.bits,
            "text_model": manifest.get("text_model"),
            "image_model": manifest.get("image_model"),
            "max_k": self.max_k,
            "max_upload_bytes": self.max_upload_bytes,
        }

    # ------------------------------------------------------------------ queries

    def text_vector(self, text: str) -> np.ndarray:
        vector = self._text_vectors.get(text)
        if vector is None:
            with self._model_lock:
                vector = self.encoder.text([text])
            self._text_vectors.put(text, vector)
        return vector

    def text_query(self, text: str | None) -> Query:
        text = (text or "").strip()
        if not text:
            raise RequestError("the query text is empty")
        if len(text) > MAX_QUERY_CHARS:
            raise RequestError(f"the query text is over {MAX_QUERY_CHARS:,} characters")
        return Query("text", text, self.text_vector(text), text=text)

    def item_query(self, ref: str | None, pmid: bool = False) -> Query:
        ref = (ref or "").strip()
        if not ref:
            raise RequestError(f"empty {'PMID' if pmid else 'item id'}")
        try:
            found = find_pmid(self.store, ref) if pmid else find_item(self.store, ref)
        except MedsimError as exc:
            raise NotFoundError(str(exc)) from exc
        vector = self.store.vector(found.collection, found.row)
        return Query("pmid" if pmid else "id", ref, vector, ref=found)

    def image_query(self, data: bytes, name: str = "the upload") -> Query:
        if not data:
            raise RequestError("no image was uploaded")
        if len(data) > self.max_upload_bytes:
            raise TooLargeError(f"the image is over {self.max_upload_bytes // 2**20} MB")
        token = hashlib.sha256(data).hexdigest()[:20]
        vector = self._image_vectors.get(token)
        if vector is None:
            try:
                with self._model_lock:
                    vector = self.encoder.image_bytes(data, name=name)
            except MedsimError as exc:
                raise RequestError(str(exc)) from exc
            self._image_vectors.put(token, vector)
        return Query("image", name, vector, token=token)

    def image_token_query(self, token: str | None) -> Query:
        vector = self._image_vectors.get(token or "")
        if vector is None:
            raise NotFoundError("that image query has expired; upload the image again")
        return Query("image", "the uploaded image", vector, token=token)

    def resolve(
        self,
        text: str | None = None,
        pmid: str | None = None,
        item: str | None = None,
        image: str | None = None,
    ) -> Query:
        """The one query among a text, a PMID, an item id or an image token."""
        given = [
            (name, value)
            for name, value in (("q", text), ("pmid", pmid), ("id", item), ("image", image))
            if value is not None
        ]
        if len(given) != 1:
            raise RequestError("give exactly one of: q (text), pmid, id, image")
        name, value = given[0]
        if name == "q":
            return self.text_query(value)
        if name == "image":
            return self.image_token_query(value)
        return self.item_query(value, pmid=name == "pmid")

    def search(
        self,
        query: Query,
        k: int = 10,
        types: Sequence[str] | None = None,
        bits: int | None = None,
        binary: bool = False,
    ) -> list[Hit]:
        """The ``k`` nearest items to ``query`` (Hamming search over ``bits``-bit codes if
        given; ``binary`` alone picks 64 bits, else the largest size, as the CLI does), of
        ``types`` only when given; the query item itself is left out."""
        if not 1 <= k <= self.max_k:
            raise RequestError(f"k must be between 1 and {self.max_k}, got {k}")
        try:
            collections = collections_for(self.store, types)
            bits = bits_for(self.store, bits, binary)
        except MedsimError as exc:
            raise RequestError(str(exc)) from exc
        return nearest(
            self.store, query.vector, k, collections, ref=query.ref, bits=bits, codes=self._codes
        )

    def _codes(self, vector: np.ndarray, bits: int) -> np.ndarray:
        with self._model_lock:
            return self.encoder.codes(vector, bits)

    # ------------------------------------------------------------------ explanations

    def item(self, ref: str) -> ItemRef:
        try:
            return find_item(self.store, ref)
        except MedsimError as exc:
            raise NotFoundError(str(exc)) from exc

    def explain(self, query: Query, b: str, sentences: bool = True) -> dict[str, Any]:
        """Why ``query`` is close to item ``b``: :func:`~medsim.search.explain.explain` for a
        stored item, :func:`~medsim.search.explain.explain_query` for a text or an image."""
        target = self.item(b)
        with self._model_lock:
            encoder = self.encoder if sentences else None
            if query.ref is not None:
                result = explain(self.store, query.ref, target, encoder)
            else:
                result = explain_query(self.store, query.vector, target, encoder, query.text)
        return result.to_dict()

    # ------------------------------------------------------------------ pages

    def links(self, doc_id: str | None, pmid: str | None) -> dict[str, Any]:
        article = self.corpus.articles.get(doc_id or "", {})
        pmid = pmid or article.get("pmid")
        pmcid = article.get("pmcid")
        return {
            "pmid": pmid,
            "pmcid": pmcid,
            "pubmed_url": pubmed_url(pmid),
            "pmc_url": pmc_url(pmcid),
            "journal": article.get("journal"),
            "year": article.get("year"),
        }

    def card(self, hit: Hit) -> dict[str, Any]:
        """A hit with what its card shows: links, the figure to draw, a table's corner."""
        card = {**hit.to_dict(), **self.links(hit.doc_id, hit.pmid)}
        card["figure"] = None
        if hit.type in ("figure", "caption") and hit.id in self.corpus.figures:
            card["figure"] = hit.id
        elif hit.type == "document" and self.corpus.doc_figures.get(hit.doc_id):
            card["figure"] = self.corpus.doc_figures[hit.doc_id][0]
        card["cells"] = self.corpus.table_cells(hit.id) if hit.type == "table" else []
        return card

    def document(self, doc_id: str) -> dict[str, Any]:
        """A document's title, links, text, figures and tables."""
        doc_id = (doc_id or "").strip()
        found = None
        if doc_id and "documents" in self.store.collections:
            found = self.store.find(doc_id, ["documents"], ("id", "pmid"))
        article = self.corpus.articles.get(doc_id)
        if found is None and article is None:
            raise NotFoundError(f"no document '{doc_id}' in the index")
        record: dict[str, Any] = {"doc_id": doc_id, "title": None, "text": None, "pmid": None}
        if found is not None:
            (row,) = self.store.rows(found[0], [found[1]], ("id", "pmid", "title", "text"))
            record.update(doc_id=row["id"], title=row["title"], pmid=row["pmid"])
            text = row["text"] or ""
            if row["title"] and text.startswith(row["title"]):
                text = text[len(row["title"]) :].lstrip("\n")
            record["text"] = text
        doc_id = record["doc_id"]
        article = self.corpus.articles.get(doc_id, {})
        record["title"] = record["title"] or article.get("title")
        record.update(self.links(doc_id, record["pmid"]))
        record["figures"] = [
            {"id": f, "caption": self.corpus.figures[f]["caption"]}
            for f in self.corpus.doc_figures.get(doc_id, [])
        ]
        record["tables"] = [
            {
                "id": t,
                "caption": self.corpus.tables[t]["caption"],
                "cells": self.corpus.table_cells(t, preview=False),
            }
            for t in self.corpus.doc_tables.get(doc_id, [])
        ]
        return record
