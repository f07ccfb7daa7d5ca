import numpy as np
import pandas as pd

from medsim.evaluate.memo import CACHE_DIR, cached, content_key


def test_cached_computes_once_per_key(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"row": np.arange(3)}

    first = cached(tmp_path, "rows", [np.ones(2), "a", 0], compute)
    again = cached(tmp_path, "rows", [np.ones(2), "a", 0], compute)
    assert len(calls) == 1
    assert again["row"].tolist() == first["row"].tolist() == [0, 1, 2]
    cached(tmp_path, "rows", [np.ones(2), "a", 1], compute)  # another seed: another entry
    assert len(calls) == 2
    assert len(list((tmp_path / CACHE_DIR).glob("rows-*.pkl"))) == 2


def test_without_a_root_nothing_is_stored(tmp_path):
    assert cached(None, "rows", [1], lambda: 5) == 5
    assert not (tmp_path / CACHE_DIR).exists()


def test_key_reads_contents_not_identity():
    labels = np.array(["C04", "C06"], dtype=object)
    docs = pd.DataFrame({"doc_id": ["a", "b"], "label": ["C04", "C06"]})
    key = content_key("t", [labels, docs, np.float32([0.5])])
    assert key == content_key("t", [labels.copy(), docs.copy(), np.float32([0.5])])
    assert key != content_key("t", [labels[::-1].copy(), docs, np.float32([0.5])])
    assert key != content_key("t", [labels, docs.iloc[::-1], np.float32([0.5])])
    assert key != content_key("t", [labels, docs, np.float64([0.5])])  # dtype is part of it
    assert key != content_key("u", [labels, docs, np.float32([0.5])])


def test_an_unreadable_entry_is_recomputed(tmp_path):
    cached(tmp_path, "rows", [1], lambda: 1)
    (entry,) = (tmp_path / CACHE_DIR).glob("rows-*.pkl")
    entry.write_bytes(b"not a pickle")
    assert cached(tmp_path, "rows", [1], lambda: 2) == 2
    assert cached(tmp_path, "rows", [1], lambda: 3) == 2
