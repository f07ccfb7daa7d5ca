import numpy as np
import pandas as pd
import pytest

from medsim.evaluate.crossdomain import (
    TargetCorpusError,
    map_target_labels,
    normalise_text,
    overlap_mask,
    read_target_corpus,
)


def test_normalise_text_collapses_whitespace_only():
    assert normalise_text("  A  title\n\n body\ttext ") == "A title body text"
    assert normalise_text("Case") != normalise_text("case")


def test_overlap_on_a_toy_pair_of_corpora():
    source = ["Title one\nBody of one.", "Title two\nBody two."]
    target = ["Title one Body of one.", "Title  two\n Body two", "Something else"]
    # the second target lacks the final period: not the same text
    np.testing.assert_array_equal(overlap_mask(target, source), [True, False, False])


def test_read_target_folder_skips_the_label_legend(tmp_path):
    pd.DataFrame({"condition_label": [1, 2], "medical_abstract": ["x y", "z"]}).to_csv(
        tmp_path / "data.csv", index=False
    )
    pd.DataFrame({"condition_label": [1], "condition_name": ["n"]}).to_csv(
        tmp_path / "medical_tc_labels.csv", index=False
    )
    frame = read_target_corpus(tmp_path)
    assert frame.to_dict("list") == {"text": ["x y", "z"], "label": ["1", "2"]}


def test_read_target_rejects_unknown_layouts(tmp_path):
    (tmp_path / "a.csv").write_text("foo,bar\n1,2\n")
    with pytest.raises(TargetCorpusError, match="text column"):
        read_target_corpus(tmp_path / "a.csv")
    with pytest.raises(TargetCorpusError, match="not found"):
        read_target_corpus(tmp_path / "missing.csv")


def test_map_target_labels():
    mapped, known = map_target_labels(["1", "9", "2"], {"1": "C04", "2": "C06"})
    assert mapped.tolist() == ["C04", None, "C06"]
    assert known.tolist() == [True, False, True]


def _ohsumed_training_texts(root):
    texts = []
    for folder in sorted((root / "training").iterdir()):
        for path in folder.iterdir():
            lines = [x for x in path.read_text(errors="replace").splitlines() if x.strip()]
            texts.append(lines[0] + "\n" + "\n".join(lines[1:]))
    return texts


def test_medical_abstracts_repeat_363_ohsumed_training_documents(shared_data):
    target = read_target_corpus(shared_data / "medical-abstracts-tc")
    assert len(target) == 2888
    source = _ohsumed_training_texts(shared_data / "ohsumed-23")
    assert int(overlap_mask(target["text"], source).sum()) == 363


def test_empty_target_is_the_default_and_gives_null_rows_with_a_reason():
    from types import SimpleNamespace

    from medsim.config import Params
    from medsim.evaluate.crossdomain import MODELS, build_table3

    params = Params()
    assert params.evaluate.cross_domain_target == ""
    table = build_table3(SimpleNamespace(params=params, root=None))
    assert set(MODELS) <= set(table)
    for model in MODELS:
        assert "cross_domain_target is empty" in table[model]["reason"]
        assert all(v is None for k, v in table[model].items() if k != "reason")
