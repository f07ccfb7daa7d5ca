"""The DVC ``train`` stage: reads ``data/embeddings`` and ``data/articles.parquet``, trains the
shared space (:func:`medsim.dml.fit.fit_space`) and writes ``data/model`` atomically."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from medsim.config import Params
from medsim.dml.data import load_features, load_labels
from medsim.dml.fit import TEXT_MODALITIES, FittedSpace, fit_space
from medsim.dml.model import LEXICAL_DIR, TEXT_MODEL_DIR
from medsim.io import atomic_dir
from medsim.paths import (
    ARTICLES_PATH,
    EMBEDDINGS_DIR,
    LIVE_DIR,
    MODEL_DIR,
    SELECTION_PATH,
    SPACE_EMBEDDINGS,
    TRAINING_HISTORY_PATH,
)

__all__ = ["run_train"]

log = logging.getLogger(__name__)


def _inputs_fingerprint(fitted: FittedSpace) -> str:
    """What made the space's own text vectors: the tuned encoder and the lexical part."""
    dense = fitted.tuned.fingerprint if fitted.tuned is not None else "embed-stage"
    lexical = fitted.space.params.get("lexical_weight", 0.0)
    return hashlib.sha256(f"{dense}/{fitted.candidate}/{lexical}".encode()).hexdigest()


def _write_space_embeddings(fitted: FittedSpace, folder: Path) -> None:
    """The space's own text modalities (tuned encoder, lexical part) as embeddings files (the embed
    stage's schema)."""
    from medsim.dml.data import EMBEDDING_FILES
    from medsim.encoders.cache import vectors_to_arrow
    from medsim.schemas import embedding_schema, validate

    fingerprint = _inputs_fingerprint(fitted)
    folder.mkdir(parents=True, exist_ok=True)
    for modality, (ids, doc_ids, matrix) in fitted.features.items():
        if modality not in TEXT_MODALITIES:
            continue
        schema = embedding_schema(matrix.shape[1]).with_metadata(
            {"fingerprint": fingerprint, "modality": "text", "model": fitted.candidate}
        )
        table = pa.table(
            {
                "id": pa.array(ids, pa.string()),
                "doc_id": pa.array(doc_ids, pa.string()),
                "content_hash": pa.array([fingerprint[:16]] * len(ids), pa.string()),
                "vector": vectors_to_arrow(matrix, matrix.shape[1]),
            }
        )
        table = validate(table, embedding_schema(matrix.shape[1]), name=f"model/{modality}")
        pq.write_table(
            table.replace_schema_metadata(schema.metadata), folder / EMBEDDING_FILES[modality]
        )


def run_train(params: Params, root: str | Path = ".") -> Path:
    """DVC stage: choose and train the space on ``data/embeddings`` +
    ``data/articles.parquet`` (:func:`~medsim.dml.fit.fit_space`), write ``data/model``
    (``weights.pt``, ``config.json``, ``history.json``, ``selection.json``: every candidate's
    validation scores; a tuned encoder in ``text_model/``, a lexical encoder in ``lexical/``,
    and the text modalities they make in ``embeddings/``) and dvclive curves in
    ``dvclive/train``."""
    from medsim.dml.tune import read_text_items, save_tuned_model

    root = Path(root)
    features = load_features(root / EMBEDDINGS_DIR)
    labels, splits = load_labels(root / ARTICLES_PATH)
    items = read_text_items(root)
    live_dir = root / LIVE_DIR
    start = time.perf_counter()
    fitted = fit_space(params, root, features, labels, splits, items, log_dir=live_dir)
    with atomic_dir(root / MODEL_DIR) as tmp:
        fitted.space.save(tmp)
        (tmp / TRAINING_HISTORY_PATH.name).write_text(json.dumps(fitted.history, indent=2) + "\n")
        (tmp / SELECTION_PATH.name).write_text(json.dumps(fitted.selection, indent=2) + "\n")
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
        if fitted.lexical is not None:
            fitted.lexical.save(tmp / LEXICAL_DIR)
        if fitted.space.own_text_inputs:
            _write_space_embeddings(fitted, tmp / SPACE_EMBEDDINGS)
    if fitted.tuned is not None:
        _export_for_queries(params, root)
    log.info("train stage: %.1f s, space %s", time.perf_counter() - start, fitted.candidate)
    return root / MODEL_DIR


def _export_for_queries(params: Params, root: Path) -> None:
    """The saved tuned encoder exported (and quantized) for ``embed.backend`` the way the
    embed stage's model is, into the model cache that ``medsim search`` and ``medsim serve``
    load from, so their first query does not pay for it. A model that cannot be exported is
    logged, not fatal: the space is saved, and a query under that backend says the same."""
    if params.embed.backend == "torch":
        return
    from medsim.encoders.text import load_text_encoder
    from medsim.errors import MedsimError

    try:
        load_text_encoder(
            (MODEL_DIR / TEXT_MODEL_DIR).as_posix(),
            root=root,
            max_tokens=params.train.max_tokens,  # what the index manifest gives queries
            device="cpu",
            instruction=params.embed.instruction,
            backend=params.embed.backend,
        )
    except MedsimError as exc:
        log.error("tuned encoder not exported for embed.backend %s: %s", params.embed.backend, exc)
