"""The DVC ``evaluate`` stage: build every metrics table, then write JSON, plots and report.

:func:`evaluate_tables` is pure over an :class:`EvalContext` (arrays, a space, an encoder);
:func:`run_evaluate` adds the file I/O at the edges: it reads ``data/articles.parquet``,
``data/figures.parquet``, ``data/embeddings/`` and ``data/model/``, and writes
``metrics/<table>.json``, ``plots/*.png`` and ``metrics/REPORT.md``, each atomically.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medsim.config import Params
from medsim.dml.candidates import space_reading
from medsim.dml.fit import LAYER_CACHE_DIR, TEXT_MODALITIES
from medsim.errors import MedsimError
from medsim.evaluate.calibration import build_calibration
from medsim.evaluate.classification import build_table1, confusion
from medsim.evaluate.context import (
    Built,
    EvalContext,
    SpaceOps,
    TextEncoderFn,
    load_figures_meta,
)
from medsim.evaluate.crossdomain import build_table3
from medsim.evaluate.fewshot import build_table2
from medsim.evaluate.modality import build_modality
from medsim.evaluate.plots import (
    confusion_png,
    fewshot_png,
    read_training_history,
    space_map_png,
    training_curves_png,
)
from medsim.evaluate.report import render_report
from medsim.evaluate.retrieval import build_retrieval
from medsim.evaluate.space import build_space, design_note
from medsim.evaluate.textbench import build_textbench
from medsim.io import atomic_path, read_table
from medsim.paths import (
    ARTICLES_PATH,
    EMBEDDINGS_CACHE_DIR,
    EMBEDDINGS_DIR,
    FIGURES_PATH,
    MODEL_DIR,
    SPACE_EMBEDDINGS,
)
from medsim.schemas import ARTICLES

__all__ = [
    "BUILDERS",
    "Builder",
    "corpus_notes",
    "evaluate_tables",
    "load_context",
    "run_evaluate",
    "split_details",
    "write_outputs",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Builder:
    """One metrics file's builder, and the earlier builders whose products it reads (passed
    to it by name, read-only: the registry's order cannot silently decide a number)."""

    build: Callable[..., Built]
    reads: tuple[str, ...] = ()


def _table_only(build: Callable[..., dict]) -> Callable[..., Built]:
    """A builder that makes its metrics table and nothing a later builder reads."""
    return lambda ctx, **products: Built(build(ctx, **products))


# metrics file stem -> builder; the files dvc.yaml declares as metrics
BUILDERS: dict[str, Builder] = {
    "table1": Builder(build_table1),
    "table2": Builder(_table_only(build_table2)),
    "table3": Builder(_table_only(build_table3)),
    "retrieval": Builder(_table_only(build_retrieval)),
    "modality": Builder(_table_only(build_modality)),
    "textbench": Builder(_table_only(build_textbench), reads=("table1",)),
    "space": Builder(_table_only(build_space)),
    "calibration": Builder(_table_only(build_calibration)),  # medsim classify's ECE on test
}
ARTICLE_COLUMNS = ["doc_id", "title", "abstract", "label", "split", "source"]


def evaluate_tables(
    ctx: EvalContext, builders: Mapping[str, Builder] | None = None
) -> dict[str, Built]:
    """Every table of ``builders`` (default :data:`BUILDERS`), in order; each gets the
    products of the earlier ones it reads, and reading a later one is an error."""
    built: dict[str, Built] = {}
    for name, builder in (BUILDERS if builders is None else builders).items():
        missing = [n for n in builder.reads if n not in built]
        if missing:
            raise MedsimError(f"evaluate: {name} reads {missing}, which are not built before it")
        start = time.perf_counter()
        built[name] = builder.build(ctx, **{n: built[n].products for n in builder.reads})
        log.info("%s done in %.1f s", name, time.perf_counter() - start)
    return built


def load_context(params: Params, root: Path) -> EvalContext:
    """Read the pipeline's outputs under ``root`` into an :class:`EvalContext`."""
    from medsim.dml.data import load_features
    from medsim.evaluate.encode import load_encoder

    articles = read_table(root / ARTICLES_PATH, ARTICLES, ARTICLE_COLUMNS).to_pandas()
    features = load_features(root / EMBEDDINGS_DIR)
    figures = load_figures_meta(root / FIGURES_PATH)
    encoder, note = load_encoder(params.embed, root)
    log.info("text encoder for new texts: %s", note)
    space = load_space_ops(params, root, features, encoder)
    return EvalContext(
        params=params,
        articles=articles,
        features=features,  # the embed stage's frozen vectors: every baseline reads these
        figures=figures,
        space=space,
        encode_text=encoder,
        encoder_note=note,
        root=root,
        cache_root=root,
    )


