"""One definition of each modality's spellings and of the skip reasons."""

import pytest

from medsim.names import INDEX_ORDER, Modality, SkipReason


def test_each_modality_has_its_on_disk_and_user_facing_spellings() -> None:
    spellings = {m.value: (m.embeddings, m.collection, m.result_type) for m in Modality}
    assert spellings == {
        "text": ("text", "documents", "document"),
        "caption": ("captions", "captions", "caption"),
        "table": ("tables", "tables", "table"),
        "image": ("images", "figures", "figure"),
    }


def test_the_index_order_and_the_reverse_lookup() -> None:
    assert [m.collection for m in INDEX_ORDER] == ["documents", "figures", "captions", "tables"]
    assert Modality.of_collection("figures") is Modality.IMAGE
    with pytest.raises(ValueError, match="no index collection 'pictures'"):
        Modality.of_collection("pictures")


def test_names_are_plain_strings_where_they_are_written() -> None:
    assert SkipReason.EMPTY_TEXT == "empty text"
    assert f"{SkipReason.NO_HEAD}" == "no head"
    assert {"text": 1}[Modality.TEXT] == 1


def test_skip_reasons_are_spelled_one_way() -> None:
    values = [r.value for r in SkipReason]
    assert len(values) == len(set(values))
    assert not [v for v in values if "_" in v and v != "duplicate doc_id"]
