"""Projection heads (one per modality) and hashing heads (one per code length)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "HEAD_TYPES",
    "HashingHead",
    "IdentityHead",
    "LinearResidualHead",
    "ProjectionHead",
    "ResidualHead",
    "make_head",
    "quantization_loss",
]


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


class ResidualHead(nn.Module):
    """``x + MLP(x)``, L2-normalised, with the MLP's last layer starting at zero.

    At initialisation it *is* the frozen encoder (up to normalisation), so it starts from what
    the encoder knows and training can only add to it; the train stage also keeps the
    batch's cosine similarities near the frozen ones (``train.preserve_weight``). Input and
    output share the encoder's dimension, so every text modality stays in one space.
    """

    def __init__(self, in_dim: int, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim != in_dim:
            raise ValueError(f"a residual head keeps its input dimension ({in_dim}), not {dim}")
        self.in_dim = in_dim
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, in_dim)
        )
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def fit_standardization(self, features: torch.Tensor, eps: float = 1e-6) -> None:
        """Nothing to fit: the head works on the encoder's own (unit) vectors."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(x, dim=-1)
        return F.normalize(x + self.mlp(x), dim=-1)


class IdentityHead(nn.Module):
    """The encoder's vector itself, L2-normalised: for modalities whose encoder was tuned."""

    def __init__(self, in_dim: int, dim: int, hidden: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        if dim != in_dim:
            raise ValueError(f"an identity head keeps its input dimension ({in_dim}), not {dim}")
        self.in_dim = in_dim

    def fit_standardization(self, features: torch.Tensor, eps: float = 1e-6) -> None:
        """Nothing to fit."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1)


class LinearResidualHead(ProjectionHead):
    """Standardise, ``W x + b + MLP(x)``, L2-normalise: a linear map plus a zero-started MLP.

    :meth:`fit_ridge` sets ``W, b`` to the ridge (least-squares) map from the standardised
    training features onto target vectors (an image's own caption in the tuned text space), so
    at initialisation the head *is* the ridge baseline's map, and training (kept or rejected
    on validation) starts from there rather than from a random MLP.
    """

    def __init__(self, in_dim: int, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__(in_dim, dim, hidden, dropout)
        self.linear = nn.Linear(in_dim, dim)
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    @torch.no_grad()
    def fit_ridge(self, features: torch.Tensor, targets: torch.Tensor, alpha: float) -> None:
        """``W, b`` = argmin ``|x_std W^T + b - y|^2 + alpha |W|^2`` (bias not penalised)."""
        x = (features.double() - self.input_mean.double()) / self.input_scale.double()
        y = targets.double()
        x_mean, y_mean = x.mean(0), y.mean(0)
        xc, yc = x - x_mean, y - y_mean
        gram = xc.T @ xc + alpha * torch.eye(x.shape[1], dtype=x.dtype)
        weight = torch.linalg.solve(gram, xc.T @ yc)  # [in_dim, dim]
        self.linear.weight.copy_(weight.T.to(self.linear.weight.dtype))
        self.linear.bias.copy_((y_mean - x_mean @ weight).to(self.linear.bias.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.input_mean) / self.input_scale
        return F.normalize(self.linear(x) + self.mlp(x), dim=-1)


# head type (saved in the space's config) -> class
HEAD_TYPES: dict[str, type[nn.Module]] = {
    "mlp": ProjectionHead,
    "linear": LinearResidualHead,
    "residual": ResidualHead,
    "identity": IdentityHead,
}


def make_head(head_type: str, in_dim: int, dim: int, hidden: int, dropout: float) -> nn.Module:
    """A head of type ``head_type`` (see :data:`HEAD_TYPES`)."""
    return HEAD_TYPES[head_type](in_dim, dim, hidden, dropout)


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
