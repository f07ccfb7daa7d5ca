"""The lexical encoder: fitted on training texts only, saved without pickle, and the hybrid
vector whose cosine is the weighted sum of the two parts' cosines."""

from __future__ import annotations

import numpy as np
import pytest

from medsim.dml.lexical import LexicalEncoder, fit_lexical, hybrid, hybrid_encoder
from medsim.errors import MedsimError

TEXTS = [
    "BRCA1 mutation in breast cancer cells",
    "BRCA1 and BRCA2 carriers with breast cancer",
    "EGFR mutation in lung adenocarcinoma",
    "EGFR inhibitors in lung cancer",
    "angiogenesis and VEGF in tumours",
    "VEGF drives angiogenesis in tumours",
]


def test_hybrid_cosine_is_the_weighted_sum_of_the_parts():
    a_dense, b_dense = np.array([[1.0, 0.0]]), np.array([[0.6, 0.8]])  # cosine 0.6
    a_words, b_words = np.array([[0.0, 1.0, 0.0]]), np.array([[0.0, 1.0, 0.0]])  # cosine 1
    a, b = hybrid(a_dense, a_words, 0.25), hybrid(b_dense, b_words, 0.25)
    assert a.shape == (1, 5)
    np.testing.assert_allclose(np.linalg.norm(a), 1.0, rtol=1e-6)
    np.testing.assert_allclose((a @ b.T).item(), 0.75 * 0.6 + 0.25 * 1.0, rtol=1e-6)


def test_hybrid_weight_zero_is_the_dense_vector_padded():
    dense = np.array([[0.6, 0.8]], dtype=np.float32)
    out = hybrid(dense, np.array([[1.0, 0.0]], dtype=np.float32), 0.0)
    np.testing.assert_array_equal(out, np.array([[0.6, 0.8, 0.0, 0.0]], dtype=np.float32))
    with pytest.raises(MedsimError, match="within"):
        hybrid(dense, dense, 1.5)


def test_a_vocabulary_learnt_on_training_texts_only():
    encoder = LexicalEncoder.fit(TEXTS, dim=3)
    assert encoder.dim == 3 and "brca1" in encoder.vectorizer.vocabulary_
    x = encoder.encode(["BRCA1 breast", "EGFR lung", "an unseen word"])
    np.testing.assert_allclose(np.linalg.norm(x[:2], axis=1), 1.0, rtol=1e-5)
    assert float(x[0] @ x[1]) < 0.5  # different words, different directions
    np.testing.assert_array_equal(x[2], 0.0)  # no known word: no lexical direction


def test_fit_lexical_fits_each_set_of_texts_once():
    first = fit_lexical(tuple(TEXTS), 3, 0)
    assert fit_lexical(tuple(TEXTS), 3, 0) is first
    other = fit_lexical(tuple(TEXTS[:4]), 3, 0)
    assert other is not first and "vegf" not in other.vectorizer.vocabulary_
    np.testing.assert_allclose(first.encode(TEXTS), LexicalEncoder.fit(TEXTS, 3).encode(TEXTS))


def test_save_and_load_give_the_same_vectors(tmp_path):
    encoder = LexicalEncoder.fit(TEXTS, dim=4)
    encoder.save(tmp_path / "lexical")
    again = LexicalEncoder.load(tmp_path / "lexical")
    np.testing.assert_allclose(again.encode(TEXTS), encoder.encode(TEXTS), atol=1e-6)
    with pytest.raises(MedsimError, match="no lexical encoder"):
        LexicalEncoder.load(tmp_path / "missing")


def test_too_few_words_is_a_one_line_error():
    with pytest.raises(MedsimError, match="lexical features"):
        LexicalEncoder.fit(["one", "two"])


def test_hybrid_encoder_wraps_a_dense_encoder():
    encoder = LexicalEncoder.fit(TEXTS, dim=2)

    def dense(texts):
        return np.ones((len(texts), 2), dtype=np.float32) / np.sqrt(2)

    assert hybrid_encoder(dense, None, 0.5) is dense
    assert hybrid_encoder(dense, encoder, 0.0) is dense
    out = hybrid_encoder(dense, encoder, 0.5)(TEXTS[:2])
    assert out.shape == (2, 4)


def test_search_queries_get_the_words_the_index_was_built_with(tmp_path):
    from medsim.search.query import _with_words

    encoder = LexicalEncoder.fit(TEXTS, dim=3)
    encoder.save(tmp_path / "data/model/lexical")

    def dense(texts):
        return np.ones((len(texts), 2), dtype=np.float32) / np.sqrt(2)

    manifest = {"lexical": "data/model/lexical", "lexical_weight": 0.3}
    words = _with_words(dense, manifest, tmp_path)(["BRCA1 breast"])
    np.testing.assert_allclose(words, hybrid(dense(["x"]), encoder.encode(["BRCA1 breast"]), 0.3))
    assert _with_words(dense, {"lexical": None}, tmp_path) is dense
