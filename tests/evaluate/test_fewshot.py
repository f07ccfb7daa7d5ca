import dataclasses

import numpy as np
import pytest

from medsim.dml.choice import MAX_FOLDS
from medsim.evaluate.fewshot import (
    DRAW_STRIDE,
    build_low_resource,
    build_table2,
    choose_holdout,
    draw_support,
    episode_accuracy,
    fewshot_table,
    prototype_accuracy,
    sample_episodes,
)

LABELS = np.array(["a"] * 10 + ["b"] * 8 + ["c"] * 12 + ["d"] * 3)


# the synthetic corpus has no texts to tune on and its documents have figures: each base with
# the figures in the document vector and without
CANDIDATES = ["frozen+text_only", "frozen", "head_only+text_only", "head_only"]


def test_episodes_have_the_right_class_counts_and_no_overlap():
    ep = sample_episodes(LABELS, ["a", "b", "c"], ways=2, shots=3, queries=4, n_episodes=50, seed=0)
    assert ep.support.shape == (50, 2, 3)
    assert ep.query.shape == (50, 2, 4)
    for e in range(50):
        for w in range(2):
            classes = set(LABELS[ep.support[e, w]]) | set(LABELS[ep.query[e, w]])
            assert len(classes) == 1  # one class per way, support and query alike
        assert LABELS[ep.support[e, 0, 0]] != LABELS[ep.support[e, 1, 0]]
        used = np.concatenate([ep.support[e].ravel(), ep.query[e].ravel()])
        assert len(set(used)) == len(used)
    assert not np.isin(np.flatnonzero(LABELS == "d"), ep.support).any()


def test_episodes_refuse_classes_too_small():
    with pytest.raises(ValueError, match="too small"):
        sample_episodes(LABELS, ["a", "d"], ways=2, shots=2, queries=2, n_episodes=1, seed=0)


def test_choose_holdout_draws_only_large_enough_classes():
    held = choose_holdout(LABELS, min_count=8, n_holdout=2, seed=0)
    assert len(held) == 2 and set(held) <= {"a", "b", "c"}
    assert choose_holdout(LABELS, min_count=11, n_holdout=2, seed=0) == []


def test_prototype_accuracy_on_separable_and_on_swapped_vectors():
    vectors = np.eye(4)[[0] * 10 + [1] * 8 + [2] * 12 + [3] * 3]
    ep = sample_episodes(LABELS, ["a", "b", "c"], ways=3, shots=2, queries=3, n_episodes=20, seed=1)
    np.testing.assert_array_equal(episode_accuracy(vectors, ep), np.ones(20))
    # identical vectors for every document: every query ties, argmax picks way 0 -> 1/3
    np.testing.assert_allclose(episode_accuracy(np.ones((33, 4)), ep), np.full(20, 1 / 3))


def test_table_shape_and_null_rows():
    ep = sample_episodes(LABELS, ["a", "b"], ways=2, shots=2, queries=2, n_episodes=5, seed=0)
    table = fewshot_table(
        {"m": np.eye(4)[[0] * 10 + [1] * 8 + [2] * 15], "img": "no images"}, {2: ep}
    )
    assert table["2_shot"]["m"]["accuracy"] == 1.0
    assert table["2_shot"]["m"]["accuracy_ci_low"] == 1.0
    assert table["2_shot"]["img"] == {"accuracy": None, "reason": "no images"}
    assert "comparison" not in table  # neither the proposed row nor the frozen one is here


def test_the_proposed_row_is_compared_with_the_frozen_one_on_the_same_episodes():
    ep = sample_episodes(LABELS, ["a", "b"], ways=2, shots=2, queries=2, n_episodes=5, seed=0)
    separable = np.eye(4)[[0] * 10 + [1] * 8 + [2] * 15]
    # identical vectors: every query ties and goes to the first prototype, half right
    table = fewshot_table(
        {"proposed": separable, "transformer_prototype": np.ones((33, 4))}, {2: ep, 4: "too few"}
    )
    assert table["comparison"] == {
        "2_shot": {
            "against": "transformer_prototype",
            "accuracy_difference": 0.5,
            "accuracy_difference_ci_low": 0.5,
            "accuracy_difference_ci_high": 0.5,
        }
    }


def test_draw_support_takes_k_per_class_or_all_of_a_smaller_class():
    labels = ["a", "a", "a", "b", "c", "c"]
    rows, got = draw_support(labels, 2, seed=0)
    assert got == {"a": 2, "b": 1, "c": 2}
    assert sorted(np.asarray(labels)[rows].tolist()) == ["a", "a", "b", "c", "c"]
    assert np.array_equal(rows, draw_support(labels, 2, seed=0)[0])  # seeded


def test_prototype_accuracy_by_hand():
    support = np.array([[1.0, 0.0], [1.0, 0.2], [0.0, 1.0]])
    y_support = np.array(["a", "a", "b"])
    test = np.array([[0.9, 0.1], [0.1, 0.9], [0.8, 0.7]])
    # prototypes: a ~ (1, 0.1), b = (0, 1); the third point is nearer a
    hits = prototype_accuracy(support, y_support, test, np.array(["a", "b", "b"]))
    assert hits.tolist() == [1.0, 1.0, 0.0]


