"""Table 2's episodes through ``--classes``: each episode's support added as new classes.

What ``medsim classify --classes`` does to a user's K examples per class, done for every
few-shot episode, so the classifier can be checked against Table 2's held-out protocol
(:mod:`medsim.evaluate.fewshot`). Scored among the episode's added classes only, it is
Table 2's nearest-prototype rule; among every class (the trained ones too), it is what a
``--classes`` user gets, where a query can also land in a trained class.
"""

from __future__ import annotations

import numpy as np

from medsim.classify.classifier import Classifier

__all__ = ["added_class_accuracy"]


def added_class_accuracy(
    classifier: Classifier, vectors: np.ndarray, support: np.ndarray, query: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per episode, the accuracy among its added classes and among every class.

    ``vectors``: the held-out documents' vectors; ``support`` [n, ways, shots] and ``query``
    [n, ways, queries]: row indices into them (:class:`medsim.evaluate.fewshot.Episodes`)."""
    n_trained = classifier.reference.n_classes
    among_added = np.empty(len(support))
    among_all = np.empty(len(support))
    for e, (shots, asked) in enumerate(zip(support, query, strict=True)):
        names = [f"episode class {w}" for w in range(len(shots))]
        added = classifier.with_classes({n: vectors[s] for n, s in zip(names, shots, strict=True)})
        truth = np.repeat(np.arange(len(names)), asked.shape[1])
        sims = added.reference.votes(vectors[asked.reshape(-1)], show=1).prototype_sims
        among_added[e] = (sims[:, n_trained:].argmax(axis=1) == truth).mean()
        among_all[e] = (sims.argmax(axis=1) == truth + n_trained).mean()
    return among_added, among_all
