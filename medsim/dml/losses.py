"""Metric-learning losses keyed by the top-level ``loss`` param, each with its miner.

Every loss and miner is pytorch-metric-learning's; this module only maps params to them.
``train.miner`` picks the triplet type for triplet mining (``semihard``, ``hard``, ``easy``,
``all``) and ``none`` switches mining off; the other losses bring their usual miner (pair
margins for contrastive, multi-similarity mining) or weigh every pair in the batch themselves
(NT-Xent, SupCon, proxy-anchor).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from pytorch_metric_learning import losses, miners
from torch import nn

from medsim.config import TrainParams
from medsim.errors import MedsimError

__all__ = [
    "LOSSES",
    "MINER_TYPES",
    "LossSpec",
    "MetricObjective",
    "alignment_loss",
    "build_objective",
]

MINER_TYPES = ("semihard", "hard", "easy", "all", "none")


@dataclass
class MetricObjective:
    """A pml loss, its miner (or None) and whether the loss holds trainable proxies."""

    loss: nn.Module
    miner: nn.Module | None
    max_batch: int | None = None

    @property
    def has_parameters(self) -> bool:
        return any(p.requires_grad for p in self.loss.parameters())

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        pairs = self.miner(embeddings, labels) if self.miner is not None else None
        return self.loss(embeddings, labels, pairs)


@dataclass(frozen=True)
class LossSpec:
    """How to build one registry entry: ``loss(params, n_classes, dim)`` and its miner."""

    loss: Callable[[TrainParams, int, int], nn.Module]
    miner: Callable[[TrainParams], nn.Module] | None = None
    doc: str = ""
    # pml's NT-Xent holds a (positive pairs x negative pairs) matrix: with class labels that
    # grows as batch^3 / classes, so its batches are capped
    max_batch: int | None = None


LOSSES: dict[str, LossSpec] = {
    "triplet": LossSpec(
        loss=lambda p, n, d: losses.TripletMarginLoss(margin=p.margin),
        miner=lambda p: miners.TripletMarginMiner(margin=p.margin, type_of_triplets=p.miner),
        doc="triplet margin loss over mined triplets (train.margin, train.miner)",
    ),
    "contrastive": LossSpec(
        loss=lambda p, n, d: losses.ContrastiveLoss(
            pos_margin=p.pos_margin, neg_margin=p.neg_margin
        ),
        miner=lambda p: miners.PairMarginMiner(pos_margin=p.pos_margin, neg_margin=p.neg_margin),
        doc="contrastive pair loss over margin-violating pairs (train.pos_margin, neg_margin)",
    ),
    "multi_similarity": LossSpec(
        loss=lambda p, n, d: losses.MultiSimilarityLoss(),
        miner=lambda p: miners.MultiSimilarityMiner(),
        doc="multi-similarity loss with multi-similarity mining (pml defaults)",
    ),
    "ntxent": LossSpec(
        loss=lambda p, n, d: losses.NTXentLoss(temperature=p.temperature),
        doc="NT-Xent (InfoNCE) with same-label positives (train.temperature), batches <= 64",
        max_batch=64,
    ),
    "supcon": LossSpec(
        loss=lambda p, n, d: losses.SupConLoss(temperature=p.temperature),
        doc="supervised contrastive loss (train.temperature)",
    ),
    "proxy_anchor": LossSpec(
        loss=lambda p, n, d: losses.ProxyAnchorLoss(num_classes=n, embedding_size=d),
        doc="proxy-anchor loss, one learned proxy per class (own optimizer, train.proxy_lr)",
    ),
}


def build_objective(name: str, params: TrainParams, n_classes: int, dim: int) -> MetricObjective:
    """The registry entry ``name`` built from ``params`` for ``n_classes`` labels in ``dim``-d."""
    if name not in LOSSES:
        raise MedsimError(f"unknown loss '{name}'; choose one of {', '.join(sorted(LOSSES))}")
    if params.miner not in MINER_TYPES:
        raise MedsimError(
            f"train.miner: unknown miner '{params.miner}'; choose one of {', '.join(MINER_TYPES)}"
        )
    spec = LOSSES[name]
    miner = None if spec.miner is None or params.miner == "none" else spec.miner(params)
    return MetricObjective(spec.loss(params, n_classes, dim), miner, spec.max_batch)


def alignment_loss(temperature: float) -> Callable[..., torch.Tensor]:
    """Symmetric InfoNCE between two modalities: pml's SupCon loss with reference embeddings
    (with one positive per row it is InfoNCE; it computes on the similarity matrix, where
    pml's NT-Xent enumerates pairs and is ~100x slower at batch 256).

    ``fn(a, a_keys, b, b_keys)``: rows of ``a`` and ``b`` with equal keys are positives
    (a figure and its caption, a part and its document's text), every other row a negative.
    """
    ntxent = losses.SupConLoss(temperature=temperature)

    def fn(a: torch.Tensor, a_keys: torch.Tensor, b: torch.Tensor, b_keys: torch.Tensor):
        # pml drops the diagonal when ref_labels *is* labels; these are two modalities
        a_keys, b_keys = a_keys.clone(), b_keys.clone()
        forward = ntxent(a, a_keys, ref_emb=b, ref_labels=b_keys)
        backward = ntxent(b, b_keys, ref_emb=a, ref_labels=a_keys)
        return 0.5 * (forward + backward)

    return fn
