"""The DVC ``train`` stage: reads ``data/embeddings`` and ``data/articles.parquet``, trains the
shared space (:func:`medsim.dml.train.fit_space`) and writes ``data/model`` atomically."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from medsim.config import Params
from medsim.dml.data import load_features, load_labels
from medsim.dml.model import TEXT_MODEL_DIR
from medsim.dml.train import TEXT_KINDS, FittedSpace, fit_space
from medsim.io import atomic_dir
from medsim.schemas import ARTICLES_PATH

__all__ = ["LIVE_DIR", "MODEL_DIR", "SPACE_EMBEDDINGS", "run_train"]

log = logging.getLogger(__name__)

MODEL_DIR = Path("data/model")
LIVE_DIR = Path("dvclive/train")
SPACE_EMBEDDINGS = "embeddings"  # inside data/model: the text kinds re-encoded by the tuned model


def _write_space_embeddings(fitted: FittedSpace, folder: Path) -> None:
    """The tuned encoder's text kinds as embeddings files (the embed stage's schema)."""
    from medsim.dml.data import EMBEDDING_FILES
    from medsim.encoders.cache import vectors_to_arrow
    from medsim.schemas import embedding_schema, validate

    folder.mkdir(parents=True, exist_ok=True)
    for kind, (ids, doc_ids, matrix) in fitted.features.items():
        if kind not in TEXT_KINDS:
            continue
        schema = embedding_schema(matrix.shape[1]).with_metadata(
            {"fingerprint": fitted.tuned.fingerprint, "modality": "text", "model": "tuned"}
        )
        table = pa.table(
            {
                "id": pa.array(ids, pa.string()),
                "doc_id": pa.array(doc_ids, pa.string()),
                "content_hash": pa.array([fitted.tuned.fingerprint[:16]] * len(ids), pa.string()),
                "vector": vectors_to_arrow(matrix, matrix.shape[1]),
            }
        )
        table = validate(table, embedding_schema(matrix.shape[1]), name=f"model/{kind}")
        pq.write_table(
            table.replace_schema_metadata(schema.metadata), folder / EMBEDDING_FILES[kind]
        )


def run_train(params: Params, root: str | Path = ".") -> Path:
    """DVC stage: train on ``data/embeddings`` + ``data/articles.parquet``, write ``data/model``
    (``weights.pt``, ``config.json``, ``history.json``; with ``train.tune_encoder`` also the
    tuned encoder in ``text_model/`` and the text kinds it re-encoded in ``embeddings/``) and
    dvclive curves in ``dvclive/train``."""
    from medsim.dml.tune import read_text_items, save_tuned_model

    root = Path(root)
    features = load_features(root / "data/embeddings")
    labels, splits = load_labels(root / ARTICLES_PATH)
    items = read_text_items(root) if params.train.tune_encoder else None
    live_dir = root / LIVE_DIR
    start = time.perf_counter()
    fitted = fit_space(params, root, features, labels, splits, items, log_dir=live_dir)
    with atomic_dir(root / MODEL_DIR) as tmp:
        fitted.space.save(tmp)
        (tmp / "history.json").write_text(json.dumps(fitted.history, indent=2) + "\n")
        if fitted.tuned is not None:
            save_tuned_model(
                fitted.tuned.split,
                tmp / TEXT_MODEL_DIR,
                {
                    "base_model": params.embed.text_model,
                    "loss": params.loss,
                    "fingerprint": fitted.tuned.fingerprint,
                    "train": dataclasses.asdict(params.train),
                    "tune_history": fitted.tune_history,
                },
            )
            _write_space_embeddings(fitted, tmp / SPACE_EMBEDDINGS)
    log.info("train stage: %.1f s", time.perf_counter() - start)
    return root / MODEL_DIR
