"""The one optimisation loop of :mod:`medsim.dml`: seeded, deterministic steps over batches.

Both trainers run through it: the heads over frozen features (:mod:`medsim.dml.train`, one
:func:`run_steps` call an epoch) and the text encoder's upper layers (:mod:`medsim.dml.tune`,
one call for the whole schedule). Each gives a function from a batch to its loss terms; how a
step updates the weights, and how randomness is seeded, is decided here once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm import tqdm

from medsim.config import TrainParams

__all__ = ["Optimisers", "loss_optimiser", "reproducible", "run_steps"]

B = TypeVar("B")


@contextlib.contextmanager
def reproducible(seed: int) -> Iterator[np.random.RandomState]:
    """Seed torch (in a forked CPU RNG, leaving the caller's state alone) and numpy, and ask
    for deterministic kernels for the block: the batches come from the yielded RandomState,
    dropout and initialisation from torch's seeded stream.

    ``warn_only``: on a GPU some kernels (cuBLAS without a fixed workspace) have no
    deterministic variant; a warning there beats a crash, and on the CPU nothing changes.
    """
    deterministic = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield np.random.RandomState(seed)
        finally:
            torch.use_deterministic_algorithms(deterministic)


@dataclass
class Optimisers:
    """What one step updates: the model's optimiser, the loss's own parameters (proxies),
    an optional learning-rate schedule and the parameters whose gradient is clipped."""

    model: torch.optim.Optimizer
    loss: torch.optim.Optimizer | None = None
    schedule: Any = None  # a torch LRScheduler, stepped after the model's optimiser
    clip: list[torch.nn.Parameter] | None = None  # to gradient norm 1 before the step

    def step(self, total: torch.Tensor) -> None:
        """Backward pass of ``total``, then every optimiser's (and the schedule's) step."""
        self.model.zero_grad(set_to_none=True)
        if self.loss is not None:
            self.loss.zero_grad(set_to_none=True)
        total.backward()
        if self.clip is not None:
            torch.nn.utils.clip_grad_norm_(self.clip, 1.0)
        self.model.step()
        if self.schedule is not None:
            self.schedule.step()
        if self.loss is not None:
            self.loss.step()


def loss_optimiser(objective: Any, params: TrainParams) -> torch.optim.Optimizer | None:
    """Adam over the loss's own parameters (proxy losses) at ``train.proxy_lr``, else None."""
    if not objective.has_parameters:
        return None
    return torch.optim.Adam(objective.loss.parameters(), lr=params.proxy_lr)


def run_steps(
    batches: Iterable[B],
    terms: Callable[[int, B], Mapping[str, torch.Tensor]],
    optimisers: Optimisers,
    progress: str | None = None,
) -> list[dict[str, float]]:
    """One optimiser step per batch on ``terms(step, batch)["loss"]``; returns every step's
    terms as floats. ``progress`` names a tqdm bar (None: no bar)."""
    records = []
    steps = tqdm(batches, desc=progress, unit="step") if progress else batches
    for step, batch in enumerate(steps):
        values = terms(step, batch)
        optimisers.step(values["loss"])
        records.append({name: float(value.detach()) for name, value in values.items()})
    return records
