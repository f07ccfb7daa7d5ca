"""Training the shared space: class-level metric learning + cross-modal alignment + hashing.

:func:`train_space` is pure apart from an optional dvclive log: it takes feature matrices and
labels and returns the trained :class:`~medsim.dml.model.SharedSpace`, so other stages can
train it on any features (e.g. a TF-IDF baseline); :func:`medsim.dml.fit.fit_space` builds the
candidate spaces with it and keeps the best on validation. The DVC stage around them is
:mod:`medsim.dml.stage`.

Each step adds three terms:

- class signal: the ``loss`` registry entry (pml loss + miner) over a batch drawn by pml's
  ``MPerClassSampler`` from every labelled training item of every kind (a figure carries its
  document's label), so same-label items are pulled together across modalities too;
- cross-modal alignment (times ``train.cross_modal_weight``): symmetric InfoNCE (pml NT-Xent)
  between each part (caption, table, image) and its own document's text, and between each
  image and its own caption (images sharing a caption text count as positives of each other);
- hashing: for each code size, the relaxed codes' cosine similarities fit the (detached)
  shared-space similarities, plus ``train.quantization_weight`` times the distance of the
  codes from {-1, +1}.

Validation: mean MAP@R (pml ``AccuracyCalculator``, same label = relevant) over each kind
against itself and each part kind against the texts, on documents of the ``val`` split, plus
image -> own caption mAP (positives: the image's own caption text) where both kinds exist; the
best epoch is kept and training stops after ``train.patience`` epochs without improvement.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from tqdm import tqdm

from medsim.config import TrainParams
from medsim.dml.data import Features
from medsim.dml.heads import quantization_loss
from medsim.dml.losses import alignment_loss, build_objective
from medsim.dml.model import SharedSpace
from medsim.dml.sampling import class_balanced_batches
from medsim.errors import MedsimError

__all__ = [
    "mean_average_precision",
    "prepare_kinds",
    "train_space",
    "validation_scores",
]

log = logging.getLogger(__name__)
# pml logs two INFO lines per k-NN call of its AccuracyCalculator: every validation, every kind.
logging.getLogger("PML").setLevel(logging.WARNING)

MAP_AT_R = "mean_average_precision_at_r"


@dataclass
class _Kind:
    """One modality's rows, as tensors, with what each row belongs to."""

    x: torch.Tensor
    ids: list[str]
    doc_ids: list[str]
    split: np.ndarray  # split name per row ("" when the document is unknown)
    label: np.ndarray  # class index per row, -1 when unlabelled


@dataclass
class _Pairs:
    """Cross-modal positive pairs: rows of kind ``a`` and ``b`` sharing a key are positives."""

    a: str
    b: str
    a_rows: np.ndarray
    b_rows: np.ndarray
    keys: np.ndarray


@contextlib.contextmanager
def _reproducible(seed: int) -> Iterator[np.random.RandomState]:
    """Seed torch (in a forked RNG, leaving the caller's state alone) and numpy; force
    deterministic kernels for the block."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        try:
            yield np.random.RandomState(seed)
        finally:
            torch.use_deterministic_algorithms(deterministic)


def prepare_kinds(
    features: Mapping[str, Features], labels: Mapping[str, str], splits: Mapping[str, str]
) -> tuple[dict[str, _Kind], list[str]]:
    """Each kind's rows as tensors with their split and class index; the class names."""
    classes = sorted({labels[d] for d in splits if d in labels})
    index = {c: i for i, c in enumerate(classes)}
    kinds: dict[str, _Kind] = {}
    for kind, (ids, doc_ids, matrix) in features.items():
        matrix = np.asarray(matrix, dtype=np.float32)
        if matrix.ndim != 2 or len(matrix) != len(ids) or len(ids) != len(doc_ids):
            raise MedsimError(f"{kind}: ids, doc_ids and vectors disagree in length")
        if not len(ids):
            continue
        split = np.array([splits.get(d, "") for d in doc_ids])
        label = np.array([index.get(labels.get(d, ""), -1) for d in doc_ids], dtype=np.int64)
        unknown = int((split == "").sum())
        if unknown:
            log.warning("%s: %d rows belong to documents not in the articles table", kind, unknown)
        kinds[kind] = _Kind(torch.from_numpy(matrix.copy()), list(ids), list(doc_ids), split, label)
    if not kinds:
        raise MedsimError("no features to train on")
    return kinds, classes


