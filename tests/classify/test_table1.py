"""The classifier read from a built project reproduces Table 1's proposed row."""

from __future__ import annotations

import numpy as np

from medsim.classify.load import load_classifier, stored_vectors
from medsim.evaluate.classification import build_table1
from medsim.search.index import load_index


def test_index_vectors_are_table1_vectors(project):
    ctx = project.ctx
    store = load_index(project.root / "data/index")
    ids = store.collection_items("documents", ("doc_id",)).column(0).to_pylist()
    expected = ctx.space.documents(ctx.space_features, ids)
    np.testing.assert_allclose(stored_vectors(store), expected, atol=1e-5)


def test_classifying_the_test_split_gives_table1_predictions(project):
    ctx = project.ctx
    built = build_table1(ctx)
    table, t1 = built.table, built.products
    store = load_index(project.root / "data/index")
    classifier = load_classifier(store, project.root, ctx.params.evaluate.knn_k)
    assert classifier.classes == t1["classes"]
    docs = ctx.docs
    test = docs[(docs["split"] == "test") & docs["label"].isin(t1["classes"])]
    ids = store.collection_items("documents", ("doc_id",)).column(0).to_pylist()
    row = {d: i for i, d in enumerate(ids)}
    vectors = stored_vectors(store)[[row[d] for d in test["doc_id"]]]
    proba = classifier.proba(vectors)
    expected = t1["proba"]["proposed"]
    np.testing.assert_array_equal(proba.argmax(axis=1), expected.argmax(axis=1))
    accuracy = (proba.argmax(axis=1) == t1["y_test"]).mean()
    assert round(accuracy, 3) == round(table["proposed"]["accuracy"], 3)
    # calibration keeps each row's order of the classes
    above = expected[:, :, None] > expected[:, None, :]
    assert np.all((proba[:, :, None] > proba[:, None, :])[above])
    assert classifier.knn_calibration.fitted_on == int((docs["split"] == "val").sum())


def test_a_stored_training_document_does_not_vote_for_itself(project):
    store = load_index(project.root / "data/index")
    classifier = load_classifier(store, project.root, 5)
    ref = classifier.reference
    doc = ref.doc_ids[0]
    (prediction,) = classifier.predict(ref.vectors[:1], exclude=[doc])
    assert doc not in [n.doc_id for n in prediction.neighbours]
    assert len(prediction.neighbours) == 5
    (with_self,) = classifier.predict(ref.vectors[:1])
    assert with_self.neighbours[0].doc_id == doc
    assert with_self.neighbours[0].similarity > 0.999


def test_a_space_that_chose_prototypes_classifies_by_them(project, monkeypatch):
    # the train stage recorded "prototype" (the index manifest carries it): Table 1's proposed
    # row and the classifier both answer by the nearest class mean
    ctx = project.ctx
    monkeypatch.setitem(ctx.space.space.params, "rule", "prototype")
    built = build_table1(ctx)
    t1, products = built.table, built.products
    assert t1["meta"]["proposed_rule"] == "prototype"
    assert t1["proposed"] == t1["proposed_prototype"]
    np.testing.assert_array_equal(
        products["proba"]["proposed"], products["proba"]["proposed_prototype"]
    )
    store = load_index(project.root / "data/index")
    monkeypatch.setitem(store.manifest, "rule", "prototype")
    classifier = load_classifier(store, project.root, ctx.params.evaluate.knn_k)
    assert classifier.rule == "prototype"
    docs = ctx.docs
    test = docs[(docs["split"] == "test") & docs["label"].isin(products["classes"])]
    ids = store.collection_items("documents", ("doc_id",)).column(0).to_pylist()
    row = {d: i for i, d in enumerate(ids)}
    proba = classifier.proba(stored_vectors(store)[[row[d] for d in test["doc_id"]]])
    np.testing.assert_array_equal(
        proba.argmax(axis=1), products["proba"]["proposed_prototype"].argmax(axis=1)
    )
    (prediction,) = classifier.predict(stored_vectors(store)[:1])
    assert prediction.rule == "prototype"
