"""The JSON API on the search tests' tiny project (tests/search/corpus.py): an untrained space,
so a query made of exactly a stored item's input must come back first with score 1."""

from __future__ import annotations

import dataclasses
import io
import json
import tempfile

import numpy as np
import pytest
from PIL import Image

from medsim.cli import main
from medsim.search.query import Hit
from tests.search.corpus import DOCS, FIGURES_ROWS, figure_png
from tests.serve.conftest import UPLOAD_CAP

D2_TEXT = f"{DOCS[1][4]}\n{DOCS[1][5]}"  # d2 has no figures: its vector is its text's


def cli_json(capsys, project, *argv):
    local = ["--server", ""] if argv[0] == "search" else []  # never ask a running server
    code = main([*argv, "--json", "--root", str(project), *local])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def detail(response, status):
    assert response.status_code == status, response.text
    message = response.json()["detail"]
    assert isinstance(message, str) and "\n" not in message
    return message


def upload(client, data, name="query.png", **params):
    return client.post(
        "/api/search/image", params=params, files={"image": (name, data, "image/png")}
    )


def test_health_counts_every_kind(client):
    data = client.get("/api/health").json()
    assert data["status"] == "ok"
    assert data["items"] == {"document": 6, "figure": 3, "caption": 3, "table": 1}
    assert data["bits"] == [32, 64] and data["max_k"] == 20


def test_text_search_returns_the_rows_of_the_cli(client, capsys, project):
    hits = client.get("/api/search", params={"q": D2_TEXT, "k": 5}).json()
    assert (hits[0]["type"], hits[0]["id"]) == ("document", "d2")
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert hits == cli_json(capsys, project, "search", D2_TEXT, "--k", "5")


def test_stored_item_searches_match_the_cli_and_leave_the_query_out(client, capsys, project):
    for params, argv in (
        ({"pmid": "1001", "k": 4}, ["--pmid", "1001", "--k", "4"]),
        (
            {"id": "figure:f1", "k": 4, "bits": 32},
            ["--id", "figure:f1", "--k", "4", "--bits", "32"],
        ),
        ({"id": "t1", "binary": "true"}, ["--id", "t1", "--binary"]),
    ):
        hits = client.get("/api/search", params=params).json()
        assert hits == cli_json(capsys, project, "search", *argv)
    assert "d1" not in [h["id"] for h in client.get("/api/search?pmid=1001&k=12").json()]


def test_type_filter_repeated_or_comma_separated(client):
    for query in ("type=figure&type=table", "type=figure,table"):
        hits = client.get(f"/api/search?pmid=d6&k=10&{query}").json()
        assert {h["type"] for h in hits} == {"figure", "table"} and len(hits) == 4


def test_image_upload_finds_its_own_figure(client):
    hits = upload(client, figure_png(1), type="figure").json()
    assert (hits[0]["id"], hits[0]["score"]) == ("f2", pytest.approx(1.0, abs=1e-3))


