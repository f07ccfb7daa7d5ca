"""The HTML pages: search (by text, PMID, item or uploaded image), why, document, figures."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from medsim.search.index import RESULT_TYPES
from medsim.search.query import Hit
from medsim.serve.api import Service, image_query, split_types
from medsim.serve.service import NotFoundError, RequestError
from medsim.serve.service import Query as SearchQuery

__all__ = ["page", "router"]

router = APIRouter(include_in_schema=False)


def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """The template ``name`` rendered with ``context`` and the service's health."""
    state = request.app.state
    context.setdefault("health", state.service.health())
    return state.templates.TemplateResponse(request, name, context, status_code=status)


def _query_params(query: SearchQuery) -> dict[str, str]:
    """URL parameters that ask the same query again (an image by its in-memory token)."""
    if query.source == "text":
        return {"q": query.text or ""}
    if query.source == "image":
        return {"image": query.token or ""}
    return {query.source: query.label}


def _results(request: Request, query: SearchQuery, k: int, types: list[str] | None) -> HTMLResponse:
    service = request.app.state.service
    hits = service.search(query, k, types)
    params = _query_params(query)
    cards = [service.card(hit) for hit in hits]
    for card in cards:
        ref = f"{card['type']}:{card['id']}"
        card["why_url"] = "/why?" + urlencode({**params, "b": ref})
        card["similar_url"] = "/?" + urlencode({"id": ref})
    return page(
        request, "search.html", query=query, params=params, cards=cards, types=types or [], k=k
    )


def _query_args(
    q: str | None = None, pmid: str | None = None, id: str | None = None, image: str | None = None
) -> dict[str, str | None]:
    """A page's query parameters (at most one of them set) as :meth:`SearchService.resolve`
    takes them."""
    return {"text": q, "pmid": pmid, "item": id, "image": image}


QueryArgs = Annotated[dict[str, str | None], Depends(_query_args)]


@router.get("/", response_class=HTMLResponse)
def search_page(
    request: Request,
    service: Service,
    args: QueryArgs,
    k: int = 10,
    type: list[str] | None = Query(None),  # noqa: B008
) -> HTMLResponse:
    if all(v is None for v in args.values()):
        return page(request, "search.html", query=None, cards=[], types=[], k=k)
    return _results(request, service.resolve(**args), k, split_types(type))


@router.post("/", response_class=HTMLResponse)
async def image_page(request: Request, service: Service, k: int = 10) -> HTMLResponse:
    query = await image_query(request, service)
    return await run_in_threadpool(_results, request, query, k, None)


@router.get("/why", response_class=HTMLResponse)
def why_page(request: Request, service: Service, args: QueryArgs, b: str) -> HTMLResponse:
    query = service.resolve(**args)
    data = service.explain(query, b)
    target = service.item(b)
    (hit,) = service.store.rows(target.collection, [target.row], ("id", "doc_id", "pmid", "title"))
    card = service.card(
        Hit(0, data["cosine"], RESULT_TYPES[target.collection], caption=data["b"]["caption"], **hit)
    )
    back = "/?" + urlencode(_query_params(query))
    return page(request, "why.html", query=query, data=data, card=card, back=back)


@router.get("/doc", response_class=HTMLResponse)
def document_page(request: Request, service: Service, id: str) -> HTMLResponse:
    return page(request, "document.html", doc=service.document(id))


@router.get("/figure")
def figure(service: Service, id: str, size: str = "thumb") -> Response:
    if size not in ("thumb", "full"):
        raise RequestError("size must be thumb or full")
    data = service.corpus.thumbnail(id) if size == "thumb" else service.corpus.figure_png(id)
    if data is None:
        raise NotFoundError(f"no figure '{id}'")
    media = "image/jpeg" if size == "thumb" else "image/png"
    return Response(data, media_type=media, headers={"Cache-Control": "max-age=3600"})


@router.get("/static/{name}")
def static_file(request: Request, name: str) -> Response:
    static = request.app.state.static
    if name not in static:
        raise NotFoundError(f"no static file '{name}'")
    data, media = static[name]
    return Response(data, media_type=media, headers={"Cache-Control": "max-age=600"})