def test_a_four_class_corpus_gets_the_low_resource_protocol(synthetic):
    four = synthetic.articles[synthetic.articles["label"].isin(["C01", "C02", "C03", "C04"])]
    ctx = dataclasses.replace(synthetic, articles=four.reset_index(drop=True))
    table = build_table2(ctx)
    assert table["protocol"] == "low_resource"
    assert table["meta"]["n_classes"] == 4
    assert table["meta"]["support_2_shot"] == 8 and table["meta"]["support_4_shot"] == 16
    for k in (2, 4):
        block = table[f"{k}_shot"]
        for model in ("transformer_prototype", "tfidf_prototype", "proposed", "cnn_prototype"):
            assert 0.25 < block[model]["accuracy"] <= 1.0, (k, model)  # chance is 1/4
            assert block[model]["accuracy_ci_low"] <= block[model]["accuracy"]
        # the proposed row minus the frozen one, paired over the same test documents
        diff, frozen = table["comparison"][f"{k}_shot"], block["transformer_prototype"]
        assert diff["against"] == "transformer_prototype"
        expected = block["proposed"]["accuracy"] - frozen["accuracy"]
        assert diff["accuracy_difference"] == pytest.approx(expected, abs=2e-6)
        assert diff["accuracy_difference_ci_low"] <= diff["accuracy_difference_ci_high"]
        # chosen on folds of the support (the space has no texts: frozen or head_only, each
        # with the documents' figures and without)
        selection = table["meta"][f"proposed_selection_{k}_shot"]
        assert [r["candidate"] for r in selection] == CANDIDATES
        assert {r["criterion"] for r in selection} == {"support_folds"}
        assert all(r["n_probes"] == min(k, MAX_FOLDS) for r in selection)
        if table["meta"][f"proposed_space_{k}_shot"] == "head_only":
            assert "head-only" in block["head_only"]["reason"]
        else:
            assert 0.25 < block["head_only"]["accuracy"] <= 1.0
    forced = dataclasses.replace(
        synthetic,
        params=dataclasses.replace(
            synthetic.params,
            evaluate=dataclasses.replace(synthetic.params.evaluate, fewshot_protocol="heldout"),
        ),
        articles=four.reset_index(drop=True),
    )
    table = build_table2(forced)
    assert table["protocol"] == "none" and table["2_shot"]["proposed"]["accuracy"] is None


def _four_classes(synthetic, shots: int):
    """The synthetic corpus cut to four classes (the low-resource protocol), ``shots`` shots,
    no bootstrap."""
    four = synthetic.articles[synthetic.articles["label"].isin(["C01", "C02", "C03", "C04"])]
    ev = dataclasses.replace(synthetic.params.evaluate, shots=[shots], bootstrap=0)
    return dataclasses.replace(
        synthetic,
        params=dataclasses.replace(synthetic.params, evaluate=ev),
        articles=four.reset_index(drop=True),
    )


def test_low_resource_reads_k_labels_per_class_and_every_training_text(synthetic, monkeypatch):
    ctx = _four_classes(synthetic, shots=2)
    four = ctx.articles
    space = dataclasses.replace(ctx.space)
    calls, refit = [], space.refit

    def spy(labels, splits, **kwargs):
        calls.append((dict(labels), kwargs.get("unlabelled")))
        return refit(labels, splits, **kwargs)

    monkeypatch.setattr(space, "refit", spy)
    fitted_on = []
    monkeypatch.setattr(
        "medsim.evaluate.fewshot.tfidf_features",
        lambda train, texts, seed: fitted_on.append(list(train)) or np.eye(len(texts), 8),
    )
    build_table2(dataclasses.replace(ctx, space=space))
    train = four[four["split"] == "train"]
    labels, unlabelled = calls[0]
    assert len(labels) == 8 and sorted(unlabelled) == sorted(train["doc_id"])
    assert fitted_on == [ctx.doc_texts(train)]


def test_another_draw_of_the_support_has_seeds_of_its_own(synthetic, monkeypatch):
    ctx, seeds = _four_classes(synthetic, shots=2), []
    real = draw_support
    monkeypatch.setattr(
        "medsim.evaluate.fewshot.draw_support",
        lambda labels, k, seed: seeds.append(seed) or real(labels, k, seed),
    )
    first = build_low_resource(ctx)
    again = build_low_resource(ctx, draw=0)
    build_low_resource(ctx, draw=1)
    assert seeds == [ctx.seed + 2, ctx.seed + 2, ctx.seed + 2 + DRAW_STRIDE]
    assert first["2_shot"] == again["2_shot"]  # draw 0 is the table's own


def test_the_heldout_refit_is_chosen_on_base_classes_it_was_not_built_on(synthetic):
    table = build_table2(synthetic)
    assert table["protocol"] == "heldout_classes"
    selection = table["meta"]["proposed_selection"]
    assert [r["candidate"] for r in selection] == CANDIDATES
    assert {r["criterion"] for r in selection} == {"held_out_classes"}
    assert [r["chosen"] for r in selection].count(True) == 1
    chosen = next(r for r in selection if r["chosen"])
    assert chosen["candidate"] == table["meta"]["proposed_space"]
    assert chosen["probe_accuracy"] == max(r["probe_accuracy"] for r in selection)
    assert set(table["comparison"]) == {f"{k}_shot" for k in synthetic.params.evaluate.shots}


def test_one_shot_support_keeps_the_train_stage_space_and_says_why(synthetic):
    ctx = _four_classes(synthetic, shots=1)
    table = build_table2(ctx)
    assert table["meta"]["proposed_space_1_shot"] == synthetic.space.candidate
    [record] = table["meta"]["proposed_selection_1_shot"]
    assert record["criterion"] == "pinned" and record["instead_of"] == "support_folds"
    assert "smallest has 1" in record["why"]
