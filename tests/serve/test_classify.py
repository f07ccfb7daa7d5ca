"""``/api/classify`` and the Classify page on the search tests' tiny project."""

from __future__ import annotations

import json

import pymupdf
import pytest

from medsim.cli import main
from tests.pubmed.fake_eutils import make_pdf
from tests.search.corpus import DOCS
from tests.serve.conftest import UPLOAD_CAP

D2_TEXT = f"{DOCS[1][4]}\n{DOCS[1][5]}"


def detail(response, status: int) -> str:
    assert response.status_code == status, response.text
    message = response.json()["detail"]
    assert isinstance(message, str) and message and "\n" not in message
    return message


def post_file(client, data: bytes, name: str, kind: str, **params):
    return client.post("/api/classify", params=params, files={"file": (name, data, kind)})


def test_text_is_the_cli_answer(client, capsys, project):
    answer = client.get("/api/classify", params={"q": D2_TEXT}).json()
    assert answer["neighbours"][0]["doc_id"] == "d2"
    assert answer["source"] == "text" and answer["rule"] == "knn"
    assert main(["classify", D2_TEXT, "--json", "--root", str(project)]) == 0
    assert json.loads(capsys.readouterr().out) == answer


def test_pmid_posted_text_k_and_schema(client):
    answer = client.get("/api/classify", params={"pmid": "1002", "k": 2}).json()
    assert answer["source"] == "pmid" and len(answer["neighbours"]) == 2
    assert "d2" not in [n["doc_id"] for n in answer["neighbours"]]
    posted = client.post("/api/classify", files={"text": (None, D2_TEXT)}).json()
    assert posted["neighbours"][0]["doc_id"] == "d2"
    paths = client.get("/api/openapi.json").json()["paths"]
    assert {"get", "post"} <= set(paths["/api/classify"])


def test_uploaded_image_and_pdf(client, project):
    png = (project / "figure1.png").read_bytes()
    answer = post_file(client, png, "fig.png", "image/png").json()
    assert answer["source"] == "image" and answer["query"] == "fig.png"
    pdf = make_pdf("Low-dose CT screening for lung cancer in smokers")
    answer = post_file(client, pdf, "paper.pdf", "application/pdf").json()
    assert answer["source"] == "pdf" and answer["query"].startswith("paper.pdf: Low-dose CT")


def locked_pdf() -> bytes:
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "secret")
    data = doc.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="o", user_pw="u")
    doc.close()
    return data


@pytest.mark.parametrize(
    "request_args, status, expected",
    [
        ({"params": {"q": "   "}}, 400, "the text is empty"),
        ({"params": {}}, 400, "give exactly one of"),
        ({"params": {"q": "x", "k": 0}}, 400, "k must be between 1 and 20"),
        ({"params": {"pmid": "no-such-doc"}}, 404, "neither a PMID nor a doc id"),
    ],
)
def test_bad_queries(client, request_args, status, expected):
    assert expected in detail(client.get("/api/classify", **request_args), status)


def test_bad_uploads(client):
    assert "not a readable image" in detail(
        post_file(client, b"no picture", "x.png", "image/png"), 400
    )
    assert "cannot read PDF" in detail(
        post_file(client, b"%PDF-1.4\nbroken", "x.pdf", "application/pdf"), 400
    )
    assert "encrypted" in detail(post_file(client, locked_pdf(), "x.pdf", "application/pdf"), 400)
    big = b"\x89PNG" + b"0" * (UPLOAD_CAP + 1)
    assert "over" in detail(post_file(client, big, "big.png", "image/png"), 413)
    assert "send a text or a file" in detail(client.post("/api/classify", files={"x": "y"}), 400)


def test_classify_page_renders_the_evidence(client):
    page = client.get("/classify", params={"q": D2_TEXT})
    assert page.status_code == 200
    assert "Label: <strong>" in page.text and 'class="classes"' in page.text
    assert page.text.count('class="card document"') == 5
    assert client.get("/classify").status_code == 200
    error = client.get("/classify", params={"q": " "})
    assert error.status_code == 400 and "the text is empty" in error.text


def test_a_project_that_cannot_classify_answers_503(project, tmp_path):
    import shutil

    from fastapi.testclient import TestClient

    from medsim.serve.app import create_app
    from medsim.serve.service import SearchService

    for part in ("index", "model"):  # no articles table: no splits to find training documents
        shutil.copytree(project / "data" / part, tmp_path / "data" / part)
    service = SearchService(tmp_path / "data/index", tmp_path / "data/model", tmp_path)
    with TestClient(create_app(service)) as client:
        message = detail(client.get("/api/classify", params={"q": "x"}), 503)
    assert message.startswith("cannot classify here:") and "articles.parquet" in message


def test_pmid_outside_the_corpus(client, monkeypatch, shared_data):
    from tests.pubmed.fake_eutils import FakeServer, clone, has_abstract, recorded_articles

    template = next(a for a in recorded_articles(shared_data).values() if has_abstract(a))
    with FakeServer() as ncbi:
        ncbi.add_article(clone(template, "96000001"))
        monkeypatch.setenv("MEDSIM_EUTILS_URL", ncbi.eutils_url)
        answer = client.get("/api/classify", params={"pmid": "96000001"}).json()
        assert answer["source"] == "pmid" and "(fetched)" in answer["query"]
        missing = client.get("/api/classify", params={"pmid": "96999999"})
        assert detail(missing, 404) == "PubMed has no record with PMID 96999999"


def test_pubmed_unreachable_is_502(client, monkeypatch):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MEDSIM_EUTILS_URL", f"http://127.0.0.1:{port}/eutils/")
    assert "PubMed could not be reached" in detail(
        client.get("/api/classify", params={"pmid": "97000001"}), 502
    )
