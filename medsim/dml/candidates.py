"""The candidate spaces: what each is made of and how one is built on a corpus.

:mod:`medsim.dml.choice` decides which candidate a corpus gets and :mod:`medsim.dml.fit` puts
the two together; this module only builds. A candidate is ``<base>`` or
``<base>+lexical<w>`` (the lexical part beside the dense vectors with weight ``w``,
:mod:`medsim.dml.lexical`). The bases, cheapest first:

- ``frozen``: the embed stage's vectors as they are (identity heads on the text modalities; an
  image modality gets the linear head into the text space). Nothing about the text is learned,
  so nothing can be forgotten: the base that keeps whatever the encoder knows about classes
  no training label showed it;
- ``head_only``: residual heads over the embed stage's vectors (seconds);
- ``tuned``: the encoder's top layers tuned with the loss, then WiSE-FT, identity heads over its
  vectors, reading whole documents as ``embed.long_text`` says (minutes; only with
  ``train.tune_encoder``);
- ``frozen_opening``: the untuned encoder reading each document's opening
  ``train.max_tokens`` tokens only (:data:`OPENING`), identity heads (one encoding pass);
- ``tuned_opening``: the ``tuned`` recipe tuned on, and reading, the opening only. Where a
  corpus states its class up front (OHSUMED's disease category is in the title and first
  sentences) the later windows dilute it: validation kNN@10 on OHSUMED 0.723 against 0.684
  for ``tuned``; where the class hinges on what the whole abstract says (HoC's hallmarks) it
  loses, 0.697 against 0.822. Which one a corpus gets is the choice's to make, not a default's.

Where documents have parts besides their text (captions, tables, images), each candidate
also comes as ``<name>+text_only`` (:data:`TEXT_ONLY`, listed first: it fits less): the same
space, but a document with text is its text alone (:mod:`medsim.dml.fusion`).

A tuned base costs minutes, so only one reading is tuned: :data:`SAME_READING` pairs each
tuned base with the untuned base that reads documents its way, and
:mod:`medsim.dml.choice` tunes the reading whose untuned base scored better.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsim.config import Params, TrainParams
from medsim.dml.data import Features
from medsim.dml.lexical import LexicalEncoder, fit_lexical, hybrid
from medsim.dml.model import LEXICAL_DIR, TEXT_MODEL_DIR, SharedSpace
from medsim.dml.train import train_space
from medsim.errors import MedsimError
from medsim.names import Modality
from medsim.paths import EMBEDDINGS_CACHE_DIR, LAYER_CACHE_DIR

__all__ = [
    "FROZEN",
    "FROZEN_OPENING",
    "HEAD_ONLY",
    "OPENING",
    "SAME_READING",
    "TEXT_MODALITIES",
    "TEXT_ONLY",
    "TUNED",
    "TUNED_OPENING",
    "Builder",
    "Corpus",
    "FittedSpace",
    "candidate_names",
    "is_text_only",
    "parse_candidate",
    "space_inputs",
    "with_lexical",
]

TEXT_MODALITIES = (Modality.TEXT, Modality.CAPTION, Modality.TABLE)
FROZEN, HEAD_ONLY, TUNED = "frozen", "head_only", "tuned"
FROZEN_OPENING, TUNED_OPENING = "frozen_opening", "tuned_opening"
# how the *_opening bases read a document: embed.long_text's cut at train.max_tokens
OPENING = "truncate"
# tuned base -> the untuned base that reads documents the same way
SAME_READING = {TUNED: FROZEN, TUNED_OPENING: FROZEN_OPENING}
# the suffix of a candidate whose documents with text are their text alone
TEXT_ONLY = "+text_only"


@dataclass
class FittedSpace:
    """A trained space and what its inputs are made of: the tuned text encoder (None: the
    embed stage's vectors), the lexical encoder (None: dense only) and the features its heads
    take; ``selection`` holds every candidate's scores and the criterion that chose."""

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


def _name(base: str, weight: float, text_only: bool = False) -> str:
    name = base if weight == 0 else f"{base}+lexical{weight:g}"
    return name + TEXT_ONLY if text_only else name


def parse_candidate(name: str) -> tuple[str, float]:
    """``"head_only+lexical0.3"`` -> ``("head_only", 0.3)`` (a :data:`TEXT_ONLY` suffix
    aside)."""
    base, _, weight = name.removesuffix(TEXT_ONLY).partition("+lexical")
    return base, float(weight) if weight else 0.0


def is_text_only(name: str) -> bool:
    """Whether the candidate ``name`` fuses a document with text from its text alone."""
    return name.endswith(TEXT_ONLY)


def candidate_names(params: Params, can_tune: bool = True, with_parts: bool = False) -> list[str]:
    """The candidates of ``params`` in the order they are built (cheapest first); the
    opening bases only where ``tuned`` reads more than the opening; ``with_parts`` (documents
    have captions, tables or images): each one's ``+text_only`` variant before it."""
    train, bases = params.train, [FROZEN, HEAD_ONLY]
    if train.tune_encoder and can_tune and params.embed.long_text == OPENING:
        bases += [TUNED]  # it reads the opening already
    elif train.tune_encoder and can_tune:
        bases += [FROZEN_OPENING, TUNED, TUNED_OPENING]
    variants = (True, False) if with_parts else (False,)
    weights = dict.fromkeys(train.lexical_weights)
    return [_name(base, w, t) for base in bases for w in weights for t in variants]


def tuned_reading(base: str, params: Params) -> str | None:
    """How a base that reads with its own encoder (tuned, or ``frozen_opening``) reads a long
    document (an ``embed.long_text`` value); None: it takes the embed stage's vectors."""
    if base == TUNED:
        return params.embed.long_text
    return OPENING if base in (FROZEN_OPENING, TUNED_OPENING) else None


def space_reading(space_params: Mapping[str, Any], embed_long_text: str) -> str:
    """How a tuned space's encoder reads a long text (an ``embed.long_text`` value): as it was
    tuned (``tuned_opening``: the opening only); spaces from before the record read as the
    embed stage does."""
    return str(space_params.get("long_text", embed_long_text))


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
class Corpus:
    """What every candidate reads."""

    params: Params
    root: Path
    frozen: Mapping[str, Features]
    labels: Mapping[str, str]
    splits: Mapping[str, str]
    items: Any  # medsim.dml.tune.TextItems, or None: no texts (no tuning, no lexical part)
    loss: str
    encode_all: bool
    # the texts the lexical encoder learns words from (it reads no label); None: those of the
    # training documents in ``splits``. Kept by :meth:`restrict`, so every fold of a choice
    # reads the same words
    lexical_texts: tuple[str, ...] | None = None

    @property
    def seen(self) -> set[str]:
        """Training and validation documents: all that choosing a candidate reads."""
        return {d for d, s in self.splits.items() if s in ("train", "val")}

    def restrict(self, labels: Mapping[str, str], splits: Mapping[str, str]) -> Corpus:
        """The same corpus cut down to the documents of ``splits`` (a choice's fit part)."""
        wanted = set(splits)
        frozen = {k: Features(*v).subset(wanted) for k, v in self.frozen.items()}
        return dataclasses.replace(
            self,
            frozen={k: v for k, v in frozen.items() if len(v.ids)},
            labels=dict(labels),
            splits=dict(splits),
            items=self.items.subset(wanted) if self.items is not None else None,
            encode_all=False,
        )


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


def space_inputs(
    space: SharedSpace,
    frozen: Mapping[str, Features],
    items: Any,
    doc_ids: Sequence[str] | set[str],
    tuned: Any = None,
    lexical: LexicalEncoder | None = None,
) -> dict[str, Features]:
    """The inputs ``space`` takes for the items of ``doc_ids``: the frozen features, with its
    own text modalities (the tuned encoder's vectors, the lexical part) encoded from
    ``items`` where it has them."""
    wanted = set(doc_ids)
    out = {k: Features(*v).subset(wanted) for k, v in frozen.items()}
    if space.own_text_inputs:
        part = items.subset(wanted)
        dense = {k: v for k, v in out.items() if k in TEXT_MODALITIES}
        if tuned is not None:
            dense = tuned.features(part)
        weight = float(space.params.get("lexical_weight", 0.0))
        out = {k: v for k, v in out.items() if k not in TEXT_MODALITIES}
        out |= with_lexical(dense, lexical, part, weight)
    return {k: v for k, v in out.items() if len(v[0])}


@dataclass
class Builder:
    """Builds candidates on one corpus; the lexical encoder and each base's own text encoder
    are made once (on first need) and shared by every candidate that takes them. A candidate
    that cannot be built here comes back as the reason why."""

    corpus: Corpus
    # whether a criterion scores candidates on the features of the documents the corpus
    # labels (neighbours); a probe encodes the documents it scores itself
    encode_seen: bool = True
    _lexical: LexicalEncoder | str | None = None
    _encoders: dict[str, tuple[Any, list] | str] = field(default_factory=dict)
    # the last space built and its name: a +text_only variant and its twin share it
    _last: tuple[str, FittedSpace | str] | None = None

    def build(self, name: str) -> FittedSpace | str:
        fused = name.removesuffix(TEXT_ONLY)
        if self._last is None or self._last[0] != fused:
            self._last = (fused, self._build(fused))
        fitted = self._last[1]
        if isinstance(fitted, str) or not is_text_only(name):
            return fitted
        variant = dataclasses.replace(fitted, space=copy.deepcopy(fitted.space))
        variant.space.params["text_only"] = True
        return variant

    def _build(self, name: str) -> FittedSpace | str:
        base, weight = parse_candidate(name)
        if base not in BASES:
            raise MedsimError(f"unknown candidate base '{base}'; known: {list(BASES)}")
        lexical = self.lexical() if weight else None
        if isinstance(lexical, str):  # too few words to fit a vocabulary on
            return lexical
        reading = tuned_reading(base, self.corpus.params)
        tuned = self.encoder(base, reading) if reading is not None else None
        if isinstance(tuned, str):  # e.g. an encoder that cannot be tuned
            return tuned
        fitted = BASES[base](self.corpus, self._features(tuned, lexical, weight))
        if tuned is not None:
            fitted.tuned, fitted.tune_history = tuned
            fitted.space.text_model = TEXT_MODEL_DIR
            fitted.space.params["long_text"] = reading  # how queries must read texts
        fitted.lexical = lexical
        fitted.space.params["lexical_weight"] = weight
        fitted.space.lexical = LEXICAL_DIR if lexical is not None else None
        return fitted

    def _features(
        self, tuned: tuple[Any, list] | None, lexical: LexicalEncoder | None, weight: float
    ) -> dict[str, Features]:
        """A candidate's input features of the documents the choice reads. Empty (no rows)
        for an encoder of its own where no criterion reads them and text is all there is
        (identity heads, nothing to train): encoding thousands of documents is most of what
        a probe of a tuned candidate would cost."""
        if tuned is not None and not self.encode_seen and set(self.corpus.frozen) == {"text"}:
            dim = tuned[0].dim + (lexical.dim if lexical is not None and weight else 0)
            return {"text": Features([], [], np.zeros((0, dim), dtype=np.float32))}
        return with_lexical(self._dense(tuned), lexical, self.corpus.items, weight)

    def _dense(self, tuned: tuple[Any, list] | None) -> dict[str, Features]:
        if tuned is None:
            return dict(self.corpus.frozen)
        # every text modality of the documents the choice reads; the rest once one is chosen
        dense = tuned[0].features(self.corpus.items.subset(self.corpus.seen))
        others = {k: v for k, v in self.corpus.frozen.items() if k not in TEXT_MODALITIES}
        return others | dense

    def lexical(self) -> LexicalEncoder | str:
        """The lexical encoder, fitted on the corpus's ``lexical_texts`` (by default the
        training documents' texts; never the test split's), or why there is none."""
        if self._lexical is None:
            texts = self.corpus.lexical_texts
            if texts is None:
                items, splits = self.corpus.items, self.corpus.splits
                pairs = zip(items.doc_ids, items.texts, strict=True)
                texts = tuple(t for d, t in pairs if splits.get(d) == "train")
            try:
                train, seed = self.corpus.params.train, self.corpus.params.seed
                self._lexical = fit_lexical(texts, train.lexical_dim, seed)
            except MedsimError as exc:
                self._lexical = str(exc)
        return self._lexical

    def encoder(self, base: str, reading: str) -> tuple[Any, list] | str:
        """The text encoder of ``base`` reading documents the ``reading`` way (an
        ``embed.long_text`` value), tuned where the base is a tuned one (a key of
        :data:`SAME_READING`), and its step history (or why it could not be made)."""
        if base not in self._encoders:
            try:
                self._encoders[base] = _tune(self.corpus, reading, tune=base in SAME_READING)
            except MedsimError as exc:
                self._encoders[base] = str(exc)
        return self._encoders[base]


def _tune(corpus: Corpus, reading: str, tune: bool = True) -> tuple[Any, list]:
    """The text encoder reading the ``reading`` way, tuned (:mod:`medsim.dml.tune`) or as it
    is (``tune`` False: no steps), and its step history."""
    from medsim.dml.tune import TunedText, tune_text_encoder
    from medsim.encoders.embed import text_encoder_from_params
    from medsim.encoders.layers import SplitEncoder

    params, train = corpus.params, corpus.params.train
    # tunes where embed.device puts the encoder: on a GPU when there is one; tuning and its
    # lower-layer cache are torch's whatever embed.backend runs the frozen encoder
    embed = dataclasses.replace(params.embed, backend="torch", long_text=reading)
    base = text_encoder_from_params(embed, corpus.root)
    split = SplitEncoder(base, train.tune_layers, train.max_tokens, corpus.root / LAYER_CACHE_DIR)
    history = []
    if tune:
        history = tune_text_encoder(
            split, corpus.items, corpus.labels, corpus.splits, train, corpus.loss, params.seed
        )
    return TunedText(split, corpus.root / EMBEDDINGS_CACHE_DIR), history


def _text_dim(features: Mapping[str, Features]) -> int | None:
    return features["text"][2].shape[1] if "text" in features else None


def _residual_heads(corpus: Corpus, features: Mapping[str, Features]) -> FittedSpace:
    """Residual heads for the text modalities of the text vectors' dimension (one space) over
    the given features; MLP heads for the rest."""
    dim = _text_dim(features)
    types = {
        k: "residual" for k in features if k in TEXT_MODALITIES and features[k][2].shape[1] == dim
    }
    return FittedSpace(*_train(corpus, dict(features), types), features=dict(features))


def _identity_heads(corpus: Corpus, features: Mapping[str, Features]) -> FittedSpace:
    """The text modalities' vectors as they are (identity heads); the image modality a linear
    head started at the ridge map into that space. Without other modalities and documents to
    encode, nothing to train (untrained SimHash hashers)."""
    dim = _text_dim(features)
    types = {
        k: ("identity" if k in TEXT_MODALITIES and v[2].shape[1] == dim else "linear")
        for k, v in features.items()
    }
    if not corpus.encode_all and set(types.values()) == {"identity"}:
        dims = {k: v[2].shape[1] for k, v in features.items()}
        space = _identity_space(dims, corpus.params.train, corpus.loss)
        return FittedSpace(space, [], None, dict(features))
    return FittedSpace(*_train(corpus, dict(features), types), features=dict(features))


# candidate base -> how its space is made from its input features (the tuned encoder's
# vectors for ``tuned``, the embed stage's for the others)
BASES: dict[str, Callable[[Corpus, Mapping[str, Features]], FittedSpace]] = {
    FROZEN: _identity_heads,
    HEAD_ONLY: _residual_heads,
    FROZEN_OPENING: _identity_heads,
    TUNED: _identity_heads,
    TUNED_OPENING: _identity_heads,
}


def _train(
    corpus: Corpus, features: dict[str, Features], types: dict[str, str]
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
        )


def _identity_space(dims: Mapping[str, int], train: TrainParams, loss: str) -> SharedSpace:
    """Vectors as they are: identity heads, untrained (SimHash) hashers."""
    dim = next(iter(dims.values()))
    return SharedSpace(
        dict(dims),
        dim=dim,
        hidden=train.hidden,
        bits=train.hash_bits,
        loss=loss,
        params=dataclasses.asdict(train),
        head_types=dict.fromkeys(dims, "identity"),
    ).eval()
