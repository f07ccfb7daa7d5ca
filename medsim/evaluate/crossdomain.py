"""Table 3: train on the pipeline's corpus, test on another corpus with the same label space.

The default target is the Medical Abstracts corpus, whose 363 rows repeat an OHSUMED training
document; a cross-domain score that keeps them measures memory, not transfer. Rows whose
whitespace-normalised text equals a source document's title + abstract are dropped and
counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from medsim.dml.neighbours import rule_proba
from medsim.errors import MedsimError
from medsim.evaluate.baselines import knn_proba, logistic_proba, tfidf_features
from medsim.evaluate.classification import METRICS, classification_table
from medsim.evaluate.memo import cached, head_params
from medsim.evaluate.stats import null_row

if TYPE_CHECKING:
    from medsim.evaluate.context import EvalContext

__all__ = [
    "MODELS",
    "TargetCorpusError",
    "build_table3",
    "map_target_labels",
    "normalise_text",
    "overlap_mask",
    "read_target_corpus",
]

TEXT_COLUMNS = ("medical_abstract", "abstract", "text", "document")
LABEL_COLUMNS = ("condition_label", "label", "class", "category")


class TargetCorpusError(MedsimError, ValueError):
    """``evaluate.cross_domain_target`` names something that is not a labelled text corpus."""


def normalise_text(text: str) -> str:
    """Collapse every run of whitespace to one space and strip the ends."""
    return " ".join(str(text).split())


def overlap_mask(target_texts: Iterable[str], source_texts: Iterable[str]) -> np.ndarray:
    """True for each target text that equals (after :func:`normalise_text`) a source text."""
    seen = {normalise_text(t) for t in source_texts}
    return np.array([normalise_text(t) in seen for t in target_texts], dtype=bool)


def read_target_corpus(path: str | Path) -> pd.DataFrame:
    """Read a labelled CSV corpus (a file, or a folder holding one data CSV): columns text, label.

    The Medical Abstracts layout (``condition_label``, ``medical_abstract``) and plain
    ``label``/``text`` columns are recognised; a ``*labels*.csv`` legend file is skipped.
    """
    path = Path(path)
    if path.is_dir():
        candidates = sorted(p for p in path.glob("*.csv") if "label" not in p.stem.lower())
        if len(candidates) != 1:
            raise TargetCorpusError(
                f"{path}: expected one data CSV in the folder, found {[p.name for p in candidates]}"
            )
        path = candidates[0]
    if not path.is_file():
        raise TargetCorpusError(f"cross-domain target not found: {path}")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    text = next((c for c in TEXT_COLUMNS if c in frame.columns), None)
    label = next((c for c in LABEL_COLUMNS if c in frame.columns), None)
    if text is None or label is None:
        raise TargetCorpusError(
            f"{path}: need a text column ({', '.join(TEXT_COLUMNS)}) and a label column "
            f"({', '.join(LABEL_COLUMNS)}); found {list(frame.columns)}"
        )
    return pd.DataFrame({"text": frame[text], "label": frame[label].str.strip()})


def map_target_labels(
    labels: Sequence[str], mapping: Mapping[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    """Translate target labels to source labels; returns (mapped, known mask).

    An empty ``mapping`` means the corpora already share label names.
    """
    labels = [str(x) for x in labels]
    if not mapping:
        return np.asarray(labels, dtype=object), np.ones(len(labels), dtype=bool)
    mapped = np.asarray([mapping.get(x) for x in labels], dtype=object)
    return mapped, np.array([m is not None for m in mapped], dtype=bool)


MODELS = ("text_softmax", "tfidf_softmax", "metric_learning_no_llm", "proposed")


def _null_table(reason: str, meta: dict | None = None) -> dict:
    return {m: null_row(reason, METRICS) for m in MODELS} | {"meta": meta or {}}


def build_table3(ctx: EvalContext) -> dict:
    """Table 3: models fitted on the corpus's non-test documents of the shared classes, scored
    on the target corpus without its rows that repeat a train or val document."""
    ev = ctx.params.evaluate
    if not ev.cross_domain_target:
        return _null_table(
            "evaluate.cross_domain_target is empty (the default): set it to a labelled CSV "
            "corpus that shares this corpus's labels to score Table 3"
        )
    target_path = Path(ev.cross_domain_target)
    if not target_path.is_absolute():
        target_path = ctx.root / target_path
    try:
        target = read_target_corpus(target_path)
    except TargetCorpusError as exc:
        return _null_table(str(exc))
    mapped, known = map_target_labels(target["label"], ev.cross_domain_labels)
    classes = sorted(set(mapped[known]))
    missing = sorted(set(classes) - set(ctx.docs["label"]))
    if missing or not classes:
        return _null_table(
            f"the pipeline's corpus does not share the target's label space: labels "
            f"{', '.join(missing) or '(none)'} (from evaluate.cross_domain_labels) are not "
            "among its document labels"
        )
    source = ctx.docs[ctx.docs["label"].isin(classes) & (ctx.docs["split"] != "test")]
    keep, meta = _drop_leaks(ctx, target, known)
    meta |= {"n_source": len(source), "n_classes": len(classes)}
    if ctx.encode_text is None:
        return _null_table("no text encoder could be loaded to embed the target corpus", meta)
    target = target.loc[keep].reset_index(drop=True)
    cls = {c: i for i, c in enumerate(classes)}
    y_src = source["label"].map(cls).to_numpy()
    y_tgt = np.array([cls[m] for m in mapped[keep]])
    src_ids = source["doc_id"].tolist()
    x_src = ctx.text_vectors(src_ids)
    x_tgt = ctx.encode_text(target["text"].tolist())
    src, tgt = (x_src, y_src), (x_tgt, y_tgt)
    table = cached(
        ctx.cache_root,
        "table3_frozen",
        _frozen_key(ctx, source, target, src, tgt),
        lambda: _frozen_rows(ctx, source, target, src, tgt, len(classes)),
    )
    s_src = ctx.space.project("text", ctx.space_inputs("text", src_ids))
    proposed = rule_proba(
        ctx.space.rule,
        s_src,
        y_src,
        ctx.space_texts(target["text"].tolist()),
        len(classes),
        k=ev.knn_k,
        temperature=ctx.params.train.temperature,
    )
    table |= classification_table({"proposed": proposed}, y_tgt, ev.bootstrap, ctx.seed)
    table["meta"] = meta
    return table


def _drop_leaks(ctx: EvalContext, target: pd.DataFrame, known: np.ndarray) -> tuple:
    """(rows of ``target`` to score, counts): any document a model could have learned from
    (train or val, every class) is a leak; repeats of the source's test documents are not,
    and are only counted."""
    fitted = ctx.articles[ctx.articles["split"] != "test"]
    overlap = overlap_mask(target["text"], ctx.doc_texts(fitted))
    also_in_test = overlap_mask(target["text"], ctx.doc_texts(ctx.articles)) & ~overlap
    keep = known & ~overlap
    meta = {
        "n_target_rows": len(target),
        "dropped_unmapped_label": int((~known).sum()),
        "dropped_overlap_with_source": int((known & overlap).sum()),
        "dropped_overlap_fraction": round(float((known & overlap).mean()), 6),
        "kept_repeats_of_source_test_documents": int((keep & also_in_test).sum()),
        "n_target": int(keep.sum()),
    }
    return keep, meta


def _frozen_key(
    ctx: EvalContext,
    source: pd.DataFrame,
    target: pd.DataFrame,
    src: tuple[np.ndarray, np.ndarray],  # (vectors, class ids) of the source documents
    tgt: tuple[np.ndarray, np.ndarray],  # and of the target texts
) -> list:
    """Everything :func:`_frozen_rows` reads, as the evaluate cache's key."""
    ev = ctx.params.evaluate
    return [
        source[["doc_id", "label", "split", "title", "abstract"]],
        target["text"].tolist(),
        tgt[1],
        src[0],
        tgt[0],
        ctx.seed,
        ev.knn_k,
        ev.bootstrap,
        head_params(ctx.params.train),
    ]


