"""The criteria that choose a space: known winners by construction, folds that never score a
document they were built on, the test split never read, and the frozen candidate."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medsim.config import params_from_dict
from medsim.dml import candidates
from medsim.dml.candidates import Corpus, FittedSpace
from medsim.dml.choice import (
    MAX_FOLDS,
    _fold_probes,
    _within_one_standard_error,
    untuned_reads_worse,
)
from medsim.dml.data import Features
from medsim.dml.fit import fit_space
from medsim.dml.model import SharedSpace, document_matrix, load_shared_space, project
from medsim.errors import MedsimError

N_CLASSES, DIM = 6, 12


def _axes_corpus(per_class: int = 30, noise: float = 0.45, seed: int = 0):
    """Class c lies along axis c of a 12-d space, plus noise on every axis; a sixth of each
    class is test, a sixth validation."""
    rng = np.random.default_rng(seed)
    ids, rows, labels, splits = [], [], {}, {}
    for c in range(N_CLASSES):
        for i in range(per_class):
            doc = f"c{c}_{i:02d}"
            ids.append(doc)
            rows.append(np.eye(DIM)[c] + noise * rng.normal(size=DIM))
            labels[doc] = f"C{c}"
            splits[doc] = "test" if i % 6 == 0 else "val" if i % 6 == 1 else "train"
    return {"text": Features(ids, ids, np.array(rows, dtype=np.float32))}, labels, splits


def _params(**evaluate):
    ev = {"shots": [2], "ways": 2, "queries": 3, "episodes": 60, "knn_k": 5, **evaluate}
    train = {"tune_encoder": False, "dim": 8, "hidden": 16, "epochs": 2, "hash_bits": [32]}
    return params_from_dict({"seed": 0, "train": train, "evaluate": ev})


class _Axes(nn.Module):
    """A head that keeps only the axes of the classes it was trained on: it sharpens those
    classes and collapses every other class onto noise."""

    def __init__(self, axes: list[int]) -> None:
        super().__init__()
        self.in_dim = DIM
        self.register_buffer("mask", torch.zeros(DIM))
        self.mask[axes] = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x * self.mask, dim=-1)


def _class_axes(corpus: Corpus, features) -> FittedSpace:
    trained = {int(corpus.labels[d][1:]) for d, s in corpus.splits.items() if s == "train"}
    space = SharedSpace({"text": DIM}, dim=DIM, hidden=4, head_types={"text": "identity"})
    space.heads["text"] = _Axes(sorted(trained))
    return FittedSpace(space.eval(), [], None, dict(features))


@pytest.fixture
def overfit_heads(monkeypatch):
    """``head_only`` made a space that learns its training classes and nothing else."""
    monkeypatch.setitem(candidates.BASES, "head_only", _class_axes)


def _choose(criterion, frozen, labels, splits, tmp_path, **kw):
    kw.setdefault("params", _params())
    params = kw.pop("params")
    return fit_space(
        params, tmp_path, frozen, labels, splits, None, criterion=criterion, encode_all=False, **kw
    )


def test_heads_that_collapse_unseen_classes_lose_the_held_out_choice(overfit_heads, tmp_path):
    frozen, labels, splits = _axes_corpus()
    # kNN on the classes it was built on is fooled: the collapsing heads win there
    by_knn = _choose("neighbours", frozen, labels, splits, tmp_path)
    assert by_knn.candidate == "head_only"
    by_probe = _choose("held_out_classes", frozen, labels, splits, tmp_path)
    assert by_probe.candidate == "frozen"
    scores = {r["candidate"]: r["probe_accuracy"] for r in by_probe.selection}
    assert scores["frozen"] > 0.75 and scores["head_only"] < 0.65  # 2-way chance is 0.5
    assert {r["criterion"] for r in by_probe.selection} == {"held_out_classes"}
    assert all(r["n_probes"] == 1 for r in by_probe.selection)


def test_heads_that_collapse_unseen_classes_still_win_support_folds(overfit_heads, tmp_path):
    # folds score the classes the space is built on: with noise on the axes no class uses,
    # the heads that drop those axes are right to win
    frozen, labels, splits = _axes_corpus(noise=0.8)
    support = {d: "train" for d, s in splits.items() if s == "train"}
    fitted = _choose("support_folds", frozen, labels, support, tmp_path)
    assert fitted.candidate == "head_only"
    assert all(r["criterion"] == "support_folds" for r in fitted.selection)
    assert all(r["n_probes"] == MAX_FOLDS for r in fitted.selection)


def test_support_folds_keep_the_cheapest_candidate_within_one_standard_error():
    def records(*accuracies):
        return [
            {"candidate": name, "probe_accuracy": a, "n_probe_docs": 100}
            for name, a in zip(("frozen", "head_only", "tuned"), accuracies, strict=False)
        ]

    key = lambda r: (r["probe_accuracy"],)  # noqa: E731
    # best 0.5 on 100 documents: one standard error is sqrt(0.25 / 100) = 0.05
    assert _within_one_standard_error(records(0.46, 0.44, 0.50), key) == "frozen"
    assert _within_one_standard_error(records(0.44, 0.46, 0.50), key) == "head_only"
    assert _within_one_standard_error(records(0.40, 0.44, 0.50), key) == "tuned"


def test_only_the_reading_that_scores_better_untuned_is_tuned():
    key = lambda r: (r["probe_accuracy"],)  # noqa: E731

    def scored(whole, opening):
        return [
            {"candidate": "frozen", "probe_accuracy": whole},
            {"candidate": "head_only", "probe_accuracy": 0.9},  # not a reading: ignored
            {"candidate": "frozen_opening", "probe_accuracy": opening},
        ]

    opening_wins = scored(0.60, 0.70)
    assert untuned_reads_worse("tuned_opening", opening_wins, key) is None
    why = untuned_reads_worse("tuned+lexical0.3", opening_wins, key)  # its lexical variants too
    assert why.startswith("untuned, frozen_opening reads documents better than frozen")
    assert "0.7000 against 0.6000" in why
    # a tie goes to whole documents
    assert untuned_reads_worse("tuned", scored(0.6, 0.6), key) is None
    tie = untuned_reads_worse("tuned_opening", scored(0.6, 0.6), key)
    assert tie.startswith("untuned, frozen reads documents as well as frozen_opening")
    # nothing to compare (frozen_opening not scored: pinned, over budget): build it
    assert untuned_reads_worse("tuned_opening", opening_wins[:2], key) is None
    assert untuned_reads_worse("head_only", opening_wins, key) is None


def test_a_fold_probe_counts_the_documents_it_scores():
    frozen, labels, splits = _axes_corpus()
    support = {d: "train" for d, s in splits.items() if s == "train" and int(d[-2:]) < 10}
    corpus = Corpus(_params(), None, frozen, labels, support, None, "triplet", False)
    probes = _fold_probes(corpus)
    assert sum(p.n_scored for p in probes) == len(support)  # each held once, fit ones not


def test_folds_never_score_a_document_they_were_built_on():
    frozen, labels, splits = _axes_corpus()
    support = {d: "train" for d, s in splits.items() if s == "train" and int(d[-2:]) < 10}
    corpus = Corpus(_params(), None, frozen, labels, support, None, "triplet", False)
    probes = _fold_probes(corpus)
    k = min(sum(1 for d in support if labels[d] == c) for c in set(labels.values()))
    assert len(probes) == min(k, MAX_FOLDS)
    held_all = []
    for probe in probes:
        fit = set(probe.splits)
        held = probe.doc_ids[len(fit) :]
        assert probe.doc_ids[: len(fit)] == [d for d in probe.doc_ids if d in fit]
        assert not fit & set(held) and set(probe.labels) == fit
        assert {labels[d] for d in held} == {labels[d] for d in fit}  # every class, both sides
        held_all += held
    assert sorted(held_all) == sorted(support)  # each document held out exactly once


def test_too_few_documents_per_class_keeps_the_fallback_and_says_why(tmp_path):
    frozen, labels, _ = _axes_corpus()
    one_each = {f"c{c}_02": "train" for c in range(N_CLASSES)}
    fitted = _choose("support_folds", frozen, labels, one_each, tmp_path, fallback="head_only")
    assert fitted.candidate == "head_only"
    [record] = fitted.selection
    assert record["criterion"] == "pinned" and record["instead_of"] == "support_folds"
    assert "smallest has 1" in record["why"]


def test_too_few_classes_to_probe_falls_back_to_neighbours(tmp_path):
    frozen, labels, splits = _axes_corpus()
    three = {d: s for d, s in splits.items() if labels[d] in ("C0", "C1", "C2")}
    fitted = _choose("held_out_classes", frozen, labels, three, tmp_path)
    assert [r["candidate"] for r in fitted.selection] == ["frozen", "head_only"]
    assert all(r["criterion"] == "neighbours" for r in fitted.selection)
    assert all(r["instead_of"] == "held_out_classes" for r in fitted.selection)


@pytest.mark.parametrize("criterion", ["held_out_classes", "support_folds"])
def test_the_test_split_plays_no_part_in_the_choice(criterion, tmp_path):
    frozen, labels, splits = _axes_corpus()
    if criterion == "support_folds":  # a support, plus test documents beside it
        splits = {d: s for d, s in splits.items() if s == "test" or int(d[-2:]) < 12}
        splits = {d: "test" if s == "test" else "train" for d, s in splits.items()}
    shuffled = dict(labels)
    test_docs = sorted(d for d, s in splits.items() if s == "test")
    for doc, other in zip(test_docs, test_docs[::-1], strict=True):
        shuffled[doc] = labels[other]

    def scores(fitted):  # all but the wall-clock seconds
        return [{k: v for k, v in r.items() if k != "seconds"} for r in fitted.selection]

    first = _choose(criterion, frozen, labels, splits, tmp_path)
    again = _choose(criterion, frozen, shuffled, splits, tmp_path)
    assert scores(again) == scores(first)


def test_an_unknown_criterion_is_refused(tmp_path):
    frozen, labels, splits = _axes_corpus()
    with pytest.raises(MedsimError, match="unknown criterion"):
        _choose("vibes", frozen, labels, splits, tmp_path)


def test_the_frozen_candidate_is_the_embed_vectors_and_saves_like_any_space(tmp_path):
    frozen, labels, splits = _axes_corpus()
    params = params_from_dict({"train": {"tune_encoder": False, "choose": "frozen", "epochs": 1}})
    fitted = fit_space(params, tmp_path, frozen, labels, splits, None)
    assert fitted.candidate == "frozen" and fitted.space.head_types == {"text": "identity"}
    ids, _, x = frozen["text"]
    expected = x / np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(document_matrix(fitted.space, frozen, ids), expected, atol=1e-6)
    fitted.space.save(tmp_path / "model")
    loaded = load_shared_space(tmp_path / "model")
    assert loaded.params["candidate"] == "frozen" and not loaded.own_text_inputs
    np.testing.assert_allclose(document_matrix(loaded, frozen, ids), expected, atol=1e-6)


def test_the_frozen_candidate_maps_images_into_the_text_space(tiny_corpus, tmp_path):
    params = params_from_dict({"train": {"tune_encoder": False, "choose": "frozen", "epochs": 2}})
    c = tiny_corpus
    fitted = fit_space(params, tmp_path, c["features"], c["labels"], c["splits"], None)
    # the caption vectors have another dimension than the text's: they get a head too
    assert fitted.space.head_types == {"text": "identity", "caption": "linear", "image": "linear"}
    assert fitted.space.dim == 16


def test_a_text_only_variant_is_its_twin_without_the_parts_in_documents(tiny_corpus, tmp_path):
    """Both variants of a candidate are scored; they share one trained space (the same heads),
    and only documents with text change: the text-only one is the text's own vector."""
    params = params_from_dict(
        {"train": {"tune_encoder": False, "epochs": 2, "lexical_weights": [0.0]}}
    )
    c = tiny_corpus
    fitted = fit_space(params, tmp_path, c["features"], c["labels"], c["splits"], None)
    names = [r["candidate"] for r in fitted.selection]
    assert names == ["frozen+text_only", "frozen", "head_only+text_only", "head_only"]
    docs = c["features"]["text"][0][:5]
    features = {k: Features(*v) for k, v in c["features"].items()}
    space = fitted.space
    space.params["text_only"] = True
    alone = document_matrix(space, features, docs)
    space.params["text_only"] = False
    fused = document_matrix(space, features, docs)
    text = project(space, "text", features["text"][2][:5])
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    np.testing.assert_allclose(alone, text, atol=1e-5)
    assert not np.allclose(fused, alone, atol=1e-3)


def test_a_candidate_due_after_the_budget_is_skipped_and_recorded(tmp_path):
    frozen, labels, splits = _axes_corpus()
    params = _params()
    # every candidate after the first starts too late
    params = dataclasses.replace(
        params, train=dataclasses.replace(params.train, select_budget_s=1e-9)
    )
    fitted = _choose("held_out_classes", frozen, labels, splits, tmp_path, params=params)
    first, second = fitted.selection
    assert first["chosen"] and first["candidate"] == fitted.candidate == "frozen"
    assert "select_budget_s" in second["skipped"] and second["criterion"] == "held_out_classes"
