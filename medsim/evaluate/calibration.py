"""Calibration of ``medsim classify``'s probabilities: expected calibration error on test.

The classifier (:mod:`medsim.classify`) is Table 1's proposed rule with a temperature fitted
on the validation split; this builder fits it the same way on this run's space and scores the
test split: ECE before and after, for the kNN rule and for nearest prototype (the rule of
classes added from examples), and under ``proposed`` for the rule the space chose.
``metrics/calibration.json`` holds the ECEs, and ``metrics/details/calibration.json`` the
fitted temperatures and the counts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from medsim.classify.calibrate import ECE_BINS, expected_calibration_error
from medsim.classify.classifier import fit_classifier
from medsim.classify.rule import Reference
from medsim.evaluate.stats import null_row

if TYPE_CHECKING:
    from medsim.evaluate.context import EvalContext

__all__ = ["build_calibration"]

METRICS = ("ece", "ece_uncalibrated")


def _split(ctx: EvalContext) -> tuple[list[str], dict[str, list[str]], dict[str, np.ndarray]]:
    """Table 1's classes (sorted training labels) and each split's documents and classes."""
    docs = ctx.docs
    classes = sorted(docs.loc[docs["split"] == "train", "label"].unique())
    cls = {c: i for i, c in enumerate(classes)}
    ids, ys = {}, {}
    for name in ("train", "val", "test"):
        part = docs[(docs["split"] == name) & docs["label"].isin(cls)]
        ids[name] = part["doc_id"].tolist()
        ys[name] = part["label"].map(cls).to_numpy(dtype=int)
    return classes, ids, ys


def build_calibration(ctx: EvalContext) -> dict:
    """ECE on the test split of the classifier's calibrated probabilities (both rules)."""
    classes, ids, ys = _split(ctx)
    if not ids["train"] or not ids["test"]:
        reason = f"no labelled train ({len(ids['train'])}) or test ({len(ids['test'])}) documents"
        return {"proposed": null_row(reason, METRICS)}
    vectors = {
        name: ctx.space.documents(ctx.space_features, doc_ids) for name, doc_ids in ids.items()
    }
    k = ctx.params.evaluate.knn_k
    reference = Reference(classes, ids["train"], vectors["train"], ys["train"], k)
    classifier = fit_classifier(reference, vectors["val"], ys["val"], ctx.space.rule)
    votes = reference.votes(vectors["test"], show=1)
    y_test = ys["test"]
    table: dict = {}
    sims = votes.prototype_sims
    # row -> (the rule's scores, Table 1's own probabilities for them, the fitted temperature)
    rows = {
        "proposed_knn": (votes.proba, votes.proba, classifier.knn_calibration),
        "proposed_prototype": (
            sims,
            _softmax(sims, ctx.params.train.temperature),
            classifier.prototype_calibration,
        ),
    }
    for row, (scores, plain, temperature) in rows.items():
        floor = "" if temperature.floor is None else f", vote floor {temperature.floor:.4g}"
        fit = (
            f"temperature {temperature.temperature:.4g}{floor} on {temperature.fitted_on} "
            "validation documents"
            if temperature.fitted_on
            else "no validation documents: not calibrated"
        )
        table[row] = {
            "ece": expected_calibration_error(temperature(scores), y_test),
            "ece_uncalibrated": expected_calibration_error(plain, y_test),
            "fit": fit,  # a sentence, not a number: a temperature is no fraction to compare
        }
    table = {"proposed": table[f"proposed_{classifier.rule}"], **table}  # the classifier's own
    table["meta"] = {"n_val": len(ys["val"]), "n_test": len(y_test), "bins": ECE_BINS, "knn_k": k}
    return table


def _softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    """Similarities as Table 1's ``proposed_prototype`` row turns them into probabilities."""
    z = np.exp((scores - scores.max(axis=1, keepdims=True)) / temperature)
    return z / z.sum(axis=1, keepdims=True)
