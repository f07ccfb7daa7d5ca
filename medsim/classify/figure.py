"""A figure alone: its modality and plane, by the best model of the evaluate stage's modality rows.

For each task the corpus labels (``modality``, ``plane`` in ``data/figures.parquet``), the
model is the one of ``metrics/modality.json`` with the higher test accuracy among those that
need no caption (a lone figure has none): the zero-shot row (cosine between the figure and the
class prompts in the shared space) or the linear probe (a logistic probe over the image
model's features, fitted here on the training and validation figures, as that row is). The
fusion row needs a caption and is not a candidate. Without the metrics file, the linear probe.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from pydantic import BaseModel

from medsim.names import Modality
from medsim.paths import ARTICLES_PATH, EMBEDDINGS_DIR, FIGURES_PATH

__all__ = ["FigureLabel", "FigureLabeller", "best_model", "fit_labeller", "load_labellers"]

TASKS = ("modality", "plane")
CANDIDATES = ("linear_probe", "zero_shot")  # the modality rows a caption-less figure can use


class FigureLabel(BaseModel):
    """One label of a figure: its value and the model that gave it, or why there is none."""

    task: str
    value: str | None = None
    model: str | None = None
    reason: str | None = None


def best_model(metrics: dict, task: str) -> str:
    """The caption-free modality row with the best test accuracy (linear probe on ties or
    without scores)."""
    rows = metrics.get(task, {}) if isinstance(metrics, dict) else {}
    scores = {m: (rows.get(m) or {}).get("accuracy") for m in CANDIDATES}
    scored = {m: s for m, s in scores.items() if isinstance(s, int | float)}
    return max(scored, key=lambda m: (scored[m], m == "linear_probe")) if scored else CANDIDATES[0]


@dataclass
class FigureLabeller:
    """One task's model: a fitted probe over image features, or class prompt vectors."""

    task: str
    model: str
    classes: list[str]
    probe: object | None = None  # sklearn pipeline (linear_probe)
    prompts: np.ndarray | None = None  # [n_classes, dim] unit prompt means (zero_shot)

    def label(self, features: np.ndarray, projected: np.ndarray) -> FigureLabel:
        """The label of one figure from its image features [1, d] and space vector [1, dim]."""
        if self.probe is not None:
            value = self.classes[int(self.probe.predict(features)[0])]
        else:
            value = self.classes[int((projected @ self.prompts.T).argmax())]
        return FigureLabel(task=self.task, value=value, model=self.model)


def fit_labeller(
    task: str,
    model: str,
    features: np.ndarray,
    values: list[str | None],
    train: np.ndarray,
    encode_prompts: Callable[[list[str]], np.ndarray] | None = None,
) -> FigureLabeller | FigureLabel:
    """The ``model`` of one task from labelled figures (``train``: rows of the training and
    validation splits), or a FigureLabel saying why there is none."""
    from medsim.evaluate.modality import MIN_PER_CLASS, class_prompts

    counts: dict[str, int] = {}
    for i in np.flatnonzero(train):
        if values[i]:
            counts[values[i]] = counts.get(values[i], 0) + 1
    classes = sorted(c for c, n in counts.items() if n >= MIN_PER_CLASS)
    if len(classes) < 2:
        reason = f"fewer than 2 {task} values with >= {MIN_PER_CLASS} training figures"
        return FigureLabel(task=task, reason=reason)
    if model == "zero_shot" and encode_prompts is not None:
        prompts = class_prompts(task, classes)
        means = np.stack([encode_prompts(prompts[c]).mean(axis=0) for c in classes])
        means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
        return FigureLabeller(task, model, classes, prompts=means)
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cls = {c: n for n, c in enumerate(classes)}
    rows = [i for i in np.flatnonzero(train) if values[i] in cls]
    # the modality rows' linear probe (medsim.evaluate.modality), fitted once here
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    probe.fit(features[rows], np.array([cls[values[i]] for i in rows]))
    return FigureLabeller(task, "linear_probe", classes, probe=probe)


def load_labellers(
    root: Path, encode_prompts: Callable[[list[str]], np.ndarray] | None
) -> list[FigureLabeller | FigureLabel]:
    """Each task's labeller from a built project (the figures' labels and image features,
    the splits, ``metrics/modality.json``); an empty list when the corpus has no figures."""
    from medsim.evaluate.context import load_figures_meta

    root = Path(root)
    images = root / EMBEDDINGS_DIR / f"{Modality.IMAGE.embeddings}.parquet"
    figures = load_figures_meta(root / FIGURES_PATH)
    if not images.is_file() or figures.empty:
        return []
    table = pq.read_table(images, columns=["id", "doc_id", "vector"])
    if table.num_rows == 0:
        return []
    features = np.stack(table.column("vector").to_numpy(zero_copy_only=False)).astype(np.float32)
    splits = pq.read_table(root / ARTICLES_PATH, columns=["doc_id", "split"])
    split_of = dict(zip(*(splits.column(c).to_pylist() for c in ("doc_id", "split")), strict=True))
    train = np.array(
        [split_of.get(d) in ("train", "val") for d in table.column("doc_id").to_pylist()]
    )
    meta = figures.set_index("figure_id")
    metrics_path = root / "metrics" / "modality.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    out = []
    for task in TASKS:
        if task not in meta.columns or meta[task].isna().all():
            continue
        values = [meta[task].get(f) for f in table.column("id").to_pylist()]
        values = [v if isinstance(v, str) and v else None for v in values]
        out.append(
            fit_labeller(task, best_model(metrics, task), features, values, train, encode_prompts)
        )
    return out
