"""Tuning the text encoder with the metric-learning loss, WiSE-FT, and the train stage around it."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from medsim.config import params_from_dict
from medsim.dml import load_shared_space
from medsim.dml.data import load_features
from medsim.dml.stage import run_train
from medsim.dml.tune import (
    TextItems,
    TunedText,
    interpolate,
    read_text_items,
    tune_text_encoder,
    tuning_dtype,
)
from medsim.encoders.layers import SplitEncoder
from medsim.encoders.text import load_text_encoder
from medsim.errors import MedsimError
from medsim.io import rows_to_table, write_table
from medsim.schemas import ARTICLES, FIGURES
from tests.encoders.conftest import figure_row, gradient, png, tiny_model_folder

WORDS = {
    "a": ["breast", "mammography", "tamoxifen", "lumpectomy"],
    "b": ["lung", "smoking", "nodule", "egfr"],
    "c": ["heart", "troponin", "infarction", "stent"],
}


def _corpus(n_per_class: int = 8) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for label, words in WORDS.items():
        for i in range(n_per_class):
            rows.append(
                {
                    "doc_id": f"{label}{i}",
                    "title": " ".join(rng.choice(words, 2)),
                    "abstract": " ".join(rng.choice(words, 8)) + f" case {i}",
                    "label": label,
                    "split": "val" if i == 0 else "test" if i == 1 else "train",
                    "source": "test",
                }
            )
    return rows


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    return tiny_model_folder(tmp_path_factory.mktemp("bert"), "bert")


def _params(bert_folder, **train):
    return params_from_dict(
        {
            "embed": {"text_model": str(bert_folder), "batch_size": 8},
            "train": {
                "tune_layers": 1,
                "tune_batch_size": 8,
                "m_per_class": 2,
                "max_tokens": 24,
                "dim": 8,
                "hidden": 16,
                "epochs": 2,
                "hash_bits": [32],
                **train,
            },
        }
    )


def test_interpolation_is_the_weighted_mean_of_floating_weights():
    original = {"w": torch.tensor([0.0, 4.0]), "n": torch.tensor([1])}
    tuned = {"w": torch.tensor([2.0, 0.0]), "n": torch.tensor([7])}
    out = interpolate(original, tuned, 0.25)
    assert out["w"].tolist() == [0.5, 3.0]  # 0.75 * original + 0.25 * tuned
    assert out["n"].tolist() == [7]  # integer buffers are taken from the tuned model
    with pytest.raises(MedsimError):
        interpolate(original, tuned, 1.5)


def test_text_items_subset_keeps_parts_of_kept_documents():
    items = TextItems(
        ["d1", "d2"],
        ["t1 x", "t2 y"],
        ["t1", "t2"],
        {"caption": (["f1", "f2"], ["d1", "d2"], ["c1", "c2"])},
    )
    sub = items.subset({"d2"})
    assert sub.doc_ids == ["d2"] and sub.titles == ["t2"]
    assert sub.parts["caption"] == (["f2"], ["d2"], ["c2"])


def test_tuning_moves_only_the_upper_layers_and_weight_zero_is_the_original(bert_folder):
    rows = _corpus()
    items = TextItems(
        [r["doc_id"] for r in rows],
        [f"{r['title']}\n{r['abstract']}" for r in rows],
        [r["title"] for r in rows],
    )
    labels = {r["doc_id"]: r["label"] for r in rows}
    splits = {r["doc_id"]: r["split"] for r in rows}
    for weight in (1.0, 0.0):
        encoder = load_text_encoder(str(bert_folder), max_tokens=24, device="cpu")
        before = {k: v.clone() for k, v in encoder.model.state_dict().items()}
        split = SplitEncoder(encoder, 1, 24, None)
        params = _params(bert_folder, interpolation=weight).train
        history = tune_text_encoder(split, items, labels, splits, params, "triplet", 0)
        assert len(history) >= 20  # few documents: at least MIN_TUNE_STEPS steps
        after = encoder.model.state_dict()
        changed = {k for k in before if not torch.equal(before[k], after[k])}
        if weight == 1.0:
            assert changed and all(k.startswith("encoder.layer.1.") for k in changed)
        else:
            assert not changed


# CI has no GPU; on a machine with one, the same tests run there too
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.parametrize("device", DEVICES)
def test_tuning_runs_where_the_encoder_is(bert_folder, device, precision):
    """Every term (a loss with proxies, titles, captions) on the encoder's device, at either
    precision with float32 weights; the tuned encoder's vectors come back as CPU arrays."""
    rows = _corpus()
    items = TextItems(
        [r["doc_id"] for r in rows],
        [f"{r['title']}\n{r['abstract']}" for r in rows],
        [r["title"] for r in rows],
        {
            "caption": (
                [f"f{r['doc_id']}" for r in rows],
                [r["doc_id"] for r in rows],
                [f"figure of {r['title']}" for r in rows],
            )
        },
    )
    encoder = load_text_encoder(str(bert_folder), max_tokens=24, device=device)
    split = SplitEncoder(encoder, 1, 24, None)
    params = _params(
        bert_folder, interpolation=1.0, cross_modal_weight=1.0, tune_precision=precision
    ).train
    history = tune_text_encoder(
        split,
        items,
        {r["doc_id"]: r["label"] for r in rows},
        {r["doc_id"]: r["split"] for r in rows},
        params,
        "proxy_anchor",
        0,
    )
    assert all(np.isfinite(h["loss"]) and h["cross_modal_loss"] > 0 for h in history)
    weight = split.upper_state()["0.attention.self.query.weight"]
    assert weight.device.type == device and weight.dtype == torch.float32
    vectors = TunedText(split).encode(items.texts[:3])
    assert vectors.shape == (3, split.dim) and np.allclose(np.linalg.norm(vectors, axis=1), 1)


