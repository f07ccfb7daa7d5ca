"""`medsim search` on a space over a tuned text encoder: queries are embedded by that encoder."""

from __future__ import annotations

import numpy as np

from medsim.dml.stage import run_train
from medsim.dml.tune import read_text_items
from medsim.search.index import load_index
from medsim.search.query import QueryEncoder, search_vector
from medsim.search.stage import run_index
from tests.dml.test_tune import _corpus, _params, _project
from tests.encoders.conftest import tiny_model_folder


def test_index_and_queries_use_the_tuned_encoder(tmp_path):
    bert = tiny_model_folder(tmp_path / "bert", "bert")
    root = tmp_path / "project"
    _project(root, _corpus(), figures=False)
    params = _params(bert)
    run_train(params, root)
    manifest = run_index(params, root)
    assert manifest["text_model"] == "data/model/text_model"
    assert manifest["max_tokens"] == params.train.max_tokens
    store = load_index(root / "data/index")
    items = read_text_items(root)
    query = QueryEncoder(store, root / "data/model", root=root).text([items.texts[5]])
    indexed = store.vector("documents", store.find(items.doc_ids[5], ["documents"], ("id",))[1])
    assert float(np.dot(query[0], indexed.ravel())) > 0.999  # the same text, the same model
    hits = search_vector(store, query[0], k=1, collections=["documents"])
    assert hits[0].doc_id == items.doc_ids[5]
