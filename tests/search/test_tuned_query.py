"""`medsim search` on a space over a tuned text encoder: queries are embedded by that encoder."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from medsim.dml.stage import run_train
from medsim.dml.tune import read_text_items
from medsim.search.index import load_index
from medsim.search.query import QueryEncoder, search_vector
from medsim.search.stage import run_index
from tests.dml.test_tune import _corpus, _params, _project
from tests.encoders.conftest import tiny_model_folder


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_index_and_queries_use_the_tuned_encoder(tmp_path, backend: str, monkeypatch):
    """embed.backend onnx: the tuned encoder is exported too, and gives torch's vectors."""
    monkeypatch.setenv("MEDSIM_CACHE", str(tmp_path / "cache"))  # where queries' exports go
    bert = tiny_model_folder(tmp_path / "bert", "bert")
    root = tmp_path / "project"
    _project(root, _corpus(), figures=False)
    params = _params(bert)
    params = replace(params, embed=replace(params.embed, backend=backend))
    run_train(params, root)
    manifest = run_index(params, root)
    assert manifest["text_model"] == "data/model/text_model"
    assert manifest["backend"] == backend
    assert manifest["max_tokens"] == params.train.max_tokens
    store = load_index(root / "data/index")
    items = read_text_items(root)
    encoder = QueryEncoder(store, root / "data/model", root=root)
    query = encoder.text([items.texts[5]])
    if backend == "onnx":
        assert list((tmp_path / "cache").rglob("*.onnx"))  # queries ran the export
    indexed = store.vector("documents", store.find(items.doc_ids[5], ["documents"], ("id",))[1])
    assert float(np.dot(query[0], indexed.ravel())) > 0.999  # the same text, the same model
    hits = search_vector(store, query[0], k=1, collections=["documents"])
    assert hits[0].doc_id == items.doc_ids[5]
