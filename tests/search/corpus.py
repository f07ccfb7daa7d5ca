"""A tiny project folder for search tests: articles, figures, tables, embeddings made with the
real packaged encoders, and an untrained (seeded) SharedSpace in data/model/.

An untrained space is enough to check the plumbing by identities: a query made of exactly a
stored item's input projects to exactly that item's vector, so it must come first with score 1.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from medsim.io import rows_to_table, write_table
from medsim.schemas import ARTICLES, FIGURES, TABLES, embedding_schema

TEXT_MODEL = "packaged:all-MiniLM-L6-v2"
IMAGE_MODEL = "packaged:efficientnet-lite0"

DOCS = [
    (
        "d1",
        "1001",
        "breast",
        "train",
        "Mammography screening in older women",
        "Mammography screening detects early breast cancer. Tamoxifen reduces recurrence in "
        "estrogen receptor positive tumours. Adjuvant radiotherapy follows lumpectomy.",
    ),
    (
        "d2",
        "1002",
        "breast",
        "train",
        "HER2 targeted therapy",
        "Trastuzumab improves survival in HER2 positive breast cancer. Cardiotoxicity was "
        "monitored by echocardiography.",
    ),
    (
        "d3",
        "1003",
        "lung",
        "train",
        "Low-dose CT for lung cancer",
        "Low-dose computed tomography reduces lung cancer mortality in heavy smokers. Nodules "
        "were followed up for two years.",
    ),
    (
        "d4",
        "1004",
        "lung",
        "train",
        "EGFR mutations in adenocarcinoma",
        "EGFR mutations predict response to gefitinib in lung adenocarcinoma. Never smokers "
        "were enriched.",
    ),
    (
        "d5",
        "1005",
        "melanoma",
        "test",
        "Dermoscopy of pigmented lesions",
        "Dermoscopy improves the diagnosis of melanoma. Asymmetry and irregular borders were "
        "the strongest signs.",
    ),
    (
        "d6",
        None,
        "melanoma",
        "train",
        "Checkpoint inhibitors in melanoma",
        "Anti PD-1 antibodies prolong survival in advanced melanoma. Immune related adverse "
        "events were frequent.",
    ),
]
FIGURES_ROWS = [
    ("f1", "d1", "(A) Mammogram of the left breast. (B) Ultrasound of the same lesion."),
    ("f2", "d3", "Chest CT showing a spiculated nodule in the right upper lobe."),
    ("f3", "d5", "Dermoscopy of a pigmented lesion with an irregular border."),
]
TABLES_ROWS = [("t1", "d4", "Table 1. EGFR mutation status", "mutation | n\nexon 19 | 12")]


def figure_png(seed: int) -> bytes:
    """A 64x64 RGB picture, different for each seed."""
    rng = np.random.default_rng(seed)
    pixels = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    pixels[: 16 * (seed + 1)] //= 3
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _embedding_table(ids, doc_ids, vectors: np.ndarray) -> pa.Table:
    schema = embedding_schema(vectors.shape[1])
    return pa.table(
        {
            "id": ids,
            "doc_id": doc_ids,
            "content_hash": ["test"] * len(ids),
            "vector": pa.array(list(vectors), type=schema.field("vector").type),
        },
        schema=schema,
    )


def build_project(root: Path, exact_below: int = 100_000) -> Path:
    """Write the corpus, embeddings, model and params.yaml under ``root``; return ``root``."""
    import torch

    from medsim.dml import SharedSpace
    from medsim.encoders.image import decode_image, load_image_encoder
    from medsim.encoders.text import load_text_encoder

    data = root / "data"
    write_table(
        rows_to_table(
            [
                {
                    "doc_id": d,
                    "pmid": p,
                    "label": lab,
                    "split": s,
                    "title": t,
                    "abstract": a,
                    "source": "test",
                }
                for d, p, lab, s, t, a in DOCS
            ],
            ARTICLES,
        ),
        data / "articles.parquet",
        ARTICLES,
    )
    pngs = [figure_png(i) for i in range(len(FIGURES_ROWS))]
    write_table(
        rows_to_table(
            [
                {
                    "figure_id": f,
                    "doc_id": d,
                    "caption": c,
                    "image": png,
                    "width": 64,
                    "height": 64,
                    "origin": "corpus",
                    "sha256": hashlib.sha256(png).hexdigest(),
                }
                for (f, d, c), png in zip(FIGURES_ROWS, pngs, strict=True)
            ],
            FIGURES,
        ),
        data / "figures.parquet",
        FIGURES,
    )
    write_table(
        rows_to_table(
            [
                {
                    "table_id": t,
                    "doc_id": d,
                    "caption": c,
                    "cells": "[]",
                    "text": x,
                    "origin": "pdf",
                    "page": 1,
                }
                for t, d, c, x in TABLES_ROWS
            ],
            TABLES,
        ),
        data / "tables.parquet",
        TABLES,
    )
    for i, png in enumerate(pngs):
        (root / f"figure{i}.png").write_bytes(png)

    text_encoder = load_text_encoder(TEXT_MODEL, device="cpu")
    image_encoder = load_image_encoder(IMAGE_MODEL, device="cpu")
    emb = data / "embeddings"
    emb.mkdir(parents=True)
    doc_texts = [f"{t}\n{a}" for _, _, _, _, t, a in DOCS]
    text_matrix = text_encoder.encode(doc_texts)
    write_table(
        _embedding_table([d[0] for d in DOCS], [d[0] for d in DOCS], text_matrix),
        emb / "text.parquet",
        embedding_schema(text_encoder.dim),
    )
    captions = text_encoder.encode([c for _, _, c in FIGURES_ROWS])
    fig_ids, fig_docs = [f for f, _, _ in FIGURES_ROWS], [d for _, d, _ in FIGURES_ROWS]
    write_table(
        _embedding_table(fig_ids, fig_docs, captions),
        emb / "captions.parquet",
        embedding_schema(text_encoder.dim),
    )
    images = image_encoder.encode([decode_image(p, 1) for p in pngs])
    write_table(
        _embedding_table(fig_ids, fig_docs, images),
        emb / "images.parquet",
        embedding_schema(image_encoder.dim),
    )
    tables = text_encoder.encode([f"{c}\n{x}" for _, _, c, x in TABLES_ROWS])
    write_table(
        _embedding_table([t[0] for t in TABLES_ROWS], [t[1] for t in TABLES_ROWS], tables),
        emb / "tables.parquet",
        embedding_schema(text_encoder.dim),
    )

    torch.manual_seed(0)
    space = SharedSpace(
        {
            "text": text_encoder.dim,
            "caption": text_encoder.dim,
            "table": text_encoder.dim,
            "image": image_encoder.dim,
        },
        dim=16,
        hidden=32,
        bits=(32, 64),
    )
    # what training does first: without input statistics, random heads map every MiniLM
    # vector (unit norm, tiny components) to nearly the same point
    for head, matrix in (("text", text_matrix), ("caption", captions), ("image", images)):
        space.heads[head].fit_standardization(torch.from_numpy(matrix))
    space.eval().save(data / "model")
    (root / "params.yaml").write_text(
        f"seed: 0\nembed:\n  text_model: {TEXT_MODEL}\n  image_model: {IMAGE_MODEL}\n"
        f"index:\n  exact_below: {exact_below}\n"
    )
    return root


_BUILT: dict[str, Path] = {}


def indexed_project(tmp_path_factory) -> Path:
    """:func:`build_project` plus its ``data/index/``, built once per test session."""
    if "root" not in _BUILT:
        from medsim.config import load_params
        from medsim.search.stage import run_index

        root = build_project(tmp_path_factory.mktemp("search_project"))
        run_index(load_params(root / "params.yaml"), root)
        _BUILT["root"] = root
    return _BUILT["root"]
