"""train_space and the train stage on tiny hand-made embeddings."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

from medsim.config import params_from_dict
from medsim.dml import load_shared_space, project, run_train, train_space
from medsim.dml.losses import LOSSES
from medsim.errors import MedsimError
from medsim.io import write_table
from medsim.schemas import ARTICLES, embedding_schema
from medsim.stage import run_stage
from tests.conftest import run_stage_script


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_every_loss_improves_validation_map_at_r(tiny_corpus, fast_params, loss):
    space, history = train_space(**tiny_corpus, params=fast_params, loss=loss, seed=0)
    best = space.params["best_epoch"]
    assert best > 0
    assert history[best]["val_map_at_r"] > history[0]["val_map_at_r"] + 0.05
    assert space.loss == loss and not space.training


def test_same_seed_same_weights_other_seed_other_weights(tiny_corpus, fast_params):
    params = dataclasses.replace(fast_params, epochs=2)
    first, h1 = train_space(**tiny_corpus, params=params, loss="proxy_anchor", seed=3)
    again, h2 = train_space(**tiny_corpus, params=params, loss="proxy_anchor", seed=3)
    other, _ = train_space(**tiny_corpus, params=params, loss="proxy_anchor", seed=4)
    for key, value in first.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    assert [h["loss"] for h in h1] == [h["loss"] for h in h2]
    assert any(not torch.equal(v, other.state_dict()[k]) for k, v in first.state_dict().items())


def test_caller_rng_and_determinism_flag_are_left_alone(tiny_corpus, fast_params):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_space(
        **tiny_corpus, params=dataclasses.replace(fast_params, epochs=1), loss="triplet", seed=0
    )
    assert torch.equal(torch.rand(3), expected)
    assert not torch.are_deterministic_algorithms_enabled()


def test_cross_modal_alignment_pulls_parts_to_their_own_text(tiny_corpus, fast_params):
    _ids, docs, image = tiny_corpus["features"]["image"]
    text = tiny_corpus["features"]["text"][2]
    val = [i for i, d in enumerate(docs) if tiny_corpus["splits"][d] == "val"]

    def own_text_rank_1(weight: float) -> float:
        params = dataclasses.replace(fast_params, cross_modal_weight=weight, epochs=10)
        space, _ = train_space(**tiny_corpus, params=params, loss="triplet", seed=0)
        zi, zt = project(space, "image", image[val]), project(space, "text", text[val])
        return float(((zi @ zt.T).argmax(1) == np.arange(len(val))).mean())

    assert own_text_rank_1(1.0) > own_text_rank_1(0.0) + 0.1


def test_early_stopping_keeps_the_best_epoch(tiny_corpus, fast_params):
    params = dataclasses.replace(fast_params, epochs=40, patience=2, lr=0.05)
    space, history = train_space(**tiny_corpus, params=params, loss="contrastive", seed=0)
    best = space.params["best_epoch"]
    scores = [h["val_map_at_r"] for h in history]
    assert scores[best] == max(scores)
    assert len(history) - 1 <= best + params.patience or len(history) == params.epochs + 1


def test_rows_of_unknown_documents_are_ignored_and_text_only_works(tiny_corpus, fast_params):
    ids, docs, x = tiny_corpus["features"]["text"]
    stray = np.zeros((1, x.shape[1]), dtype=np.float32)
    features = {"text": ([*ids, "ghost"], [*docs, "ghost"], np.vstack([x, stray]))}
    space, history = train_space(
        features, tiny_corpus["labels"], tiny_corpus["splits"], fast_params, "triplet", 0
    )
    assert space.modalities == ["text"]
    assert set(history[0]["val"]) == {"text/text", "map_at_r"}


def test_nothing_to_learn_is_a_clear_error(tiny_corpus, fast_params):
    ids, docs, x = tiny_corpus["features"]["text"]
    with pytest.raises(MedsimError, match="nothing to learn"):
        train_space({"text": (ids, docs, x)}, {}, tiny_corpus["splits"], fast_params, "triplet", 0)


def test_dvclive_curves_have_one_row_per_epoch(tiny_corpus, fast_params, tmp_path):
    params = dataclasses.replace(fast_params, epochs=3, patience=10)
    train_space(**tiny_corpus, params=params, loss="triplet", seed=0, log_dir=tmp_path / "live")
    curves = tmp_path / "live" / "plots" / "metrics"
    loss = pd.read_csv(curves / "loss.tsv", sep="\t")
    assert list(loss["step"]) == [1, 2, 3]
    val = pd.read_csv(curves / "val_map_at_r.tsv", sep="\t")
    assert list(val["step"]) == [0, 1, 2, 3]  # epoch 0 = untrained heads
    summary = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert summary["best_epoch"] >= 1


def _write_project(root, corpus, with_parts: bool = True):
    """A medsim project folder holding articles.parquet and data/embeddings as the embed
    stage writes them (text-only corpora have empty part files)."""
    labels, splits = corpus["labels"], corpus["splits"]
    docs = sorted(splits)
    articles = pa.table(
        {
            "doc_id": docs,
            "title": docs,
            "abstract": docs,
            "label": [labels[d] for d in docs],
            "split": [splits[d] for d in docs],
            "source": ["test"] * len(docs),
        }
    )
    for field in ARTICLES:
        if field.name not in articles.column_names:
            articles = articles.append_column(field, pa.nulls(len(docs), field.type))
    write_table(articles, root / "data/articles.parquet", ARTICLES)
    files = {"text": "text", "caption": "captions", "image": "images", "table": "tables"}
    for modality, name in files.items():
        ids, doc_ids, x = corpus["features"].get(modality, ([], [], np.zeros((0, 5))))
        if not with_parts and modality != "text":
            ids, doc_ids, x = [], [], np.zeros((0, x.shape[1]))
        dim = x.shape[1]
        table = pa.table(
            {
                "id": ids,
                "doc_id": doc_ids,
                "content_hash": ["h"] * len(ids),
                "vector": pa.FixedSizeListArray.from_arrays(
                    pa.array(x.reshape(-1).astype(np.float32)), dim
                ),
            }
        )
        write_table(table, root / f"data/embeddings/{name}.parquet", embedding_schema(dim))


def _params(loss: str):
    return params_from_dict(
        {
            "loss": loss,
            "train": {
                "dim": 8,
                "hidden": 16,
                "epochs": 3,
                "batch_size": 32,
                "hash_bits": [32, 64],
                "tune_encoder": False,  # heads over the features given (no text to tune on)
            },
        }
    )


def test_run_train_writes_a_loadable_model(tiny_corpus, tmp_path):
    _write_project(tmp_path, tiny_corpus)
    out = run_train(_params("multi_similarity"), tmp_path)
    assert out == tmp_path / "data/model"
    files = {p.name for p in out.iterdir()}
    assert files == {"weights.pt", "config.json", "history.json", "selection.json"}
    # the tiny corpus has too few words for a vocabulary: the lexical candidates say so
    selection = json.loads((out / "selection.json").read_text())
    assert [r["candidate"] for r in selection] == [
        f"{base}{lexical}{fusion}"
        for base in ("frozen", "head_only")
        for lexical in ("", "+lexical0.3", "+lexical0.5")
        for fusion in ("+text_only", "")  # documents have captions and images
    ]
    assert [r["chosen"] for r in selection].count(True) == 1
    assert all("no terms remain" in r["skipped"] for r in selection if "+lexical" in r["candidate"])
    assert {r["criterion"] for r in selection} == {"neighbours"}
    space = load_shared_space(out)
    assert space.modalities == ["text", "caption", "image"] and space.loss == "multi_similarity"
    assert space.bits == [32, 64]
    history = json.loads((out / "history.json").read_text())
    assert history[0]["epoch"] == 0 and len(history) >= 2
    assert (tmp_path / "dvclive/train/plots/metrics/loss.tsv").exists()


def test_train_stage_on_a_text_only_corpus(tiny_corpus, tmp_path, repo_root):
    _write_project(tmp_path, tiny_corpus, with_parts=False)
    (tmp_path / "params.yaml").write_text(
        "loss: ntxent\n"
        "train: {dim: 8, hidden: 16, epochs: 2, batch_size: 32, tune_encoder: false}\n"
    )
    assert run_stage("train", run_train, root=tmp_path) == 0
    assert load_shared_space(tmp_path / "data/model").modalities == ["text"]
    (tmp_path / "params.yaml").write_text("loss: nope\n")
    assert run_stage("train", run_train, root=tmp_path) == 2


def test_stage_script_fails_cleanly_without_inputs(tmp_path, repo_root):
    (tmp_path / "params.yaml").write_text("seed: 0\n")
    result = run_stage_script("train", tmp_path, timeout=120)
    assert result.returncode == 2
    assert "medsim train:" in result.stderr and "embed" in result.stderr


def test_linear_image_head_starts_at_the_ridge_map_onto_captions(tiny_corpus, fast_params):
    # identity text modalities (one 16-d space) and a linear image head: before any step the image
    # head is the ridge map onto the captions, so val image -> own caption is far above chance
    features = dict(tiny_corpus["features"])
    text = features["text"][2]
    caption = (text + 0.1 * np.random.RandomState(1).normal(size=text.shape)).astype(np.float32)
    features["caption"] = (features["caption"][0], features["caption"][1], caption)
    corpus = {**tiny_corpus, "features": features}
    types = {"text": "identity", "caption": "identity", "image": "linear"}
    params = dataclasses.replace(fast_params, epochs=1)
    _, history = train_space(**corpus, params=params, loss="triplet", seed=0, head_types=types)
    start = history[0]["val"]["image/own_caption"]
    # 32 val images, one own caption each among 32: chance mAP ~ (1/32) * H(32) ~ 0.13
    assert start > 0.4
    _, untrained_history = train_space(
        **corpus, params=params, loss="triplet", seed=0, head_types={**types, "image": "mlp"}
    )
    assert untrained_history[0]["val"]["image/own_caption"] < start - 0.2
