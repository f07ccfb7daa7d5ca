"""Choosing the space on the validation split: candidates, scores, pins, and the test split
never read."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from medsim.config import params_from_dict
from medsim.dml.candidates import is_text_only, parse_candidate, space_reading, tuned_reading
from medsim.dml.data import Features
from medsim.dml.fit import candidate_names, fit_space, validation_accuracy
from medsim.dml.lexical import fit_lexical
from medsim.dml.model import SharedSpace
from medsim.dml.tune import TextItems
from medsim.errors import MedsimError

WORDS = {
    "a": ["brca1", "tamoxifen", "mammography", "lumpectomy", "her2"],
    "b": ["egfr", "alk", "nodule", "smoking", "bronchoscopy"],
    "c": ["vegf", "angiogenesis", "endothelial", "bevacizumab", "sprouting"],
}


def _corpus(seed: int = 0):
    """Texts whose class is in their words; dense vectors that are pure noise."""
    rng = np.random.default_rng(seed)
    ids, texts, labels, splits = [], [], {}, {}
    for label, words in WORDS.items():
        for i in range(24):
            doc = f"{label}{i}"
            ids.append(doc)
            texts.append(" ".join(rng.choice(words, 6)) + " patients were studied")
            labels[doc] = label
            splits[doc] = "val" if i < 5 else "test" if i < 10 else "train"
    items = TextItems(ids, texts, [t.split()[0] for t in texts])
    noise = rng.normal(size=(len(ids), 12)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    return {"text": Features(ids, ids, noise)}, labels, splits, items


def _params(**train):
    base = {"dim": 8, "hidden": 16, "epochs": 3, "batch_size": 32, "hash_bits": [32]}
    return params_from_dict({"train": {"tune_encoder": False, **base, **train}})


def test_candidates_cheapest_first_one_per_lexical_weight():
    params = _params(tune_encoder=True, lexical_weights=[0.0, 0.5])
    assert candidate_names(params) == [
        "frozen",
        "frozen+lexical0.5",
        "head_only",
        "head_only+lexical0.5",
        "frozen_opening",
        "frozen_opening+lexical0.5",
        "tuned",
        "tuned+lexical0.5",
        "tuned_opening",
        "tuned_opening+lexical0.5",
    ]
    assert candidate_names(params, can_tune=False) == [
        "frozen",
        "frozen+lexical0.5",
        "head_only",
        "head_only+lexical0.5",
    ]


def test_documents_with_parts_get_text_only_variants_first():
    params = _params(lexical_weights=[0.0, 0.5])
    assert candidate_names(params, with_parts=True) == [
        "frozen+text_only",
        "frozen",
        "frozen+lexical0.5+text_only",
        "frozen+lexical0.5",
        "head_only+text_only",
        "head_only",
        "head_only+lexical0.5+text_only",
        "head_only+lexical0.5",
    ]
    assert parse_candidate("head_only+lexical0.5+text_only") == ("head_only", 0.5)
    assert is_text_only("frozen+text_only") and not is_text_only("frozen")


def test_tuned_opening_only_where_tuned_reads_more_than_the_opening():
    params = _params(tune_encoder=True, lexical_weights=[0.0])
    truncating = dataclasses.replace(
        params, embed=dataclasses.replace(params.embed, long_text="truncate")
    )
    assert candidate_names(truncating) == ["frozen", "head_only", "tuned"]
    assert tuned_reading("tuned", params) == "windows"
    assert tuned_reading("tuned_opening", params) == "truncate"
    assert tuned_reading("frozen_opening", params) == "truncate"
    assert tuned_reading("head_only", params) is None
    # a saved space reads as it was tuned; one from before the record, as embed does
    assert space_reading({"long_text": "truncate"}, "windows") == "truncate"
    assert space_reading({}, "windows") == "windows"


def test_the_candidate_best_on_validation_is_kept(tmp_path):
    frozen, labels, splits, items = _corpus()
    fitted = fit_space(_params(), tmp_path, frozen, labels, splits, items)
    scores = {r["candidate"]: r["val_accuracy"] for r in fitted.selection}
    assert set(scores) == {
        f"{base}{lexical}"
        for base in ("frozen", "head_only")
        for lexical in ("", "+lexical0.3", "+lexical0.5")
    }
    assert {r["criterion"] for r in fitted.selection} == {"neighbours"}
    # the words decide the class, the dense vectors are noise: a lexical candidate wins
    assert "+lexical" in fitted.candidate
    assert max(scores["frozen"], scores["head_only"]) < scores[fitted.candidate]
    assert scores[fitted.candidate] == max(scores.values())
    assert [r["chosen"] for r in fitted.selection].count(True) == 1
    assert fitted.space.lexical == "lexical" and fitted.lexical is not None
    assert fitted.features["text"][2].shape[1] == 12 + fitted.lexical.dim
    assert all(r["n_val"] == 15 for r in fitted.selection)


def test_the_test_split_plays_no_part_in_the_choice(tmp_path):
    frozen, labels, splits, items = _corpus()
    first = fit_space(_params(), tmp_path, frozen, labels, splits, items)
    shuffled = dict(labels)
    test_docs = [d for d, s in splits.items() if s == "test"]
    for doc, other in zip(test_docs, test_docs[::-1], strict=True):
        shuffled[doc] = labels[other]
    again = fit_space(_params(), tmp_path, frozen, shuffled, splits, items)

    def scores(fitted):  # all but the wall-clock seconds
        return [{k: v for k, v in r.items() if k != "seconds"} for r in fitted.selection]

    assert scores(again) == scores(first)


def test_choose_pins_one_candidate_and_builds_only_it(tmp_path):
    frozen, labels, splits, items = _corpus()
    fitted = fit_space(_params(choose="head_only"), tmp_path, frozen, labels, splits, items)
    assert [r["candidate"] for r in fitted.selection] == ["head_only"]
    assert fitted.space.lexical is None and fitted.lexical is None
    with pytest.raises(MedsimError, match="not a candidate here"):
        fit_space(_params(choose="tuned"), tmp_path, frozen, labels, splits, items)


def test_the_lexical_part_learns_words_from_the_unlabelled_texts_given(tmp_path):
    frozen, labels, splits, items = _corpus()
    # five labelled documents per class, as Table 2's low-resource support; all 72 texts
    support = {d: "train" for d, s in splits.items() if s == "train" and int(d[1:]) < 15}
    some = {d: labels[d] for d in support}
    unseen = "osteosarcoma chondrosarcoma"  # in no labelled text, in two unlabelled ones
    texts = [*items.texts, f"{unseen} patients", f"{unseen} cohort"]
    params = _params(choose="frozen+lexical0.5")
    with_words = fit_space(params, tmp_path, frozen, some, support, items, lexical_texts=texts)
    words = with_words.lexical.vectorizer.vocabulary_
    assert "osteosarcoma" in words
    alone = fit_space(params, tmp_path, frozen, some, support, items)
    assert "osteosarcoma" not in alone.lexical.vectorizer.vocabulary_
    assert len(alone.lexical.vectorizer.vocabulary_) < len(words)


def test_every_fold_of_a_choice_reads_the_same_words(tmp_path):
    frozen, labels, splits, items = _corpus()
    support = {d: "train" for d, s in splits.items() if s == "train" and int(d[1:]) < 15}
    some = {d: labels[d] for d in support}
    params = _params(lexical_weights=[0.5])
    fit_lexical.cache_clear()
    fitted = fit_space(
        params,
        tmp_path,
        {"text": Features(*frozen["text"]).subset(set(support))},
        some,
        support,
        items.subset(set(support)),
        criterion="support_folds",
        lexical_texts=items.texts,
    )
    # the folds' encoders and the chosen one are one fit of the same texts
    assert fit_lexical.cache_info().misses == 1
    again = fit_lexical(tuple(items.texts), params.train.lexical_dim, params.seed)
    assert fitted.lexical is again
    assert {r["criterion"] for r in fitted.selection} == {"support_folds"}


def test_without_texts_only_dense_candidates(tmp_path):
    frozen, labels, splits, _ = _corpus()
    fitted = fit_space(_params(), tmp_path, frozen, labels, splits, None)
    assert [r["candidate"] for r in fitted.selection] == ["frozen", "head_only"]


def test_validation_accuracy_by_hand():
    # 2-d identity space: train a=(1,0), b=(0,1); val (0.9,0.1) is a, (0.2,0.8) is b
    space = SharedSpace({"text": 2}, dim=2, hidden=4, head_types={"text": "identity"}).eval()
    ids = ["t1", "t2", "v1", "v2"]
    x = np.array([[1, 0], [0, 1], [0.9, 0.1], [0.2, 0.8]], dtype=np.float32)
    labels = {"t1": "a", "t2": "b", "v1": "a", "v2": "a"}
    splits = {"t1": "train", "t2": "train", "v1": "val", "v2": "val"}
    accuracy, n = validation_accuracy(
        space, {"text": Features(ids, ids, x)}, labels, splits, k=1, temperature=0.1
    )
    assert (accuracy, n) == ({"knn": 0.5, "prototype": 0.5}, 2)


def _noisy_corpus() -> tuple[dict, dict, dict]:
    """Two classes along a line, one training label wrong beside each validation document:
    the kNN vote (k=1) follows the wrong label, the class means do not."""
    ids = ["a1", "a2", "a3", "x1", "b1", "b2", "b3", "y1", "va", "vb"]
    x = np.array(
        [
            [1, 0], [0.95, 0.05], [0.9, 0.1], [0.7, 0.3],  # a; a 'b' sits at (0.7, 0.3)
            [0, 1], [0.05, 0.95], [0.1, 0.9], [0.3, 0.7],  # b; an 'a' sits at (0.3, 0.7)
            [0.68, 0.32], [0.32, 0.68],  # validation: an a, a b
        ],
        dtype=np.float32,
    )  # fmt: skip
    labels = dict(zip(ids, "aaabbbbaab", strict=True))
    splits = {d: "val" if d.startswith("v") else "train" for d in ids}
    return {"text": Features(ids, ids, x)}, labels, splits


def test_the_rule_better_on_validation_is_kept_and_can_be_pinned(tmp_path):
    frozen, labels, splits = _noisy_corpus()

    def params(**train):
        train = {"tune_encoder": False, "choose": "frozen", **train}
        return params_from_dict({"train": train, "evaluate": {"knn_k": 1}})

    fitted = fit_space(params(), tmp_path, frozen, labels, splits)
    (record,) = fitted.selection
    assert (record["val_knn_accuracy"], record["val_prototype_accuracy"]) == (0.0, 1.0)
    assert record["rule"] == "prototype" and record["val_accuracy"] == 1.0
    assert fitted.space.params["rule"] == "prototype"
    pinned = fit_space(params(rule="knn"), tmp_path, frozen, labels, splits)
    assert pinned.space.params["rule"] == "knn" and pinned.selection[0]["val_accuracy"] == 0.0
