"""The space a corpus gets: candidate spaces, and a criterion that fits what the space is for.

No one recipe wins on every corpus. Tuning the encoder wins on OHSUMED and loses 16 points to
plain residual heads on a cancer-hallmark corpus, whose classes hinge on gene and pathway
names that TF-IDF sees and a sentence encoder blurs. So :func:`fit_space` builds candidates
(:mod:`medsim.dml.candidates`), cheapest first:

- ``frozen``: the embed stage's vectors as they are (an image modality gets a linear head
  into that space); nothing is trained on the text;
- ``head_only``: residual heads over the embed stage's vectors (seconds);
- ``frozen_opening``: the untuned encoder reading each document's opening only;
- ``tuned`` and ``tuned_opening``: the encoder's top layers tuned with the loss, then WiSE-FT,
  reading whole documents or their opening (minutes; only with ``train.tune_encoder``; only
  the reading whose untuned base scored better is tuned);
- each of them with the lexical part beside the dense vectors
  (:mod:`medsim.dml.lexical`), one candidate ``<base>+lexical<w>`` per non-zero weight ``w``
  in ``train.lexical_weights``; where documents have captions, tables or images, each also as
  ``<name>+text_only`` (documents with text fused from it alone);

and keeps the one a criterion (:data:`medsim.dml.choice.CRITERIA`) scores best. The criterion
is set by what the space is for, because a score only sees what its documents show:

- ``neighbours`` (the train stage, Table 1: new documents of the classes trained on):
  accuracy of the validation documents classified against the training documents, by a kNN
  vote and by the nearest class prototype; a candidate is ranked by its better rule (which
  the space keeps for classifying; ``train.rule`` pins one), validation MAP@R breaks ties;
- ``held_out_classes`` (Table 2's held-out protocol: classes no label of which shaped the
  space). Validation documents of the same classes cannot tell a space that learned the
  classes from one that learned to tell classes apart: heads that pull the trained classes
  together can collapse the rest, and kNN on the same classes rewards them for it. So the
  given classes are split into fit and probe classes; every candidate is built on the fit
  classes only and scored by nearest-prototype episodes on the probe classes, the way the
  table scores it; the best is then built on all given classes;
- ``support_folds`` (Table 2's low-resource protocol: K labelled documents per class, no
  validation documents): every candidate built on all folds but one, scored by
  nearest-prototype accuracy of the held fold, as the table scores from K examples.

The test split is never read. ``train.choose`` (or ``choose``) pins a candidate by name
(only that one is built); a candidate due to start after ``train.select_budget_s`` is
skipped and recorded as such. ``FittedSpace.selection`` records every candidate's scores and
the criterion.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medsim.config import Params
from medsim.dml.candidates import (
    TEXT_MODALITIES,
    Corpus,
    FittedSpace,
    candidate_names,
    parse_candidate,
    with_lexical,
)
from medsim.dml.choice import CRITERIA, NEIGHBOURS, neighbours, validation_accuracy
from medsim.dml.data import Features
from medsim.dml.live import log_history
from medsim.errors import MedsimError
from medsim.paths import LAYER_CACHE_DIR

__all__ = [
    "CRITERIA",
    "LAYER_CACHE_DIR",
    "TEXT_MODALITIES",
    "FittedSpace",
    "candidate_names",
    "fit_space",
    "validation_accuracy",
    "with_lexical",
]

log = logging.getLogger(__name__)


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
    criterion: str = NEIGHBOURS,
    fallback: str | None = None,
    encode_all: bool = True,
    lexical_texts: Sequence[str] | None = None,
    log_dir: Path | None = None,
) -> FittedSpace:
    """The candidate ``criterion`` (a key of :data:`CRITERIA`) scores best (see the module
    docstring), or the one ``choose`` (default ``train.choose``) names. ``fallback``: the
    candidate to build when the criterion cannot choose and has one to fall back to (the
    train stage's, for ``support_folds``). ``encode_all`` False encodes only the training
    and validation documents (evaluation refits encode what they need). ``lexical_texts``:
    the unlabelled texts the lexical part learns its words from (default: the training
    documents' texts)."""
    if criterion not in CRITERIA:
        raise MedsimError(f"unknown criterion '{criterion}'; known: {sorted(CRITERIA)}")
    corpus = Corpus(
        params,
        root,
        frozen,
        labels,
        splits,
        items,
        loss or params.loss,
        encode_all,
        lexical_texts=tuple(lexical_texts) if lexical_texts is not None else None,
    )
    with_parts = any(modality != "text" for modality in frozen)
    names = candidate_names(params, items is not None and "text" in frozen, with_parts)
    if not names:
        raise MedsimError("train.lexical_weights is empty: list at least one weight (0: none)")
    if items is None:
        names = [n for n in names if parse_candidate(n)[1] == 0]
    choose = choose or params.train.choose
    if choose != "auto":
        if choose not in names:
            raise MedsimError(f"train.choose: '{choose}' is not a candidate here; one of {names}")
        fitted = neighbours(corpus, [choose])
    else:
        fitted = CRITERIA[criterion](corpus, names, fallback)
    if fitted.tuned is not None and encode_all:  # the documents no candidate needed so far
        others = {k: v for k, v in fitted.features.items() if k not in TEXT_MODALITIES}
        dense = fitted.tuned.features(items)
        fitted.features = others | with_lexical(dense, fitted.lexical, items, fitted.lexical_weight)
    log_history(log_dir, fitted.history, int(fitted.space.params.get("best_epoch", 0)))
    return fitted