@pytest.mark.parametrize(
    "avx512_bf16, amx, expected",
    [(True, False, torch.bfloat16), (False, True, torch.bfloat16), (False, False, torch.float32)],
)
def test_auto_precision_is_bfloat16_only_where_the_cpu_has_it(
    monkeypatch, avx512_bf16, amx, expected
):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert tuning_dtype(torch.device("cpu"), "auto") == expected
    assert tuning_dtype(torch.device("cpu"), "float32") == torch.float32
    assert tuning_dtype(torch.device("cpu"), "bfloat16") == torch.bfloat16


@pytest.mark.parametrize("native, expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_precision_on_a_gpu_asks_for_native_bfloat16(monkeypatch, native, expected):
    asked = {}

    def supported(including_emulation: bool = True) -> bool:
        asked["emulation"] = including_emulation
        return native

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported)
    assert tuning_dtype(torch.device("cuda"), "auto") == expected
    assert asked == {"emulation": False}  # emulated bfloat16 (before Ampere) is slower


def test_tuning_needs_two_classes(bert_folder):
    encoder = load_text_encoder(str(bert_folder), max_tokens=24, device="cpu")
    items = TextItems(["d1", "d2"], ["a b", "c d"], ["a", "c"])
    with pytest.raises(MedsimError, match="2 classes"):
        tune_text_encoder(
            SplitEncoder(encoder, 1, 24, None),
            items,
            {"d1": "a", "d2": "a"},
            {"d1": "train", "d2": "train"},
            _params(bert_folder).train,
            "triplet",
            0,
        )


def _project(root, rows, figures=True):
    write_table(rows_to_table(rows, ARTICLES), root / "data/articles.parquet", ARTICLES)
    figs = []
    if figures:
        for i, r in enumerate(rows[::3]):
            image = png(gradient(40, seed=i))
            figs.append(figure_row(f"f{i}", r["doc_id"], f"figure of {r['title']}", image, 40, 40))
    write_table(rows_to_table(figs, FIGURES), root / "data/figures.parquet", FIGURES)
    # frozen embed-stage features: random image vectors, untuned text vectors
    import pyarrow as pa

    from medsim.schemas import embedding_schema

    def table(ids, docs, x):
        return pa.table(
            {
                "id": ids,
                "doc_id": docs,
                "content_hash": ["h"] * len(ids),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1]),
            }
        )

    rng = np.random.default_rng(1)
    docs = [r["doc_id"] for r in rows]
    write_table(
        table(docs, docs, rng.normal(size=(len(docs), 16)).astype(np.float32)),
        root / "data/embeddings/text.parquet",
        embedding_schema(16),
    )
    fid = [f["figure_id"] for f in figs]
    fdoc = [f["doc_id"] for f in figs]
    write_table(
        table(fid, fdoc, rng.normal(size=(len(fid), 16)).astype(np.float32)),
        root / "data/embeddings/captions.parquet",
        embedding_schema(16),
    )
    write_table(
        table(fid, fdoc, rng.normal(size=(len(fid), 10)).astype(np.float32)),
        root / "data/embeddings/images.parquet",
        embedding_schema(10),
    )


