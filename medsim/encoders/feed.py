"""Tokenized batches made ahead of the model: length-sorted, in CPU worker processes.

One process tokenizing for a GPU caps it (docs/benchmarks.md, "embed on a GPU": 3,186 docs/s
tokenized against 27,920 through the model alone). :func:`tokenized_batches` hands the
tokenizing to a torch ``DataLoader`` whose ``workers`` processes each tokenize whole batches
while the model runs the previous ones, with pinned memory on a GPU so the copy overlaps too.
Batches are cut from the texts sorted longest first (as sentence-transformers' ``encode``
sorts them: the least padding per batch) and carry their rows, so the caller puts each vector
back in input order. ``workers=0`` tokenizes in the calling process, batch by batch.

A long text's windows are found by a first tokenizer pass (:func:`~medsim.encoders.windows.
split_windows`) as costly as the second; :func:`split_ahead` runs it over chunks of texts in
the same kind of workers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from functools import partial

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from transformers import PreTrainedTokenizerBase

from medsim.encoders.windows import Windows, split_windows

__all__ = ["auto_workers", "length_sorted_batches", "split_ahead", "tokenized_batches"]

# texts per window-split task: the embed stage hands over 16 model batches (1,024 texts at
# batch 64) a call, which makes four tasks
SPLIT_CHUNK = 256

Features = dict[str, object]


def length_sorted_batches(texts: Sequence[str], batch_size: int) -> list[np.ndarray]:
    """Row numbers of ``texts`` in batches of ``batch_size``, longest texts first."""
    order = np.argsort([-len(t) for t in texts], kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def auto_workers(device: torch.device) -> int:
    """Tokenizing workers when ``embed.tokenize_workers`` is auto: none on the CPU (the
    model wants every core there), and on a GPU all cores but the one driving the card, at
    most 8 (one worker tokenizes about 3,000 documents/s; see the module docstring)."""
    if device.type != "cuda":
        return 0
    return max(1, min(8, (os.cpu_count() or 2) - 1))


class _Batches(Dataset):
    """Batch ``i`` of :func:`length_sorted_batches`, tokenized: (rows, features)."""

    def __init__(
        self,
        texts: Sequence[str],
        batches: list[np.ndarray],
        preprocess: Callable[..., Features],
        prompt: str | None,
    ) -> None:
        self.texts = texts
        self.batches = batches
        self.preprocess = preprocess
        self.prompt = prompt

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[np.ndarray, Features]:
        rows = self.batches[i]
        return rows, self.preprocess([self.texts[j] for j in rows], prompt=self.prompt)


def tokenized_batches(
    texts: Sequence[str],
    preprocess: Callable[..., Features],
    *,
    batch_size: int,
    workers: int = 0,
    prompt: str | None = None,
    pin_memory: bool = False,
) -> Iterator[tuple[np.ndarray, Features]]:
    """(rows, features) per length-sorted batch, in batch order, tokenized by ``preprocess``
    (a sentence-transformers model's) in ``workers`` processes ahead of the consumer."""
    dataset = _Batches(texts, length_sorted_batches(texts, batch_size), preprocess, prompt)
    if not len(dataset):
        return iter(())
    workers = min(workers, len(dataset))
    loader = DataLoader(
        dataset,
        batch_size=None,  # the dataset yields whole batches
        num_workers=workers,
        pin_memory=pin_memory,
        prefetch_factor=4 if workers else None,
        # fork: the workers inherit the tokenizer instead of unpickling the whole model
        multiprocessing_context="fork" if workers else None,
    )
    return iter(loader)


def _same(item: object) -> object:
    return item


class _Chunks(Dataset):
    """``fn`` over consecutive chunks of ``items``."""

    def __init__(self, items: Sequence, chunk: int, fn: Callable) -> None:
        self.items, self.chunk, self.fn = items, chunk, fn

    def __len__(self) -> int:
        return -(-len(self.items) // self.chunk)

    def __getitem__(self, i: int) -> object:
        return self.fn(self.items[i * self.chunk : (i + 1) * self.chunk])


def split_ahead(
    texts: Sequence[str],
    tokenizer: PreTrainedTokenizerBase,
    windows: Windows,
    workers: int = 0,
    chunk: int = SPLIT_CHUNK,
) -> tuple[list[str], np.ndarray, int]:
    """:func:`~medsim.encoders.windows.split_windows` of ``texts`` (the same pieces, owners
    and count), run over chunks of ``chunk`` texts in ``workers`` processes."""
    tasks = -(-len(texts) // chunk)
    if workers == 0 or tasks < 2:
        return split_windows(texts, tokenizer, windows)
    split = partial(split_windows, tokenizer=tokenizer, windows=windows)
    loader = DataLoader(
        _Chunks(texts, chunk, split),
        batch_size=None,
        num_workers=min(workers, tasks),
        collate_fn=_same,  # keep the owners a numpy array
        multiprocessing_context="fork",
    )
    pieces: list[str] = []
    owners, longer = [], 0
    for i, (part, owner, part_longer) in enumerate(loader):
        pieces.extend(part)
        owners.append(np.asarray(owner) + i * chunk)
        longer += part_longer
    return pieces, np.concatenate(owners), longer
