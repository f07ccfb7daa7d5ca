"""Honest baselines, each fitted on the training split only and scored on the same test split.

- linear softmax heads (multinomial logistic regression) and a one-hidden-layer MLP softmax
  head over frozen features (text encoder, CNN image features, TF-IDF);
- TF-IDF (+ truncated SVD) document features for the "metric learning without the LLM" row;
- kNN in any embedding space (the proposed row and the metric-learning baselines);
- a ridge map from image features to caption embeddings (cross-modal retrieval without
  metric learning) and random-hyperplane hash codes for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medsim.dml.lexical import LexicalEncoder
from medsim.dml.neighbours import expand_proba, knn_proba, l2

__all__ = [
    "expand_proba",
    "knn_proba",
    "l2",
    "logistic_proba",
    "lsh_codes",
    "mlp_proba",
    "pool_by_doc",
    "ridge_map",
    "tfidf_features",
]


C_GRID = (0.003, 0.01, 0.03, 0.1)
DEFAULT_C = 0.01  # best of C_GRID on OHSUMED-23's validation split for MiniLM features


def _logistic(c: float, seed: int) -> object:
    return make_pipeline(
        StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed)
    )


def logistic_proba(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    n_classes: int,
    seed: int = 0,
    val: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Linear softmax head (standardised features, multinomial logistic regression).

    With ``val`` (features, labels of the validation split) the inverse regularisation C is
    picked from :data:`C_GRID` by validation accuracy, so the baseline is tuned as fairly as
    the metric-learning head (which early-stops on the same split); else :data:`DEFAULT_C`.
    """
    c = DEFAULT_C
    if val is not None and len(val[1]):
        scores = {g: _logistic(g, seed).fit(x_train, y_train).score(*val) for g in C_GRID}
        c = max(scores, key=scores.get)
    model = _logistic(c, seed).fit(x_train, y_train)
    return expand_proba(model.predict_proba(x_test), model[-1].classes_, n_classes)


def mlp_proba(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, n_classes: int, seed: int = 0
) -> np.ndarray:
    """A 256-unit hidden layer with a softmax output, early-stopped on 10% of the training data."""
    model = make_pipeline(
        StandardScaler(),
        MLPClassifier(
            hidden_layer_sizes=(256,),
            alpha=1e-3,
            max_iter=300,
            early_stopping=len(y_train) >= 50,
            random_state=seed,
        ),
    )
    model.fit(x_train, y_train)
    return expand_proba(model.predict_proba(x_test), model[-1].classes_, n_classes)


def tfidf_features(
    train_texts: Sequence[str], texts: Sequence[str], dim: int = 256, seed: int = 0
) -> np.ndarray:
    """The lexical encoder (:class:`~medsim.dml.lexical.LexicalEncoder`: TF-IDF, truncated SVD)
    fitted on ``train_texts``, applied to ``texts``: L2-normalised ``dim``-d vectors. Fitting on
    the training texts only keeps test vocabulary and document frequencies out of the
    features."""
    return LexicalEncoder.fit(train_texts, dim, seed).encode(texts)


def pool_by_doc(
    item_doc_ids: Sequence[str], values: np.ndarray, doc_ids: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the rows of ``values`` per document, in ``doc_ids`` order.

    Returns (pooled [len(doc_ids), d], has_items bool [len(doc_ids)]); documents without items
    get a zero row and ``False``.
    """
    index = {d: i for i, d in enumerate(doc_ids)}
    values = np.asarray(values, dtype=float)
    pooled = np.zeros((len(doc_ids), values.shape[1]))
    counts = np.zeros(len(doc_ids))
    for row, doc in enumerate(item_doc_ids):
        i = index.get(doc)
        if i is not None:
            pooled[i] += values[row]
            counts[i] += 1
    has = counts > 0
    pooled[has] /= counts[has, None]
    return pooled, has


def ridge_map(
    x_train: np.ndarray, y_train: np.ndarray, x: np.ndarray, alpha: float = 10.0
) -> np.ndarray:
    """Linear least-squares map from one modality's features to another's (no metric learning)."""
    model = make_pipeline(StandardScaler(), Ridge(alpha=alpha))
    model.fit(x_train, y_train)
    return l2(model.predict(x))


def lsh_codes(x: np.ndarray, bits: int, seed: int = 0) -> np.ndarray:
    """Random-hyperplane (SimHash) codes: 0/1 [n, bits], the usual unlearned hashing baseline."""
    rng = np.random.default_rng(seed + bits)
    planes = rng.standard_normal((np.asarray(x).shape[1], bits))
    return (np.asarray(x) @ planes > 0).astype(np.uint8)
