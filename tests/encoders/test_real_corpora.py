"""The stage on real data from ../shared: OHSUMED abstracts and MedPix CT/MR images."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from medsim.config import params_from_dict
from medsim.encoders.stage import run_embed
from medsim.io import rows_to_table, write_table
from medsim.pubmed.local.folders import parse_document
from medsim.schemas import ARTICLES, FIGURES

pytestmark = pytest.mark.slow


def _leave_one_out_1nn(vectors: np.ndarray, labels: list[str]) -> float:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = similarity.argmax(1)
    return float(np.mean([labels[j] == labels[i] for i, j in enumerate(nearest)]))


def test_ohsumed_abstracts_cluster_by_category(shared_data: Path, tmp_path: Path, minilm):
    rows, labels = [], []
    for category in ("C04", "C10", "C14"):  # neoplasms, nervous system, cardiovascular
        folder = shared_data / "ohsumed-23/training" / category
        for file in sorted(folder.iterdir())[:12]:
            title, abstract = parse_document(file.read_text(encoding="utf-8"))
            rows.append(
                {
                    "doc_id": f"{category}/{file.name}",
                    "title": title,
                    "abstract": abstract,
                    "label": category,
                    "split": "train",
                    "source": "ohsumed",
                }
            )
            labels.append(category)
    write_table(rows_to_table(rows, ARTICLES), tmp_path / "data/articles.parquet", ARTICLES)
    run_embed(params_from_dict({"embed": {"batch_size": 16}}), tmp_path)
    table = pq.read_table(tmp_path / "data/embeddings/text.parquet")
    assert table.column("id").to_pylist() == [r["doc_id"] for r in rows]
    vectors = np.array(table.column("vector").to_pylist(), dtype=np.float32)
    assert _leave_one_out_1nn(vectors, labels) >= 0.7  # chance is 1/3


def test_medpix_ct_and_mr_images_separate(shared_data: Path, tmp_path: Path, lite0):
    records = json.loads((shared_data / "medpix/Descriptions_subset.json").read_text())
    chosen = {"CT": [], "MR": []}
    for record in records:
        kind = record["Type"]
        if kind in chosen and len(chosen[kind]) < 10:
            chosen[kind].append(record)
    rows, labels = [], []
    for kind, picked in chosen.items():
        for record in picked:
            data = (shared_data / "medpix/images" / f"{record['image']}.png").read_bytes()
            width, height = Image.open(
                shared_data / "medpix/images" / f"{record['image']}.png"
            ).size
            rows.append(
                {
                    "figure_id": record["image"],
                    "doc_id": record["U_id"],
                    "caption": record["Description"]["Caption"] or "",
                    "image": data,
                    "width": width,
                    "height": height,
                    "origin": "corpus",
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "modality": kind,
                }
            )
            labels.append(kind)
    write_table(rows_to_table(rows, FIGURES), tmp_path / "data/figures.parquet", FIGURES)
    write_table(rows_to_table([], ARTICLES), tmp_path / "data/articles.parquet", ARTICLES)
    run_embed(params_from_dict({"embed": {"batch_size": 8}}), tmp_path)
    images = pq.read_table(tmp_path / "data/embeddings/images.parquet")
    assert images.column("id").to_pylist() == [r["figure_id"] for r in rows]
    vectors = np.array(images.column("vector").to_pylist(), dtype=np.float32)
    assert _leave_one_out_1nn(vectors, labels) >= 0.8  # chance is 1/2
    assert pq.read_table(tmp_path / "data/embeddings/captions.parquet").num_rows == len(rows)
