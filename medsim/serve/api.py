"""The JSON API under ``/api``: the rows and fields of ``medsim search/explain --json``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from medsim.search.query import Hit
from medsim.serve.service import Query as SearchQuery
from medsim.serve.service import SearchService
from medsim.serve.upload import FORM_OVERHEAD, multipart_body, parse_multipart, read_body

__all__ = ["Service", "get_service", "image_query", "router", "split_types"]


def get_service(request: Request) -> SearchService:
    """The app's loaded service (a FastAPI dependency)."""
    return request.app.state.service


Service = Annotated[SearchService, Depends(get_service)]
TypeParam = Annotated[
    list[str] | None,
    Query(description="only these result types (document, figure, caption, table); repeatable"),
]
KParam = Annotated[int, Query(description="results to return")]
BitsParam = Annotated[int | None, Query(description="Hamming search over codes of this many bits")]
BinaryParam = Annotated[
    bool, Query(description="Hamming search (64-bit codes unless bits is given)")
]
IMAGE_BODY = multipart_body({"image": {"type": "string", "format": "binary"}}, required=["image"])

router = APIRouter(prefix="/api", tags=["api"])


def split_types(values: list[str] | None) -> list[str] | None:
    """Repeated and comma-separated ``type`` values, as ``medsim search --modality`` reads them."""
    if not values:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()] or None


async def image_query(request: Request, service: SearchService) -> SearchQuery:
    """The query of an uploaded image (form field ``image``), read in memory only."""
    body = await read_body(request, service.max_upload_bytes + FORM_OVERHEAD)
    parts = parse_multipart(body, request.headers.get("content-type", ""))
    name, data = parts.get("image", (None, b""))
    # the CNN runs in a worker thread: the event loop keeps serving other requests
    return await run_in_threadpool(service.image_query, data, name or "the upload")


@router.get("/health")
def health(service: Service) -> dict[str, Any]:
    """Index size, models and limits; answers once the models are loaded."""
    return service.health()


@router.get("/search", response_model=list[Hit])
def api_search(
    service: Service,
    q: Annotated[str | None, Query(description="free text")] = None,
    pmid: Annotated[str | None, Query(description="a stored document's PMID or doc id")] = None,
    id: Annotated[str | None, Query(description="a stored item, [type:]id")] = None,
    k: KParam = 10,
    type: TypeParam = None,
    bits: BitsParam = None,
    binary: BinaryParam = False,
) -> list[Hit]:
    """Top-k items for a text, a PMID or an item id: the rows of `medsim search --json`."""
    query = service.resolve(text=q, pmid=pmid, item=id)
    return service.search(query, k, split_types(type), bits, binary)


@router.post("/search/image", response_model=list[Hit], openapi_extra=IMAGE_BODY)
async def api_search_image(
    request: Request,
    service: Service,
    k: KParam = 10,
    type: TypeParam = None,
    bits: BitsParam = None,
    binary: BinaryParam = False,
) -> list[Hit]:
    """Top-k items for an uploaded image (form field `image`), read in memory only."""
    query = await image_query(request, service)
    return await run_in_threadpool(service.search, query, k, split_types(type), bits, binary)


@router.get("/explain")
def api_explain(
    service: Service,
    b: Annotated[str, Query(description="the result item, [type:]id")],
    a: Annotated[str | None, Query(description="a stored item, [type:]id")] = None,
    q: Annotated[str | None, Query(description="or a query text")] = None,
    sentences: Annotated[bool, Query(description="score sentences (runs the model)")] = True,
) -> dict[str, Any]:
    """Why two items (or a query text and an item) are close: the fields of
    `medsim explain --json`."""
    return service.explain(service.resolve(text=q, item=a), b, sentences)


@router.get("/document")
def api_document(
    service: Service, id: Annotated[str, Query(description="doc id or PMID")]
) -> dict[str, Any]:
    """A document's title, links, text, figures and tables."""
    return service.document(id)
