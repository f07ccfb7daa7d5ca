"""The loss registry: every `loss` value builds pml's loss with its miner and params."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses, miners

from medsim.config import Params, TrainParams
from medsim.dml.losses import LOSSES, alignment_loss, build_objective
from medsim.errors import MedsimError


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = F.normalize(torch.randn(32, 8, generator=g), dim=-1).requires_grad_()
    y = torch.arange(4).repeat_interleave(8)
    return z, y


def test_registry_covers_every_loss_params_accepts():
    choices = typing.get_args(typing.get_type_hints(Params)["loss"])
    assert set(choices) <= set(LOSSES)


@pytest.mark.parametrize(
    ("name", "loss_cls", "miner_cls"),
    [
        ("triplet", losses.TripletMarginLoss, miners.TripletMarginMiner),
        ("contrastive", losses.ContrastiveLoss, miners.PairMarginMiner),
        ("multi_similarity", losses.MultiSimilarityLoss, miners.MultiSimilarityMiner),
        ("ntxent", losses.NTXentLoss, type(None)),
        ("supcon", losses.SupConLoss, type(None)),
        ("proxy_anchor", losses.ProxyAnchorLoss, type(None)),
    ],
)
def test_each_loss_is_pmls_with_its_miner_and_gives_a_gradient(name, loss_cls, miner_cls):
    objective = build_objective(name, TrainParams(), n_classes=4, dim=8)
    assert type(objective.loss) is loss_cls
    assert type(objective.miner) is miner_cls
    z, y = _batch()
    value = objective(z, y)
    value.backward()
    assert torch.isfinite(value) and value.item() > 0
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_params_reach_the_loss_and_miner():
    params = TrainParams(margin=0.35, miner="hard", temperature=0.05, pos_margin=0.1)
    triplet = build_objective("triplet", params, 4, 8)
    assert triplet.loss.margin == pytest.approx(0.35)
    assert triplet.miner.margin == pytest.approx(0.35)
    assert triplet.miner.type_of_triplets == "hard"
    assert build_objective("ntxent", params, 4, 8).loss.temperature == pytest.approx(0.05)
    assert build_objective("contrastive", params, 4, 8).loss.pos_margin == pytest.approx(0.1)
    proxy = build_objective("proxy_anchor", params, 7, 8)
    assert tuple(proxy.loss.proxies.shape) == (7, 8)
    assert proxy.has_parameters and not triplet.has_parameters


def test_miner_none_turns_mining_off():
    params = dataclasses.replace(TrainParams(), miner="none")
    assert build_objective("triplet", params, 4, 8).miner is None


def test_unknown_loss_or_miner_is_a_clear_error():
    with pytest.raises(MedsimError, match=r"unknown loss 'tripletz'.*triplet"):
        build_objective("tripletz", TrainParams(), 4, 8)
    with pytest.raises(MedsimError, match=r"train\.miner"):
        build_objective("triplet", dataclasses.replace(TrainParams(), miner="hardest"), 4, 8)


def test_semihard_miner_finds_only_triplets_inside_the_margin():
    # unit vectors at angles 0 (anchor), 0.1 (positive), 0.2 (semi-hard negative: farther than
    # the positive, within the margin) and 0.9 (easy negative); chord distance ~ angle
    angles = torch.tensor([0.0, 0.1, 0.2, 0.9])
    z = torch.stack([angles.cos(), angles.sin()], dim=1)
    y = torch.tensor([0, 0, 1, 1])
    objective = build_objective("triplet", TrainParams(margin=0.2, miner="semihard"), 2, 2)
    anchors, positives, negatives = objective.miner(z, y)
    mined = {
        (a, p, n)
        for a, p, n in zip(anchors.tolist(), positives.tolist(), negatives.tolist(), strict=True)
    }
    assert (0, 1, 2) in mined
    assert (0, 1, 3) not in mined


def test_alignment_with_one_positive_per_row_is_symmetric_infonce():
    g = torch.Generator().manual_seed(1)
    a = F.normalize(torch.randn(6, 4, generator=g), dim=-1)
    b = F.normalize(torch.randn(6, 4, generator=g), dim=-1)
    keys = torch.arange(6)
    logits = a @ b.T / 0.1
    expected = 0.5 * (F.cross_entropy(logits, keys) + F.cross_entropy(logits.T, keys))
    assert alignment_loss(0.1)(a, keys, b, keys).item() == pytest.approx(expected.item(), rel=1e-5)


def test_alignment_is_lower_for_matched_pairs_than_shuffled():
    g = torch.Generator().manual_seed(2)
    a = F.normalize(torch.randn(8, 16, generator=g), dim=-1)
    keys = torch.arange(8)
    fn = alignment_loss(0.1)
    assert fn(a, keys, a, keys) < fn(a, keys, a[torch.randperm(8, generator=g)], keys)


def test_every_registered_loss_is_a_valid_params_value() -> None:
    allowed = set(typing.get_args(typing.get_type_hints(Params)["loss"]))
    assert allowed == set(LOSSES)
