"""Training the shared space: class-level metric learning + cross-modal alignment + hashing.

:func:`train_space` is pure apart from an optional dvclive log: it takes feature matrices and
labels and returns the trained :class:`~medsim.dml.model.SharedSpace`, so other stages can
train it on any features (e.g. a TF-IDF baseline); :func:`medsim.dml.fit.fit_space` builds the
candidate spaces with it and keeps the best on validation. The DVC stage around them is
:mod:`medsim.dml.stage`; the rows, pairs and class pool it reads are :mod:`medsim.dml.rows`,
its validation :mod:`medsim.dml.validation`, its step loop :mod:`medsim.dml.steps`.

Each step adds three terms:

- class signal: the ``loss`` registry entry (pml loss + miner) over a batch drawn by pml's
  ``MPerClassSampler`` from every labelled training item of every modality (a figure carries
  its document's label), so same-label items are pulled together across modalities too;
- cross-modal alignment (times ``train.cross_modal_weight``): symmetric InfoNCE (pml NT-Xent)
  between each part (caption, table, image) and its own document's text, and between each
  image and its own caption (images sharing a caption text count as positives of each other);
- hashing: for each code size, the relaxed codes' cosine similarities fit the (detached)
  shared-space similarities, plus ``train.quantization_weight`` times the distance of the
  codes from {-1, +1}.

The best validation epoch (:func:`~medsim.dml.validation.validation_scores`) is kept and
training stops after ``train.patience`` epochs without improvement.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from medsim.config import TrainParams
from medsim.dml.data import Features
from medsim.dml.heads import quantization_loss
from medsim.dml.live import Live, log_best
from medsim.dml.losses import alignment_loss, build_objective
from medsim.dml.model import SharedSpace
from medsim.dml.rows import (
    ClassPool,
    ModalityRows,
    Pairs,
    fit_linear_heads,
    positive_pairs,
    prepare_modalities,
    project_rows,
)
from medsim.dml.sampling import class_balanced_batches
from medsim.dml.steps import Optimisers, loss_optimiser, reproducible, run_steps
from medsim.dml.validation import frozen_scores, validation_scores
from medsim.errors import MedsimError

__all__ = ["train_space"]

log = logging.getLogger(__name__)


@dataclass
class _Run:
    """What every training step reads: the space, its inputs, the loss terms, the optimisers."""

    space: SharedSpace
    modalities: dict[str, ModalityRows]
    pool: ClassPool
    pairs: list[Pairs]
    objective: Any
    align: Any
    residual: set[str]
    params: TrainParams
    optimisers: Optimisers
    batch_size: int


def train_space(
    features: Mapping[str, Features],
    labels: Mapping[str, str],
    splits: Mapping[str, str],
    params: TrainParams,
    loss: str,
    seed: int,
    log_dir: Path | None = None,
    head_types: Mapping[str, str] | None = None,
    text_model: str | None = None,
) -> tuple[SharedSpace, list[dict[str, Any]]]:
    """Train projection and hashing heads on frozen ``features``; see the module docstring.

    ``features``: modality -> (ids, doc_ids, matrix [n, d_modality]); ``labels``: doc_id -> class;
    ``splits``: doc_id -> train/val/test. Only ``train`` rows are learned from; ``val`` rows
    drive early stopping. Returns the space at its best validation epoch and one history dict
    per epoch (epoch 0 = untrained heads, with the frozen embeddings' scores beside them).
    Same inputs and seed give the same weights on the same machine.

    ``head_types``: modality -> "mlp" (default), "residual" or "identity" (see
    :mod:`medsim.dml.heads`); when any modality keeps its own dimension, the space takes it and
    the "mlp" heads (e.g. images) map into it. ``text_model`` is recorded in the space's
    config: the folder name of the tuned encoder that produced the text features.
    """
    modalities, classes = prepare_modalities(features, labels, splits)
    types = {name: (head_types or {}).get(name, "mlp") for name in modalities}
    kept = {modalities[n].x.shape[1] for n, t in types.items() if t in ("residual", "identity")}
    if len(kept) > 1:
        raise MedsimError(f"residual and identity heads need one input dimension, got {kept}")
    dim = kept.pop() if kept else params.dim
    with reproducible(seed) as rng:
        space = _new_space(modalities, types, dim, params, loss, text_model)
        run = _new_run(space, modalities, types, classes, params, loss)
        # identity heads only (a tuned encoder's text, no images): only the hashers learn,
        # for a fixed number of epochs, as validation MAP@R cannot move
        frozen_heads = not any(p.requires_grad for p in space.heads.parameters())
        epochs = min(params.epochs, max(1, params.patience)) if frozen_heads else params.epochs
        history = _fit_epochs(run, rng, epochs, frozen_heads, Live(log_dir), loss)
        space.params["seed"] = seed
    return space, history


def _new_space(
    modalities: Mapping[str, ModalityRows],
    types: Mapping[str, str],
    dim: int,
    params: TrainParams,
    loss: str,
    text_model: str | None,
) -> SharedSpace:
    """Untrained heads, standardised on the training rows; linear heads at their ridge start."""
    space = SharedSpace(
        {name: modality.x.shape[1] for name, modality in modalities.items()},
        dim=dim,
        hidden=params.hidden,
        bits=params.hash_bits,
        dropout=params.dropout,
        loss=loss,
        params=dataclasses.asdict(params),
        head_types=dict(types),
        text_model=text_model,
    )
    for name, modality in modalities.items():
        rows = np.flatnonzero(modality.split == "train")
        space.heads[name].fit_standardization(modality.x[torch.from_numpy(rows)])
    fit_linear_heads(space, modalities, types)
    return space


def _new_run(
    space: SharedSpace,
    modalities: dict[str, ModalityRows],
    types: Mapping[str, str],
    classes: list[str],
    params: TrainParams,
    loss: str,
) -> _Run:
    """The loss terms, optimisers and training pools of one ``train_space`` call."""
    objective = build_objective(loss, params, max(len(classes), 1), space.dim)
    align = alignment_loss(params.temperature)
    pool = ClassPool.of(modalities)
    pairs = positive_pairs(modalities, "train") if params.cross_modal_weight > 0 else []
    if len(np.unique(pool.label)) < 2 and not pairs:
        raise MedsimError(
            "nothing to learn from: the training split has fewer than two labelled classes "
            "and no cross-modal pairs"
        )
    optimisers = Optimisers(
        torch.optim.AdamW(space.parameters(), lr=params.lr, weight_decay=params.weight_decay),
        loss_optimiser(objective, params),
    )
    batch_size = min(params.batch_size, objective.max_batch or params.batch_size)
    log.info(
        "training %s heads (%s) on %d labelled rows, %d classes, %d pair sets; loss %s",
        len(modalities),
        ", ".join(modalities),
        len(pool.label),
        len(classes),
        len(pairs),
        loss,
    )
    residual = {n for n, t in types.items() if t == "residual"}
    return _Run(
        space,
        modalities,
        pool,
        pairs,
        objective,
        align,
        residual,
        params,
        optimisers,
        batch_size,
    )


def _fit_epochs(
    run: _Run,
    rng: np.random.RandomState,
    epochs: int,
    frozen_heads: bool,
    live: Live,
    loss: str,
) -> list[dict[str, Any]]:
    """Epochs with early stopping on validation MAP@R; loads the best epoch's weights into
    ``run.space`` and returns one history record per epoch (0: untrained)."""
    space, modalities, params = run.space, run.modalities, run.params
    val = validation_scores(space, modalities)
    history: list[dict[str, Any]] = [
        {
            "epoch": 0,
            "loss": None,
            "val_map_at_r": val.get("map_at_r"),
            "val": val,
            "frozen_val": frozen_scores(modalities),
        }
    ]
    live.log({"val_map_at_r": val.get("map_at_r")} if val else {})
    best_score = val.get("map_at_r", -np.inf)
    best_state, best_epoch, waited = copy.deepcopy(space.state_dict()), 0, 0
    has_val = bool(val) and not frozen_heads
    start = time.perf_counter()
    for epoch in tqdm(range(1, epochs + 1), desc=f"train {loss}", unit="epoch"):
        sums = _train_epoch(run, rng)
        val = validation_scores(space, modalities)
        record = {
            "epoch": epoch,
            **sums,
            "val_map_at_r": val.get("map_at_r"),
            "val": val,
            "seconds": time.perf_counter() - start,
        }
        history.append(record)
        live.log(
            {
                **{k: v for k, v in record.items() if k not in ("val", "seconds")},
                **{f"val/{k}": v for k, v in val.items() if k != "map_at_r"},
            }
        )
        score = val.get("map_at_r", -np.inf)
        if not has_val or score > best_score:
            best_score, best_epoch, waited = score, epoch, 0
            best_state = copy.deepcopy(space.state_dict())
        else:
            waited += 1
            if waited >= params.patience:
                log.info("early stop at epoch %d (best %d)", epoch, best_epoch)
                break
    space.load_state_dict(best_state)
    space.eval()
    space.params["best_epoch"] = best_epoch
    log_best(live, history, best_epoch)
    return history


def _train_epoch(run: _Run, rng: np.random.RandomState) -> dict[str, float]:
    """One pass over the class pool (or the pairs, without classes); mean terms per step."""
    run.space.train()
    use_classes = len(np.unique(run.pool.label)) >= 2
    epoch_size = len(run.pool.label) if use_classes else max(len(p.keys) for p in run.pairs)
    steps = max(1, int(np.ceil(epoch_size / run.batch_size)))
    batches = (
        class_balanced_batches(
            run.pool.label, run.params.m_per_class, run.batch_size, epoch_size, rng
        )
        if use_classes
        else [None] * steps
    )
    orders = [rng.permutation(len(p.keys)) for p in run.pairs]
    records = run_steps(
        batches, lambda step, batch: _step_terms(run, batch, orders, step), run.optimisers
    )
    return {k: sum(r[k] for r in records) / len(records) for k in records[0]}


def _step_terms(
    run: _Run, batch: np.ndarray | None, orders: list[np.ndarray], step: int
) -> dict[str, torch.Tensor]:
    """The loss terms of one step: total, class, alignment and hashing."""
    space, params = run.space, run.params
    z_all = []
    class_term = torch.zeros(())
    preserve_term = torch.zeros(())
    if batch is not None:
        z, y, preserve_term = _class_batch(run, batch)
        class_term = run.objective(z, y)
        z_all.append(z)
    align_term = torch.zeros(())
    for p, order in zip(run.pairs, orders, strict=True):
        take = _cyclic_slice(order, step, run.batch_size)
        za = project_rows(space, run.modalities[p.a], p.a, p.a_rows[take])
        zb = project_rows(space, run.modalities[p.b], p.b, p.b_rows[take])
        keys = torch.from_numpy(p.keys[take])
        align_term = align_term + run.align(za, keys, zb, keys) / len(run.pairs)
        z_all.extend([za, zb])
    hash_term = _hash_loss(space, torch.cat(z_all), params.quantization_weight)
    total = (
        class_term
        + params.cross_modal_weight * align_term
        + hash_term
        + params.preserve_weight * preserve_term
    )
    return {
        "loss": total,
        "class_loss": class_term,
        "align_loss": align_term,
        "hash_loss": hash_term,
    }


def _class_batch(run: _Run, batch: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The batch's rows projected modality by modality: (vectors, labels, preserve term of the
    residual heads)."""
    pool = run.pool
    zs, ys = [], []
    preserve_term = torch.zeros(())
    for i, name in enumerate(run.modalities):
        sel = batch[pool.modality[batch] == i]
        if len(sel):
            zs.append(project_rows(run.space, run.modalities[name], name, pool.row[sel]))
            ys.append(torch.from_numpy(pool.label[sel]))
            if name in run.residual:
                x = run.modalities[name].x[torch.from_numpy(pool.row[sel])]
                preserve_term = preserve_term + _preserve_loss(zs[-1], x)
    return torch.cat(zs), torch.cat(ys), preserve_term


def _preserve_loss(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean squared gap between the batch's cosine similarities in the space (``z``, unit
    rows) and under the frozen encoder (``x``): what keeps a residual head from forgetting."""
    xn = torch.nn.functional.normalize(x, dim=-1)
    return (z @ z.T - xn @ xn.T).pow(2).mean()


def _hash_loss(space: SharedSpace, z: torch.Tensor, quantization_weight: float) -> torch.Tensor:
    target = (z @ z.T).detach()
    total = z.new_zeros(())
    for hasher in space.hashers.values():
        h = hasher(z.detach())
        similarity = (
            torch.nn.functional.normalize(h, dim=-1) @ torch.nn.functional.normalize(h, dim=-1).T
        )
        total = total + (similarity - target).pow(2).mean()
        total = total + quantization_weight * quantization_loss(h)
    return total


def _cyclic_slice(order: np.ndarray, step: int, size: int) -> np.ndarray:
    """The ``step``-th window of ``size`` over ``order``, wrapping around."""
    if len(order) <= size:
        return order
    start = (step * size) % len(order)
    return np.take(order, np.arange(start, start + size), mode="wrap")
