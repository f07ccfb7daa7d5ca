"""The web app of ``medsim serve``: a search page (:mod:`.pages`) and a JSON API under ``/api``
(:mod:`.api`), each a FastAPI router whose handlers get the loaded service as a dependency.

Pages are Jinja2 templates; the one stylesheet and the one script are read from the package
at start and served from memory, so nothing is fetched from elsewhere (no CDN) and no request
path is ever mapped to a file. Figures are served by id, from ``figures.parquet``.
"""

from __future__ import annotations

import logging
import time
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.templating import Jinja2Templates

from medsim import __version__
from medsim.search.index import RESULT_TYPES
from medsim.serve import api, classify, pages
from medsim.serve.service import MAX_K, MAX_UPLOAD_BYTES, RequestError, SearchService

__all__ = ["create_app", "serve"]

log = logging.getLogger("medsim.serve")

STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
# everything a page uses comes from this server; inline scripts and remote hosts are refused
CSP = "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'"


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


def create_app(service: SearchService) -> FastAPI:
    """The FastAPI app over a loaded :class:`SearchService`: the API and the pages routers,
    security headers on every response, and errors as JSON under ``/api``, as a page elsewhere."""
    app = FastAPI(
        title="medsim",
        version=__version__,
        description="Search medsim's shared text-image space: documents, figures, captions "
        "and tables by text, image, PMID or item id, why two items are close, and the class "
        "of a text, PMID, PDF or figure.",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.service = service
    app.state.templates = Jinja2Templates(
        directory=str(resources.files("medsim.serve") / "templates")
    )
    app.state.templates.env.globals["result_types"] = [
        RESULT_TYPES[k] for k in service.store.collections
    ]
    app.state.static = _static_files()
    app.middleware("http")(_security_headers)
    app.add_exception_handler(RequestError, _request_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.include_router(api.router)
    app.include_router(classify.api_router)
    app.include_router(pages.router)
    app.include_router(classify.page_router)
    return app


async def _security_headers(request: Request, call_next) -> Response:
    response = await call_next(request)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _error(request: Request, status: int, message: str) -> Response:
    if request.url.path.startswith("/api"):
        return JSONResponse({"detail": message}, status_code=status)
    return pages.page(request, "error.html", status, message=message)


async def _request_error(request: Request, exc: RequestError) -> Response:
    return _error(request, exc.status, str(exc))


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    return _error(request, 422, _one_line(exc))


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
    classify.warm(service)
    log.info(
        "index and models loaded in %.1f s; search at http://%s:%d/ (Ctrl-C stops)",
        time.perf_counter() - start,
        host,
        port,
    )
    uvicorn.run(create_app(service), host=host, port=port, log_level="info")
