"""Projection and hashing heads."""

from __future__ import annotations

import pytest
import torch

from medsim.dml.heads import HashingHead, LinearResidualHead, ProjectionHead, quantization_loss


def test_projection_is_unit_length_and_standardised():
    torch.manual_seed(0)
    head = ProjectionHead(in_dim=5, dim=3, hidden=8)
    x = torch.randn(20, 5) * 30 + 7
    head.fit_standardization(x)
    assert torch.allclose(head.input_mean, x.mean(0))
    assert torch.allclose(head.input_scale, x.std(0))
    z = head.eval()(x)
    assert z.shape == (20, 3)
    assert torch.allclose(z.norm(dim=1), torch.ones(20), atol=1e-6)
    # standardisation is part of the head: shifting inputs and stats together changes nothing
    shifted = ProjectionHead(in_dim=5, dim=3, hidden=8)
    shifted.load_state_dict(head.state_dict())
    shifted.fit_standardization(x + 100)
    assert torch.allclose(shifted.eval()(x + 100), z, atol=1e-5)


def test_standardisation_needs_two_rows():
    head = ProjectionHead(in_dim=2, dim=2, hidden=4)
    head.fit_standardization(torch.tensor([[5.0, 5.0]]))
    assert torch.equal(head.input_mean, torch.zeros(2))
    assert torch.equal(head.input_scale, torch.ones(2))


def test_hash_codes_are_the_signs_of_the_relaxed_codes():
    torch.manual_seed(0)
    hasher = HashingHead(dim=6, bits=32)
    z = torch.nn.functional.normalize(torch.randn(10, 6), dim=-1)
    relaxed = hasher(z)
    codes = hasher.codes(z)
    assert codes.dtype == torch.uint8 and codes.shape == (10, 32)
    assert set(codes.unique().tolist()) <= {0, 1}
    assert torch.equal(codes.bool(), relaxed > 0)
    assert relaxed.abs().max() < 1


def test_quantization_loss_hand_values():
    assert quantization_loss(torch.tensor([1.0, -1.0, 0.0])).item() == pytest.approx(1 / 3)
    assert quantization_loss(torch.tensor([0.5, -0.5])).item() == pytest.approx(0.25)


def test_linear_head_starts_at_the_ridge_map():
    # x = [0, 2] standardises to [-1/sqrt2, 1/sqrt2]; y = [1, 3] (centred: [-1, 1]);
    # w = (x.y) / (x.x + alpha) = sqrt2 / (1 + 1) = 1/sqrt2, b = mean(y) = 2
    head = LinearResidualHead(1, 2, hidden=4)
    x = torch.tensor([[0.0], [2.0]])
    head.fit_standardization(x)
    head.fit_ridge(x, torch.tensor([[1.0, 0.0], [3.0, 0.0]]), alpha=1.0)
    assert head.linear.weight[:, 0].tolist() == pytest.approx([2**-0.5, 0.0], abs=1e-6)
    assert head.linear.bias.tolist() == pytest.approx([2.0, 0.0], abs=1e-6)
    # the MLP starts at zero: the output is the normalised ridge prediction
    head.linear.bias.data = torch.tensor([0.0, 1.0])
    out = head(torch.tensor([[2.0]]))  # w * x_std = 0.5, so [0.5, 1] / |.|
    assert out[0].tolist() == pytest.approx([0.5 / 1.25**0.5, 1 / 1.25**0.5], abs=1e-6)
