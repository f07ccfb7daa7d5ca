"""The index stage on a tiny project with real encoders and a seeded (untrained) space."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from medsim.dml import codes_from_projected, document_vectors, load_shared_space
from medsim.search.index import load_index, run_index
from medsim.search.query import search_vector
from medsim.stage import run_stage
from tests.conftest import run_stage_script
from tests.search.corpus import DOCS, FIGURES_ROWS


def test_manifest_and_items(project):
    store = load_index(project / "data" / "index")
    assert {k: store.count(k) for k in store.kinds} == {
        "documents": 6,
        "figures": 3,
        "captions": 3,
        "tables": 1,
    }
    assert store.bits == [32, 64]
    assert {v["float_type"] for v in store.manifest["kinds"].values()} == {"flat"}
    assert store.manifest["text_model"] == "packaged:all-MiniLM-L6-v2"
    docs = store.rows("documents", list(range(6)), ("id", "pmid", "title", "label", "text"))
    assert [d["id"] for d in docs] == [d[0] for d in DOCS]
    assert docs[5]["pmid"] is None and docs[5]["label"] == "melanoma"
    assert docs[0]["text"].startswith("Mammography screening in older women\nMammography")
    (fig,) = store.rows("figures", [0], ("id", "doc_id", "title", "caption", "text"))
    assert fig == {
        "id": "f1",
        "doc_id": "d1",
        "title": "Mammography screening in older women",
        "caption": FIGURES_ROWS[0][2],
        "text": FIGURES_ROWS[0][2],
    }
    (table,) = store.rows("tables", [0], ("caption", "text"))
    assert table == {
        "caption": "Table 1. EGFR mutation status",
        "text": "Table 1. EGFR mutation status\nmutation | n\nexon 19 | 12",
    }


def test_document_vectors_codes_and_prototypes_match_the_space(project):
    data = project / "data"
    store = load_index(data / "index")
    space = load_shared_space(data / "model")
    emb = data / "embeddings"
    parts = {
        kind: pq.read_table(emb / f"{stem}.parquet", columns=["doc_id", "vector"])
        for kind, stem in (("caption", "captions"), ("table", "tables"), ("image", "images"))
    }
    ids, expected = document_vectors(space, pq.read_table(emb / "text.parquet"), parts)
    assert ids == [d[0] for d in DOCS]
    stored = np.vstack([store.vector("documents", r) for r in range(6)])
    np.testing.assert_allclose(stored, expected, atol=1e-5)
    for row in range(6):
        code = codes_from_projected(space, stored[row : row + 1], 64)
        assert store.code("documents", row, 64).tolist() == code.tolist()
    labels, protos = store.prototypes
    assert labels == ["breast", "lung", "melanoma"]
    # d5 is a test document: the melanoma prototype is d6 alone
    np.testing.assert_allclose(protos[2], stored[5], atol=1e-5)
    breast = stored[0] + stored[1]
    np.testing.assert_allclose(protos[0], breast / np.linalg.norm(breast), atol=1e-5)


def _copy_without_index(project, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(project, root, ignore=shutil.ignore_patterns("index", "skipped.parquet"))
    return root


def _run_stage(root):
    return run_stage_script("index", root)


@pytest.mark.slow
def test_stage_script_builds_hnsw_above_exact_below_and_logs_skips(project, tmp_path):
    from medsim.dml import SharedSpace

    root = _copy_without_index(project, tmp_path)
    params = (root / "params.yaml").read_text().replace("exact_below: 100000", "exact_below: 3")
    (root / "params.yaml").write_text(params)
    space = load_shared_space(root / "data" / "model")
    text_only = SharedSpace({k: space.input_dims[k] for k in ("text", "caption", "table")}, 16, 32)
    text_only.save(root / "data" / "model")

    done = _run_stage(root)
    assert done.returncode == 0, done.stderr
    store = load_index(root / "data" / "index")
    assert store.kinds == ["documents", "captions", "tables"]  # no image head: no figures
    assert store.manifest["kinds"]["documents"]["float_type"] == "hnsw"
    assert store.manifest["kinds"]["tables"]["float_type"] == "flat"
    skipped = pq.read_table(root / "data" / "skipped.parquet" / "index.parquet").to_pylist()
    assert sorted(r["item"] for r in skipped) == ["f1", "f2", "f3"]
    assert {r["reason"] for r in skipped} == {"no head"}
    # the HNSW answer on 6 documents is the exact one
    query = store.vector("documents", 0)
    hits = search_vector(store, query, k=6, kinds=["documents"])
    all_docs = np.vstack([store.vector("documents", r) for r in range(6)])
    assert [h.id for h in hits] == [DOCS[i][0] for i in np.argsort(-(all_docs @ query[0]))]


def test_stage_without_a_model_fails_cleanly(project, tmp_path, capsys):
    root = _copy_without_index(project, tmp_path)
    shutil.rmtree(root / "data" / "model")
    assert run_stage("index", run_index, root) == 2
    assert "medsim index: no trained model" in capsys.readouterr().err
    assert not (root / "data" / "index").exists()