def _caption_groups(caption: _Kind) -> dict[str, int]:
    """figure id -> group of identical captions (several images can share one caption)."""
    groups: dict[bytes, int] = {}
    out = {}
    for row, fid in enumerate(caption.ids):
        # rounded: one text encoded in two batches can differ in the last bits (padding)
        key = np.round(caption.x[row].numpy(), 4).tobytes()
        out[fid] = groups.setdefault(key, len(groups))
    return out


def _pairs(kinds: Mapping[str, _Kind], split: str) -> list[_Pairs]:
    """Positive cross-modal pairs within ``split``: part <-> own text, image <-> own caption."""
    found: list[_Pairs] = []
    text = kinds.get("text")
    if text is not None:
        text_row = {d: r for r, d in enumerate(text.doc_ids) if text.split[r] == split}
        for kind, part in kinds.items():
            if kind == "text":
                continue
            rows = [
                r for r, d in enumerate(part.doc_ids) if part.split[r] == split and d in text_row
            ]
            if rows:
                b_rows = np.array([text_row[part.doc_ids[r]] for r in rows])
                found.append(_Pairs(kind, "text", np.array(rows), b_rows, b_rows.copy()))
    if "image" in kinds and "caption" in kinds:
        image, caption = kinds["image"], kinds["caption"]
        caption_row = {f: r for r, f in enumerate(caption.ids) if caption.split[r] == split}
        group = _caption_groups(caption)
        rows = [r for r, f in enumerate(image.ids) if image.split[r] == split and f in caption_row]
        if rows:
            b_rows = np.array([caption_row[image.ids[r]] for r in rows])
            keys = np.array([group[image.ids[r]] for r in rows])
            found.append(_Pairs("image", "caption", np.array(rows), b_rows, keys))
    return found


RIDGE_ALPHA = 10.0  # the ridge baseline's (medsim.evaluate.baselines.ridge_map) penalty


def _fit_linear_heads(
    space: SharedSpace, kinds: Mapping[str, _Kind], types: Mapping[str, str]
) -> None:
    """Start each "linear" head at the ridge map from its training rows onto the space
    vectors of their own captions (images), else of their own documents' texts."""
    pairs = {(p.a, p.b): p for p in _pairs(kinds, "train")}
    for name, head_type in types.items():
        if head_type != "linear":
            continue
        pair = pairs.get((name, "caption")) or pairs.get((name, "text"))
        if pair is None or len(pair.a_rows) < 2:
            log.warning("%s: no training pairs to start its linear head from", name)
            continue
        with torch.no_grad():
            target = _project(space, kinds[pair.b], pair.b, pair.b_rows)
        x = kinds[name].x[torch.from_numpy(pair.a_rows)]
        space.heads[name].fit_ridge(x, target, RIDGE_ALPHA)
        log.info("%s head: ridge start on %d %s pairs", name, len(pair.a_rows), pair.b)


def _project(space: SharedSpace, kind: _Kind, name: str, rows: np.ndarray) -> torch.Tensor:
    return space.heads[name](kind.x[torch.from_numpy(np.asarray(rows, dtype=np.int64))])


