"""Tokenizing ahead of the model: batches sorted by length, every row once, and the same
vectors whether the tokenizing happens in worker processes or in the caller."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from medsim.encoders.feed import (
    auto_workers,
    length_sorted_batches,
    split_ahead,
    tokenized_batches,
)
from medsim.encoders.windows import split_windows
from tests.encoders.test_text import TEXTS


def test_batches_are_length_sorted_and_cover_every_row():
    texts = ["bb", "a", "dddd", "ccc", "eeeee"]
    batches = length_sorted_batches(texts, 2)
    assert [b.tolist() for b in batches] == [[4, 2], [3, 0], [1]]
    assert length_sorted_batches([], 2) == []


def test_workers_give_the_callers_batches(minilm):
    """Two worker processes hand back the batches, rows and token ids the caller makes."""
    settings = {"batch_size": 2, "prompt": None}
    alone = list(tokenized_batches(TEXTS, minilm.sentence_model.preprocess, **settings))
    ahead = list(tokenized_batches(TEXTS, minilm.sentence_model.preprocess, workers=2, **settings))
    assert len(alone) == len(ahead) == 3
    for (rows_a, feats_a), (rows_b, feats_b) in zip(alone, ahead, strict=True):
        assert np.asarray(rows_a).tolist() == np.asarray(rows_b).tolist()
        assert torch.equal(feats_a["input_ids"], feats_b["input_ids"])
        assert torch.equal(feats_a["attention_mask"], feats_b["attention_mask"])


def test_vectors_are_the_same_with_workers(minilm):
    """The windows of the long text included; and the same as before tokenizing moved out of
    sentence-transformers' encode (its vectors, within float noise)."""
    ahead = replace(minilm, tokenize_workers=2)
    np.testing.assert_array_equal(ahead.encode(TEXTS), minilm.encode(TEXTS))
    bare = minilm.sentence_model.encode(TEXTS[2:], batch_size=4, convert_to_numpy=True)
    np.testing.assert_allclose(minilm.encode_pieces(TEXTS[2:]), bare, atol=1e-5)


def test_auto_workers_only_on_a_gpu():
    assert auto_workers(torch.device("cpu")) == 0
    assert 1 <= auto_workers(torch.device("cuda")) <= 8


def test_window_split_in_workers_is_the_callers(minilm):
    """Chunks of two texts in two workers: the same pieces, owners (renumbered per chunk)
    and count of long texts as one pass in the caller."""
    texts = [TEXTS[1], *TEXTS, TEXTS[1]]
    expected = split_windows(texts, minilm.tokenizer, minilm.windows)
    got = split_ahead(texts, minilm.tokenizer, minilm.windows, workers=2, chunk=2)
    assert got[0] == expected[0] and got[2] == expected[2] == 3
    np.testing.assert_array_equal(got[1], expected[1])
