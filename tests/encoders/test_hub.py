"""Hub ids against a fake Hugging Face hub on 127.0.0.1: download, cached reuse, errors."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from medsim.encoders.specs import ModelSpecError, resolve_text_model
from medsim.encoders.text import load_text_encoder
from tests.encoders.conftest import tiny_model_folder

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _handler(folder: Path, requests: list[str]) -> type[http.server.BaseHTTPRequestHandler]:
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())

    class FakeHub(http.server.BaseHTTPRequestHandler):
        """The endpoints huggingface_hub uses: repo tree, revision info, file resolve."""

        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def do_GET(self) -> None:
            self._answer(send_body=True)

        def _send(self, status: int, data: bytes, headers: dict[str, str], send_body: bool):
            self.send_response(status)
            for key, value in {**headers, "Content-Length": str(len(data))}.items():
                self.send_header(key, value)
            self.end_headers()
            if send_body:
                self.wfile.write(data)

        def _answer(self, send_body: bool) -> None:
            path = self.path.split("?")[0]
            requests.append(f"{self.command} {path}")
            if path.startswith("/api/models/org/tiny/tree/"):
                listing = [{"type": "file", "path": f, "oid": "x", "size": 1} for f in files]
                self._send(200, json.dumps(listing).encode(), {}, send_body)
            elif path.startswith("/api/models/org/tiny/revision/"):
                info = {
                    "id": "org/tiny",
                    "sha": COMMIT,
                    "siblings": [{"rfilename": f} for f in files],
                }
                self._send(200, json.dumps(info).encode(), {}, send_body)
            elif path.startswith(f"/org/tiny/resolve/{COMMIT}/"):
                name = path.split(f"/resolve/{COMMIT}/", 1)[1]
                data = (folder / name).read_bytes()
                etag = f'"{hashlib.sha256(data).hexdigest()}"'
                self._send(200, data, {"X-Repo-Commit": COMMIT, "ETag": etag}, send_body)
            else:
                self._send(404, b"", {"X-Error-Code": "RepoNotFound"}, send_body)

        def log_message(self, *args) -> None:
            pass

    return FakeHub


@pytest.fixture
def fake_hub(tmp_path: Path, monkeypatch) -> Iterator[tuple[str, list[str]]]:
    folder = tiny_model_folder(tmp_path / "served", "bert")
    (folder / "model.onnx").write_bytes(b"other formats are not fetched")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    requests: list[str] = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(folder, requests))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", requests
    server.shutdown()
    server.server_close()


def test_hub_id_is_downloaded_and_loaded(fake_hub, tmp_path: Path):
    endpoint, requests = fake_hub
    encoder = load_text_encoder("org/tiny", endpoint=endpoint, root=tmp_path, device="cpu")
    assert encoder.spec == "org/tiny"
    assert encoder.folder.is_relative_to(tmp_path / "hub-cache")
    assert encoder.pooling == "mean" and encoder.dim == 16
    assert encoder.encode(["a text", "another"]).shape == (2, 16)
    fetched = {r.rsplit("/", 1)[1] for r in requests if r.startswith("GET /org/tiny/resolve")}
    assert "model.safetensors" in fetched and "config.json" in fetched
    assert "model.onnx" not in fetched


def test_downloaded_model_is_reused_offline(fake_hub, monkeypatch):
    endpoint, requests = fake_hub
    first = resolve_text_model("org/tiny", endpoint=endpoint)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # as HF_HUB_OFFLINE=1
    served = len(requests)
    assert resolve_text_model("org/tiny", endpoint=endpoint) == first
    assert len(requests) == served  # answered from the local cache


def test_unknown_repo_names_the_spec(fake_hub):
    endpoint, _ = fake_hub
    with pytest.raises(ModelSpecError, match=r"'org/missing'.*packaged:all-MiniLM-L6-v2"):
        resolve_text_model("org/missing", endpoint=endpoint)
