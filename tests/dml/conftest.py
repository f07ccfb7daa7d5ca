"""Tiny hand-made embeddings for the dml tests: separable classes, paired modalities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsim.config import TrainParams


def _clusters(rng: np.random.RandomState, n_per_class: int, n_classes: int, dim: int, noise: float):
    centres = rng.normal(size=(n_classes, dim))
    labels = np.repeat(np.arange(n_classes), n_per_class)
    x = centres[labels] + noise * rng.normal(size=(len(labels), dim))
    return x.astype(np.float32), labels


@pytest.fixture
def tiny_corpus():
    """4 classes x 24 documents; each document has text (16-d), one caption (12-d) and one
    image (20-d) whose vectors are noisy views of the document's class centre."""
    rng = np.random.RandomState(0)
    n_classes, per_class = 4, 24
    text, labels = _clusters(rng, per_class, n_classes, 16, noise=1.5)
    doc_ids = [f"d{i:03d}" for i in range(len(labels))]
    # captions and images: random linear views of the text plus noise, one per document
    caption = (text @ rng.normal(size=(16, 12)) + rng.normal(size=(len(text), 12))).astype(
        np.float32
    )
    image = (text @ rng.normal(size=(16, 20)) + 2 * rng.normal(size=(len(text), 20))).astype(
        np.float32
    )
    figure_ids = [f"{d}-f1" for d in doc_ids]
    split_cycle = ["train", "train", "train", "val", "val", "test"]
    splits = {d: split_cycle[i % len(split_cycle)] for i, d in enumerate(doc_ids)}
    features = {
        "text": (doc_ids, doc_ids, text),
        "caption": (figure_ids, doc_ids, caption),
        "image": (figure_ids, doc_ids, image),
    }
    return {
        "features": features,
        "labels": {d: f"C{label}" for d, label in zip(doc_ids, labels, strict=True)},
        "splits": splits,
    }


@pytest.fixture
def fast_params() -> TrainParams:
    return TrainParams(
        dim=8,
        hidden=32,
        epochs=8,
        batch_size=32,
        lr=0.01,
        m_per_class=4,
        patience=3,
        hash_bits=[8, 16],
    )


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matrices: one thread avoids oversubscribing the cores other test runs share."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
