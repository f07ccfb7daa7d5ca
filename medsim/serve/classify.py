"""Classify in the server: ``/api/classify`` (the JSON of ``medsim classify --json``) and the
``/classify`` page (paste a text or a PMID, or drop a PDF or a figure; the evidence as cards).

The classifier (:mod:`medsim.classify`) is loaded on first use beside the search service and
shares its index, encoders and model lock. A text or image upload is read in memory only; a
PDF upload is handed to the extract code, which reads files (camelot), through a private
temporary folder deleted as soon as the PDF is read.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from medsim.classify.classifier import Classifier, Prediction
from medsim.classify.inputs import Inputs
from medsim.classify.inputs import Query as InputQuery
from medsim.errors import MedsimError
from medsim.pubmed.http import FetchError, OfflineError
from medsim.search.index import RESULT_TYPES
from medsim.search.query import Hit
from medsim.serve.api import Service
from medsim.serve.pages import page
from medsim.serve.service import (
    MAX_QUERY_CHARS,
    NotFoundError,
    RequestError,
    SearchService,
    TooLargeError,
)
from medsim.serve.upload import FORM_OVERHEAD, multipart_body, parse_multipart, read_body

__all__ = ["api_router", "classify", "page_router", "warm"]

log = logging.getLogger(__name__)

api_router = APIRouter(prefix="/api", tags=["api"])
page_router = APIRouter(include_in_schema=False)
_LOCK = threading.Lock()  # one classifier load per service

UPLOAD_BODY = multipart_body(
    {"text": {"type": "string"}, "file": {"type": "string", "format": "binary"}},
    description="a text, or one file: a PDF or an image (PNG, JPEG, ...)",
)


class UpstreamError(RequestError):
    """PubMed could not be reached for a PMID outside the corpus."""

    status = 502


class UnavailableError(RequestError):
    """This server's corpus cannot classify (e.g. no labelled training documents)."""

    status = 503


def warm(service: SearchService) -> None:
    """Load the classifier now (at start), so the first classify is as fast as the rest; a
    corpus that cannot classify is logged here and answered 503 per request."""
    try:
        _session(service)
    except MedsimError as exc:
        log.warning("classify is unavailable: %s", exc)


def _session(service: SearchService) -> tuple[Classifier, Inputs]:
    """The service's classifier and inputs, loaded once (``evaluate.knn_k`` of the project)."""
    with _LOCK:
        loaded = getattr(service, "_classify", None)
        if loaded is None:
            from medsim.classify.cli import knn_k
            from medsim.classify.load import load_classifier

            root = service.encoder.root
            classifier = load_classifier(service.store, root, knn_k(root))
            inputs = Inputs(service.store, service.encoder, root, lock=service._model_lock)
            loaded = (classifier, inputs)
            service._classify = loaded  # type: ignore[attr-defined]
        return loaded


def classify(
    service: SearchService,
    text: str | None = None,
    pmid: str | None = None,
    pdf: bytes | None = None,
    image: bytes | None = None,
    name: str = "the upload",
    k: int | None = None,
) -> Prediction:
    """One input (exactly one of them) classified, with ``k`` neighbours shown."""
    given = [v for v in (text, pmid, pdf, image) if v is not None]
    if len(given) != 1:
        raise RequestError("give exactly one of: q (text), pmid, or a PDF or image file")
    if k is not None and not 1 <= k <= service.max_k:
        raise RequestError(f"k must be between 1 and {service.max_k}, got {k}")
    try:
        classifier, inputs = _session(service)
    except MedsimError as exc:
        raise UnavailableError(f"cannot classify here: {exc}") from exc
    try:
        query = _query(inputs, text, pmid, pdf, image, name)
        figure = inputs.label_figure(query)
    except (FetchError, OfflineError) as exc:
        raise UpstreamError(f"PubMed could not be reached: {exc}") from exc
    except RequestError:
        raise
    except MedsimError as exc:
        status = NotFoundError if pmid is not None else RequestError
        raise status(str(exc)) from exc
    (prediction,) = classifier.predict(query.vector, [query.exclude], k or 0)
    update = {"source": query.source, "query": query.label, "figure": figure}
    return prediction.model_copy(update=update)


