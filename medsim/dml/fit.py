"""The space a corpus gets: candidate spaces, each scored on the corpus's own validation split.

No one recipe wins on every corpus. Tuning the encoder wins on OHSUMED and loses 16 points to
plain residual heads on a cancer-hallmark corpus, whose classes hinge on gene and pathway
names that TF-IDF sees and a sentence encoder blurs. So :func:`fit_space` builds candidates,
cheapest first:

- ``head_only``: residual heads over the embed stage's vectors (seconds);
- ``tuned``: the encoder's top layers tuned with the loss, then WiSE-FT (minutes; only with
  ``train.tune_encoder``);
- each of them with the lexical part beside the dense vectors
  (:mod:`medsim.dml.lexical`), one candidate ``<base>+lexical<w>`` per non-zero weight ``w``
  in ``train.lexical_weights``;

scores each by kNN accuracy of the validation documents against the training documents (the
rule of Table 1's proposed row; validation MAP@R breaks ties, then the earlier candidate
wins) and keeps the best. The test split is never read. ``train.choose`` pins a candidate by
name (only that one is built); a candidate due to start after ``train.select_budget_s`` is
skipped and recorded as such.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from medsim.config import Params, TrainParams
from medsim.dml.data import Features
from medsim.dml.lexical import LexicalEncoder, hybrid
from medsim.dml.live import log_history
from medsim.dml.model import LEXICAL_DIR, TEXT_MODEL_DIR, SharedSpace, document_vectors
from medsim.dml.neighbours import knn_proba
from medsim.dml.rows import prepare_modalities
from medsim.dml.train import train_space
from medsim.dml.validation import validation_scores
from medsim.errors import MedsimError
from medsim.names import Modality
from medsim.paths import EMBEDDINGS_CACHE_DIR, LAYER_CACHE_DIR

__all__ = [
    "LAYER_CACHE_DIR",
    "TEXT_MODALITIES",
    "FittedSpace",
    "candidate_names",
    "fit_space",
    "validation_knn",
    "with_lexical",
]

log = logging.getLogger(__name__)

TEXT_MODALITIES = (Modality.TEXT, Modality.CAPTION, Modality.TABLE)
HEAD_ONLY, TUNED = "head_only", "tuned"


@dataclass
class FittedSpace:
    """A trained space and what its inputs are made of: the tuned text encoder (None: the
    embed stage's vectors), the lexical encoder (None: dense only) and the features its heads
    take; ``selection`` holds every candidate's validation scores."""

    space: SharedSpace
    history: list[dict[str, Any]]
    tuned: Any = None  # medsim.dml.tune.TunedText
    features: dict[str, Features] = field(default_factory=dict)
    tune_history: list[dict[str, Any]] = field(default_factory=list)
    lexical: LexicalEncoder | None = None
    selection: list[dict[str, Any]] = field(default_factory=list)

    @property
    def candidate(self) -> str:
        return str(self.space.params.get("candidate", ""))

    @property
    def lexical_weight(self) -> float:
        return float(self.space.params.get("lexical_weight", 0.0))


def _name(base: str, weight: float) -> str:
    return base if weight == 0 else f"{base}+lexical{weight:g}"


def _parse(name: str) -> tuple[str, float]:
    base, _, weight = name.partition("+lexical")
    return base, float(weight) if weight else 0.0


def candidate_names(train: TrainParams, can_tune: bool = True) -> list[str]:
    """The candidates of ``train.*`` in the order they are built (cheapest first)."""
    bases = [HEAD_ONLY] + ([TUNED] if train.tune_encoder and can_tune else [])
    return [_name(base, w) for base in bases for w in dict.fromkeys(train.lexical_weights)]


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Heads this small are bound by per-op overhead, not arithmetic: one thread is as fast on
    an idle machine and several times faster on a busy one (triplet on OHSUMED, 2 shared
    cores: 27 s with one thread, 200 s with two). The encoder's layers use every thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class _Corpus:
    """What every candidate reads."""

    params: Params
    root: Path
    frozen: Mapping[str, Features]
    labels: Mapping[str, str]
    splits: Mapping[str, str]
    items: Any  # medsim.dml.tune.TextItems, or None: no texts (no tuning, no lexical part)
    loss: str
    encode_all: bool

    @property
    def seen(self) -> set[str]:
        """Training and validation documents: all that choosing a candidate reads."""
        return {d for d, s in self.splits.items() if s in ("train", "val")}


def fit_space(
    params: Params,
    root: Path,
    frozen: Mapping[str, Features],
    labels: Mapping[str, str],
    splits: Mapping[str, str],
    items: Any = None,
    *,
    loss: str | None = None,
    choose: str | None = None,
    encode_all: bool = True,
    log_dir: Path | None = None,
) -> FittedSpace:
    """The best candidate on the validation split (see the module docstring), or the one
    ``choose`` (default ``train.choose``) names. ``encode_all`` False encodes only the
    training and validation documents (evaluation refits encode what they need)."""
    corpus = _Corpus(params, root, frozen, labels, splits, items, loss or params.loss, encode_all)
    names = candidate_names(params.train, items is not None and "text" in frozen)
    if not names:
        raise MedsimError("train.lexical_weights is empty: list at least one weight (0: none)")
    if items is None:
        names = [n for n in names if _parse(n)[1] == 0]
    choose = choose or params.train.choose
    if choose != "auto":
        if choose not in names:
            raise MedsimError(f"train.choose: '{choose}' is not a candidate here; one of {names}")
        names = [choose]
    fitted = _select(corpus, names)
    if fitted.tuned is not None and encode_all:  # the documents no candidate needed so far
        others = {k: v for k, v in fitted.features.items() if k not in TEXT_MODALITIES}
        dense = fitted.tuned.features(items)
        fitted.features = others | with_lexical(dense, fitted.lexical, items, fitted.lexical_weight)
    log_history(log_dir, fitted.history, int(fitted.space.params.get("best_epoch", 0)))
    return fitted


def _select(corpus: _Corpus, names: list[str]) -> FittedSpace:
    """Build the candidates in order, score them, return the best with the records."""
    budget = corpus.params.train.select_budget_s
    start = time.perf_counter()
    lexical = _fit_lexical(corpus) if any(_parse(n)[1] for n in names) else None
    tuning, tuned = _Tuning(corpus), None
    best: FittedSpace | None = None
    records: list[dict[str, Any]] = []
    for name in names:
        elapsed = time.perf_counter() - start
        if best is not None and budget and elapsed > budget:
            records.append({"candidate": name, "skipped": f"train.select_budget_s ({budget:g} s)"})
            continue
        base, weight = _parse(name)
        if weight and isinstance(lexical, str):  # too few words to fit a vocabulary on
            if len(names) == 1:
                raise MedsimError(lexical)
            records.append({"candidate": name, "skipped": lexical})
            continue
        if base == TUNED:
            tuned = tuning.get()
            if isinstance(tuned, str):  # e.g. an encoder that cannot be tuned: the rest stand
                if len(names) == 1:
                    raise MedsimError(tuned)
                records.append({"candidate": name, "skipped": tuned})
                continue
        fitted = _candidate(corpus, base, weight, lexical, tuned)
        record = {"candidate": name, **_scores(fitted, corpus)}
        record["seconds"] = round(time.perf_counter() - start - elapsed, 1)
        records.append(record)
        log.info("candidate %s: %s", name, _describe(record))
        if best is None or _key(record) > _key(best.selection[0]):
            best = fitted
            best.selection = [record]
    assert best is not None  # names is never empty
    chosen = best.selection[0]["candidate"]
    best.selection = [{**r, "chosen": r["candidate"] == chosen} for r in records]
    best.space.params["candidate"] = chosen
    log.info("chosen space: %s (of %d candidates)", chosen, len(records))
    return best


def _key(record: Mapping[str, Any]) -> tuple[float, float]:
    """Higher is better: validation kNN accuracy, then validation MAP@R (None: lowest)."""
    acc, mapr = record.get("val_knn_accuracy"), record.get("val_map_at_r")
    return (-np.inf if acc is None else acc, -np.inf if mapr is None else mapr)


def _describe(record: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in record.items() if k != "candidate")


def _fit_lexical(corpus: _Corpus) -> LexicalEncoder | str:
    """The lexical encoder, fitted on the training documents' texts only (or why not)."""
    items = corpus.items
    texts = [
        t
        for d, t in zip(items.doc_ids, items.texts, strict=True)
        if corpus.splits.get(d) == "train"
    ]
    try:
        return LexicalEncoder.fit(texts, corpus.params.train.lexical_dim, corpus.params.seed)
    except MedsimError as exc:
        return str(exc)


def with_lexical(
    dense: Mapping[str, Features], lexical: LexicalEncoder | None, items: Any, weight: float
) -> dict[str, Features]:
    """The text modalities of ``dense`` with the lexical part beside them (unchanged at
    weight 0)."""
    if lexical is None or weight == 0:
        return dict(dense)
    texts = {d: t for d, t in zip(items.doc_ids, items.texts, strict=True)}
    for ids, _, part_texts in items.parts.values():
        texts |= dict(zip(ids, part_texts, strict=True))
    out = dict(dense)
    for modality, (ids, docs, matrix) in dense.items():
        if modality in TEXT_MODALITIES:
            words = lexical.encode([texts.get(i, "") for i in ids])
            out[modality] = Features(ids, docs, hybrid(matrix, words, weight))
    return out


@dataclass
class _Tuning:
    """The encoder tuned once for every tuned candidate, or why it could not be."""

    corpus: _Corpus
    result: tuple[Any, list] | str | None = None

    def get(self) -> tuple[Any, list] | str:
        if self.result is None:
            try:
                self.result = _tune(self.corpus)
            except MedsimError as exc:
                self.result = str(exc)
        return self.result


def _tune(corpus: _Corpus) -> tuple[Any, list]:
    """The tuned text encoder (:mod:`medsim.dml.tune`) and its step history."""
    from medsim.dml.tune import TunedText, tune_text_encoder
    from medsim.encoders.embed import text_encoder_from_params
    from medsim.encoders.layers import SplitEncoder

    params, train = corpus.params, corpus.params.train
    # tunes where embed.device puts the encoder: on a GPU when there is one; tuning and its
    # lower-layer cache are torch's whatever embed.backend runs the frozen encoder
    base = text_encoder_from_params(dataclasses.replace(params.embed, backend="torch"), corpus.root)
    split = SplitEncoder(base, train.tune_layers, train.max_tokens, corpus.root / LAYER_CACHE_DIR)
    history = tune_text_encoder(
        split, corpus.items, corpus.labels, corpus.splits, train, corpus.loss, params.seed
    )
    return TunedText(split, corpus.root / EMBEDDINGS_CACHE_DIR), history


def _candidate(
    corpus: _Corpus,
    base: str,
    weight: float,
    lexical: LexicalEncoder | None,
    tuned: tuple[Any, list] | None,
) -> FittedSpace:
    """One candidate's space, trained on the training split."""
    lexical = lexical if weight else None
    if base == HEAD_ONLY:
        features = with_lexical(corpus.frozen, lexical, corpus.items, weight)
        fitted = _fit_head_only(corpus, features)
    else:
        assert tuned is not None
        encoder, tune_history = tuned
        # every text modality of the documents the choice reads; the rest once one is chosen
        dense = encoder.features(corpus.items.subset(corpus.seen))
        others = {k: v for k, v in corpus.frozen.items() if k not in TEXT_MODALITIES}
        features = others | with_lexical(dense, lexical, corpus.items, weight)
        fitted = _fit_tuned_heads(corpus, features)
        fitted.tuned, fitted.tune_history = encoder, tune_history
    fitted.lexical = lexical
    fitted.space.params["lexical_weight"] = weight
    fitted.space.lexical = LEXICAL_DIR if lexical is not None else None
    return fitted


def _fit_head_only(corpus: _Corpus, features: Mapping[str, Features]) -> FittedSpace:
    """Residual heads for the text modalities of the text vectors' dimension (one space) over
    the given features; MLP heads for the rest."""
    text_dim = features["text"][2].shape[1] if "text" in features else None
    types = {
        k: "residual"
        for k in features
        if k in TEXT_MODALITIES and features[k][2].shape[1] == text_dim
    }
    return FittedSpace(*_train(corpus, dict(features), types, None), features=dict(features))


def _fit_tuned_heads(corpus: _Corpus, features: dict[str, Features]) -> FittedSpace:
    """Identity heads on the tuned encoder's text modalities; the image modality a linear head
    started at the ridge map into that space. Without other modalities and documents to encode, the
    tuned vectors as they are (untrained SimHash hashers)."""
    types = {k: ("identity" if k in TEXT_MODALITIES else "linear") for k in features}
    if not corpus.encode_all and set(types.values()) == {"identity"}:
        dim = features["text"][2].shape[1]
        space = _identity_space(dim, corpus.params.train, corpus.loss)
        return FittedSpace(space, [], None, features)
    return FittedSpace(*_train(corpus, features, types, TEXT_MODEL_DIR), features=features)


def _train(
    corpus: _Corpus,
    features: dict[str, Features],
    types: dict[str, str],
    text_model: str | None,
) -> tuple[SharedSpace, list[dict[str, Any]]]:
    with _one_thread():
        return train_space(
            features,
            corpus.labels,
            corpus.splits,
            corpus.params.train,
            corpus.loss,
            corpus.params.seed,
            head_types=types,
            text_model=text_model,
        )


def _identity_space(dim: int, train: TrainParams, loss: str) -> SharedSpace:
    """The tuned encoder's text as it is: an identity head, untrained (SimHash) hashers."""
    return SharedSpace(
        {"text": dim},
        dim=dim,
        hidden=train.hidden,
        bits=train.hash_bits,
        loss=loss,
        params=dataclasses.asdict(train),
        head_types={"text": "identity"},
        text_model=TEXT_MODEL_DIR,
    ).eval()


def _scores(fitted: FittedSpace, corpus: _Corpus) -> dict[str, Any]:
    """Validation kNN accuracy and MAP@R of a candidate (None without validation documents)."""
    k = corpus.params.evaluate.knn_k
    features = {k: Features(*v).subset(corpus.seen) for k, v in fitted.features.items()}
    accuracy, n_val = validation_knn(fitted.space, features, corpus.labels, corpus.splits, k)
    modalities, _ = prepare_modalities(features, corpus.labels, corpus.splits)
    mapr = validation_scores(fitted.space, modalities).get("map_at_r")
    return {
        "val_knn_accuracy": None if accuracy is None else round(accuracy, 6),
        "val_map_at_r": None if mapr is None else round(float(mapr), 6),
        "n_val": n_val,
    }


def validation_knn(
    space: SharedSpace,
    features: Mapping[str, Features],
    labels: Mapping[str, str],
    splits: Mapping[str, str],
    k: int,
) -> tuple[float | None, int]:
    """kNN@``k`` accuracy of the validation documents (fused document vectors) against the
    training documents, and how many validation documents were scored (None when none)."""
    frames = {
        modality: pd.DataFrame({"doc_id": docs, "vector": list(matrix)})
        for modality, (_, docs, matrix) in features.items()
    }
    text = frames.pop("text", pd.DataFrame({"doc_id": [], "vector": []}))
    ids, vectors = document_vectors(space, text, frames)
    train, val = (
        [i for i, d in enumerate(ids) if splits.get(d) == split and d in labels]
        for split in ("train", "val")
    )
    index = {c: i for i, c in enumerate(sorted({labels[ids[i]] for i in train}))}
    val = [i for i in val if labels[ids[i]] in index]
    if not train or not val:
        return None, 0
    y_train = np.array([index[labels[ids[i]]] for i in train])
    y_val = np.array([index[labels[ids[i]]] for i in val])
    proba = knn_proba(vectors[train], y_train, vectors[val], len(index), k)
    return float((proba.argmax(axis=1) == y_val).mean()), len(val)
