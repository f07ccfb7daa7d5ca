"""``medsim classify``: Table 1's proposed rule on new documents, figures and PMIDs, with
calibrated probabilities and the evidence behind each label (:mod:`.rule`, :mod:`.calibrate`,
:mod:`.classifier`; :mod:`.load` reads a built project, :mod:`.inputs` turns inputs into
vectors, :mod:`.cli` is the command)."""

from medsim.classify.calibrate import Temperature, expected_calibration_error, fit_temperature
from medsim.classify.classifier import Classifier, Prediction, fit_classifier
from medsim.classify.rule import Reference

__all__ = [
    "Classifier",
    "Prediction",
    "Reference",
    "Temperature",
    "expected_calibration_error",
    "fit_classifier",
    "fit_temperature",
]