def validation_scores(
    space: SharedSpace, kinds: Mapping[str, _Kind], split: str = "val"
) -> dict[str, float]:
    """MAP@R per kind against itself and per part kind against the texts, plus their mean
    under ``"map_at_r"``. Empty when ``split`` has no labelled items."""
    calculator = AccuracyCalculator(
        include=(MAP_AT_R,), k="max_bin_count", device=torch.device("cpu")
    )
    scores: dict[str, float] = {}
    projected: dict[str, tuple[torch.Tensor, np.ndarray]] = {}
    was_training = space.training
    space.eval()
    with torch.no_grad():
        for name, kind in kinds.items():
            if name not in space.heads:
                continue
            rows = np.flatnonzero((kind.split == split) & (kind.label >= 0))
            if len(rows):
                projected[name] = (_project(space, kind, name, rows), kind.label[rows])
    space.train(was_training)
    for name, (z, y) in projected.items():
        score = _map_at_r(calculator, z, y, z, y, same=True)
        if score is not None:
            scores[f"{name}/{name}"] = score
    cross = _pair_retrieval(space, kinds, split)
    if cross is not None:
        scores["image/own_caption"] = cross
    if "text" in projected:
        tz, ty = projected["text"]
        for name, (z, y) in projected.items():
            if name != "text":
                score = _map_at_r(calculator, z, y, tz, ty, same=False)
                if score is not None:
                    scores[f"{name}/text"] = score
    if scores:
        scores["map_at_r"] = float(np.mean(list(scores.values())))
    return scores


def _pair_retrieval(space: SharedSpace, kinds: Mapping[str, _Kind], split: str) -> float | None:
    """Image -> caption MAP@R on ``split``: an image's relevant captions are those with its own
    caption's text (caption groups), not same-class ones. None without such pairs."""
    pair = next((p for p in _pairs(kinds, split) if (p.a, p.b) == ("image", "caption")), None)
    if pair is None or "image" not in space.heads or "caption" not in space.heads:
        return None
    # the gallery: one row per distinct caption text
    _, first = np.unique(pair.keys, return_index=True)
    was_training = space.training
    space.eval()
    with torch.no_grad():
        zi = _project(space, kinds["image"], "image", pair.a_rows)
        zc = _project(space, kinds["caption"], "caption", pair.b_rows[first])
    space.train(was_training)
    return mean_average_precision(zi.numpy(), pair.keys, zc.numpy(), pair.keys[first])


def mean_average_precision(
    query: np.ndarray, query_keys: np.ndarray, gallery: np.ndarray, gallery_keys: np.ndarray
) -> float | None:
    """Mean over queries of average precision over the full ranking by dot product, a
    gallery row being relevant when its key equals the query's. Queries with no relevant row
    are skipped; None when none is left."""
    order = np.argsort(-(query @ gallery.T), axis=1, kind="stable")
    aps = []
    for q, key in enumerate(query_keys):
        hits = gallery_keys[order[q]] == key
        if not hits.any():
            continue
        ranks = np.flatnonzero(hits) + 1
        aps.append(float(np.mean(np.arange(1, len(ranks) + 1) / ranks)))
    return float(np.mean(aps)) if aps else None


def _map_at_r(calculator, query, query_labels, ref, ref_labels, same: bool) -> float | None:
    counts = dict(zip(*np.unique(ref_labels, return_counts=True), strict=True))
    # a query needs at least one relevant reference other than itself
    keep = np.array([counts.get(y, 0) > (1 if same else 0) for y in query_labels])
    if keep.sum() < 2:
        return None
    if same:
        query, query_labels = query[keep], query_labels[keep]
        ref, ref_labels = query, query_labels
    else:
        query, query_labels = query[keep], query_labels[keep]
    result = calculator.get_accuracy(
        query,
        torch.from_numpy(query_labels),
        ref,
        torch.from_numpy(ref_labels),
        ref_includes_query=same,
    )
    return float(result[MAP_AT_R])