def test_train_stage_tunes_the_encoder_and_writes_it_with_its_vectors(bert_folder, tmp_path):
    rows = _corpus()
    _project(tmp_path, rows)
    params = _params(bert_folder, choose="tuned")
    out = run_train(params, tmp_path)
    space = load_shared_space(out)
    assert space.text_model == "text_model" and space.dim == 16  # the encoder's own space
    assert space.head_types == {"text": "identity", "caption": "identity", "image": "linear"}
    tuned = load_features(out / "embeddings")
    assert set(tuned) == {"text", "caption"}
    # the saved model reproduces the vectors train wrote (same text, same max_tokens)
    encoder = load_text_encoder(str(out / "text_model"), max_tokens=24, device="cpu")
    items = read_text_items(tmp_path)
    ids, _, x = tuned["text"]
    row = ids.index(items.doc_ids[3])
    again = encoder.encode([items.texts[3]])[0]
    assert float(again @ x[row]) > 0.999
    meta = json.loads((out / "text_model" / "medsim_tune.json").read_text())
    assert meta["train"]["interpolation"] == params.train.interpolation
    # a second run with the same inputs computes no lower-layer states and hits the cache
    cache = tmp_path / "data/cache/layers"
    shards = sorted(cache.rglob("*.npy"))
    run_train(params, tmp_path)
    assert sorted(cache.rglob("*.npy")) == shards


def test_train_stage_without_tuning_uses_residual_heads(bert_folder, tmp_path):
    _project(tmp_path, _corpus())
    # pinned: with no tuning, the frozen candidate may win this noise corpus's choice
    out = run_train(_params(bert_folder, tune_encoder=False, choose="head_only"), tmp_path)
    space = load_shared_space(out)
    assert space.text_model is None
    assert space.head_types == {"text": "residual", "caption": "residual", "image": "mlp"}
    assert not (out / "text_model").exists()


def test_train_stage_scores_every_candidate_and_keeps_the_best(bert_folder, tmp_path):
    import json

    _project(tmp_path, _corpus())
    out = run_train(_params(bert_folder, lexical_weights=[0.0, 0.5]), tmp_path)
    selection = json.loads((out / "selection.json").read_text())
    names = [r["candidate"] for r in selection]
    bases = ["frozen", "head_only", "frozen_opening", "tuned", "tuned_opening"]
    # the documents have figures: each candidate with and without them in the document vector
    assert names == [
        f"{base}{lexical}{fusion}"
        for base in bases
        for lexical in ("", "+lexical0.5")
        for fusion in ("+text_only", "")
    ]
    # one reading is tuned: the one whose untuned base scored better
    untuned = {r["candidate"]: r.get("val_accuracy") for r in selection}
    whole = untuned["frozen"] >= untuned["frozen_opening"]
    skipped = {r["candidate"] for r in selection if "skipped" in r}
    not_tuned = "tuned_opening" if whole else "tuned"
    assert skipped == {n for n in names if n.startswith(f"{not_tuned}+") or n == not_tuned}
    selection = [r for r in selection if "skipped" not in r]
    best = max(selection, key=lambda r: (r["val_accuracy"], r["val_map_at_r"]))
    chosen = [r for r in selection if r["chosen"]]
    assert len(chosen) == 1 and chosen[0]["val_accuracy"] == best["val_accuracy"]
    space = load_shared_space(out)
    assert space.params["candidate"] == chosen[0]["candidate"]
    own_encoder = chosen[0]["candidate"].startswith(("tuned", "frozen_opening"))
    assert (out / "text_model").exists() == own_encoder
    assert (out / "lexical").exists() == ("lexical" in chosen[0]["candidate"])


def test_train_stage_exports_the_tuned_encoder_for_the_query_backend(
    bert_folder, tmp_path, monkeypatch
):
    """Under an ONNX backend the saved tuned encoder is exported where queries load it from,
    so the first query finds the export instead of making one."""
    from medsim.encoders import backends

    monkeypatch.setenv("MEDSIM_CACHE", str(tmp_path / "cache"))
    _project(tmp_path, _corpus())
    params = _params(bert_folder, choose="tuned")
    params = dataclasses.replace(params, embed=dataclasses.replace(params.embed, backend="onnx"))
    run_train(params, tmp_path)
    assert list((tmp_path / "cache").rglob("*.onnx"))

    def no_export(*args, **kwargs):
        raise AssertionError("the query loader exported again")

    monkeypatch.setattr(backends, "export_onnx", no_export)
    query = load_text_encoder(
        "data/model/text_model", root=tmp_path, max_tokens=24, device="cpu", backend="onnx"
    )
    assert query.runner is not None


