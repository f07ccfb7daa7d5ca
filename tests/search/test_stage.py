"""The index stage on a tiny project with real encoders and a seeded (untrained) space, and
on a synthetic project large enough to stream in several batches."""

from __future__ import annotations

import shutil
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import medsim.search.stage as search_stage
from medsim.config import load_params
from medsim.dml import codes_from_projected, document_vectors, load_shared_space, project
from medsim.io import rows_to_table, write_table
from medsim.names import SkipReason
from medsim.schemas import ARTICLES, embedding_schema
from medsim.search.builders import build_binary_index, build_index
from medsim.search.index import load_index
from medsim.search.prototypes import label_prototypes
from medsim.search.query import search_vector
from medsim.search.stage import run_index
from medsim.stage import run_stage
from tests.conftest import run_stage_script
from tests.search.corpus import DOCS, FIGURES_ROWS


def test_manifest_and_items(project):
    store = load_index(project / "data" / "index")
    assert {k: store.count(k) for k in store.collections} == {
        "documents": 6,
        "figures": 3,
        "captions": 3,
        "tables": 1,
    }
    assert store.bits == [32, 64]
    assert {v["float_type"] for v in store.manifest["collections"].values()} == {"flat"}
    assert store.manifest["text_model"] == "packaged:all-MiniLM-L6-v2"
    assert store.manifest["backend"] == "torch"  # what runs the query encoder
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
        collection: pq.read_table(emb / f"{stem}.parquet", columns=["doc_id", "vector"])
        for collection, stem in (("caption", "captions"), ("table", "tables"), ("image", "images"))
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
    assert store.collections == ["documents", "captions", "tables"]  # no image head: no figures
    assert store.manifest["collections"]["documents"]["float_type"] == "hnsw"
    assert store.manifest["collections"]["tables"]["float_type"] == "flat"
    skipped = pq.read_table(root / "data" / "skipped.parquet" / "index.parquet").to_pylist()
    assert sorted(r["item"] for r in skipped) == ["f1", "f2", "f3"]
    assert {r["reason"] for r in skipped} == {SkipReason.NO_HEAD}
    # the HNSW answer on 6 documents is the exact one
    query = store.vector("documents", 0)
    hits = search_vector(store, query, k=6, collections=["documents"])
    all_docs = np.vstack([store.vector("documents", r) for r in range(6)])
    assert [h.id for h in hits] == [DOCS[i][0] for i in np.argsort(-(all_docs @ query[0]))]


def test_stage_without_a_model_fails_cleanly(project, tmp_path, capsys):
    root = _copy_without_index(project, tmp_path)
    shutil.rmtree(root / "data" / "model")
    assert run_stage("index", run_index, root) == 2
    assert "medsim index: no trained model" in capsys.readouterr().err
    assert not (root / "data" / "index").exists()


# ------------------------------------------------------------- streaming: three batches of rows

N_DOCS, DIM_IN = 10_000, 24


def _synthetic_project(root: Path, index: str) -> Path:
    """N_DOCS articles with text vectors; captions for every third document, images for every
    seventh, and one image of a document that has no text (fused from its parts alone)."""
    import torch

    from medsim.dml import SharedSpace

    rng = np.random.default_rng(0)
    data = root / "data"
    ids = [f"d{i}" for i in range(N_DOCS)]
    rows = [
        {
            "doc_id": d,
            "pmid": d[1:],
            "title": f"t{d}",
            "abstract": "a",
            "label": f"c{i % 3}",
            "split": "train" if i % 4 else "test",
            "source": "s",
        }
        for i, d in enumerate(ids)
    ]
    write_table(rows_to_table(rows, ARTICLES), data / "articles.parquet", ARTICLES)

    def embeddings(stem: str, item_ids: list[str], doc_ids: list[str]) -> None:
        x = rng.standard_normal((len(item_ids), DIM_IN)).astype(np.float32)
        schema = embedding_schema(DIM_IN)
        table = pa.table(
            {
                "id": item_ids,
                "doc_id": doc_ids,
                "content_hash": ["h"] * len(item_ids),
                "vector": pa.array(list(x), type=schema.field("vector").type),
            },
            schema=schema,
        )
        write_table(table, data / "embeddings" / f"{stem}.parquet", schema)

    embeddings("text", ids, ids)
    embeddings("captions", [f"{d}.c" for d in ids[::3]], ids[::3])
    embeddings("images", [f"{d}.f" for d in ids[::7]] + ["x.f"], [*ids[::7], "x"])
    torch.manual_seed(0)
    dims = {"text": DIM_IN, "caption": DIM_IN, "image": DIM_IN}
    SharedSpace(dims, dim=8, hidden=16, bits=(16,)).eval().save(data / "model")
    (root / "params.yaml").write_text(
        f"seed: 0\nindex:\n  exact_below: {1000 if index == 'ivfpq' else 100_000}\n"
        f"  approximate: ivfpq\n  train_size: 2000\n  pq_bytes: 4\n"
    )
    return root