def _frozen_scores(kinds: Mapping[str, _Kind], split: str = "val") -> dict[str, float]:
    """Within-kind MAP@R of the frozen embeddings themselves (cosine), for reference."""
    calculator = AccuracyCalculator(
        include=(MAP_AT_R,), k="max_bin_count", device=torch.device("cpu")
    )
    scores = {}
    for name, kind in kinds.items():
        rows = np.flatnonzero((kind.split == split) & (kind.label >= 0))
        if len(rows):
            z = torch.nn.functional.normalize(kind.x[torch.from_numpy(rows)], dim=-1)
            score = _map_at_r(calculator, z, kind.label[rows], z, kind.label[rows], same=True)
            if score is not None:
                scores[f"{name}/{name}"] = score
    return scores


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


class _Live:
    """dvclive logger, or nothing when no log directory is given."""

    def __init__(self, log_dir: Path | None) -> None:
        self.live = None
        if log_dir is not None:
            from dvclive import Live  # heavy import, only where curves are wanted

            self.live = Live(dir=str(log_dir), save_dvc_exp=False, dvcyaml=False)

    def log(self, record: Mapping[str, Any]) -> None:
        if self.live is None:
            return
        for key, value in record.items():
            if isinstance(value, int | float) and key != "epoch" and value is not None:
                self.live.log_metric(key, value)
        self.live.next_step()

    def end(self, summary: Mapping[str, Any]) -> None:
        if self.live is None:
            return
        self.live.summary.update(summary)
        self.live.end()


def log_history(log_dir: Path | None, history: list[dict[str, Any]], best_epoch: int) -> None:
    """dvclive curves and summary of a finished :func:`train_space` run (its ``history``)."""
    if log_dir is None or not history:
        return
    live = _Live(log_dir)
    for record in history:
        live.log(_curves(record))
    _log_best(live, history, best_epoch)


def _curves(record: Mapping[str, Any]) -> dict[str, Any]:
    """What dvclive plots of one epoch's record."""
    val = record.get("val") or {}
    curves = {k: v for k, v in record.items() if k not in ("val", "seconds", "frozen_val")}
    return curves | {f"val/{k}": v for k, v in val.items() if k != "map_at_r"}


@dataclass
class _Pool:
    """The class pool: every labelled training row of every kind (kind index, row, label)."""

    kind: np.ndarray
    row: np.ndarray
    label: np.ndarray

    @classmethod
    def of(cls, kinds: Mapping[str, _Kind]) -> _Pool:
        chosen = [(k.split == "train") & (k.label >= 0) for k in kinds.values()]
        return cls(
            np.concatenate([np.full(int(c.sum()), i) for i, c in enumerate(chosen)]),
            np.concatenate([np.flatnonzero(c) for c in chosen]),
            np.concatenate([k.label[c] for k, c in zip(kinds.values(), chosen, strict=True)]),
        )


