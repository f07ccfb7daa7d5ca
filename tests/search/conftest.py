"""Fixtures for search tests: a hand-made index, and a tiny project built with real encoders."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from medsim.config import IndexParams
from medsim.search.index import CollectionArrays, IndexStore, load_index, write_index_dir
from tests.search.corpus import indexed_project

S = 1 / math.sqrt(2)
# e1, e2, (e1 + e2)/sqrt2, -e1 in 3-d: from e1 the order is 0, 2, 1, 3
VECTORS = np.array([[1, 0, 0], [0, 1, 0], [S, S, 0], [-1, 0, 0]], dtype=np.float32)


def items_table(ids, doc_ids, **extra):
    n = len(ids)
    cols = {"id": ids, "doc_id": doc_ids}
    for name in ("pmid", "title", "caption", "label", "text"):
        cols[name] = extra.get(name, [None] * n)
    return pa.table(cols)


@pytest.fixture
def small_store(tmp_path) -> IndexStore:
    """Two documents and two figures on hand-placed 3-d vectors and 8-bit codes."""
    codes = np.zeros((4, 8), dtype=np.uint8)
    codes[1, 0] = codes[2, :3] = codes[3, :] = 1
    collections = {
        "documents": CollectionArrays(
            VECTORS[[0, 1]],
            {8: codes[[0, 1]]},
            items_table(
                ["d1", "d2"],
                ["d1", "d2"],
                pmid=["11", None],
                title=["T1", "T2"],
                text=["Alpha one. Beta two; gamma three", "Delta four."],
            ),
        ),
        "figures": CollectionArrays(
            VECTORS[[2, 3]],
            {8: codes[[2, 3]]},
            items_table(["f1", "f2"], ["d1", "d2"], caption=["c1", "c2"]),
        ),
    }
    write_index_dir(tmp_path, collections, IndexParams(), {"dim": 3}, (["x", "y"], VECTORS[:2]))
    return load_index(tmp_path)


@pytest.fixture(scope="session")
def project(tmp_path_factory) -> Path:
    """A project folder with articles, figures, tables, real embeddings, a seeded space and
    its data/index/ (built once per session: the encoders take seconds to load)."""
    return indexed_project(tmp_path_factory)
