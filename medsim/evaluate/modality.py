"""Figure modality classification (CT vs MR, plane): zero-shot, linear probe, image + caption.

Train and test figures come from different cases (the pipeline's split is per document, and
a MedPix case is one document), so no case is on both sides. A grouped 5-fold
cross-validation over every labelled figure is reported beside it for the linear probe and
the fusion, to compare with figures measured that way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medsim.evaluate.stats import null_row

if TYPE_CHECKING:
    from medsim.evaluate.context import EvalContext

__all__ = [
    "PROMPT_TEMPLATES",
    "build_modality",
    "class_prompts",
    "grouped_cv",
    "label_metrics",
    "timed_probe",
    "zero_shot_predict",
]

# How a radiologist would caption each value; unknown values fall back to the value itself.
SYNONYMS: dict[str, list[str]] = {
    "CT": ["CT", "computed tomography", "CT scan"],
    "MR": ["MR", "MRI", "magnetic resonance imaging"],
    "XR": ["radiograph", "X-ray"],
    "US": ["ultrasound", "sonography"],
    "Axial": ["axial"],
    "Sagittal": ["sagittal"],
    "Coronal": ["coronal"],
}
PROMPT_TEMPLATES = {
    "modality": ["{} image", "a {} of the patient", "{} shows the lesion"],
    "plane": ["{} image", "{} view", "{} slice shows the lesion"],
}


def class_prompts(task: str, classes: Sequence[str]) -> dict[str, list[str]]:
    """Text prompts per class for zero-shot classification in the shared space."""
    templates = PROMPT_TEMPLATES.get(task, ["{}"])
    return {
        c: [t.format(s) for s in SYNONYMS.get(str(c), [str(c)]) for t in templates] for c in classes
    }


def zero_shot_predict(image_vecs: np.ndarray, prompt_vecs: Sequence[np.ndarray]) -> np.ndarray:
    """Class index with the highest cosine between an image and the mean of its class prompts."""
    protos = np.stack([np.asarray(p).mean(axis=0) for p in prompt_vecs])
    protos /= np.maximum(np.linalg.norm(protos, axis=1, keepdims=True), 1e-12)
    images = image_vecs / np.maximum(np.linalg.norm(image_vecs, axis=1, keepdims=True), 1e-12)
    return (images @ protos.T).argmax(axis=1)


def label_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> dict:
    """Accuracy, macro-F1 and per-class F1 (class name -> F1) for integer labels."""
    labels = list(range(len(classes)))
    per_class = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    return {
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 6),
        "macro_f1": round(float(f1_score(y_true, y_pred, labels=labels, average="macro")), 6),
        "per_class_f1": {
            str(c): round(float(f), 6) for c, f in zip(classes, per_class, strict=True)
        },
        "n_test": len(y_true),
    }


def _probe() -> object:
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))


def timed_probe(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray
) -> tuple[np.ndarray, float, float]:
    """Fit a logistic probe; return (predictions, train seconds, inference seconds per item)."""
    model = _probe()
    start = time.perf_counter()
    model.fit(x_train, y_train)
    trained = time.perf_counter()
    pred = model.predict(x_test)
    per_item = (time.perf_counter() - trained) / max(len(x_test), 1)
    return pred, trained - start, per_item


def grouped_cv(
    features: Mapping[str, np.ndarray],
    y: np.ndarray,
    groups: Sequence[str],
    seed: int,
    folds: int = 5,
    fit_predict: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> dict[str, float | None]:
    """Pooled out-of-fold accuracy per feature set, folds grouped by case and stratified."""
    groups = np.asarray(groups)
    n_splits = min(folds, len(np.unique(groups)))
    if n_splits < 2 or len(np.unique(y)) < 2:
        return dict.fromkeys(features)
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    out: dict[str, float | None] = {}
    for name, x in features.items():
        pred = np.empty_like(y)
        for train, test in splitter.split(x, y, groups):
            if fit_predict is not None:
                pred[test] = fit_predict(x[train], y[train], x[test])
            else:
                pred[test] = _probe().fit(x[train], y[train]).predict(x[test])
        out[name] = round(float(accuracy_score(y, pred)), 6)
    return out


MIN_PER_CLASS = 5  # rarer label values are dropped (counted), a probe cannot learn them
MODELS = ("zero_shot", "linear_probe", "fusion")


def build_modality(ctx: EvalContext) -> dict:
    """Modality and plane of the test cases' figures from the figures' own labels."""
    if not ctx.has_images:
        return {"modality": {m: null_row(ctx.image_reason(), ["accuracy"]) for m in MODELS}}
    img_ids, img_docs, images = ctx.features["image"]
    meta = ctx.figures.set_index("figure_id")
    split_of = dict(zip(ctx.articles["doc_id"], ctx.articles["split"], strict=True))
    cap_row = {fid: i for i, fid in enumerate(ctx.features.get("caption", ([], [], None))[0])}
    table: dict = {}
    for task in ("modality", "plane"):
        values = [
            meta[task].get(fid) if task in meta.columns and fid in meta.index else None
            for fid in img_ids
        ]
        usable = [i for i, v in enumerate(values) if isinstance(v, str) and v]
        table[task] = _task(ctx, task, values, usable, img_docs, images, split_of, cap_row)
    return table


def _task(
    ctx: EvalContext,
    task: str,
    values: list[str | None],
    usable: list[int],
    img_docs: list[str],
    images: np.ndarray,
    split_of: dict[str, str],
    cap_row: dict[str, int],
) -> dict:
    """One labelling task (``modality`` or ``plane``) over the figures indexed by ``usable``."""
    img_ids = ctx.features["image"][0]
    counts: dict[str, int] = {}
    for i in usable:
        if split_of.get(img_docs[i]) in ("train", "val"):
            counts[values[i]] = counts.get(values[i], 0) + 1
    classes = sorted(c for c, n in counts.items() if n >= MIN_PER_CLASS)
    if len(classes) < 2:
        reason = f"fewer than 2 {task} values with >= {MIN_PER_CLASS} training figures"
        return {m: null_row(reason, ["accuracy"]) for m in MODELS}
    cls = {c: i for i, c in enumerate(classes)}
    rows = [i for i in usable if values[i] in cls]
    train = [i for i in rows if split_of.get(img_docs[i]) in ("train", "val")]
    test = [i for i in rows if split_of.get(img_docs[i]) == "test"]
    if not test:
        return {m: null_row("no test-split figures with this label", ["accuracy"]) for m in MODELS}
    y = np.array([cls[values[i]] for i in rows])
    y_of = dict(zip(rows, y, strict=True))
    y_tr, y_te = np.array([y_of[i] for i in train]), np.array([y_of[i] for i in test])
    block: dict = {}

    block["zero_shot"] = _zero_shot(ctx, task, classes, images[test], y_te)
    pred, t_fit, t_inf = timed_probe(images[train], y_tr, images[test])
    block["linear_probe"] = _probe_row(y_te, pred, classes, t_fit, t_inf)
    has_caption = all(img_ids[i] in cap_row for i in rows)
    captions = ctx.features["caption"][2] if has_caption else None
    if captions is None:
        block["fusion"] = null_row("not every figure has a caption embedding", ["accuracy"])
        fused = None
    else:
        fused = np.hstack([images, captions[[cap_row.get(f, 0) for f in img_ids]]])
        pred, t_fit, t_inf = timed_probe(fused[train], y_tr, fused[test])
        block["fusion"] = _probe_row(y_te, pred, classes, t_fit, t_inf)
    feature_sets = {"linear_probe": images[rows]}
    if fused is not None:
        feature_sets["fusion"] = fused[rows]
    cv = grouped_cv(feature_sets, y, [img_docs[i] for i in rows], ctx.seed)
    block["grouped_cv5_accuracy"] = cv
    block["meta"] = {
        "classes": ",".join(classes),
        "n_train": len(train),
        "n_test": len(test),
        "dropped_rare_or_unlabelled": len(img_ids) - len(rows),
    }
    return block


def _zero_shot(
    ctx: EvalContext, task: str, classes: list[str], test_images: np.ndarray, y_te: np.ndarray
) -> dict:
    """Each test image's nearest class prompt (through the caption head) in the space."""
    space = ctx.space
    if (
        ctx.encode_text is None
        or "image" not in space.modalities
        or "caption" not in space.modalities
    ):
        return null_row(
            "zero-shot needs the text encoder and the space's image and caption heads",
            ["accuracy"],
        )
    prompts = class_prompts(task, classes)
    prompt_vecs = [ctx.space_texts(prompts[c], "caption") for c in classes]
    start = time.perf_counter()
    pred = zero_shot_predict(space.project("image", test_images), prompt_vecs)
    per_image = (time.perf_counter() - start) / len(test_images)
    return label_metrics(y_te, pred, classes) | {
        "train_time_s": 0.0,
        "inference_s_per_image": round(per_image, 6),
    }


def _probe_row(
    y_te: np.ndarray, pred: np.ndarray, classes: list[str], t_fit: float, t_inf: float
) -> dict:
    return label_metrics(y_te, pred, classes) | {
        "train_time_s": round(t_fit, 4),
        "inference_s_per_image": round(t_inf, 6),
    }
