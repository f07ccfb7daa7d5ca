"""The words themselves, beside the language model: a lexical encoder and the hybrid text vector.

A general sentence encoder blurs what some corpora hinge on: gene, pathway and drug names
(on the Hallmarks of Cancer abstracts, TF-IDF + logistic regression beats frozen MiniLM by 4-7
points). The space can therefore read each text twice: the dense encoder's unit vector and a
lexical one (TF-IDF of words and word pairs, sublinear term frequency, reduced by truncated SVD
to ``dim`` dimensions and normalised; fitted on the training documents only), side by side as

    [sqrt(1 - w) * dense, sqrt(w) * lexical]

a unit vector whose cosine with another is ``(1 - w)`` times the dense cosine plus ``w`` times
the lexical one. The heads are then trained with the loss on that vector, so the projection of
the lexical part is learned with the same objective as the rest of the space. ``w`` is
``train.lexical_weights``, chosen on the validation split (0: the dense encoder alone).

Saved as plain arrays (vocabulary, idf, SVD components) that load without pickle.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from medsim.errors import MedsimError

__all__ = ["LexicalEncoder", "fit_lexical", "hybrid", "hybrid_encoder"]

# words and word pairs seen in at least two training documents and in at most 90% of them
TFIDF_SETTINGS = {
    "ngram_range": (1, 2),
    "min_df": 2,
    "max_df": 0.9,
    "sublinear_tf": True,
    "stop_words": "english",
}
VOCABULARY_FILE = "vocabulary.json"
ARRAYS_FILE = "lexical.npz"


class LexicalEncoder:
    """TF-IDF fitted on training texts, then truncated SVD: texts -> unit ``dim``-d vectors."""

    def __init__(self, vectorizer: TfidfVectorizer, components: np.ndarray) -> None:
        self.vectorizer = vectorizer
        self.components = np.asarray(components, dtype=np.float32)  # [dim, vocabulary]
        self.dim = int(self.components.shape[0])

    @classmethod
    def fit(cls, texts: Sequence[str], dim: int = 256, seed: int = 0) -> LexicalEncoder:
        """Vocabulary, document frequencies and SVD directions of ``texts`` (training only)."""
        vectorizer = TfidfVectorizer(**TFIDF_SETTINGS)
        try:
            counts = vectorizer.fit_transform(list(texts))
        except ValueError as exc:  # no word in two documents: nothing lexical to learn
            raise MedsimError(f"lexical features: {exc}") from exc
        dim = max(1, min(dim, counts.shape[1] - 1, counts.shape[0] - 1))
        svd = TruncatedSVD(n_components=dim, random_state=seed).fit(counts)
        return cls(vectorizer, svd.components_)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors ``[n, dim]`` float32 (a text with no known word: a zero row)."""
        counts = self.vectorizer.transform(list(texts))
        return normalize(np.asarray(counts @ self.components.T, dtype=np.float32))

    def save(self, folder: Path) -> None:
        """``vocabulary.json`` and ``lexical.npz`` (idf, components) in ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        vocabulary = {term: int(i) for term, i in self.vectorizer.vocabulary_.items()}
        (folder / VOCABULARY_FILE).write_text(json.dumps(vocabulary, sort_keys=True))
        np.savez(folder / ARRAYS_FILE, idf=self.vectorizer.idf_, components=self.components)

    @classmethod
    def load(cls, folder: Path) -> LexicalEncoder:
        """What :meth:`save` wrote."""
        try:
            vocabulary = json.loads((folder / VOCABULARY_FILE).read_text())
            arrays = np.load(folder / ARRAYS_FILE)
        except (OSError, ValueError) as exc:
            raise MedsimError(f"no lexical encoder in {folder}: {exc}") from exc
        vectorizer = TfidfVectorizer(**TFIDF_SETTINGS, vocabulary=vocabulary)
        vectorizer.idf_ = arrays["idf"]
        return cls(vectorizer, arrays["components"])


@functools.lru_cache(maxsize=2)
def fit_lexical(texts: tuple[str, ...], dim: int, seed: int) -> LexicalEncoder:
    """:meth:`LexicalEncoder.fit`, remembered for the last two sets of texts: a choice fits
    one encoder per fold and once more on the whole, and Table 2 chooses at every K, all
    from the same unlabelled texts (seconds each). The encoder is only read after fitting."""
    return LexicalEncoder.fit(texts, dim, seed)


def hybrid(dense: np.ndarray, lexical: np.ndarray, weight: float) -> np.ndarray:
    """``[sqrt(1 - weight) * dense, sqrt(weight) * lexical]`` (unit rows in, unit rows out)."""
    if not 0.0 <= weight <= 1.0:
        raise MedsimError(f"a lexical weight is within [0, 1], got {weight}")
    if len(dense) != len(lexical):
        raise MedsimError(f"{len(dense)} dense and {len(lexical)} lexical vectors")
    parts = [np.sqrt(1.0 - weight) * dense, np.sqrt(weight) * lexical]
    return np.hstack(parts).astype(np.float32, copy=False)


TextFn = Callable[[list[str]], np.ndarray]


def hybrid_encoder(
    dense: TextFn | None, lexical: LexicalEncoder | None, weight: float
) -> TextFn | None:
    """``dense`` (texts -> unit vectors) with the lexical part beside it, as a space with
    ``weight`` reads texts; ``dense`` itself without one."""
    if dense is None or lexical is None or weight == 0:
        return dense

    def encode(texts: list[str]) -> np.ndarray:
        return hybrid(dense(list(texts)), lexical.encode(texts), weight)

    return encode
