"""Whole texts through a fixed window: where windows start and end, and how they pool."""

from __future__ import annotations

import numpy as np
import pytest

from medsim.encoders.windows import Windows, _starts, pool_windows, split_windows
from medsim.errors import MedsimError


def test_starts_every_stride_and_the_last_window_ends_at_the_end():
    words = list(range(10))  # ten one-token words
    assert _starts(words, 4, 2) == [0, 2, 4, 6]  # 6 + 4 = 10: the last window is full
    assert _starts(words, 4, 4) == [0, 4, 6]
    assert _starts(words, 10, 5) == [0]  # fits: one window


def test_a_window_never_starts_inside_a_word():
    # word 1 spans tokens 1-3: a start at token 2 moves back to 1
    words = [0, 1, 1, 1, 2, 3, 4, 5]
    assert _starts(words, 4, 2) == [0, 1, 4]


def test_split_windows_keeps_short_texts_whole_and_cuts_long_ones_at_words(minilm):
    long = " ".join(f"word{i}" for i in range(300))
    texts = ["a short text", long]
    windows = Windows(size=100, stride=50)
    pieces, owner, longer = split_windows(texts, minilm.tokenizer, windows)
    assert longer == 1 and pieces[0] == "a short text" and owner[0] == 0
    assert all(o == 1 for o in owner[1:])
    # every piece is a run of whole words of the text, within the window, first and last kept
    for piece in pieces[1:]:
        assert piece in long and piece.split()[0].startswith("word")
        assert len(minilm.tokenizer(piece, add_special_tokens=False)["input_ids"]) <= 100
    assert pieces[1].startswith("word0 ") and pieces[-1].endswith("word299")


def test_for_model_leaves_room_for_special_and_prompt_tokens(minilm):
    assert Windows.for_model(minilm.tokenizer, 256, 128) == Windows(254, 128)
    prompted = Windows.for_model(minilm.tokenizer, 128, 500, prompt="query: ")
    assert prompted.size == prompted.stride == 126 - 2  # "query", ":"


def test_bad_windows_are_one_line_errors():
    with pytest.raises(MedsimError, match="stride"):
        Windows(size=10, stride=0)


def test_pool_windows_opening_plus_mean_of_the_rest_and_single_pieces_exact():
    vectors = np.array(
        [[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]],
        dtype=np.float32,
    )
    pooled = pool_windows(vectors, np.array([0, 1, 1, 2, 2, 2]), 3)
    np.testing.assert_array_equal(pooled[0], vectors[0])
    # two windows: opening + the other
    np.testing.assert_allclose(pooled[1], np.array([0.6, 1.8]) / np.hypot(0.6, 1.8), rtol=1e-6)
    # three: (0, 1) + mean((1, 0), (0, 1)) = (0.5, 1.5), normalised
    np.testing.assert_allclose(pooled[2], np.array([0.5, 1.5]) / np.hypot(0.5, 1.5), rtol=1e-6)
