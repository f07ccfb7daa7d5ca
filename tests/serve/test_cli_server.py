"""``medsim search --server``: the CLI asks a running server, and searches locally without one."""

from __future__ import annotations

import json

import pytest

from medsim.cli import main
from tests.search.corpus import DOCS
from tests.serve.conftest import _free_port

D2_TEXT = f"{DOCS[1][4]}\n{DOCS[1][5]}"


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_search_through_the_server_prints_its_rows(capsys, client, live_server, tmp_path):
    # --root points at an empty folder: only the server can have answered
    code, out, err = run(
        capsys,
        "search",
        D2_TEXT,
        "--k",
        "4",
        "--json",
        "--server",
        live_server,
        "--root",
        str(tmp_path),
    )
    assert code == 0, err
    assert json.loads(out) == client.get("/api/search", params={"q": D2_TEXT, "k": 4}).json()
    code, out, err = run(
        capsys, "search", "--pmid", "1003", "--server", live_server, "--root", str(tmp_path)
    )
    assert code == 0 and out.startswith("  1 ")


def test_image_and_binary_search_through_the_server(
    capsys, live_server, project, tmp_path, monkeypatch
):
    monkeypatch.setenv("MEDSIM_SERVER", live_server)
    argv = ["--json", "--root", str(tmp_path)]
    code, out, err = run(
        capsys, "search", "--image", str(project / "figure1.png"), "--modality", "figure", *argv
    )
    assert code == 0, err
    assert json.loads(out)[0]["id"] == "f2"
    code, out, err = run(capsys, "search", "--id", "t1", "--binary", "--k", "3", *argv)
    assert code == 0, err
    assert [h["hamming"] is not None for h in json.loads(out)] == [True] * 3


def test_server_refusal_is_one_line_and_exit_2(capsys, live_server, tmp_path):
    code, out, err = run(
        capsys, "search", "lung", "--k", "500", "--server", live_server, "--root", str(tmp_path)
    )
    assert code == 2 and out == ""
    assert (
        err.strip()
        == "medsim search: the server refused the query: k must be between 1 and 20, got 500"
    )


def test_no_server_falls_back_to_a_local_search(capsys, project):
    url = f"http://127.0.0.1:{_free_port()}"
    code, out, err = run(
        capsys,
        "search",
        "--pmid",
        "1001",
        "--k",
        "2",
        "--json",
        "--server",
        url,
        "--root",
        str(project),
    )
    assert code == 0
    assert f"no medsim server at {url}" in err and "searching locally" in err
    assert len(json.loads(out)) == 2


@pytest.mark.parametrize("value", ["", None])
def test_without_a_server_the_cli_never_asks_one(capsys, project, monkeypatch, value):
    monkeypatch.delenv("MEDSIM_SERVER", raising=False)
    argv = ["search", "--pmid", "1001", "--k", "2", "--root", str(project)]
    if value is not None:
        argv += ["--server", value]
    code, _, err = run(capsys, *argv)
    assert code == 0 and err == ""


def test_serve_refuses_bad_options_and_a_missing_index(capsys, tmp_path):
    code, _, err = run(capsys, "serve", "--max-k", "0", "--root", str(tmp_path))
    assert code == 2 and err.strip() == "medsim serve: --max-k and --max-upload-mb must be positive"
    code, _, err = run(capsys, "serve", "--root", str(tmp_path), "--port", "1")
    assert code == 2 and err.startswith("medsim serve: no search index in ")
