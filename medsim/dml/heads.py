"""Projection heads (one per modality kind) and hashing heads (one per code length)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["HashingHead", "ProjectionHead", "quantization_loss"]


class ProjectionHead(nn.Module):
    """Frozen embedding -> ``dim``-d unit vector: standardise, two-layer MLP, L2-normalise.

    Standardisation uses fixed per-feature statistics of the training set (buffers, saved with
    the weights): MiniLM vectors have norm 1 and EfficientNet features are ReLU6 activations
    with norms near 30, and one learning rate has to suit both heads.
    """

    def __init__(self, in_dim: int, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.register_buffer("input_mean", torch.zeros(in_dim))
        self.register_buffer("input_scale", torch.ones(in_dim))
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
        )

    @torch.no_grad()
    def fit_standardization(self, features: torch.Tensor, eps: float = 1e-6) -> None:
        """Set the input statistics from training features ``[n, in_dim]``."""
        if len(features) < 2:
            return
        self.input_mean.copy_(features.mean(0))
        self.input_scale.copy_(features.std(0).clamp_min(eps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.input_mean) / self.input_scale
        return F.normalize(self.mlp(x), dim=-1)


class HashingHead(nn.Module):
    """Shared-space vector -> ``bits`` relaxed code in (-1, 1) (tanh); ``sign`` at query time.

    Initialised as random hyperplanes (SimHash), so an untrained head already approximates
    cosine similarity in Hamming space; training then fits codes to the learned space.
    """

    def __init__(self, dim: int, bits: int) -> None:
        super().__init__()
        self.bits = bits
        self.linear = nn.Linear(dim, bits)
        nn.init.normal_(self.linear.weight, std=dim**-0.5)
        nn.init.zeros_(self.linear.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # Scaling keeps tanh away from its flat region at the start (inputs are unit vectors).
        return torch.tanh(3.0 * self.linear(z))

    @torch.no_grad()
    def codes(self, z: torch.Tensor) -> torch.Tensor:
        """Binary codes (uint8 0/1, ``[n, bits]``) of shared-space vectors ``z``."""
        return (self.linear(z) > 0).to(torch.uint8)


def quantization_loss(relaxed: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of relaxed codes from the nearest of {-1, +1}."""
    return (relaxed.abs() - 1.0).pow(2).mean()
