"""The web app of ``medsim serve``: a search page and a JSON API under ``/api``.

Pages are Jinja2 templates; the one stylesheet and the one script are read from the package
at start and served from memory, so nothing is fetched from elsewhere (no CDN) and no request
path is ever mapped to a file. Figures are served by id, from ``figures.parquet``.
"""

from __future__ import annotations

import logging
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from medsim import __version__
from medsim.search.index import RESULT_TYPES
from medsim.search.query import Hit
from medsim.serve.service import (
    MAX_K,
    MAX_UPLOAD_BYTES,
    NotFoundError,
    RequestError,
    SearchService,
)
from medsim.serve.service import Query as SearchQuery
from medsim.serve.upload import FORM_OVERHEAD, parse_multipart, read_body

__all__ = ["create_app", "serve"]

log = logging.getLogger("medsim.serve")

STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
# everything a page uses comes from this server; inline scripts and remote hosts are refused
CSP = "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'"

TypeParam = Annotated[
    list[str] | None,
    Query(description="only these result types (document, figure, caption, table); repeatable"),
]
KParam = Annotated[int, Query(description="results to return")]
BitsParam = Annotated[int | None, Query(description="Hamming search over codes of this many bits")]
BinaryParam = Annotated[
    bool, Query(description="Hamming search (64-bit codes unless bits is given)")
]


def _types(values: list[str] | None) -> list[str] | None:
    """Repeated and comma-separated ``type`` values, as ``medsim search --modality`` reads them."""
    if not values:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()] or None


def _one_line(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ())[1:]) or "request"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _static_files() -> dict[str, tuple[bytes, str]]:
    folder = resources.files("medsim.serve") / "static"
    return {
        entry.name: (entry.read_bytes(), STATIC_TYPES[suffix])
        for entry in folder.iterdir()
        if (suffix := "." + entry.name.rsplit(".", 1)[-1]) in STATIC_TYPES
    }


def _query_params(query: SearchQuery) -> dict[str, str]:
    """URL parameters that ask the same query again (an image by its in-memory token)."""
    if query.source == "text":
        return {"q": query.text or ""}
    if query.source == "image":
        return {"image": query.token or ""}
    return {query.source: query.label}


