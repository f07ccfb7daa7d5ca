"""A small project on disk for classify tests: the synthetic corpus of tests/evaluate (seven
classes, train/val/test, figures with captions), a space really trained on it, and the
``data/index/`` the index stage builds from them; plus the :class:`EvalContext` over the same
space, so Table 1 can be computed beside the classifier."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from medsim.evaluate.context import EvalContext, SpaceOps
from medsim.io import rows_to_table, write_table
from medsim.schemas import ARTICLES, FIGURES, embedding_schema
from tests.evaluate.conftest import hashing_encoder, make_corpus, small_params, train_corpus_space
from tests.search.corpus import _embedding_table

STEMS = {"text": "text", "caption": "captions", "image": "images"}


@dataclass
class Project:
    root: Path
    ctx: EvalContext


def write_project(root: Path, corpus: dict, space: object, knn_k: int) -> None:
    """articles, embeddings, the model and params.yaml under ``root``, then its index."""
    from medsim.config import load_params
    from medsim.search.stage import run_index

    data = root / "data"
    rows = corpus["articles"].to_dict("records")
    write_table(rows_to_table(rows, ARTICLES), data / "articles.parquet", ARTICLES)
    figures = (
        corpus["figures"]
        .assign(image=b"", width=1, height=1, origin="corpus", sha256="-")
        .to_dict("records")
    )
    write_table(rows_to_table(figures, FIGURES), data / "figures.parquet", FIGURES)
    for modality, (ids, doc_ids, matrix) in corpus["features"].items():
        schema = embedding_schema(matrix.shape[1])
        path = data / "embeddings" / f"{STEMS[modality]}.parquet"
        write_table(_embedding_table(ids, doc_ids, matrix), path, schema)
    space.save(data / "model")
    (root / "params.yaml").write_text(f"seed: 0\nevaluate:\n  knn_k: {knn_k}\n")
    run_index(load_params(root / "params.yaml"), root)


@pytest.fixture(scope="session")
def project(tmp_path_factory) -> Project:
    """The project folder and an EvalContext over the same corpus and space."""
    root = tmp_path_factory.mktemp("classify_project")
    corpus = make_corpus(root)
    params = small_params(corpus["target"])
    space = train_corpus_space(corpus, params)
    write_project(root, corpus, space, params.evaluate.knn_k)
    ctx = EvalContext(
        params=params,
        articles=corpus["articles"],
        features=corpus["features"],
        figures=corpus["figures"],
        space=SpaceOps(space, params, frozen=corpus["features"], root=root),
        encode_text=hashing_encoder,
        encoder_note="hashing encoder (test)",
        root=root,
    )
    return Project(root, ctx)


@pytest.fixture(scope="session")
def search_project(tmp_path_factory) -> Path:
    """tests/search's tiny project (real MiniLM and EfficientNet embeddings, an untrained
    space, its index): five training documents of three classes, no validation split."""
    from tests.search.corpus import indexed_project

    return indexed_project(tmp_path_factory)
