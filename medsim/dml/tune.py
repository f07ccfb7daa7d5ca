"""Tuning the text encoder itself with the metric-learning loss, then WiSE-FT interpolation.

Heads over frozen features cannot add what the encoder does not already separate, and a
class-trained head forgets everything the labels do not name. So the train stage tunes the
language model: the top ``train.tune_layers`` transformer layers (the rest frozen, their
outputs cached by :class:`~medsim.encoders.layers.SplitEncoder`) learn from

- the ``loss`` registry entry (pml loss + miner) over M-per-class batches of training
  documents;
- ``train.retrieval_weight`` x symmetric InfoNCE between each document's title and its
  document, which keeps search by a short query working;
- ``train.cross_modal_weight`` x symmetric InfoNCE between each caption or table and its
  document's text.

Then the tuned weights are interpolated with the original ones (WiSE-FT, Wortsman et al.
2022): ``train.interpolation`` is the weight of the tuned model (1 = tuned only, 0 = the
original encoder).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from medsim.config import TrainParams
from medsim.dml.data import Features
from medsim.dml.losses import alignment_loss, build_objective
from medsim.dml.sampling import class_balanced_batches
from medsim.dml.steps import Optimisers, loss_optimiser, reproducible, run_steps
from medsim.encoders.cache import EmbeddingCache, content_hash
from medsim.encoders.layers import SplitEncoder
from medsim.encoders.windows import POOLING
from medsim.errors import MedsimError
from medsim.names import Modality

__all__ = [
    "PART_MODALITIES",
    "TextItems",
    "TunedText",
    "interpolate",
    "read_text_items",
    "tune_text_encoder",
    "tuning_dtype",
]

log = logging.getLogger(__name__)

# With a few labelled documents per class an epoch is one or two steps; like SetFit, tuning
# then draws batches from them again until it has taken this many steps.
MIN_TUNE_STEPS = 20

# text modalities besides documents: modality in the space -> (input table, id column, content)
PART_MODALITIES = {m.value: m.embeddings for m in (Modality.CAPTION, Modality.TABLE)}


@dataclass
class TextItems:
    """The texts of a corpus that the text encoder embeds, as the embed stage builds them."""

    doc_ids: list[str]
    texts: list[str]  # title + main text
    titles: list[str]
    # modality ("caption", "table") -> (item ids, doc_ids, texts)
    parts: dict[str, tuple[list[str], list[str], list[str]]] = field(default_factory=dict)

    def subset(self, doc_ids: set[str]) -> TextItems:
        """Only the documents in ``doc_ids`` and their parts."""
        keep = [i for i, d in enumerate(self.doc_ids) if d in doc_ids]
        parts = {}
        for modality, (ids, docs, texts) in self.parts.items():
            rows = [i for i, d in enumerate(docs) if d in doc_ids]
            parts[modality] = (
                [ids[i] for i in rows],
                [docs[i] for i in rows],
                [texts[i] for i in rows],
            )
        return TextItems(
            [self.doc_ids[i] for i in keep],
            [self.texts[i] for i in keep],
            [self.titles[i] for i in keep],
            parts,
        )


def read_text_items(root: Path) -> TextItems:
    """Documents, captions and tables under ``root/data`` with the embed stage's content rule."""
    from medsim.encoders.embed import SOURCES

    def rows(source) -> list[dict]:
        path = root / source.input
        if not path.is_file() or not pq.ParquetFile(path).metadata.num_rows:
            return []
        return pq.read_table(path, columns=source.read_columns()).to_pylist()

    docs = [(r, SOURCES["text"].content(r)) for r in rows(SOURCES["text"])]
    docs = [(r, text) for r, text in docs if text]
    items = TextItems(
        [r["doc_id"] for r, _ in docs],
        [text for _, text in docs],
        [(r["title"] or "").strip() for r, _ in docs],
    )
    for modality, name in PART_MODALITIES.items():
        source = SOURCES[name]
        found = [(r, source.content(r)) for r in rows(source)]
        found = [(r, text) for r, text in found if text]
        if found:
            items.parts[modality] = (
                [r[source.id_column] for r, _ in found],
                [r["doc_id"] for r, _ in found],
                [text for _, text in found],
            )
    return items