def create_app(service: SearchService) -> FastAPI:
    """The FastAPI app over a loaded :class:`SearchService`."""
    app = FastAPI(
        title="medsim",
        version=__version__,
        description="Search medsim's shared text-image space: documents, figures, captions "
        "and tables by text, image, PMID or item id, and why two items are close.",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.service = service
    templates = Jinja2Templates(directory=str(resources.files("medsim.serve") / "templates"))
    templates.env.globals["result_types"] = [RESULT_TYPES[k] for k in service.store.kinds]
    static = _static_files()

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("health", service.health())
        return templates.TemplateResponse(request, name, context, status_code=status)

    def error(request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith("/api"):
            return JSONResponse({"detail": message}, status_code=status)
        return page(request, "error.html", status, message=message)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> Response:
        return error(request, exc.status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return error(request, 422, _one_line(exc))

    # ------------------------------------------------------------------ JSON API

    @app.get("/api/health", tags=["api"])
    def health() -> dict[str, Any]:
        """Index size, models and limits; answers once the models are loaded."""
        return service.health()

    @app.get("/api/search", response_model=list[Hit], tags=["api"])
    def api_search(
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
        return service.search(query, k, _types(type), bits, binary)

    @app.post(
        "/api/search/image",
        response_model=list[Hit],
        tags=["api"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"image": {"type": "string", "format": "binary"}},
                            "required": ["image"],
                        }
                    }
                },
            }
        },
    )
    async def api_search_image(
        request: Request,
        k: KParam = 10,
        type: TypeParam = None,
        bits: BitsParam = None,
        binary: BinaryParam = False,
    ) -> list[Hit]:
        """Top-k items for an uploaded image (form field `image`), read in memory only."""
        query = await _image_query(request)
        return await run_in_threadpool(service.search, query, k, _types(type), bits, binary)

    async def _image_query(request: Request) -> SearchQuery:
        body = await read_body(request, service.max_upload_bytes + FORM_OVERHEAD)
        parts = parse_multipart(body, request.headers.get("content-type", ""))
        name, data = parts.get("image", (None, b""))
        # the CNN runs in a worker thread: the event loop keeps serving other requests
        return await run_in_threadpool(service.image_query, data, name or "the upload")

    @app.get("/api/explain", tags=["api"])
    def api_explain(
        b: Annotated[str, Query(description="the result item, [type:]id")],
        a: Annotated[str | None, Query(description="a stored item, [type:]id")] = None,
        q: Annotated[str | None, Query(description="or a query text")] = None,
        sentences: Annotated[bool, Query(description="score sentences (runs the model)")] = True,
    ) -> dict[str, Any]:
        """Why two items (or a query text and an item) are close: the fields of
        `medsim explain --json`."""
        return service.explain(service.resolve(text=q, item=a), b, sentences)

    @app.get("/api/document", tags=["api"])
    def api_document(id: Annotated[str, Query(description="doc id or PMID")]) -> dict[str, Any]:
        """A document's title, links, text, figures and tables."""
        return service.document(id)

    # ------------------------------------------------------------------ pages

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def search_page(
        request: Request,
        q: str | None = None,
        pmid: str | None = None,
        id: str | None = None,
        image: str | None = None,
        k: int = 10,
        type: list[str] | None = Query(None),  # noqa: B008
    ) -> HTMLResponse:
        if all(v is None for v in (q, pmid, id, image)):
            return page(request, "search.html", query=None, cards=[], types=[], k=k)
        query = service.resolve(text=q, pmid=pmid, item=id, image=image)
        return _results(request, query, k, _types(type))

    @app.post("/", response_class=HTMLResponse, include_in_schema=False)
    async def image_page(request: Request, k: int = 10) -> HTMLResponse:
        query = await _image_query(request)
        return await run_in_threadpool(_results, request, query, k, None)

    def _results(
        request: Request, query: SearchQuery, k: int, types: list[str] | None
    ) -> HTMLResponse:
        hits = service.search(query, k, types)
        params = _query_params(query)
        cards = [service.card(hit) for hit in hits]
        for card in cards:
            ref = f"{card['type']}:{card['id']}"
            card["why_url"] = "/why?" + urlencode({**params, "b": ref})
            card["similar_url"] = "/?" + urlencode({"id": ref})
        return page(
            request,
            "search.html",
            query=query,
            params=params,
            cards=cards,
            types=types or [],
            k=k,
        )

    @app.get("/why", response_class=HTMLResponse, include_in_schema=False)
    def why_page(
        request: Request,
        b: str,
        q: str | None = None,
        pmid: str | None = None,
        id: str | None = None,
        image: str | None = None,
    ) -> HTMLResponse:
        query = service.resolve(text=q, pmid=pmid, item=id, image=image)
        data = service.explain(query, b)
        target = service.item(b)
        (hit,) = service.store.rows(target.kind, [target.row], ("id", "doc_id", "pmid", "title"))
        card = service.card(
            Hit(0, data["cosine"], RESULT_TYPES[target.kind], caption=data["b"]["caption"], **hit)
        )
        back = "/?" + urlencode(_query_params(query))
        return page(request, "why.html", query=query, data=data, card=card, back=back)

    @app.get("/doc", response_class=HTMLResponse, include_in_schema=False)
    def document_page(request: Request, id: str) -> HTMLResponse:
        return page(request, "document.html", doc=service.document(id))

    @app.get("/figure", include_in_schema=False)
    def figure(id: str, size: str = "thumb") -> Response:
        if size not in ("thumb", "full"):
            raise RequestError("size must be thumb or full")
        data = service.corpus.thumbnail(id) if size == "thumb" else service.corpus.figure_png(id)
        if data is None:
            raise NotFoundError(f"no figure '{id}'")
        media = "image/jpeg" if size == "thumb" else "image/png"
        return Response(data, media_type=media, headers={"Cache-Control": "max-age=3600"})

    @app.get("/static/{name}", include_in_schema=False)
    def static_file(name: str) -> Response:
        if name not in static:
            raise NotFoundError(f"no static file '{name}'")
        data, media = static[name]
        return Response(data, media_type=media, headers={"Cache-Control": "max-age=600"})

    return app


def serve(
    index_dir: str | Path,
    model_dir: str | Path,
    root: str | Path = ".",
    host: str = "127.0.0.1",
    port: int = 8000,
    max_k: int = MAX_K,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
) -> None:
    """Load the index, model and encoders once, then serve until interrupted (one process,
    so the models are in memory once; requests share them from uvicorn's worker threads)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    service = SearchService(index_dir, model_dir, root, None, max_k, max_upload_bytes)
    service.warm()
    log.info(
        "index and models loaded in %.1f s; search at http://%s:%d/ (Ctrl-C stops)",
        time.perf_counter() - start,
        host,
        port,
    )
    uvicorn.run(create_app(service), host=host, port=port, log_level="info")
