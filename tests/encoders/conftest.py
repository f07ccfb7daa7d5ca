"""Tiny corpora (articles, figures, tables) and tiny random models for the encoder tests."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medsim.io import rows_to_table, write_table
from medsim.schemas import ARTICLES, FIGURES, TABLES


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    """PNG bytes of a uint8 (or uint16) array."""
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def gradient(size: int = 64, channels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (size, size, channels) if channels > 1 else (size, size)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


ARTICLE_ROWS = [
    ("d1", "Breast cancer screening", "Mammography reduces mortality in women over fifty.", "a"),
    ("d2", "Lung adenocarcinoma", "EGFR mutations predict response to tyrosine kinase drugs.", "b"),
    ("d3", "Myocardial infarction", "Troponin rises within hours of coronary occlusion.", "c"),
    ("d4", "", "   ", "a"),  # nothing to encode
]


def write_articles(root: Path, rows=ARTICLE_ROWS) -> None:
    table = rows_to_table(
        [
            {
                "doc_id": d,
                "title": t,
                "abstract": a,
                "label": lab,
                "split": "train",
                "source": "test",
            }
            for d, t, a, lab in rows
        ],
        ARTICLES,
    )
    write_table(table, root / "data/articles.parquet", ARTICLES)


def figure_row(figure_id: str, doc_id: str, caption: str, image: bytes, w: int, h: int) -> dict:
    return {
        "figure_id": figure_id,
        "doc_id": doc_id,
        "caption": caption,
        "image": image,
        "width": w,
        "height": h,
        "origin": "corpus",
        "sha256": hashlib.sha256(image).hexdigest(),
    }


def write_figures(root: Path) -> None:
    rows = [
        figure_row("f1", "d1", "Axial CT of the chest.", png(gradient(64)), 64, 64),
        figure_row("f2", "d2", "Coronal MR, T2.", png(gradient(48, channels=1, seed=1)), 48, 48),
        figure_row("f3", "d2", "Coronal MR, T2.", png(gradient(10, seed=2)), 10, 10),  # tiny
        figure_row("f4", "d3", "", b"not a png at all", 80, 80),  # no caption, broken image
    ]
    write_table(rows_to_table(rows, FIGURES), root / "data/figures.parquet", FIGURES)


def write_tables(root: Path) -> None:
    rows = [
        {
            "table_id": "t1",
            "doc_id": "d1",
            "caption": "Table 1. Patient characteristics",
            "cells": '[["age", "n"], ["50-59", "12"]]',
            "text": "age: 50-59, n: 12",
            "origin": "pdf",
            "page": 3,
        }
    ]
    write_table(rows_to_table(rows, TABLES), root / "data/tables.parquet", TABLES)


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    write_articles(tmp_path)
    write_figures(tmp_path)
    write_tables(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def minilm():
    """The packaged MiniLM encoder (loaded once per session)."""
    from medsim.encoders.text import load_text_encoder

    return load_text_encoder("packaged:all-MiniLM-L6-v2", batch_size=4, device="cpu")


def tiny_model_folder(folder: Path, kind: str) -> Path:
    """A randomly initialised tiny model in Hugging Face layout, with MiniLM's tokenizer."""
    import torch
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertModel,
        LlamaConfig,
        LlamaModel,
        Qwen2Config,
        Qwen2Model,
    )

    from medsim.encoders.specs import resolve_text_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_text_model("packaged:all-MiniLM-L6-v2"))
    dims = {
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "vocab_size": tokenizer.vocab_size,
        "max_position_embeddings": 128,
    }
    torch.manual_seed(0)
    if kind == "llama":
        model = LlamaModel(LlamaConfig(num_key_value_heads=2, pad_token_id=0, **dims))
    elif kind == "qwen2":
        model = Qwen2Model(Qwen2Config(num_key_value_heads=2, pad_token_id=0, **dims))
    else:
        model = BertModel(BertConfig(**dims))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def lite0():
    """The packaged EfficientNet-Lite0 image encoder (loaded once per session)."""
    from medsim.encoders.image import load_image_encoder

    return load_image_encoder("packaged:efficientnet-lite0", batch_size=4, device="cpu")