@pytest.mark.parametrize("index", ["flat", "ivfpq"])
def test_streamed_index_equals_the_whole_matrix_build(tmp_path, monkeypatch, index):
    """Three batches of 4,096 rows give the files that one build over whole matrices gives
    (what run_index wrote before it streamed): same float indexes byte for byte, same codes,
    same item map; prototypes within float tolerance."""
    monkeypatch.setattr(search_stage, "BATCH_ROWS", 4096)
    root = _synthetic_project(tmp_path, index)
    params = load_params(root / "params.yaml")
    manifest = run_index(params, root)
    out = root / "data" / "index"
    assert manifest["collections"]["documents"]["count"] == N_DOCS + 1
    assert manifest["collections"]["documents"]["float_type"] == index
    assert manifest["collections"]["documents"]["binary_type"] == (
        "ivf" if index == "ivfpq" else "flat"
    )

    space = load_shared_space(root / "data" / "model")
    emb = {
        s: pq.read_table(root / "data/embeddings" / f"{s}.parquet")
        for s in ("text", "captions", "images")
    }
    doc_ids, docs = document_vectors(
        space, emb["text"], {"caption": emb["captions"], "image": emb["images"]}
    )
    assert doc_ids == [f"d{i}" for i in range(N_DOCS)] + ["x"]
    captions = project(
        space, "caption", np.stack(emb["captions"].column("vector").to_numpy(zero_copy_only=False))
    )
    for name, vectors in (("documents", docs), ("captions", captions)):
        expected = faiss.serialize_index(build_index(vectors, params.index, seed=0))
        assert (out / f"{name}.faiss").read_bytes() == expected.tobytes(), name
        codes = codes_from_projected(space, vectors, 16)
        binary = faiss.read_index_binary(str(out / f"{name}.b16.faiss"))
        stored = np.stack([binary.reconstruct(r) for r in range(binary.ntotal)])
        np.testing.assert_array_equal(np.unpackbits(stored, axis=1), codes)
        # binary IVF above exact_below: trained on the same sampled rows as the whole build
        expected = faiss.serialize_index_binary(build_binary_index(codes, params.index, seed=0))
        assert (out / f"{name}.b16.faiss").read_bytes() == expected.tobytes(), name

    items = pq.ParquetFile(out / "items.parquet")
    assert {items.metadata.row_group(g).num_rows for g in range(items.num_row_groups - 1)} == {4096}
    table = items.read()
    assert table.column("id").to_pylist()[: N_DOCS + 1] == doc_ids
    figures = emb["images"].num_rows  # items: documents, then figures, then captions
    assert table.column("collection").to_pylist()[N_DOCS + 1 :: figures][:2] == [
        "figures",
        "captions",
    ]
    assert table.column("row").to_pylist()[N_DOCS + 1 + figures :] == list(range(len(captions)))
    assert table.column("title").to_pylist()[N_DOCS] is None  # "x" has no article
    labels = [f"c{i % 3}" for i in range(N_DOCS) if i % 4]
    names, expected = label_prototypes(docs[[i for i in range(N_DOCS) if i % 4]], labels)
    stored_names = manifest["labels"]
    assert stored_names == names == ["c0", "c1", "c2"]
    np.testing.assert_allclose(np.load(out / "prototypes.npy"), expected, atol=1e-6)


def test_embedding_batches_are_exact_whatever_the_row_groups(tmp_path, monkeypatch):
    """11 rows in row groups of 3, read 2 at a time, come out as batches of 5, 5 and 1 with
    every row where it was."""
    monkeypatch.setattr(search_stage, "BATCH_ROWS", 5)
    monkeypatch.setattr(search_stage, "READ_ROWS", 2)
    schema = embedding_schema(2)
    vectors = np.arange(22, dtype=np.float32).reshape(11, 2)
    table = pa.table(
        {
            "id": [f"i{n}" for n in range(11)],
            "doc_id": [f"d{n}" for n in range(11)],
            "content_hash": ["h"] * 11,
            "vector": pa.array(list(vectors), type=schema.field("vector").type),
        },
        schema=schema,
    )
    path = tmp_path / "text.parquet"
    pq.write_table(table, path, row_group_size=3)

    batches = list(search_stage._embedding_batches(path))

    assert [len(ids) for ids, _, _ in batches] == [5, 5, 1]
    assert [i for ids, _, _ in batches for i in ids] == [f"i{n}" for n in range(11)]
    assert batches[1][1] == ["d5", "d6", "d7", "d8", "d9"]
    np.testing.assert_array_equal(np.concatenate([m for _, _, m in batches]), vectors)
    assert batches[2][2].shape == (1, 2) and batches[2][2].flags.writeable
