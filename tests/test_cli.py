"""The `medsim` command on a tiny indexed project (tests/search/corpus.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from medsim import __version__
from medsim.cli import main
from medsim.search.index import load_index
from tests.search.corpus import DOCS, indexed_project


@pytest.fixture(scope="session")
def project(tmp_path_factory):
    return indexed_project(tmp_path_factory)


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def search_json(capsys, project, *argv):
    code, out, err = run(capsys, "search", *argv, "--json", "--root", str(project))
    assert code == 0, err
    return json.loads(out)


def all_vectors(store):
    """Every stored item as (type, id) -> unit vector."""
    out = {}
    for collection in store.collections:
        rows = store.rows(collection, list(range(store.count(collection))), ("id",))
        for row, record in enumerate(rows):
            out[(collection.rstrip("s"), record["id"])] = store.vector(collection, row)[0]
    return out


def test_version():
    done = subprocess.run(
        [sys.executable, "-m", "medsim.cli", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"medsim {__version__}"


def test_search_by_pmid_is_exact_top_k_across_kinds(capsys, project):
    hits = search_json(capsys, project, "--pmid", "1001", "--k", "5")
    store = load_index(project / "data" / "index")
    vectors = all_vectors(store)
    query = vectors[("document", "d1")]
    expected = sorted(
        ((float(v @ query), key) for key, v in vectors.items() if key != ("document", "d1")),
        reverse=True,
    )[:5]
    assert [(h["type"], h["id"]) for h in hits] == [key for _, key in expected]
    assert [h["score"] for h in hits] == pytest.approx([s for s, _ in expected], abs=1e-5)
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    first_doc = next(h for h in hits if h["type"] == "document")
    assert first_doc["title"] == next(d[4] for d in DOCS if d[0] == first_doc["id"])


def test_search_modality_filter_and_human_output(capsys, project):
    hits = search_json(capsys, project, "--pmid", "d6", "--modality", "figure,table", "--k", "10")
    assert {h["type"] for h in hits} == {"figure", "table"}
    assert len(hits) == 4  # 3 figures + 1 table
    code, out, _ = run(capsys, "search", "--id", "f1", "--k", "2", "--root", str(project))
    assert code == 0
    assert out.count("\n") >= 2 and "  1 " in out and "caption:" in out


def test_binary_search(capsys, project):
    hits = search_json(capsys, project, "--pmid", "1003", "--bits", "32", "--k", "6")
    distances = [h["hamming"] for h in hits]
    assert distances == sorted(distances)
    assert [h["score"] for h in hits] == pytest.approx([1 - d / 32 for d in distances])
    store = load_index(project / "data" / "index")
    own = store.code("documents", 2, 32)
    row = store.find(hits[0]["id"], [hits[0]["type"] + "s"])
    assert int(np.count_nonzero(store.code(*row, 32) != own)) == distances[0]


@pytest.mark.slow
def test_text_and_image_queries_embed_like_the_index(capsys, project):
    title, abstract = DOCS[1][4], DOCS[1][5]  # d2 has no figures: its vector is its text's
    hits = search_json(capsys, project, f"{title}\n{abstract}", "--k", "3")
    assert (hits[0]["type"], hits[0]["id"]) == ("document", "d2")
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-3)
    hits = search_json(
        capsys, project, "--image", str(project / "figure1.png"), "--modality", "figure"
    )
    assert (hits[0]["id"], hits[0]["score"]) == ("f2", pytest.approx(1.0, abs=1e-3))


@pytest.mark.slow
def test_explain(capsys, project):
    code, out, err = run(capsys, "explain", "1001", "caption:f2", "--json", "--root", str(project))
    assert code == 0, err
    data = json.loads(out)
    store = load_index(project / "data" / "index")
    vectors = all_vectors(store)
    assert data["a"]["id"] == "d1" and data["b"] == {
        "type": "caption",
        "id": "f2",
        "doc_id": "d3",
        "pmid": "1003",
        "title": DOCS[2][4],
        "caption": "Chest CT showing a spiculated nodule in the right upper lobe.",
    }
    cosine = float(vectors[("document", "d1")] @ vectors[("caption", "f2")])
    assert data["cosine"] == pytest.approx(cosine, abs=1e-5)
    assert set(data["hamming"]) == {"32", "64"}
    assert {p["label"] for p in data["prototypes"]["a"]} <= {"breast", "lung", "melanoma"}
    a_parts = data["sentences"]["a_toward_b"]
    assert len(a_parts) == 3 and all(p["sentence"] in DOCS[0][4] + DOCS[0][5] for p in a_parts)
    assert [p["score"] for p in a_parts] == sorted((p["score"] for p in a_parts), reverse=True)
    for n in data["shared_neighbours"]:
        key = (n["type"], n["id"])
        assert n["score_a"] == pytest.approx(
            float(vectors[key] @ vectors[("document", "d1")]), abs=1e-5
        )
    code, out, _ = run(capsys, "explain", "d1", "d2", "--no-sentences", "--root", str(project))
    assert code == 0 and out.startswith("A: document d1") and "shared nearest neighbours" in out


def test_search_by_pmid_loads_no_model_library(project):
    script = (
        "import sys; from medsim.cli import main; "
        f"code = main(['search', '--pmid', '1001', '--root', {str(project)!r}]); "
        "heavy = [m for m in ('torch', 'pandas', 'transformers', 'yaml') if m in sys.modules]; "
        "print(code, heavy)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.stdout.strip().splitlines()[-1] == "0 []", done.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "--pmid", "424242"], "no document with PMID or doc id '424242'"),
        (["search", "   "], "the query text is empty"),
        (["search"], "give exactly one of"),
        (["search", "x", "--pmid", "1001"], "give exactly one of"),
        (["search", "--image", "missing.png"], "cannot read image"),
        (["search", "--image", "params.yaml"], "is not a readable image"),
        (["search", "--pmid", "1001", "--modality", "video"], "unknown modality 'video'"),
        (["search", "--pmid", "1001", "--bits", "16"], "no 16-bit codes"),
        (["search", "--pmid", "1001", "--k", "0"], "--k must be at least 1"),
        (["explain", "d1", "nothing"], "no item 'nothing'"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(capsys, project, monkeypatch, argv, message):
    monkeypatch.chdir(project)
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in err and err.count("\n") == 1 and out == ""


def test_missing_index_is_a_clear_error(capsys, tmp_path):
    code, _, err = run(capsys, "search", "--pmid", "1", "--root", str(tmp_path))
    assert code == 2 and "no search index" in err and "dvc repro index" in err


@pytest.mark.slow
def test_search_with_real_and_truncated_medpix_images(capsys, project, shared_data, tmp_path):
    image = sorted((shared_data / "medpix" / "images").glob("*.png"))[0]
    hits = search_json(capsys, project, "--image", str(image), "--k", "3", "--modality", "figure")
    assert [h["type"] for h in hits] == ["figure"] * 3
    assert all(-1.0 <= h["score"] <= 1.0 for h in hits)
    broken = tmp_path / "broken.png"
    broken.write_bytes(image.read_bytes()[:200])  # a download cut short
    code, _, err = run(capsys, "search", "--image", str(broken), "--root", str(project))
    assert code == 2 and "is not a readable image" in err