def _query(
    inputs: Inputs,
    text: str | None,
    pmid: str | None,
    pdf: bytes | None,
    image: bytes | None,
    name: str,
) -> InputQuery:
    """The input as a vector (the inputs hold the service's model lock around model calls)."""
    if text is not None:
        if len(text) > MAX_QUERY_CHARS:
            raise RequestError(f"the text is over {MAX_QUERY_CHARS:,} characters")
        return inputs.text(text)
    if pmid is not None:
        return inputs.pmid(pmid)
    if image is not None:
        if not image:
            raise RequestError("the uploaded file is empty")
        return inputs.image_bytes(image, name)
    with tempfile.TemporaryDirectory(prefix="medsim-classify-") as folder:
        path = Path(folder) / "upload.pdf"
        path.write_bytes(pdf)
        query = inputs.pdf(path)
    return replace(query, label=query.label.replace("upload.pdf", name, 1))


async def _upload(request: Request, service: SearchService) -> dict[str, Any]:
    """The form's text or file (a PDF by its magic bytes, else an image), read in memory."""
    body = await read_body(request, service.max_upload_bytes + FORM_OVERHEAD)
    parts = parse_multipart(body, request.headers.get("content-type", ""))
    name, data = parts.get("file", parts.get("image", parts.get("pdf", (None, b""))))
    if data:
        if len(data) > service.max_upload_bytes:
            raise TooLargeError(f"the file is over {service.max_upload_bytes // 2**20} MB")
        field = "pdf" if data[:5] == b"%PDF-" else "image"
        return {field: data, "name": name or "the upload"}
    text = parts.get("text", (None, b""))[1].decode("utf-8", "replace")
    if not text.strip():
        raise RequestError("send a text or a file (a PDF or an image)")
    return {"text": text}


KParam = Annotated[int | None, Query(description="neighbours to show (default: the vote's k)")]


@api_router.get("/classify", response_model=Prediction)
def api_classify(
    service: Service,
    q: Annotated[str | None, Query(description="a text: title and abstract")] = None,
    pmid: Annotated[str | None, Query(description="a PMID or doc id; else fetched")] = None,
    k: KParam = None,
) -> Prediction:
    """The class of a text or a PMID by Table 1's proposed rule, with calibrated
    probabilities, the nearest training documents and class prototype similarities: the
    JSON of `medsim classify --json`."""
    return classify(service, text=q, pmid=pmid, k=k)


@api_router.post("/classify", response_model=Prediction, openapi_extra=UPLOAD_BODY)
async def api_classify_upload(request: Request, service: Service, k: KParam = None) -> Prediction:
    """The class of an uploaded PDF or figure (form field `file`) or a posted `text`."""
    form = await _upload(request, service)
    return await run_in_threadpool(lambda: classify(service, k=k, **form))


def _view(
    request: Request, service: SearchService, prediction: Prediction | None, text: str
) -> HTMLResponse:
    """The Classify page: the form, and for a prediction its classes and neighbour cards."""
    cards = []
    for rank, n in enumerate(prediction.neighbours if prediction else [], start=1):
        document = RESULT_TYPES["documents"]
        hit = Hit(rank, n.similarity, document, n.doc_id, n.doc_id, n.pmid, n.title, None)
        cards.append(service.card(hit) | {"label": n.label})
    return page(request, "classify.html", prediction=prediction, cards=cards, text=text)


@page_router.get("/classify", response_class=HTMLResponse)
def classify_page(
    request: Request, service: Service, q: str | None = None, pmid: str | None = None
) -> HTMLResponse:
    if q is None and pmid is None:
        return _view(request, service, None, text="")
    prediction = classify(service, text=q, pmid=pmid)
    return _view(request, service, prediction, text=q or "")


@page_router.post("/classify", response_class=HTMLResponse)
async def classify_upload_page(request: Request, service: Service) -> HTMLResponse:
    form = await _upload(request, service)
    prediction = await run_in_threadpool(lambda: classify(service, **form))
    return _view(request, service, prediction, text=form.get("text", ""))
