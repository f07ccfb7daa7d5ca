"""Explanations on the hand-made index, with a keyword embedder standing in for the model."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from medsim.search.explain import explain, nearest_prototypes, split_sentences
from medsim.search.query import ItemRef

D1, D2, F1, F2 = (
    ItemRef("documents", 0),
    ItemRef("documents", 1),
    ItemRef("figures", 0),
    ItemRef("figures", 1),
)


class KeywordEncoder:
    """Embeds a sentence on e1 if it says 'alpha', e2 if 'beta', else e3: a checkable model."""

    space = SimpleNamespace(heads={"text": None, "caption": None})

    def __init__(self):
        self.calls = []

    def text(self, texts, head="text"):
        self.calls.append((list(texts), head))
        out = np.zeros((len(texts), 3), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i, 0 if "alpha" in t.lower() else 1 if "beta" in t.lower() else 2] = 1
        return out


def test_split_sentences_on_ends_semicolons_and_panels():
    text = "Mammogram of the breast. (B) Ultrasound of it; calcifications seen\nCT scan done."
    assert split_sentences(text) == [
        "Mammogram of the breast.",
        "(B) Ultrasound of it",
        "calcifications seen",
        "CT scan done.",
    ]
    assert split_sentences("e.g. One.") == []  # fragments under two words are dropped
    assert split_sentences(None) == []


def test_nearest_prototypes_ranked(small_store):
    assert [p["label"] for p in nearest_prototypes(small_store, np.array([0.2, 0.9, 0]))] == [
        "y",
        "x",
    ]


def test_explain_without_model(small_store):
    out = explain(small_store, D1, F1, encoder=None)
    assert out.cosine == pytest.approx(2**-0.5, abs=1e-6)
    assert out.hamming == {8: 3}
    assert out.a["id"] == "d1" and out.b["type"] == "figure" and "text" not in out.a
    # d2 (0 to A, 0.707 to B) is closer to both than f2 (-1 to A)
    assert [n["id"] for n in out.shared_neighbours] == ["d2", "f2"]
    assert out.shared_neighbours[0]["score_b"] == pytest.approx(2**-0.5, abs=1e-6)
    assert [p["label"] for p in out.prototypes["a"]] == ["x", "y"]
    assert out.sentences == {}
    assert out.to_dict()["hamming"] == {"8": 3}


def test_explain_scores_each_sentence_against_the_other_item(small_store):
    encoder = KeywordEncoder()
    out = explain(small_store, D1, D2, encoder=encoder, top=2)
    # A's text "Alpha one. Beta two; gamma three": against B = e2 the 'beta' part weighs most
    assert [s["sentence"] for s in out.sentences["a_toward_b"]] == ["Beta two", "Alpha one."]
    assert [s["score"] for s in out.sentences["a_toward_b"]] == [1.0, 0.0]
    assert out.sentences["b_toward_a"] == [{"sentence": "Delta four.", "score": 0.0}]
    assert encoder.calls[0] == (["Alpha one.", "Beta two", "gamma three"], "text")