def load_space_ops(
    params: Params, root: Path, frozen: dict, frozen_encoder: TextEncoderFn | None
) -> SpaceOps:
    """The trained space of ``data/model`` with its inputs: when it makes its own text
    vectors (a tuned encoder, a lexical part), the text modalities the train stage wrote
    (``data/model/embeddings``) and its way of encoding new texts; else the frozen features
    and encoder."""
    from medsim.dml import load_shared_space
    from medsim.dml.data import load_features
    from medsim.dml.lexical import LexicalEncoder, hybrid_encoder
    from medsim.dml.tune import read_text_items

    model_dir = root / MODEL_DIR
    space = load_shared_space(model_dir)
    items = read_text_items(root)
    ops = SpaceOps(space, params, None, frozen_encoder, None, frozen, items, root)
    ops.frozen_encode = frozen_encoder
    if not space.own_text_inputs:
        return ops
    ops.tuned = _load_tuned(params, root, space) if space.text_model else None
    ops.lexical = LexicalEncoder.load(model_dir / space.lexical) if space.lexical else None
    dense = ops.tuned.encode if ops.tuned is not None else frozen_encoder
    ops.encode = hybrid_encoder(dense, ops.lexical, ops.lexical_weight)
    ops.features = {k: v for k, v in frozen.items() if k not in TEXT_MODALITIES}
    ops.features |= load_features(model_dir / SPACE_EMBEDDINGS)
    log.info("proposed space %s: its own text modalities (%s)", ops.candidate, model_dir)
    return ops


def _load_tuned(params: Params, root: Path, space: object) -> object:
    """The tuned text encoder in ``data/model`` as a :class:`~medsim.dml.tune.TunedText`."""
    from medsim.dml.tune import TunedText
    from medsim.encoders.layers import SplitEncoder
    from medsim.encoders.text import load_text_encoder

    tuned_params = space.params
    encoder = load_text_encoder(
        str(root / MODEL_DIR / space.text_model),
        max_tokens=int(tuned_params.get("max_tokens", params.train.max_tokens)),
        batch_size=params.embed.batch_size,
        device=params.embed.device,
        instruction=params.embed.instruction,
        root=root,
        long_text=space_reading(tuned_params, params.embed.long_text),
        stride=params.embed.window_stride,
    )
    split = SplitEncoder(
        encoder,
        int(tuned_params.get("tune_layers", params.train.tune_layers)),
        encoder.max_tokens,
        root / LAYER_CACHE_DIR,
    )
    return TunedText(split, root / EMBEDDINGS_CACHE_DIR)


