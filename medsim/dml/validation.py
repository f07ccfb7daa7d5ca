"""Validation of a space while it trains: MAP@R on the ``val`` split's documents.

Mean MAP@R (pml ``AccuracyCalculator``, same label = relevant) over each modality against
itself and each part modality against the texts, plus image -> own caption mAP (positives: the
image's own caption text) where both modalities exist. The mAP is the one evaluate reports
(:func:`medsim.dml.neighbours.mean_average_precision`), so validation and the report agree on
a ranking.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from medsim.dml.model import SharedSpace
from medsim.dml.neighbours import mean_average_precision
from medsim.dml.rows import ModalityRows, positive_pairs, project_rows

__all__ = ["MAP_AT_R", "frozen_scores", "validation_scores"]

# pml logs two INFO lines per k-NN call of its AccuracyCalculator: every validation, every modality.
logging.getLogger("PML").setLevel(logging.WARNING)

MAP_AT_R = "mean_average_precision_at_r"


def validation_scores(
    space: SharedSpace, modalities: Mapping[str, ModalityRows], split: str = "val"
) -> dict[str, float]:
    """MAP@R per modality against itself and per part modality against the texts, plus their mean
    under ``"map_at_r"``. Empty when ``split`` has no labelled items."""
    calculator = AccuracyCalculator(
        include=(MAP_AT_R,), k="max_bin_count", device=torch.device("cpu")
    )
    scores: dict[str, float] = {}
    projected: dict[str, tuple[torch.Tensor, np.ndarray]] = {}
    was_training = space.training
    space.eval()
    with torch.no_grad():
        for name, modality in modalities.items():
            if name not in space.heads:
                continue
            rows = np.flatnonzero((modality.split == split) & (modality.label >= 0))
            if len(rows):
                projected[name] = (project_rows(space, modality, name, rows), modality.label[rows])
    space.train(was_training)
    for name, (z, y) in projected.items():
        score = _map_at_r(calculator, z, y, z, y, same=True)
        if score is not None:
            scores[f"{name}/{name}"] = score
    cross = _pair_retrieval(space, modalities, split)
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


def _pair_retrieval(
    space: SharedSpace, modalities: Mapping[str, ModalityRows], split: str
) -> float | None:
    """Image -> caption MAP@R on ``split``: an image's relevant captions are those with its own
    caption's text (caption groups), not same-class ones. None without such pairs."""
    pair = next(
        (p for p in positive_pairs(modalities, split) if (p.a, p.b) == ("image", "caption")), None
    )
    if pair is None or "image" not in space.heads or "caption" not in space.heads:
        return None
    # the gallery: one row per distinct caption text
    _, first = np.unique(pair.keys, return_index=True)
    was_training = space.training
    space.eval()
    with torch.no_grad():
        zi = project_rows(space, modalities["image"], "image", pair.a_rows)
        zc = project_rows(space, modalities["caption"], "caption", pair.b_rows[first])
    space.train(was_training)
    relevant = pair.keys[:, None] == pair.keys[first][None, :]
    return mean_average_precision(zi.numpy() @ zc.numpy().T, relevant)


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


def frozen_scores(modalities: Mapping[str, ModalityRows], split: str = "val") -> dict[str, float]:
    """Within-modality MAP@R of the frozen embeddings themselves (cosine), for reference."""
    calculator = AccuracyCalculator(
        include=(MAP_AT_R,), k="max_bin_count", device=torch.device("cpu")
    )
    scores = {}
    for name, modality in modalities.items():
        rows = np.flatnonzero((modality.split == split) & (modality.label >= 0))
        if len(rows):
            z = torch.nn.functional.normalize(modality.x[torch.from_numpy(rows)], dim=-1)
            score = _map_at_r(
                calculator, z, modality.label[rows], z, modality.label[rows], same=True
            )
            if score is not None:
                scores[f"{name}/{name}"] = score
    return scores