def test_upload_over_the_spool_threshold_is_never_written(client, monkeypatch):
    """Starlette would spool a >1 MB file part to a temporary file; ours stays in memory."""
    pixels = (np.random.default_rng(0).random((700, 700, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    assert 2**20 < len(buffer.getvalue()) < UPLOAD_CAP

    def refuse(*args, **kwargs):
        raise AssertionError("an upload was written to a temporary file")

    for name in ("SpooledTemporaryFile", "TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, refuse)
    response = upload(client, buffer.getvalue())
    assert response.status_code == 200 and len(response.json()) == 10


@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        ("/api/search?q=%20%20", 400, "the query text is empty"),
        ("/api/search", 400, "give exactly one of"),
        ("/api/search?q=x&pmid=1001", 400, "give exactly one of"),
        ("/api/search?pmid=999", 404, "no document with PMID or doc id '999'"),
        ("/api/search?id=figure:d1", 404, "no item 'figure:d1'"),
        ("/api/search?q=lung&k=0", 400, "k must be between 1 and 20, got 0"),
        ("/api/search?q=lung&k=21", 400, "k must be between 1 and 20, got 21"),
        ("/api/search?q=lung&k=ten", 422, "k: Input should be a valid integer"),
        ("/api/search?q=lung&type=video", 400, "unknown modality 'video'"),
        ("/api/search?q=lung&bits=16", 400, "no 16-bit codes"),
        ("/api/explain?a=d1&b=nothing", 404, "no item 'nothing'"),
        ("/api/explain?a=d1", 422, "b: Field required"),
        ("/api/document?id=nope", 404, "no document 'nope'"),
    ],
)
def test_bad_queries_get_a_one_line_4xx(client, url, status, message):
    assert message in detail(client.get(url), status)


def test_too_long_query_text(client):
    assert "over 10,000 characters" in detail(
        client.get("/api/search", params={"q": "a" * 10_001}), 400
    )


def test_bad_uploads_get_a_one_line_4xx(client):
    assert "not a readable image" in detail(upload(client, b"not a picture", name="x.png"), 400)
    assert "no image was uploaded" in detail(upload(client, b""), 400)
    too_big = b"\0" * (UPLOAD_CAP + 128 * 1024)
    assert "over 4 MB" in detail(upload(client, too_big), 413)
    response = client.post(
        "/api/search/image", content=b"raw", headers={"content-type": "image/png"}
    )
    assert "multipart/form-data" in detail(response, 400)


def test_explain_items_matches_the_cli(client, capsys, project):
    data = client.get("/api/explain", params={"a": "1001", "b": "caption:f2"}).json()
    assert data == cli_json(capsys, project, "explain", "1001", "caption:f2")
    assert data["sentences"]["a_toward_b"]


def test_explain_a_query_text(client):
    data = client.get("/api/explain", params={"q": D2_TEXT, "b": "d2"}).json()
    assert data["a"]["type"] == "query" and data["a"]["title"] == D2_TEXT
    assert data["b"]["id"] == "d2" and data["cosine"] == pytest.approx(1.0, abs=1e-3)
    assert all(d == 0 for d in data["hamming"].values())  # same vector, same code
    for key in ("a_toward_b", "b_toward_a"):
        parts = data["sentences"][key]
        assert parts and all(p["sentence"] in D2_TEXT for p in parts)
        assert [p["score"] for p in parts] == sorted((p["score"] for p in parts), reverse=True)
    quick = client.get(
        "/api/explain", params={"q": D2_TEXT, "b": "d2", "sentences": "false"}
    ).json()
    assert quick["sentences"] == {} and quick["shared_neighbours"] == data["shared_neighbours"]


def test_document_lists_its_figures_and_tables(client):
    doc = client.get("/api/document", params={"id": "1004"}).json()
    assert doc["doc_id"] == "d4" and doc["title"] == DOCS[3][4]
    assert (
        doc["text"] == DOCS[3][5] and doc["pubmed_url"] == "https://pubmed.ncbi.nlm.nih.gov/1004/"
    )
    assert doc["figures"] == [] and doc["tables"][0]["id"] == "t1"
    assert doc["tables"][0]["cells"] == []  # the test table's cells JSON is an empty list
    doc = client.get("/api/document", params={"id": "d1"}).json()
    assert doc["figures"] == [{"id": "f1", "caption": FIGURES_ROWS[0][2]}]


def test_openapi_schema_lists_the_api_with_the_cli_result_fields(client):
    schema = client.get("/api/openapi.json").json()
    assert {
        "/api/search",
        "/api/search/image",
        "/api/explain",
        "/api/health",
        "/api/document",
    } <= set(schema["paths"])
    hit = schema["components"]["schemas"]["Hit"]["properties"]
    assert set(hit) == {f.name for f in dataclasses.fields(Hit)}


def test_figures_are_served_by_id_only(client, project):
    full = client.get("/figure", params={"id": "f1", "size": "full"})
    assert full.headers["content-type"] == "image/png" and full.content == figure_png(0)
    thumb = client.get("/figure", params={"id": "f1"})
    assert thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size == (64, 64)  # never enlarged
    for bad in ("../figure0.png", str(project / "figure0.png"), "d1"):
        assert client.get("/figure", params={"id": bad}).status_code == 404
    assert client.get("/static/..%2Fapp.py").status_code == 404
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")


def test_pages_render_and_refuse_bad_input_in_one_line(client):
    home = client.get("/")
    assert home.status_code == 200 and 'name="q"' in home.text and 'name="image"' in home.text
    assert "default-src 'self'" in home.headers["content-security-policy"]
    assert '<script src="/static/app.js"' in home.text and "http" not in home.text.split(
        "<footer>"
    )[0].replace("http-equiv", "")
    for url, status, message in (
        ("/?q=lung&k=500", 400, "k must be between 1 and 20, got 500"),
        ("/?q=", 400, "the query text is empty"),
        ("/doc?id=nope", 404, "no document &#39;nope&#39; in the index"),
        ("/why?q=lung&b=nothing", 404, "no item &#39;nothing&#39;"),
        ("/why?image=expired&b=d1", 404, "that image query has expired"),
    ):
        response = client.get(url)
        assert response.status_code == status and response.headers["content-type"].startswith(
            "text/html"
        )
        assert f'<p class="error" role="alert">{message}' in response.text
