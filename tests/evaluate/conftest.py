"""A small synthetic multimodal corpus with the shapes the pipeline writes, and a space
trained on it by the real ``train_space`` (a few epochs, tiny heads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import HashingVectorizer

from medsim.config import Params, params_from_dict
from medsim.evaluate.baselines import l2
from medsim.evaluate.context import EvalContext, SpaceOps

CLASSES = ["C01", "C02", "C03", "C04", "C05", "C06", "C07"]
TARGET_MAP = {"1": "C01", "2": "C02", "3": "C03"}


def hashing_encoder(texts: list[str]) -> np.ndarray:
    """A real, if weak, text encoder: hashed word counts, L2-normalised (64-d)."""
    vec = HashingVectorizer(n_features=64, alternate_sign=False, norm=None)
    return l2(vec.transform(texts).toarray())


def _words(rng: np.random.Generator, label: int, n: int) -> str:
    own = [f"w{label}x{i}" for i in range(8)]
    common = [f"common{i}" for i in range(30)]
    picks = [rng.choice(own) if rng.random() < 0.5 else rng.choice(common) for _ in range(n)]
    return " ".join(picks)


def make_corpus(tmp: Path, seed: int = 0, docs_per_class: int = 25, images: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    rows, figures = [], []
    image_centroids = rng.standard_normal((len(CLASSES), 24))
    modality_axis = rng.standard_normal(24) * 2
    shared_caption = "CT axial image of the lesion"
    for c, label in enumerate(CLASSES):
        for j in range(docs_per_class):
            doc = f"d{c}_{j}"
            u = rng.random()
            split = "test" if u < 0.3 else "val" if u < 0.4 else "train"
            rows.append(
                {
                    "doc_id": doc,
                    "title": _words(rng, c, 6),
                    "abstract": _words(rng, c, 40),
                    "label": label,
                    "split": split,
                    "source": "synthetic",
                }
            )
            for k in range(1 + j % 2):
                modality = "CT" if rng.random() < 0.5 else "MR"
                plane = "Axial" if rng.random() < 0.6 else "Coronal"
                caption = (
                    shared_caption
                    if j % 5 == 0
                    else f"{modality} {plane.lower()} image {_words(rng, c, 5)}"
                )
                sign = 1 if modality == "CT" else -1
                figures.append(
                    {
                        "figure_id": f"{doc}_f{k}",
                        "doc_id": doc,
                        "caption": caption,
                        "modality": modality,
                        "plane": plane,
                        "body_region": "Head",
                        "image": image_centroids[c]
                        + sign * modality_axis
                        + rng.standard_normal(24),
                    }
                )
    articles = pd.DataFrame(rows)
    figs = pd.DataFrame(figures)
    texts = (articles["title"] + "\n" + articles["abstract"]).tolist()
    ids = articles["doc_id"].tolist()
    features = {"text": (ids, ids, hashing_encoder(texts))}
    if images:
        features |= {
            "caption": (
                figs["figure_id"].tolist(),
                figs["doc_id"].tolist(),
                hashing_encoder(figs["caption"].tolist()),
            ),
            "image": (
                figs["figure_id"].tolist(),
                figs["doc_id"].tolist(),
                np.stack(figs["image"]).astype(np.float32),
            ),
        }
    else:
        figs = figs.iloc[0:0]
    target_rows = []
    for t, label in TARGET_MAP.items():
        c = CLASSES.index(label)
        for _ in range(10):
            target_rows.append({"condition_label": t, "medical_abstract": _words(rng, c, 40)})
    target_rows.append({"condition_label": "9", "medical_abstract": "unmapped label row"})
    repeat = articles.iloc[0]
    target_rows.append(
        {
            "condition_label": "1",
            "medical_abstract": f"  {repeat['title']}\n\n{repeat['abstract']} ",
        }
    )
    target = tmp / "target.csv"
    pd.DataFrame(target_rows).to_csv(target, index=False)
    return {
        "articles": articles,
        "figures": figs.drop(columns=["image"]),
        "features": features,
        "target": target,
    }


def small_params(target: Path, **evaluate: object) -> Params:
    return params_from_dict(
        {
            "seed": 0,
            "train": {"epochs": 2, "dim": 16, "hidden": 32, "batch_size": 64, "patience": 1},
            "evaluate": {
                "episodes": 40,
                "bootstrap": 50,
                "shots": [2, 4],
                "ways": 3,
                "queries": 3,
                "knn_k": 5,
                "pairs": 100,
                "cross_domain_target": str(target),
                "cross_domain_labels": TARGET_MAP,
                **evaluate,
            },
        }
    )


def train_corpus_space(corpus: dict, params: Params):
    """A shared space really trained by ``train_space`` on a :func:`make_corpus` corpus."""
    from medsim.dml import train_space

    a = corpus["articles"]
    space, _ = train_space(
        corpus["features"],
        dict(zip(a["doc_id"], a["label"], strict=True)),
        dict(zip(a["doc_id"], a["split"], strict=True)),
        params.train,
        params.loss,
        params.seed,
    )
    return space


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> EvalContext:
    """An :class:`EvalContext` over the synthetic corpus with a really trained space."""

    tmp = tmp_path_factory.mktemp("synthetic")
    corpus = make_corpus(tmp)
    params = small_params(corpus["target"])
    a = corpus["articles"]
    space = train_corpus_space(corpus, params)
    return EvalContext(
        params=params,
        articles=a,
        features=corpus["features"],
        figures=corpus["figures"],
        space=SpaceOps(space, params, frozen=corpus["features"], root=tmp),
        encode_text=hashing_encoder,
        encoder_note="hashing encoder (test)",
        root=tmp,
    )
