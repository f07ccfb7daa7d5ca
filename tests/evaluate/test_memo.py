import numpy as np
import pandas as pd

from medsim.evaluate.memo import cached, content_key
from medsim.paths import EVALUATE_CACHE_DIR as CACHE_DIR


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


def test_editing_code_a_cached_row_runs_is_a_miss(tmp_path, monkeypatch):
    """fewshot.py calls cached() but was missing from the hand-kept source list: now any
    module the evaluate package reaches is part of the key."""
    import shutil

    from medsim.evaluate import memo

    tree = tmp_path / "medsim"
    shutil.copytree(memo.PACKAGE_ROOT, tree, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(memo, "_ROOT", tree)
    calls = []

    def compute():
        calls.append(1)
        return len(calls)

    assert cached(tmp_path, "rows", [1], compute) == 1
    assert cached(tmp_path, "rows", [1], compute) == 1  # a hit
    for edited in ("evaluate/fewshot.py", "evaluate/crossdomain.py", "dml/neighbours.py"):
        path = tree / edited
        path.write_text(path.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
        before = len(calls)
        cached(tmp_path, "rows", [1], compute)
        assert len(calls) == before + 1, f"editing {edited} served a stale row"


def test_the_key_names_medsims_version(monkeypatch):
    import medsim

    key = content_key("rows", [1])
    monkeypatch.setattr(medsim, "__version__", "99.0")
    assert content_key("rows", [1]) != key