@dataclass
class _Run:
    """What every training step reads: the space, its inputs, the loss terms, the optimisers."""

    space: SharedSpace
    kinds: dict[str, _Kind]
    pool: _Pool
    pairs: list[_Pairs]
    objective: Any
    align: Any
    residual: set[str]
    params: TrainParams
    optimizer: torch.optim.Optimizer
    loss_optimizer: torch.optim.Optimizer | None
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

    ``features``: kind -> (ids, doc_ids, matrix [n, d_kind]); ``labels``: doc_id -> class;
    ``splits``: doc_id -> train/val/test. Only ``train`` rows are learned from; ``val`` rows
    drive early stopping. Returns the space at its best validation epoch and one history dict
    per epoch (epoch 0 = untrained heads, with the frozen embeddings' scores beside them).
    Same inputs and seed give the same weights on the same machine.

    ``head_types``: kind -> "mlp" (default), "residual" or "identity" (see
    :mod:`medsim.dml.heads`); when any kind keeps its own dimension, the space takes it and
    the "mlp" heads (e.g. images) map into it. ``text_model`` is recorded in the space's
    config: the folder name of the tuned encoder that produced the text features.
    """
    kinds, classes = prepare_kinds(features, labels, splits)
    types = {name: (head_types or {}).get(name, "mlp") for name in kinds}
    kept = {kinds[n].x.shape[1] for n, t in types.items() if t in ("residual", "identity")}
    if len(kept) > 1:
        raise MedsimError(f"residual and identity heads need one input dimension, got {kept}")
    dim = kept.pop() if kept else params.dim
    with _reproducible(seed) as rng:
        space = _new_space(kinds, types, dim, params, loss, text_model)
        run = _new_run(space, kinds, types, classes, params, loss)
        # identity heads only (a tuned encoder's text, no images): only the hashers learn,
        # for a fixed number of epochs, as validation MAP@R cannot move
        frozen_heads = not any(p.requires_grad for p in space.heads.parameters())
        epochs = min(params.epochs, max(1, params.patience)) if frozen_heads else params.epochs
        history = _fit_epochs(run, rng, epochs, frozen_heads, _Live(log_dir), loss)
        space.params["seed"] = seed
    return space, history


def _new_space(
    kinds: Mapping[str, _Kind],
    types: Mapping[str, str],
    dim: int,
    params: TrainParams,
    loss: str,
    text_model: str | None,
) -> SharedSpace:
    """Untrained heads, standardised on the training rows; linear heads at their ridge start."""
    space = SharedSpace(
        {name: kind.x.shape[1] for name, kind in kinds.items()},
        dim=dim,
        hidden=params.hidden,
        bits=params.hash_bits,
        dropout=params.dropout,
        loss=loss,
        params=dataclasses.asdict(params),
        head_types=dict(types),
        text_model=text_model,
    )
    for name, kind in kinds.items():
        rows = np.flatnonzero(kind.split == "train")
        space.heads[name].fit_standardization(kind.x[torch.from_numpy(rows)])
    _fit_linear_heads(space, kinds, types)
    return space


def _new_run(
    space: SharedSpace,
    kinds: dict[str, _Kind],
    types: Mapping[str, str],
    classes: list[str],
    params: TrainParams,
    loss: str,
) -> _Run:
    """The loss terms, optimisers and training pools of one ``train_space`` call."""
    objective = build_objective(loss, params, max(len(classes), 1), space.dim)
    align = alignment_loss(params.temperature)
    pool = _Pool.of(kinds)
    pairs = _pairs(kinds, "train") if params.cross_modal_weight > 0 else []
    if len(np.unique(pool.label)) < 2 and not pairs:
        raise MedsimError(
            "nothing to learn from: the training split has fewer than two labelled classes "
            "and no cross-modal pairs"
        )
    optimizer = torch.optim.AdamW(
        space.parameters(), lr=params.lr, weight_decay=params.weight_decay
    )
    loss_optimizer = (
        torch.optim.Adam(objective.loss.parameters(), lr=params.proxy_lr)
        if objective.has_parameters
        else None
    )
    batch_size = min(params.batch_size, objective.max_batch or params.batch_size)
    log.info(
        "training %s heads (%s) on %d labelled rows, %d classes, %d pair sets; loss %s",
        len(kinds),
        ", ".join(kinds),
        len(pool.label),
        len(classes),
        len(pairs),
        loss,
    )
    residual = {n for n, t in types.items() if t == "residual"}
    return _Run(
        space,
        kinds,
        pool,
        pairs,
        objective,
        align,
        residual,
        params,
        optimizer,
        loss_optimizer,
        batch_size,
    )


def _fit_epochs(
    run: _Run,
    rng: np.random.RandomState,
    epochs: int,
    frozen_heads: bool,
    live: _Live,
    loss: str,
) -> list[dict[str, Any]]:
    """Epochs with early stopping on validation MAP@R; loads the best epoch's weights into
    ``run.space`` and returns one history record per epoch (0: untrained)."""
    space, kinds, params = run.space, run.kinds, run.params
    val = validation_scores(space, kinds)
    history: list[dict[str, Any]] = [
        {
            "epoch": 0,
            "loss": None,
            "val_map_at_r": val.get("map_at_r"),
            "val": val,
            "frozen_val": _frozen_scores(kinds),
        }
    ]
    live.log({"val_map_at_r": val.get("map_at_r")} if val else {})
    best_score = val.get("map_at_r", -np.inf)
    best_state, best_epoch, waited = copy.deepcopy(space.state_dict()), 0, 0
    has_val = bool(val) and not frozen_heads
    start = time.perf_counter()
    for epoch in tqdm(range(1, epochs + 1), desc=f"train {loss}", unit="epoch"):
        sums = _train_epoch(run, rng)
        val = validation_scores(space, kinds)
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
    _log_best(live, history, best_epoch)
    return history


def _log_best(live: _Live, history: list[dict[str, Any]], best_epoch: int) -> None:
    summary = {
        "best_epoch": best_epoch,
        "val_map_at_r": history[best_epoch]["val_map_at_r"],
        "untrained_val_map_at_r": history[0]["val_map_at_r"],
    }
    live.end({k: v for k, v in summary.items() if v is not None})
    log.info(
        "best epoch %d: val MAP@R %s (untrained %s)",
        best_epoch,
        _fmt(summary["val_map_at_r"]),
        _fmt(summary["untrained_val_map_at_r"]),
    )


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
    sums = {"loss": 0.0, "class_loss": 0.0, "align_loss": 0.0, "hash_loss": 0.0}
    for step, batch in enumerate(batches):
        terms = _train_step(run, batch, orders, step)
        for key, term in zip(sums, terms, strict=True):
            sums[key] += float(term.detach())
    return {k: v / len(batches) for k, v in sums.items()}


def _train_step(
    run: _Run, batch: np.ndarray | None, orders: list[np.ndarray], step: int
) -> tuple[torch.Tensor, ...]:
    """One optimiser step; returns (total, class, alignment, hashing) terms."""
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
        za = _project(space, run.kinds[p.a], p.a, p.a_rows[take])
        zb = _project(space, run.kinds[p.b], p.b, p.b_rows[take])
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
    run.optimizer.zero_grad()
    if run.loss_optimizer is not None:
        run.loss_optimizer.zero_grad()
    total.backward()
    run.optimizer.step()
    if run.loss_optimizer is not None:
        run.loss_optimizer.step()
    return total, class_term, align_term, hash_term


def _class_batch(run: _Run, batch: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The batch's rows projected kind by kind: (vectors, labels, preserve term of the
    residual heads)."""
    pool = run.pool
    zs, ys = [], []
    preserve_term = torch.zeros(())
    for i, name in enumerate(run.kinds):
        sel = batch[pool.kind[batch] == i]
        if len(sel):
            zs.append(_project(run.space, run.kinds[name], name, pool.row[sel]))
            ys.append(torch.from_numpy(pool.label[sel]))
            if name in run.residual:
                x = run.kinds[name].x[torch.from_numpy(pool.row[sel])]
                preserve_term = preserve_term + _preserve_loss(zs[-1], x)
    return torch.cat(zs), torch.cat(ys), preserve_term


def _preserve_loss(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean squared gap between the batch's cosine similarities in the space (``z``, unit
    rows) and under the frozen encoder (``x``): what keeps a residual head from forgetting."""
    xn = torch.nn.functional.normalize(x, dim=-1)
    return (z @ z.T - xn @ xn.T).pow(2).mean()


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _cyclic_slice(order: np.ndarray, step: int, size: int) -> np.ndarray:
    """The ``step``-th window of ``size`` over ``order``, wrapping around."""
    if len(order) <= size:
        return order
    start = (step * size) % len(order)
    return np.take(order, np.arange(start, start + size), mode="wrap")