def interpolate(
    original: Mapping[str, torch.Tensor], tuned: Mapping[str, torch.Tensor], weight: float
) -> dict[str, torch.Tensor]:
    """WiSE-FT: ``(1 - weight) * original + weight * tuned`` for every floating tensor."""
    if not 0.0 <= weight <= 1.0:
        raise MedsimError(f"train.interpolation must be within [0, 1], got {weight}")
    out = {}
    for key, value in tuned.items():
        if value.is_floating_point():
            out[key] = (1.0 - weight) * original[key] + weight * value
        else:
            out[key] = value.clone()
    return out


class TunedText:
    """The tuned (and interpolated) encoder as the rest of the pipeline uses it.

    ``encode`` embeds texts (vectors cached by this model's fingerprint and the content when
    a cache folder is given); ``features`` embeds a corpus's documents and parts.
    """

    def __init__(self, split: SplitEncoder, cache_root: Path | None = None) -> None:
        self.split = split
        self.dim = split.dim
        digest = hashlib.sha256(split.lower_key.encode())
        digest.update(f"{split.windows!r}/{POOLING}".encode())  # how long texts are read
        for key, value in sorted(split.upper_state().items()):
            digest.update(key.encode())
            digest.update(value.cpu().contiguous().numpy().tobytes())
        self.fingerprint = digest.hexdigest()
        self.cache = (
            EmbeddingCache(cache_root, self.fingerprint, self.dim)
            if cache_root is not None
            else None
        )

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if self.cache is None:
            return self.split.encode(texts)
        hashes = [content_hash(self.fingerprint, t) for t in texts]
        found = self.cache.get(hashes)
        todo = {h: t for h, t in zip(hashes, texts, strict=True) if h not in found}
        if todo:
            vectors = self.split.encode(list(todo.values()))
            self.cache.put(list(todo), vectors)
            found.update(zip(todo, vectors, strict=True))
        if not hashes:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[h] for h in hashes]).astype(np.float32, copy=False)

    def features(self, items: TextItems) -> dict[str, Features]:
        """``text`` (one row per document) and each part modality, embedded by this encoder."""
        out: dict[str, Features] = {}
        if items.doc_ids:
            out["text"] = Features(
                list(items.doc_ids), list(items.doc_ids), self.encode(items.texts)
            )
        for modality, (ids, docs, texts) in items.parts.items():
            if ids:
                out[modality] = Features(list(ids), list(docs), self.encode(texts))
        return out


def _pairs_with_docs(items: TextItems, rows: np.ndarray) -> list[tuple[str, list[str], np.ndarray]]:
    """(modality, part texts, training-row position of the part's document) per part modality."""
    position = {items.doc_ids[r]: i for i, r in enumerate(rows)}
    found = []
    for modality, (_, docs, texts) in items.parts.items():
        keep = [i for i, d in enumerate(docs) if d in position]
        if keep:
            found.append(
                (modality, [texts[i] for i in keep], np.array([position[docs[i]] for i in keep]))
            )
    return found


@dataclass
class _TuneInputs:
    """Lower-layer states of what tuning reads: training documents (each a list of windows)
    with their class index, their titles, and each part modality's texts (windows too) with their
    documents' positions. A step reads one window of a long text, drawn by ``pick``, so over
    the steps tuning sees whole documents at the cost of one window each."""

    doc_states: list[list[np.ndarray]]
    y: np.ndarray
    title_states: list[np.ndarray]
    title_of: dict[int, int]  # training-row position -> row of title_states
    parts: list[tuple[str, list[list[np.ndarray]], np.ndarray]]
    pick: np.random.RandomState

    def doc(self, i: int) -> np.ndarray:
        return self.window(self.doc_states[int(i)])

    def window(self, windows: list[np.ndarray]) -> np.ndarray:
        """The opening window half the time, else one of the others: as much as each weighs in
        the text's vector (:func:`medsim.encoders.windows.pool_windows`)."""
        if len(windows) == 1 or self.pick.random_sample() < 0.5:
            return windows[0]
        return windows[1 + self.pick.randint(len(windows) - 1)]


