"""The classifier: the rule (:mod:`.rule`) with calibrated probabilities (:mod:`.calibrate`),
answering with the evidence: nearest labelled documents and class prototype similarities.

Without added classes the label is the rule of Table 1's proposed row: a kNN vote or the
nearest class prototype, whichever the train stage found better on the validation split (the
space records it). With classes added from a few examples (``medsim classify --classes``) every
class, trained or new, is scored by nearest prototype, Table 2's rule: a new class has no
training documents to vote.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from pydantic import BaseModel

from medsim.classify.calibrate import Temperature, fit_temperature, fit_vote_temperature
from medsim.classify.figure import FigureLabel
from medsim.classify.rule import Reference

__all__ = ["ClassScore", "Classifier", "NeighbourOut", "Prediction", "fit_classifier"]

Rule = Literal["knn", "prototype"]
# train.temperature's default: Table 1's proposed_prototype row turns similarities into
# probabilities with it; used only when there are no validation documents to fit on
PROTOTYPE_TEMPERATURE = 0.1


class NeighbourOut(BaseModel):
    """A labelled training document near the query."""

    doc_id: str
    pmid: str | None
    title: str | None
    label: str
    similarity: float


class ClassScore(BaseModel):
    """One class: calibrated probability and cosine similarity to its prototype."""

    label: str
    probability: float
    prototype_similarity: float
    added: bool = False  # learned from examples (--classes), not trained


class Prediction(BaseModel):
    """What ``medsim classify --json`` prints and ``/api/classify`` answers, for one input."""

    label: str
    probability: float  # calibrated probability of ``label``
    rule: Rule
    classes: list[ClassScore]  # every class, most probable first
    neighbours: list[NeighbourOut]  # the nearest labelled training documents, nearest first
    source: str = "text"  # text | pmid | pdf | image
    query: str = ""  # what was classified, as shown to the user
    figure: list[FigureLabel] = []  # a figure alone: its modality and plane


@dataclass(frozen=True)
class Classifier:
    """A reference set with the calibration of each rule, fitted on validation documents."""

    reference: Reference
    knn_calibration: Temperature
    prototype_calibration: Temperature
    trained_rule: Rule = "knn"  # the space's rule for its trained classes

    @property
    def rule(self) -> Rule:
        return self.trained_rule if self.reference.added is None else "prototype"

    @property
    def classes(self) -> list[str]:
        return self.reference.classes

    def with_classes(self, examples: Mapping[str, np.ndarray]) -> Classifier:
        """Classes added as prototypes of their example vectors (nothing is trained)."""
        return replace(self, reference=self.reference.with_classes(examples))

    def proba(self, vectors: np.ndarray, exclude: Sequence[str | None] | None = None) -> np.ndarray:
        """Calibrated class probabilities ``[n, n_classes]`` (no evidence)."""
        votes = self.reference.votes(vectors, exclude, show=1)
        return self._calibrated(votes.proba, votes.prototype_sims)

    def _calibrated(self, knn: np.ndarray, sims: np.ndarray) -> np.ndarray:
        if self.rule == "knn":
            return self.knn_calibration(knn)
        return self.prototype_calibration(sims)

    def predict(
        self,
        vectors: np.ndarray,
        exclude: Sequence[str | None] | None = None,
        show: int = 0,
    ) -> list[Prediction]:
        """One :class:`Prediction` per row of ``vectors`` (unit vectors in the space), with
        ``show`` neighbours (default: the vote's k). ``exclude``: see
        :meth:`Reference.votes`."""
        votes = self.reference.votes(vectors, exclude, show)
        proba = self._calibrated(votes.proba, votes.prototype_sims)
        n_trained = self.reference.n_trained
        out = []
        for i, row in enumerate(proba):
            order = np.argsort(-row, kind="stable")
            classes = [
                ClassScore(
                    label=self.classes[c],
                    probability=round(float(row[c]), 6),
                    prototype_similarity=round(float(votes.prototype_sims[i, c]), 6),
                    added=bool(c >= n_trained),
                )
                for c in order
            ]
            best = int(row.argmax())
            out.append(
                Prediction(
                    label=self.classes[best],
                    probability=round(float(row[best]), 6),
                    rule=self.rule,
                    classes=classes,
                    neighbours=[NeighbourOut(**n.__dict__) for n in votes.neighbours[i]],
                )
            )
        return out


def fit_classifier(
    reference: Reference, val_vectors: np.ndarray, y_val: np.ndarray, rule: Rule = "knn"
) -> Classifier:
    """Fit both rules' temperatures on validation documents (vectors and class indices into
    ``reference.classes``); with none, both are the identity. ``rule``: the space's rule for
    the trained classes (its ``params["rule"]``)."""
    if len(y_val):
        votes = reference.votes(val_vectors, show=1)
        knn = fit_vote_temperature(votes.proba, y_val, reference.k, len(reference.classes))
        proto = fit_temperature(votes.prototype_sims, y_val, PROTOTYPE_TEMPERATURE)
    else:  # nothing to fit on: the vote shares, and the prototypes as Table 1 scores them
        knn, proto = Temperature(), Temperature(PROTOTYPE_TEMPERATURE)
    return Classifier(reference, knn, proto, rule)