def test_tuned_opening_reads_the_opening_and_says_so_to_queries(bert_folder, tmp_path):
    """tuned_opening is tuned on, and reads, each document's first train.max_tokens tokens:
    the saved space records it, the index manifest hands it to the query encoder, and that
    encoder reproduces the vectors train wrote for a document longer than the window."""
    from medsim.search.stage import _manifest_meta

    rows = _corpus()
    rows[2]["abstract"] = " ".join(["tumour growth signalling"] * 20)  # past 24 tokens
    _project(tmp_path, rows)
    params = _params(bert_folder, choose="tuned_opening")
    out = run_train(params, tmp_path)
    space = load_shared_space(out)
    assert space.params["long_text"] == "truncate"
    manifest = _manifest_meta(space, params)
    assert manifest["long_text"] == "truncate" and manifest["max_tokens"] == 24
    encoder = load_text_encoder(
        str(out / "text_model"), max_tokens=24, device="cpu", long_text=manifest["long_text"]
    )
    items = read_text_items(tmp_path)
    ids, _, x = load_features(out / "embeddings")["text"]
    row = items.doc_ids.index(rows[2]["doc_id"])
    assert encoder.longer_than_window([items.texts[row]]) == 1
    again = encoder.encode([items.texts[row]])[0]
    assert float(again @ x[ids.index(rows[2]["doc_id"])]) > 0.999


def test_a_probe_encodes_only_the_documents_it_scores(bert_folder, tmp_path):
    """On a text-only corpus a probe's tuned candidate needs no vectors of the documents it
    was built on (identity heads, nothing to train): none are encoded, and the documents it
    scores get the same vectors as from a build that encoded everything."""
    from medsim.dml.candidates import Builder, Corpus, space_inputs
    from medsim.dml.data import load_labels
    from medsim.dml.model import document_matrix

    _project(tmp_path, _corpus(), figures=False)
    params = _params(bert_folder, lexical_weights=[0.0, 0.5])
    features = load_features(tmp_path / "data/embeddings")
    labels, splits = load_labels(tmp_path / "data/articles.parquet")
    corpus = Corpus(
        params, tmp_path, features, labels, splits, read_text_items(tmp_path), "triplet", False
    )
    scored = sorted(d for d, s in splits.items() if s == "test")
    for name in ("tuned", "tuned+lexical0.5"):
        lazy, eager = (Builder(corpus, encode_seen=flag).build(name) for flag in (False, True))
        assert len(lazy.features["text"].ids) == 0 < len(eager.features["text"].ids)
        vectors = [
            document_matrix(
                f.space,
                space_inputs(f.space, features, corpus.items, scored, f.tuned, f.lexical),
                scored,
            )
            for f in (lazy, eager)
        ]
        np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-5)


def test_frozen_opening_is_the_untuned_encoder_reading_the_opening(bert_folder, tmp_path):
    """Pinned, frozen_opening saves the encoder as it was (no tuning step) with the opening
    reading, and its document vectors are that encoder's vectors of each opening."""
    rows = _corpus()
    rows[2]["abstract"] = " ".join(["tumour growth signalling"] * 20)  # past 24 tokens
    _project(tmp_path, rows)
    out = run_train(_params(bert_folder, choose="frozen_opening"), tmp_path)
    space = load_shared_space(out)
    assert space.params["candidate"] == "frozen_opening"
    assert space.params["long_text"] == "truncate"
    meta = json.loads((out / "text_model" / "medsim_tune.json").read_text())
    assert meta["tune_history"] == []
    original = load_text_encoder(
        str(bert_folder), max_tokens=24, device="cpu", long_text="truncate"
    )
    items = read_text_items(tmp_path)
    ids, _, x = load_features(out / "embeddings")["text"]
    row = items.doc_ids.index(rows[2]["doc_id"])
    again = original.encode([items.texts[row]])[0]
    assert float(again @ x[ids.index(rows[2]["doc_id"])]) > 0.999