def _window_states(split: SplitEncoder, texts: Sequence[str]) -> list[list[np.ndarray]]:
    """Lower-layer states of each text's windows."""
    pieces, owner = split.pieces(texts)
    out: list[list[np.ndarray]] = [[] for _ in texts]
    for state, text in zip(split.lower(pieces), owner, strict=True):
        out[text].append(state)
    return out


def _tune_inputs(
    split: SplitEncoder,
    items: TextItems,
    labels: Mapping[str, str],
    splits: Mapping[str, str],
    seed: int,
) -> tuple[_TuneInputs, list[str]]:
    """The labelled training documents' inputs (lower layers cached) and the class names."""
    rows = np.array(
        [i for i, d in enumerate(items.doc_ids) if splits.get(d) == "train" and d in labels],
        dtype=np.int64,
    )
    classes = sorted({labels[items.doc_ids[r]] for r in rows})
    if len(classes) < 2:
        raise MedsimError(
            f"tuning the text encoder needs labelled training documents of >= 2 classes; "
            f"found {len(rows)} documents of {len(classes)} class(es)"
        )
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[labels[items.doc_ids[r]]] for r in rows], dtype=np.int64)
    doc_states = _window_states(split, [items.texts[r] for r in rows])
    titles = [items.titles[r] for r in rows]
    has_title = np.array(
        [bool(t) and t != items.texts[r] for t, r in zip(titles, rows, strict=True)]
    )
    title_states = split.lower([t for t, h in zip(titles, has_title, strict=True) if h])
    title_of = {int(i): j for j, i in enumerate(np.flatnonzero(has_title))}
    parts = [
        (modality, _window_states(split, texts), doc_pos)
        for modality, texts, doc_pos in _pairs_with_docs(items, rows)
    ]
    pick = np.random.RandomState(seed)  # its own stream: the batches stay as they were
    return _TuneInputs(doc_states, y, title_states, title_of, parts, pick), classes


