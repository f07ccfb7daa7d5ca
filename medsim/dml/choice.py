"""Which candidate space a corpus gets: one criterion per purpose of the space.

:data:`CRITERIA` maps what the choice is for to how it is made (see :mod:`medsim.dml.fit`
for why there are three). Every criterion builds the candidates in order (cheapest first),
scores each, keeps the best (a tie goes to the earlier one; ``support_folds``, whose probes
are a few dozen documents, keeps the cheapest within one standard error) and records every
candidate's scores with the criterion's name in ``FittedSpace.selection``; none reads the
test split.
A candidate due to start after ``train.select_budget_s`` is skipped and recorded as such, and
so is a tuned base whose reading (whole documents, or their opening) scored worse untuned
than the other reading (:func:`untuned_reads_worse`): a tuning costs minutes, and on three
of the four corpora measured the untuned encoder ranked the two readings as the tuned ones did
(on the fourth the tuned readings were two validation documents apart; docs/benchmarks.md).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from medsim.dml.candidates import (
    SAME_READING,
    Builder,
    Corpus,
    FittedSpace,
    parse_candidate,
    space_inputs,
)
from medsim.dml.data import Features
from medsim.dml.model import SharedSpace, document_matrix, document_vectors
from medsim.dml.neighbours import RULES, rule_proba
from medsim.dml.prototypes import episode_accuracy, prototype_accuracy, sample_episodes
from medsim.dml.rows import prepare_modalities
from medsim.dml.validation import validation_scores
from medsim.errors import MedsimError

__all__ = [
    "CRITERIA",
    "Probe",
    "held_out_classes",
    "neighbours",
    "support_folds",
    "untuned_reads_worse",
    "validation_accuracy",
]

log = logging.getLogger(__name__)

NEIGHBOURS, HELD_OUT_CLASSES, SUPPORT_FOLDS = "neighbours", "held_out_classes", "support_folds"
# each fold builds every candidate again (a tuning for each tuned one: minutes on a CPU), so
# two: every support document is scored once, by spaces built on the other half
MAX_FOLDS = 2


def _best(records: list[dict[str, Any]], key: Callable[[Mapping[str, Any]], tuple]) -> str:
    """The candidate of highest ``key`` (the earlier one on a tie)."""
    return max(records, key=key)["candidate"]


def _run(
    corpus: Corpus,
    names: list[str],
    score: Callable[[str], dict[str, Any] | str],
    key: Callable[[Mapping[str, Any]], tuple[float, ...]],
    criterion: str,
    pick: Callable[[list[dict[str, Any]], Callable], str] = _best,
) -> tuple[str, list[dict[str, Any]]]:
    """Score the candidates in order (``score``: a record, or why the candidate cannot be
    built); the name ``pick`` takes from the scored records, and every record."""
    budget = corpus.params.train.select_budget_s
    start = time.perf_counter()
    scored_records: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    for name in names:
        elapsed = time.perf_counter() - start
        head = {"candidate": name, "criterion": criterion}
        if scored_records and budget and elapsed > budget:
            records.append(head | {"skipped": f"train.select_budget_s ({budget:g} s)"})
            continue
        worse = untuned_reads_worse(name, scored_records, key)
        if worse:
            records.append(head | {"skipped": worse})
            continue
        scored = score(name)
        if isinstance(scored, str):
            if len(names) == 1:
                raise MedsimError(scored)
            records.append(head | {"skipped": scored})
            continue
        record = head | scored | {"seconds": round(time.perf_counter() - start - elapsed, 1)}
        records.append(record)
        scored_records.append(record)
        log.info("candidate %s: %s", name, ", ".join(f"{k} {v}" for k, v in record.items()))
    if not scored_records:
        raise MedsimError(f"no candidate could be built: {records}")
    chosen = pick(scored_records, key)
    log.info("chosen space: %s (of %d candidates, by %s)", chosen, len(records), criterion)
    return chosen, [{**r, "chosen": r["candidate"] == chosen} for r in records]


def untuned_reads_worse(
    name: str, scored: list[dict[str, Any]], key: Callable[[Mapping[str, Any]], tuple]
) -> str | None:
    """Why the tuned candidate ``name`` is not built: the untuned base that reads documents
    its way (:data:`~medsim.dml.candidates.SAME_READING`) scored below the other one among the
    ``scored`` records (by ``key``; a tie goes to the first scored, ``frozen``: whole
    documents). None: build it (not a tuned base, or nothing to compare)."""
    base, _ = parse_candidate(name)
    untuned = {r["candidate"]: r for r in scored if r["candidate"] in SAME_READING.values()}
    if base not in SAME_READING or len(untuned) < len(SAME_READING):
        return None
    best = max(untuned.values(), key=key)
    mine = untuned[SAME_READING[base]]
    if best is mine:
        return None
    than = "as well as" if key(best) == key(mine) else "better than"
    return (
        f"untuned, {best['candidate']} reads documents {than} {mine['candidate']} "
        f"({key(best)[0]:.4f} against {key(mine)[0]:.4f}): only that reading is tuned"
    )


def _chosen(fitted: FittedSpace, records: list[dict[str, Any]]) -> FittedSpace:
    fitted.selection = records
    fitted.space.params["candidate"] = next(r["candidate"] for r in records if r["chosen"])
    return fitted


# --- neighbours: the train stage's and Table 1's choice ----------------------------------------


def neighbours(corpus: Corpus, names: list[str], fallback: str | None = None) -> FittedSpace:
    """Each candidate built on the training split and scored by how it classifies the
    validation documents against the training documents, by each rule of
    :data:`~medsim.dml.neighbours.RULES` (``train.rule`` pins one); its better rule's
    accuracy ranks it and validation MAP@R breaks ties. The space records that rule."""
    builder, built = Builder(corpus), {}

    def score(name: str) -> dict[str, Any] | str:
        fitted = builder.build(name)
        if isinstance(fitted, str):
            return fitted
        built[name] = fitted
        return _scores(fitted, corpus)

    chosen, records = _run(corpus, names, score, _neighbours_key, NEIGHBOURS)
    fitted = _chosen(built[chosen], records)
    fitted.space.params["rule"] = next(r["rule"] for r in records if r["chosen"])
    return fitted


def _neighbours_key(record: Mapping[str, Any]) -> tuple[float, float]:
    """Higher is better: validation accuracy by the candidate's rule, then validation MAP@R
    (None: lowest)."""
    acc, mapr = record.get("val_accuracy"), record.get("val_map_at_r")
    return (-np.inf if acc is None else acc, -np.inf if mapr is None else mapr)


def _scores(fitted: FittedSpace, corpus: Corpus) -> dict[str, Any]:
    """Validation accuracy of a candidate by each rule, the rule it keeps, and validation
    MAP@R (accuracies None without validation documents)."""
    train = corpus.params.train
    features = {k: Features(*v).subset(corpus.seen) for k, v in fitted.features.items()}
    accuracies, n_val = validation_accuracy(
        fitted.space,
        features,
        corpus.labels,
        corpus.splits,
        k=corpus.params.evaluate.knn_k,
        temperature=train.temperature,
    )
    rules = list(RULES) if train.rule == "auto" else [train.rule]
    # the first rule wins a tie (max keeps the first maximum)
    rule = max(rules, key=lambda r: -np.inf if accuracies is None else accuracies[r])
    modalities, _ = prepare_modalities(features, corpus.labels, corpus.splits)
    mapr = validation_scores(fitted.space, modalities).get("map_at_r")
    by_rule = {f"val_{r}_accuracy": None if accuracies is None else accuracies[r] for r in RULES}
    return by_rule | {
        "rule": rule,
        "val_accuracy": None if accuracies is None else accuracies[rule],
        "val_map_at_r": None if mapr is None else round(float(mapr), 6),
        "n_val": n_val,
    }


def validation_accuracy(
    space: SharedSpace,
    features: Mapping[str, Features],
    labels: Mapping[str, str],
    splits: Mapping[str, str],
    *,
    k: int,
    temperature: float,
) -> tuple[dict[str, float] | None, int]:
    """Accuracy of the validation documents (fused document vectors) classified against the
    training documents by each rule of :data:`RULES` (rounded to 6 places), and how many
    validation documents were scored (None when none)."""
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
    accuracies = {}
    for rule in RULES:
        proba = rule_proba(
            rule, vectors[train], y_train, vectors[val], len(index), k=k, temperature=temperature
        )
        accuracies[rule] = round(float((proba.argmax(axis=1) == y_val).mean()), 6)
    return accuracies, len(val)


# --- probes: build on one part of the labelled documents, score few-shot on another -----------


@dataclass(frozen=True)
class Probe:
    """One fit/score split of a probe criterion: a candidate is built on ``labels``/``splits``
    only, then ``score`` gets the fused vectors of ``doc_ids`` (none of which it was built on
    as a labelled document of a class it scores) and returns an accuracy."""

    labels: dict[str, str]
    splits: dict[str, str]
    doc_ids: list[str]
    score: Callable[[np.ndarray], float]
    n_scored: int  # documents whose accuracy ``score`` averages (for its standard error)


def _within_one_standard_error(
    records: list[dict[str, Any]], key: Callable[[Mapping[str, Any]], tuple]
) -> str:
    """The first (cheapest) candidate whose probe accuracy is within one standard error of the
    best one's (binomial, over the probe documents): the one-standard-error rule (Hastie,
    Tibshirani & Friedman, ESL 7.10). A probe of a few dozen support documents ranks
    candidates mostly by chance, and the cheaper candidate changes the frozen vectors less."""
    best = max(records, key=key)
    p, n = best["probe_accuracy"], best["n_probe_docs"]
    floor = p - math.sqrt(p * (1 - p) / n)
    return next(r["candidate"] for r in records if r["probe_accuracy"] >= floor)


def _by_probes(
    corpus: Corpus,
    names: list[str],
    probes: list[Probe],
    criterion: str,
    pick: Callable[[list[dict[str, Any]], Callable], str] = _best,
) -> FittedSpace:
    """Each candidate built on every probe's fit part and scored on its probe documents (mean
    accuracy over probes); the one ``pick`` takes then built again on the whole corpus."""
    builders = [Builder(corpus.restrict(p.labels, p.splits), encode_seen=False) for p in probes]

    def score(name: str) -> dict[str, Any] | str:
        accuracies = []
        for probe, builder in zip(probes, builders, strict=True):
            fitted = builder.build(name)
            if isinstance(fitted, str):
                return fitted
            inputs = space_inputs(
                fitted.space,
                corpus.frozen,
                corpus.items,
                probe.doc_ids,
                fitted.tuned,
                fitted.lexical,
            )
            accuracies.append(probe.score(document_matrix(fitted.space, inputs, probe.doc_ids)))
        return {
            "probe_accuracy": round(float(np.mean(accuracies)), 6),
            "n_probes": len(probes),
            "n_probe_docs": sum(p.n_scored for p in probes),
        }

    key = lambda r: (r["probe_accuracy"],)  # noqa: E731
    chosen, records = _run(corpus, names, score, key, criterion, pick)
    # its documents are encoded where they are used (fit_space's callers: evaluate's refits)
    fitted = Builder(corpus, encode_seen=corpus.encode_all).build(chosen)
    if isinstance(fitted, str):
        raise MedsimError(f"{chosen}: {fitted}")
    return _chosen(fitted, records)


def _fallen_back(fitted: FittedSpace, criterion: str, reason: str) -> FittedSpace:
    """Records that say which criterion could not choose here, and why."""
    log.info("%s cannot choose here (%s); %s chose instead", criterion, reason, NEIGHBOURS)
    fitted.selection = [r | {"instead_of": criterion, "why": reason} for r in fitted.selection]
    return fitted


def held_out_classes(corpus: Corpus, names: list[str], fallback: str | None = None) -> FittedSpace:
    """For a space that must serve classes it never saw (Table 2, held-out classes): the
    labelled classes split (seeded) into fit classes and probe classes; each candidate built
    on the fit classes only, scored by nearest-prototype N-way K-shot episodes on the probe
    classes' training and validation documents (mean over ``evaluate.shots``). Too few
    classes or documents for that: ``neighbours`` chooses, and the records say why."""
    probes = _class_probe(corpus)
    if isinstance(probes, str):
        return _fallen_back(neighbours(corpus, names), HELD_OUT_CLASSES, probes)
    return _by_probes(corpus, names, probes, HELD_OUT_CLASSES)


def _class_probe(corpus: Corpus) -> list[Probe] | str:
    """The fit/probe class split of :func:`held_out_classes` (or why there is none)."""
    ev, seed = corpus.params.evaluate, corpus.params.seed
    seen = {d: corpus.labels[d] for d in sorted(corpus.seen) if d in corpus.labels}
    classes, counts = np.unique(list(seen.values()), return_counts=True)
    min_count = max(ev.shots) + ev.queries
    eligible = classes[counts >= min_count].tolist()
    # a third of the classes probe, as Table 2 holds out a third; at least ways if it can
    wanted = max(2, ev.ways, math.ceil(len(classes) / 3))
    n_probe = min(wanted, len(classes) - 2, len(eligible))
    if n_probe < 2:
        return (
            f"probing needs 2 classes with >= {min_count} training and validation documents "
            f"while >= 2 classes stay to fit on; {len(classes)} classes, {len(eligible)} large"
        )
    rng = np.random.default_rng(seed)
    probe = sorted(rng.choice(sorted(eligible), size=n_probe, replace=False).tolist())
    fit = {d: s for d, s in corpus.splits.items() if d in seen and seen[d] not in probe}
    doc_ids = [d for d, c in seen.items() if c in probe]
    y = [seen[d] for d in doc_ids]
    ways = min(ev.ways, n_probe)
    episodes = [
        sample_episodes(y, probe, ways, k, ev.queries, ev.episodes, seed + k) for k in ev.shots
    ]

    def score(vectors: np.ndarray) -> float:
        return float(np.mean([episode_accuracy(vectors, e).mean() for e in episodes]))

    labels = {d: corpus.labels[d] for d in fit}
    return [Probe(labels, fit, doc_ids, score, len(doc_ids))]


def support_folds(corpus: Corpus, names: list[str], fallback: str | None = None) -> FittedSpace:
    """For a space built from K labelled documents per class (Table 2, low-resource):
    stratified folds over the training documents (fold f holds the f-th document of each
    class, min(K, MAX_FOLDS) folds); each candidate built on the other folds, scored by
    nearest-prototype accuracy of the held fold; mean over folds; the cheapest candidate
    within one standard error of the best is kept. Under 2 documents in some class:
    ``fallback`` (the train stage's candidate) is built, else ``neighbours`` chooses."""
    probes = _fold_probes(corpus)
    if not isinstance(probes, str):
        return _by_probes(corpus, names, probes, SUPPORT_FOLDS, _within_one_standard_error)
    if fallback is None:
        return _fallen_back(neighbours(corpus, names), SUPPORT_FOLDS, probes)
    if fallback not in names:
        raise MedsimError(f"'{fallback}' is not a candidate here; one of {names}")
    fitted = _fallen_back(neighbours(corpus, [fallback]), SUPPORT_FOLDS, probes)
    fitted.selection = [r | {"criterion": "pinned"} for r in fitted.selection]
    return fitted


def _fold_probes(corpus: Corpus) -> list[Probe] | str:
    """The folds of :func:`support_folds` (or why there are none)."""
    train = sorted(d for d, s in corpus.splits.items() if s == "train" and d in corpus.labels)
    by_class: dict[str, list[str]] = {}
    for d in train:
        by_class.setdefault(corpus.labels[d], []).append(d)
    smallest = min((len(v) for v in by_class.values()), default=0)
    if smallest < 2 or len(by_class) < 2:
        return f"folds need >= 2 classes of >= 2 training documents; the smallest has {smallest}"
    n_folds = min(smallest, MAX_FOLDS)
    rng = np.random.default_rng(corpus.params.seed)
    fold = {
        str(d): i % n_folds
        for docs in by_class.values()
        for i, d in enumerate(rng.permutation(docs))
    }
    probes = []
    for f in range(n_folds):
        fit = [d for d in train if fold[d] != f]
        held = [d for d in train if fold[d] == f]
        y_fit = np.array([corpus.labels[d] for d in fit])
        y_held = np.array([corpus.labels[d] for d in held])
        score = functools.partial(_held_fold_accuracy, y_fit=y_fit, y_held=y_held)
        labels = {d: corpus.labels[d] for d in fit}
        probes.append(Probe(labels, dict.fromkeys(fit, "train"), fit + held, score, len(held)))
    return probes


def _held_fold_accuracy(vectors: np.ndarray, y_fit: np.ndarray, y_held: np.ndarray) -> float:
    """Nearest-prototype accuracy of the held fold (the rows after the fit folds' rows)."""
    n = len(y_fit)
    return float(prototype_accuracy(vectors[:n], y_fit, vectors[n:], y_held).mean())


# what the space is for -> how it is chosen (medsim.dml.fit's docstring says why)
CRITERIA: dict[str, Callable[[Corpus, list[str], str | None], FittedSpace]] = {
    NEIGHBOURS: neighbours,
    HELD_OUT_CLASSES: held_out_classes,
    SUPPORT_FOLDS: support_folds,
}
