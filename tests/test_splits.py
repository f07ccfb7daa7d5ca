from collections import Counter

import pytest

from medsim.splits import assign_split, unit_hash


def test_unit_hash_is_stable_and_seed_dependent() -> None:
    assert unit_hash("123", 0) == unit_hash("123", 0)
    assert unit_hash("123", 0) != unit_hash("123", 1)
    assert 0 <= unit_hash("x", 5) < 1


def test_fractions_are_respected_on_many_ids() -> None:
    counts = Counter(assign_split(str(i), 0, 0.1, 0.2) for i in range(20_000))
    assert abs(counts["test"] / 20_000 - 0.2) < 0.015
    assert abs(counts["val"] / 20_000 - 0.1) < 0.015
    assert abs(counts["train"] / 20_000 - 0.7) < 0.015


def test_fixed_splits_are_kept_and_train_gives_up_val() -> None:
    assert assign_split("a", 0, 0.1, 0.2, fixed="test") == "test"
    assert assign_split("a", 0, 0.1, 0.2, fixed="val") == "val"
    sides = Counter(assign_split(str(i), 0, 0.1, 0.2, fixed="train") for i in range(5_000))
    assert set(sides) == {"train", "val"}
    assert abs(sides["val"] / 5_000 - 0.1) < 0.02


def test_split_of_a_document_does_not_depend_on_the_others() -> None:
    before = {str(i): assign_split(str(i), 3, 0.1, 0.2) for i in range(100)}
    after = {str(i): assign_split(str(i), 3, 0.1, 0.2) for i in range(1_000)}
    assert all(after[k] == v for k, v in before.items())


@pytest.mark.parametrize(("val", "test"), [(-0.1, 0.2), (0.5, 0.5), (0.1, 1.0)])
def test_bad_fractions_raise(val: float, test: float) -> None:
    with pytest.raises(ValueError, match="bad split fractions"):
        assign_split("a", 0, val, test)


def test_unknown_fixed_split_raises() -> None:
    with pytest.raises(ValueError, match="unknown fixed split"):
        assign_split("a", 0, 0.1, 0.2, fixed="holdout")