def _optimisers(
    split: SplitEncoder, objective: Any, params: TrainParams, n_steps: int
) -> Optimisers:
    """AdamW over the tuned layers with linear warm-up (a tenth of the steps) and decay, their
    gradient clipped to norm 1; Adam for the loss's own parameters (proxies), when it has any."""
    weights = [p for p in split.upper_layers.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(weights, lr=params.tune_lr, weight_decay=0.01)
    warmup = max(1, n_steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min((s + 1) / warmup, max(0.0, (n_steps - s) / (n_steps - warmup + 1))),
    )
    return Optimisers(optimizer, loss_optimiser(objective, params), schedule, clip=weights)


def _step_terms(
    upper: Callable[[Sequence[np.ndarray]], torch.Tensor],
    inputs: _TuneInputs,
    batch: np.ndarray,
    step: int,
    part_orders: list[np.ndarray],
    objective: Any,
    align: Any,
    params: TrainParams,
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(class, retrieval, cross-modal) loss terms of one tuning step; ``upper`` is the tuned
    layers' forward pass (:meth:`SplitEncoder.upper` at the tuning dtype)."""
    z = upper([inputs.doc(i) for i in batch])
    class_term = objective(z, torch.from_numpy(inputs.y[batch]).to(z.device))
    retrieval_term = torch.zeros((), device=z.device)
    titled = [j for j, i in enumerate(batch) if int(i) in inputs.title_of]
    if params.retrieval_weight > 0 and len(titled) > 1:
        t = upper([inputs.title_states[inputs.title_of[int(batch[j])]] for j in titled])
        keys = torch.arange(len(titled), device=z.device)
        retrieval_term = align(t, keys, z[titled], keys)
    cross_term = torch.zeros((), device=z.device)
    if params.cross_modal_weight > 0:
        for (_, states, doc_pos), order in zip(inputs.parts, part_orders, strict=True):
            take = np.take(
                order, np.arange(step * batch_size, (step + 1) * batch_size), mode="wrap"
            )
            take = np.unique(take)
            zp = upper([inputs.window(states[i]) for i in take])
            zd = upper([inputs.doc(i) for i in doc_pos[take]])
            keys = torch.from_numpy(doc_pos[take]).to(z.device)
            cross_term = cross_term + align(zp, keys, zd, keys) / len(inputs.parts)
    return class_term, retrieval_term, cross_term


def tuning_dtype(device: torch.device, precision: str) -> torch.dtype:
    """The dtype the tuned layers compute in (``train.tune_precision``); their weights, the
    loss and the vectors stay float32. ``auto`` is bfloat16 where the hardware computes it
    natively (a CUDA GPU that has it; a CPU with AVX512-BF16 or AMX, where a tuning step takes
    about 0.6 of its float32 time), float32 elsewhere, since emulated bfloat16 is slower."""
    if precision != "auto":
        return getattr(torch, precision)
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported(including_emulation=False)  # Ampere and later
    else:  # private probes, so a torch without them falls back to float32
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        native = any(getattr(torch.cpu, name, lambda: False)() for name in probes)
    return torch.bfloat16 if native else torch.float32


def tune_text_encoder(
    split: SplitEncoder,
    items: TextItems,
    labels: Mapping[str, str],
    splits: Mapping[str, str],
    params: TrainParams,
    loss: str,
    seed: int,
) -> list[dict]:
    """Tune ``split``'s upper layers in place (see the module docstring), then interpolate
    them with their original weights. Returns one record per logged step."""
    start = time.perf_counter()
    inputs, classes = _tune_inputs(split, items, labels, splits, seed)
    dtype = tuning_dtype(split.device, params.tune_precision)
    upper = functools.partial(split.upper, dtype=dtype)
    log.info(
        "tuning the top %d layers of %s in %s: %d documents, %d classes, %d titles, parts %s; "
        "lower layers ready in %.1f s",
        *(len(split.upper_layers), split.base.spec, dtype, len(inputs.y), len(classes)),
        *(len(inputs.title_states), {k: len(s) for k, s, _ in inputs.parts}),
        time.perf_counter() - start,
    )
    original = split.upper_state()
    with reproducible(seed) as rng:
        objective = build_objective(loss, params, len(classes), split.dim)
        objective.loss.to(split.device)  # proxies, where the loss has them
        align = alignment_loss(params.temperature)
        batch_size = min(params.tune_batch_size, objective.max_batch or params.tune_batch_size)
        epoch_size = max(len(inputs.y) * params.tune_epochs, MIN_TUNE_STEPS * batch_size)
        batches = class_balanced_batches(inputs.y, params.m_per_class, batch_size, epoch_size, rng)
        optimisers = _optimisers(split, objective, params, len(batches))
        part_orders = [rng.permutation(len(pos)) for _, _, pos in inputs.parts]

        def terms(step: int, batch: np.ndarray) -> dict[str, torch.Tensor]:
            parts = _step_terms(
                upper, inputs, batch, step, part_orders, objective, align, params, batch_size
            )
            return _weighted(params, *parts)

        split.model.train()
        steps = run_steps(batches, terms, optimisers, progress=f"tune encoder ({loss})")
    history = [{"step": step, **record} for step, record in enumerate(steps)]
    split.model.eval()
    split.load_upper(interpolate(original, split.upper_state(), params.interpolation))
    log.info(
        "tuned in %.1f s (%d steps, loss %.3f -> %.3f); tuned weight %.2f",
        time.perf_counter() - start,
        len(batches),
        history[0]["loss"],
        float(np.mean([h["loss"] for h in history[-10:]])),
        params.interpolation,
    )
    return history


def _weighted(
    params: TrainParams, class_term: torch.Tensor, retrieval: torch.Tensor, cross: torch.Tensor
) -> dict[str, torch.Tensor]:
    """One step's terms and their total as the step loop records them."""
    total = class_term + params.retrieval_weight * retrieval + params.cross_modal_weight * cross
    return {
        "loss": total,
        "class_loss": class_term,
        "retrieval_loss": retrieval,
        "cross_modal_loss": cross,
    }


def save_tuned_model(split: SplitEncoder, folder: Path, meta: Mapping[str, object]) -> None:
    """The whole model (frozen and tuned layers) in sentence-transformers layout."""
    from medsim.encoders.adapt import save_model

    folder.mkdir(parents=True, exist_ok=True)
    save_model(split.base, folder, split.max_tokens)  # split.model is split.base's model
    (folder / "medsim_tune.json").write_text(json.dumps(dict(meta), indent=2) + "\n")
