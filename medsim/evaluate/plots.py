"""PNG figures for `dvc plots show`: confusion matrices, training curves, few-shot accuracy
against K, and a 2-D map of the shared space. Matplotlib's Agg backend, written atomically."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from medsim.io import atomic_path
from medsim.paths import TRAINING_HISTORY_PATH

__all__ = [
    "confusion_png",
    "fewshot_png",
    "read_training_history",
    "space_map_png",
    "training_curves_png",
]

log = logging.getLogger(__name__)


def _save(fig: plt.Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def confusion_png(cm: np.ndarray, classes: Sequence[str], title: str, path: Path) -> Path:
    """Row-normalised confusion matrix (truth down, prediction across) with counts."""
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.4 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    if len(classes) <= 12:
        for i, j in np.ndindex(cm.shape):
            color = "white" if rates[i, j] > 0.5 else "black"
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7, color=color)
    return _save(fig, path)


def read_training_history(root: Path) -> dict[str, list[tuple[float, float]]]:
    """Curves the train stage logged: dvclive's ``plots/metrics/**/*.tsv`` under
    ``dvclive/train``, else ``data/model/history.json``; metric -> [(step, value)]."""
    curves: dict[str, list[tuple[float, float]]] = {}
    live = root / "dvclive" / "train" / "plots" / "metrics"
    for tsv in sorted(live.rglob("*.tsv")) if live.is_dir() else []:
        with tsv.open() as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        name = tsv.relative_to(live).with_suffix("").as_posix()
        key = next((k for k in (rows[0] if rows else {}) if k not in ("step", "timestamp")), None)
        if key:
            curves[name] = [(float(r["step"]), float(r[key])) for r in rows if r.get(key)]
    history = root / TRAINING_HISTORY_PATH
    if not curves and history.is_file():
        for row in json.loads(history.read_text()):
            for key, value in row.items():
                if key != "epoch" and isinstance(value, int | float):
                    curves.setdefault(key, []).append((float(row.get("epoch", 0)), float(value)))
    return curves


def training_curves_png(curves: Mapping[str, list[tuple[float, float]]], path: Path) -> Path | None:
    """One panel per logged metric against epoch; ``None`` when nothing was logged."""
    if not curves:
        return None
    fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3.2), squeeze=False)
    for ax, (name, points) in zip(axes[0], curves.items(), strict=True):
        steps, values = zip(*points, strict=True) if points else ((), ())
        ax.plot(steps, values, marker="o", markersize=3)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch")
    return _save(fig, path)


def fewshot_png(table2: Mapping[str, Mapping], shots: Sequence[int], path: Path) -> Path:
    """Mean episode accuracy (with its 95% interval) against shots per class, per model."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    models = sorted({m for k in shots for m in table2.get(f"{k}_shot", {})})
    for model in models:
        ks, acc, lo, hi = [], [], [], []
        for k in shots:
            row = table2.get(f"{k}_shot", {}).get(model, {})
            if row.get("accuracy") is not None:
                ks.append(k)
                acc.append(row["accuracy"])
                lo.append(row["accuracy"] - row["accuracy_ci_low"])
                hi.append(row["accuracy_ci_high"] - row["accuracy"])
        if ks:
            ax.errorbar(ks, acc, yerr=[lo, hi], marker="o", capsize=3, label=model)
    ax.set_xticks(list(shots))
    ax.set_xlabel("shots per class (K)")
    ax.set_ylabel("episode accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    return _save(fig, path)


def space_map_png(
    panels: Mapping[str, tuple[np.ndarray, Sequence[str]]],
    path: Path,
    seed: int = 0,
    max_points: int = 600,
) -> Path:
    """t-SNE map of each panel's vectors (title -> (vectors, colour labels))."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 5), squeeze=False)
    rng = np.random.default_rng(seed)
    for ax, (title, (vectors, labels)) in zip(axes[0], panels.items(), strict=True):
        labels = np.asarray(labels, dtype=object)
        if len(vectors) > max_points:
            keep = rng.choice(len(vectors), size=max_points, replace=False)
            vectors, labels = vectors[keep], labels[keep]
        if len(vectors) >= 10:
            xy = TSNE(
                n_components=2,
                init="pca",
                random_state=seed,
                perplexity=min(30, len(vectors) // 4),
                max_iter=500,
            ).fit_transform(vectors)
        else:
            xy = PCA(n_components=2).fit_transform(vectors) if len(vectors) > 2 else vectors[:, :2]
        values = sorted({str(v) for v in labels})
        cmap = plt.get_cmap("tab20", max(len(values), 1))
        for i, value in enumerate(values):
            mask = np.array([str(v) == value for v in labels])
            ax.scatter(xy[mask, 0], xy[mask, 1], s=6, color=cmap(i), label=value)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        if len(values) <= 25:
            ax.legend(fontsize=6, markerscale=2, loc="best", ncol=2)
    return _save(fig, path)
