"""Whole documents through a fixed-size model window: overlapping windows, pooled into one.

A transformer reads at most ``max_tokens`` tokens; a PubMed abstract runs to 300-500 MiniLM
tokens, so cutting it reads half of most documents (and cut at 128 tokens, a frozen MiniLM
loses 7 points of accuracy on a cancer corpus). A text longer than the window is split into
windows of ``size`` content tokens that start ``stride`` tokens apart (the last one ends at
the text's end), each window is encoded on its own, and the text's vector is its opening
window's unit vector plus the mean of the others' (the opening weighs as much as the rest
together: :data:`POOLING`), normalised again.

Windows are substrings of the text cut at word boundaries (a fast tokenizer's offsets and
word ids), so each one tokenizes as it did inside the whole text and any encoder (its own
prompt and special tokens included) reads it as a normal text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from transformers import PreTrainedTokenizerBase

from medsim.errors import MedsimError

__all__ = ["LONG_TEXT", "POOLING", "Windows", "pool_windows", "split_windows"]

# embed.long_text: how a text longer than the model's window is read
LONG_TEXT = ("windows", "truncate")
# How windows pool, in fingerprints: the opening window weighs as much as all the others
# together. An abstract states its topic up front (title, aim); the rest adds what the
# opening does not name. kNN@10 on validation, frozen MiniLM at 256 tokens: OHSUMED (357
# documents against 1,000 training ones) opening only 0.619, plain mean 0.602, this 0.613;
# HoC single-hallmark (152 against 584) 0.776, 0.809, 0.822 (benchmarks/window_pooling.py).
POOLING = "opening+mean(rest)"


@dataclass(frozen=True)
class Windows:
    """``size`` content tokens a window (the model's window less its special and prompt
    tokens), ``stride`` tokens between window starts."""

    size: int
    stride: int

    def __post_init__(self) -> None:
        if self.size < 1 or not 0 < self.stride <= self.size:
            raise MedsimError(
                f"text windows need 0 < stride <= size, got size {self.size}, stride {self.stride}"
            )

    @classmethod
    def for_model(
        cls, tokenizer: PreTrainedTokenizerBase, max_tokens: int, stride: int, prompt: str = ""
    ) -> Windows:
        """Windows that fill ``max_tokens`` once the tokenizer's special tokens and the
        ``prompt`` are added; ``stride`` is capped at the window size."""
        reserved = tokenizer.num_special_tokens_to_add(pair=False)
        if prompt:
            reserved += len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        size = max(1, max_tokens - reserved)
        return cls(size, min(stride, size))


def _starts(word_ids: Sequence[int | None], size: int, stride: int) -> list[int]:
    """Token positions where windows start: every ``stride`` tokens, moved back to the first
    token of the word there, and a last window ending at the text's end (starting at a word
    too, so it can be a few tokens short)."""
    n = len(word_ids)

    def inside_word(i: int) -> bool:
        return 0 < i < n and word_ids[i] is not None and word_ids[i - 1] == word_ids[i]

    starts = [0]
    while starts[-1] + size < n:
        at = min(starts[-1] + stride, n - size)
        back = at
        while inside_word(back):
            back -= 1
        if back <= starts[-1]:  # a word longer than the stride, or the last window: start
            while inside_word(at):  # after the word instead (a last window a bit short)
                at += 1
            back = max(starts[-1] + 1, min(at, n - 1))
        starts.append(back)
    return starts


def _spans(
    offsets: Sequence[tuple[int, int]], word_ids: Sequence[int | None], windows: Windows
) -> list[tuple[int, int]]:
    """Character spans of one text's windows."""
    n = len(offsets)
    spans = []
    for start in _starts(word_ids, windows.size, windows.stride):
        end = min(start + windows.size, n)
        while end < n and end > start + 1 and word_ids[end] == word_ids[end - 1]:
            end -= 1  # the window ends at a word's end, as the next one starts at a word
        spans.append((offsets[start][0], offsets[end - 1][1]))
    return spans


def split_windows(
    texts: Sequence[str], tokenizer: PreTrainedTokenizerBase, windows: Windows
) -> tuple[list[str], np.ndarray, int]:
    """The pieces to encode (a text within the window is its own piece), the text each piece
    belongs to, and how many texts were longer than the window."""
    if not tokenizer.is_fast:
        raise MedsimError(
            "embed.long_text: windows needs a fast (Rust) tokenizer for word offsets; "
            f"{type(tokenizer).__name__} is not one: set embed.long_text truncate"
        )
    pieces: list[str] = []
    owner: list[int] = []
    longer = 0
    batch = 256
    for first in range(0, len(texts), batch):
        chunk = list(texts[first : first + batch])
        encoded = tokenizer(
            chunk, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        for i, text in enumerate(chunk):
            offsets = encoded["offset_mapping"][i]
            if len(offsets) <= windows.size:
                pieces.append(text)
                owner.append(first + i)
                continue
            longer += 1
            for a, b in _spans(offsets, encoded.word_ids(i), windows):
                pieces.append(text[a:b])
                owner.append(first + i)
    return pieces, np.asarray(owner, dtype=np.int64), longer


def pool_windows(vectors: np.ndarray, owner: np.ndarray, n_texts: int) -> np.ndarray:
    """One unit vector per text: its opening window's vector plus the mean of the others',
    normalised (see :data:`POOLING`); a text of one piece keeps its vector exactly. Pieces
    come in text order, as :func:`split_windows` gives them."""
    vectors = np.asarray(vectors, dtype=np.float32)
    counts = np.bincount(owner, minlength=n_texts)
    _, first = np.unique(owner, return_index=True)
    rest = np.zeros((n_texts, vectors.shape[1]), dtype=np.float32)
    np.add.at(rest, owner, vectors)
    rest[owner[first]] -= vectors[first]
    out = np.zeros_like(rest)
    out[owner[first]] = vectors[first]
    several = counts > 1
    out[several] += rest[several] / (counts[several, None] - 1)
    norms = np.linalg.norm(out[several], axis=1, keepdims=True)
    out[several] /= np.where(norms > 0, norms, 1.0)
    return out