def _clean(value: object) -> object:
    """JSON-safe: numpy scalars to Python, NaN/inf to null."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _is_detail(key: str, value: object) -> bool:
    if value is None:  # a metric that cannot be computed here: null, in the metrics file
        return False
    if isinstance(value, bool) or not isinstance(value, int | float):
        return True  # reasons, protocol names, class lists: text, not metrics
    if "_difference" in key:  # one row minus another: a reading in [-1, 1], not a metric
        return True
    timing = key.endswith(("_s", "seconds", "_per_image"))  # a time under 1 s is no fraction
    return isinstance(value, int) or timing or not 0.0 <= value <= 1.0


def split_details(table: dict) -> tuple[dict, dict]:
    """(metrics, details): counts, settings and timings move out of the metrics file.

    Metrics files hold only fractions in [0, 1] (null where a row cannot be computed), so
    that ``dvc metrics diff`` and ``dvc exp show`` compare like with like; the rest (why a
    row is null, the few-shot protocol, test-set sizes, dropped rows, seconds) goes to
    ``metrics/details/<table>.json`` and into the report.
    """
    metrics: dict = {}
    details: dict = {}
    for key, value in table.items():
        if isinstance(value, dict):
            m, d = split_details(value)
            if m:
                metrics[key] = m
            if d:
                details[key] = d
        elif _is_detail(key, value):
            details[key] = value
        else:
            metrics[key] = value
    return metrics, details


def corpus_notes(ctx: EvalContext) -> list[str]:
    """Plain statements of how this run's corpus and models differ from the seed papers'."""
    a = ctx.articles
    sources = ", ".join(sorted(a["source"].dropna().unique())) or "unknown source"
    splits = a["split"].value_counts().to_dict()
    n_images = len(ctx.features["image"][0]) if ctx.has_images else 0
    notes = [
        f"This run: {len(a)} documents from {sources}, {a['label'].nunique()} labels, splits "
        f"{splits}, {n_images} figures with image embeddings.",
        "The LLM + DML paper classifies about 2,500 PubMed cancer abstracts with their figures "
        "and tables (encoders pretrained on MedSegBench) and gives neither its splits nor its "
        "LLM; its numbers cannot be reproduced here and are shown for orientation only.",
        f"The 'LLM' here is embed.text_model = {ctx.params.embed.text_model}, a small sentence "
        "encoder; the 'CNN' is embed.image_model = "
        f"{ctx.params.embed.image_model} features. No ResNet-50 or EfficientNet-B0 weights are "
        "available offline, so both image rows are softmax heads (linear, one-hidden-layer MLP) "
        "over those features, not fine-tuned networks.",
        f"Texts the embed stage never saw (cross-domain target, separate titles and abstracts, "
        f"zero-shot prompts) were encoded with: {ctx.encoder_note}.",
        "Metric-learning rows classify in their learned space: 'metric_learning_no_llm' and "
        f"'proposed_knn' by distance-weighted kNN (k = {ctx.params.evaluate.knn_k}), "
        "'proposed_prototype' by nearest class mean, and 'proposed' by whichever of the two "
        f"the train stage chose on the validation split (here {ctx.space.rule}). The no-LLM "
        "baseline is TF-IDF + SVD text features (plus the CNN "
        "features when there are figures) trained with triplet loss by the same train_space.",
    ]
    if not ctx.has_images:
        notes.append(
            "Text-only corpus: every image row (CNN, late fusion, retrieval, modality) is null "
            "with a reason; the seed paper's multimodal rows have no counterpart here."
        )
    else:
        notes.append(
            "Modality figures (PairDx) come from 6 balanced document classes and fine-tuned "
            "CLIP; here the labels are the corpus's own (e.g. CT vs MR) on held-out cases. "
            "Retrieval figures (LSCH) are MIMIC-CXR report retrieval at ~100k pairs; here "
            "galleries are one test split of a few hundred items, positives by caption text "
            "or by case."
        )
    return notes


def write_plots(ctx: EvalContext, built: Mapping[str, Built], plots_dir: Path) -> list[str]:
    """Write every figure the run has data for; return their paths relative to the root."""
    written: list[Path] = []
    tables = {name: b.table for name, b in built.items()}
    t1 = built["table1"].products if "table1" in built else {}
    if "proba" in t1:
        for model in ("proposed", "text_softmax"):
            proba = t1["proba"].get(model)
            if proba is not None:
                cm = confusion(t1["y_test"], proba, t1["classes"])
                written.append(
                    confusion_png(
                        cm,
                        t1["classes"],
                        f"{model} (test split)",
                        plots_dir / f"confusion_{model}.png",
                    )
                )
    curves = training_curves_png(read_training_history(ctx.root), plots_dir / "training_curves.png")
    if curves:
        written.append(curves)
    shots = sorted(ctx.params.evaluate.shots)
    if any(k.endswith("_shot") for k in tables.get("table2", {})):
        written.append(fewshot_png(tables["table2"], shots, plots_dir / "fewshot_accuracy.png"))
    panels: dict[str, tuple[np.ndarray, list[str]]] = {}
    if "test_vectors" in t1 and len(t1["test_vectors"]):
        labels = [t1["classes"][i] for i in t1["y_test"]]
        panels["test documents by class (shared space)"] = (t1["test_vectors"], labels)
    if (
        ctx.has_images
        and {"image", "caption"} <= set(ctx.space.modalities)
        and "caption" in ctx.space_features
    ):
        modality = dict(zip(ctx.figures["figure_id"], ctx.figures["modality"], strict=True))
        ids, _, images = ctx.features["image"]
        cap_ids, _, caps = ctx.space_features["caption"]
        vecs = np.vstack([ctx.space.project("image", images), ctx.space.project("caption", caps)])
        tags = [f"image {modality.get(i) or '?'}" for i in ids]
        tags += [f"caption {modality.get(i) or '?'}" for i in cap_ids]
        panels["figures: image or caption, and imaging modality (shared space)"] = (vecs, tags)
    if panels:
        written.append(space_map_png(panels, plots_dir / "space_map.png", seed=ctx.seed))
    return [p.relative_to(ctx.root).as_posix() for p in written]


def write_outputs(ctx: EvalContext, built: Mapping[str, Built]) -> None:
    """metrics/<table>.json, plots/*.png and metrics/REPORT.md under the context's root."""
    metrics_dir = ctx.root / "metrics"
    tables = {name: b.table for name, b in built.items()}
    for name, table in tables.items():
        metrics, details = split_details(_clean(table))
        with atomic_path(metrics_dir / f"{name}.json") as tmp:
            tmp.write_text(json.dumps(metrics, indent=2) + "\n")
        with atomic_path(metrics_dir / "details" / f"{name}.json") as tmp:
            tmp.write_text(json.dumps(details, indent=2) + "\n")
    plots = write_plots(ctx, built, ctx.root / "plots")
    design = "\n".join(design_note(ctx, _clean(tables.get("space"))))
    report = render_report(_clean(tables), plots, corpus_notes(ctx), design)
    with atomic_path(metrics_dir / "REPORT.md") as tmp:
        tmp.write_text(report)
    log.info("wrote %d metrics files, %d plots and metrics/REPORT.md", len(tables), len(plots))


def run_evaluate(params: Params, root: str | Path = ".") -> dict[str, dict]:
    """The DVC ``evaluate`` stage: read the pipeline's outputs, write metrics, plots, report."""
    root = Path(root)
    ctx = load_context(params, root)
    built = evaluate_tables(ctx)
    write_outputs(ctx, built)
    return {name: b.table for name, b in built.items()}
