"""``--classes`` on Table 2's episodes gives Table 2's nearest-prototype accuracy."""

from __future__ import annotations

import numpy as np

from medsim.classify.classifier import fit_classifier
from medsim.classify.episodes import added_class_accuracy
from medsim.classify.rule import Reference
from medsim.evaluate.fewshot import episode_accuracy, sample_episodes


def clusters(rng: np.random.Generator, centres: np.ndarray, per: int, noise: float) -> np.ndarray:
    return np.repeat(centres, per, axis=0) + noise * rng.standard_normal((len(centres) * per, 16))


def test_added_classes_score_episodes_as_table2_does():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((9, 16))
    base = clusters(rng, centres[:3], 20, 0.8)  # three trained classes
    y_base = np.repeat(np.arange(3), 20)
    reference = Reference(["a", "b", "c"], [f"d{i}" for i in range(60)], base, y_base, 5)
    classifier = fit_classifier(reference, base[:0], y_base[:0])
    novel = clusters(rng, centres[3:], 12, 1.2)  # six held-out classes, 12 documents each
    labels = np.repeat([f"h{c}" for c in range(6)], 12)
    episodes = sample_episodes(labels, sorted(set(labels)), 5, 5, 4, 30, seed=1)
    among_added, among_all = added_class_accuracy(
        classifier, novel, episodes.support, episodes.query
    )
    np.testing.assert_allclose(among_added, episode_accuracy(novel, episodes))
    assert 0.0 < among_added.mean() < 1.0  # a task with errors to agree on
    assert np.all(among_all <= among_added)  # trained classes can only take queries away
