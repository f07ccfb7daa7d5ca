"""End to end on a synthetic corpus: every table, file, plot and the report."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow as pa
import pytest
import yaml

import medsim.evaluate.encode as encode
from medsim.errors import MedsimError
from medsim.evaluate.context import EvalContext
from medsim.evaluate.stage import evaluate_tables, run_evaluate, split_details, write_outputs
from medsim.io import rows_to_table, write_table
from medsim.schemas import ARTICLES, FIGURES, embedding_schema
from medsim.stage import run_stage

from .conftest import hashing_encoder, make_corpus, small_params, train_corpus_space

_schema = embedding_schema

FILES = ["table1", "table2", "table3", "retrieval", "modality", "textbench"]


def _numbers(tree, path=""):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _numbers(value, f"{path}.{key}")
    elif isinstance(tree, int | float) and not isinstance(tree, bool):
        yield path, tree


def test_every_table_on_a_multimodal_corpus(synthetic: EvalContext, tmp_path):
    ctx = dataclasses.replace(synthetic, root=tmp_path)
    built = evaluate_tables(ctx)
    write_outputs(ctx, built)
    tables = {name: b.table for name, b in built.items()}
    for name in FILES:
        metrics = json.loads((tmp_path / "metrics" / f"{name}.json").read_text())
        numbers = list(_numbers(metrics))
        assert numbers, name
        assert all(0.0 <= v <= 1.0 for _, v in numbers), name
    t1 = tables["table1"]
    assert {"cnn_softmax", "late_fusion", "metric_learning_no_llm", "proposed"} <= set(t1)
    # the synthetic text is class-specific: the proposed space must beat chance (1/7) by far
    assert t1["proposed"]["accuracy"] > 0.6
    assert t1["proposed"]["accuracy_ci_low"] <= t1["proposed"]["accuracy"]
    assert t1["comparison"]["against"] in t1  # the best other row, a row of the table
    t2 = tables["table2"]
    assert set(t2) == {"2_shot", "4_shot", "protocol", "meta", "comparison"}
    assert t2["protocol"] == "heldout_classes"
    assert len(t2["meta"]["heldout_classes"].split(",")) == 3
    assert t2["4_shot"]["proposed"]["accuracy"] > 1 / 3
    t3 = tables["table3"]
    assert t3["meta"]["dropped_overlap_with_source"] == 1  # the repeated first document
    assert t3["meta"]["dropped_unmapped_label"] == 1
    assert t3["meta"]["n_target"] == 30
    assert t3["proposed"]["accuracy"] > 0.5
    ret = tables["retrieval"]
    for task in ("image_to_caption", "caption_to_image", "image_to_document"):
        for model in ("proposed_float", "proposed_64bit", "ridge_float", "random"):
            assert 0 < ret[task][model]["map"] <= 1
    # several images share one caption: fewer caption queries than image queries
    assert ret["meta"]["n_test_captions"] < ret["meta"]["n_test_images"]
    modality = tables["modality"]["modality"]
    assert modality["linear_probe"]["accuracy"] > 0.9  # the image features carry the modality
    assert set(modality["linear_probe"]["per_class_f1"]) == {"CT", "MR"}
    assert set(tables["textbench"]) == {"before", "after", "meta"}
    assert (tmp_path / "metrics" / "details" / "table3.json").is_file()
    plots = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert plots == [
        "confusion_proposed.png",
        "confusion_text_softmax.png",
        "fewshot_accuracy.png",
        "space_map.png",
    ]
    report = (tmp_path / "metrics" / "REPORT.md").read_text()
    for title in ("Table 1", "Table 2", "Table 3", "retrieval", "modality", "benchmark"):
        assert title in report
    assert "0.893" in report  # the seed paper's figure beside ours


def test_split_details_moves_counts_times_and_text_out():
    metrics, details = split_details(
        {
            "a": {"accuracy": 0.5, "n_test": 10, "train_time_s": 0.2, "seconds": 0.1},
            "b": {"accuracy": None, "reason": "no images"},
            "comparison": {"against": "b", "accuracy_difference": 0.1},
            "protocol": "low_resource",
            "k": 3,
        }
    )
    # numbers only (null where not computable): nothing dvc would list as a text metric
    assert metrics == {"a": {"accuracy": 0.5}, "b": {"accuracy": None}}
    assert details == {
        "a": {"n_test": 10, "train_time_s": 0.2, "seconds": 0.1},
        "b": {"reason": "no images"},
        # one row minus another can fall below 0: a reading, all of it in the details
        "comparison": {"against": "b", "accuracy_difference": 0.1},
        "protocol": "low_resource",
        "k": 3,
    }


def _vectors(ids, docs, matrix):
    dim = matrix.shape[1]
    return pa.table(
        {
            "id": ids,
            "doc_id": docs,
            "content_hash": ["h"] * len(ids),
            "vector": pa.array(list(matrix.astype(np.float32)), type=pa.list_(pa.float32(), dim)),
        }
    )


def test_stage_on_text_only_pipeline_files_gives_null_image_rows(tmp_path, monkeypatch):
    """The stage reads the files the pipeline writes; a text-only corpus has empty figure and
    image files, and every image row is null with a reason."""
    corpus = make_corpus(tmp_path, docs_per_class=15, images=False)
    data = tmp_path / "data"
    a = corpus["articles"]
    write_table(rows_to_table(a.to_dict("records"), ARTICLES), data / "articles.parquet", ARTICLES)
    write_table(rows_to_table([], FIGURES), data / "figures.parquet", FIGURES)
    write_table(
        _vectors(*corpus["features"]["text"]), data / "embeddings/text.parquet", _schema(64)
    )
    for name in ("captions", "tables", "images"):
        write_table(
            _vectors([], [], np.zeros((0, 8))), data / f"embeddings/{name}.parquet", _schema(8)
        )
    params = small_params(corpus["target"])
    train_corpus_space(corpus, params).save(data / "model")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(dataclasses.asdict(params)))
    # the packaged MiniLM would give 384-d vectors; this corpus was "embedded" with hashing
    monkeypatch.setattr(encode, "load_encoder", lambda *_: (hashing_encoder, "hashing (test)"))

    assert run_stage("evaluate", run_evaluate, root=tmp_path) == 0
    tables = {n: json.loads((tmp_path / f"metrics/{n}.json").read_text()) for n in FILES}
    why = {n: json.loads((tmp_path / f"metrics/details/{n}.json").read_text()) for n in FILES}
    for model in ("cnn_softmax", "cnn_mlp_softmax", "late_fusion"):
        assert tables["table1"][model] == {"accuracy": None, "macro_f1": None, "auc": None}
        assert "text-only" in why["table1"][model]["reason"]
    assert tables["table1"]["proposed"]["accuracy"] > 0.4
    assert "text-only" in why["table2"]["2_shot"]["cnn_prototype"]["reason"]
    assert tables["table3"]["proposed"]["accuracy"] > 0.4
    assert why["retrieval"]["image_to_caption"]["proposed_float"]["reason"]
    assert why["modality"]["modality"]["zero_shot"]["reason"]
    assert why["table3"]["meta"]["dropped_overlap_with_source"] in (0, 1)  # doc 0: test?

    def strings(node: object) -> list:
        if isinstance(node, dict):
            return [s for v in node.values() for s in strings(v)]
        return [node] if isinstance(node, str) else []

    assert not [s for table in tables.values() for s in strings(table)]  # numbers only
    report = (tmp_path / "metrics/REPORT.md").read_text()
    assert "Text-only corpus" in report


def test_a_builder_gets_only_the_products_it_reads_and_never_a_later_ones(synthetic):
    """The trap: builders passed results through one shared mutable dict, so the order of
    BUILDERS decided a number without an error."""
    from medsim.evaluate.context import Built
    from medsim.evaluate.stage import Builder

    seen = {}

    def first(ctx):
        return Built({"n": 1}, {"vectors": [1, 2]})

    def second(ctx, first):
        seen.update(first)
        with pytest.raises(TypeError):
            first["vectors"] = []  # read-only
        return Built({"n": 2})

    built = evaluate_tables(
        synthetic, {"first": Builder(first), "second": Builder(second, ("first",))}
    )
    assert seen == {"vectors": [1, 2]} and built["second"].table == {"n": 2}
    with pytest.raises(MedsimError, match="second reads"):
        evaluate_tables(synthetic, {"second": Builder(second, ("first",)), "first": Builder(first)})


def test_every_registered_builder_reads_only_earlier_ones():
    from medsim.evaluate.stage import BUILDERS

    names = list(BUILDERS)
    for i, builder in enumerate(BUILDERS.values()):
        assert set(builder.reads) <= set(names[:i])