def _frozen_rows(
    ctx: EvalContext,
    source: pd.DataFrame,
    target: pd.DataFrame,
    src: tuple[np.ndarray, np.ndarray],
    tgt: tuple[np.ndarray, np.ndarray],
    n_classes: int,
) -> dict:
    """Table 3's rows that read neither ``loss`` nor the tuned encoder: frozen-encoder and
    TF-IDF softmax, and the no-LLM metric-learning space (triplet on TF-IDF)."""
    (x_src, y_src), (x_tgt, y_tgt) = src, tgt
    seed, k = ctx.seed, ctx.params.evaluate.knn_k
    outputs: dict = {"text_softmax": logistic_proba(x_src, y_src, x_tgt, n_classes, seed)}
    src_ids = source["doc_id"].tolist()
    src_texts = ctx.doc_texts(source)
    tfidf = tfidf_features(src_texts, [*src_texts, *target["text"]], seed=seed)
    t_src, t_tgt = tfidf[: len(src_ids)], tfidf[len(src_ids) :]
    outputs["tfidf_softmax"] = logistic_proba(t_src, y_src, t_tgt, n_classes, seed)
    no_llm = ctx.space.retrain(
        {"text": (src_ids, src_ids, t_src)},
        dict(zip(src_ids, source["label"], strict=True)),
        dict(zip(src_ids, source["split"], strict=True)),
        loss="triplet",
    )
    outputs["metric_learning_no_llm"] = knn_proba(
        no_llm.project("text", t_src), y_src, no_llm.project("text", t_tgt), n_classes, k
    )
    return classification_table(outputs, y_tgt, ctx.params.evaluate.bootstrap, seed)
