"""Fixtures for the web service: the search tests' tiny project, served in-process and live."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from medsim.serve.app import create_app
from medsim.serve.service import SearchService
from tests.search.corpus import indexed_project

UPLOAD_CAP = 4 * 2**20  # small enough to test the cap, above Starlette's 1 MB spool threshold


@pytest.fixture(scope="session")
def project(tmp_path_factory) -> Path:
    return indexed_project(tmp_path_factory)


@pytest.fixture(scope="session")
def service(project) -> SearchService:
    service = SearchService(
        project / "data" / "index",
        project / "data" / "model",
        project,
        max_k=20,
        max_upload_bytes=UPLOAD_CAP,
    )
    service.warm()
    return service


@pytest.fixture(scope="session")
def app(service):
    return create_app(service)


@pytest.fixture(scope="session")
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        yield client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def live_server(app) -> Iterator[str]:
    """The app under a real uvicorn server on a free loopback port; yields its base URL."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
