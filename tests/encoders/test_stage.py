"""The embed stage end to end on tiny corpora: files, dims, skips, no needless model loads."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from medsim.config import params_from_dict
from medsim.encoders.stage import run_embed
from medsim.errors import MedsimError
from medsim.io import read_table, skipped_path
from medsim.schemas import SKIPPED, embedding_schema
from tests.encoders.conftest import ARTICLE_ROWS, write_articles


def _vectors(path: Path) -> dict[str, list[float]]:
    table = pq.read_table(path)
    return dict(
        zip(table.column("id").to_pylist(), table.column("vector").to_pylist(), strict=True)
    )


def test_stage_on_a_tiny_corpus(tiny_corpus: Path, minilm, lite0):
    params = params_from_dict({"embed": {"batch_size": 4}})
    summary = run_embed(params, tiny_corpus)
    out = tiny_corpus / "data/embeddings"
    assert sorted(p.name for p in out.iterdir()) == [
        "captions.parquet",
        "images.parquet",
        "tables.parquet",
        "text.parquet",
    ]
    text = read_table(out / "text.parquet", embedding_schema(384))
    assert text.column("id").to_pylist() == ["d1", "d2", "d3"]
    meta = pq.read_schema(out / "text.parquet").metadata
    assert meta[b"model_spec"] == b"packaged:all-MiniLM-L6-v2"
    assert meta[b"weight_hash"].decode() == minilm.weight_hash
    assert meta[b"dim"] == b"384"
    expected = minilm.encode([f"{t}\n{a}" for _, t, a, _ in ARTICLE_ROWS[:3]])
    np.testing.assert_allclose(np.array(text.column("vector").to_pylist()), expected, atol=1e-5)

    captions = _vectors(out / "captions.parquet")
    assert sorted(captions) == ["f1", "f2", "f3"]  # f4 has no caption
    np.testing.assert_allclose(captions["f2"], captions["f3"])  # same caption text
    tables = read_table(out / "tables.parquet", embedding_schema(384))
    assert tables.column("id").to_pylist() == ["t1"]
    assert tables.column("doc_id").to_pylist() == ["d1"]

    images = read_table(out / "images.parquet", embedding_schema(1280))
    assert images.column("id").to_pylist() == ["f1", "f2"]
    assert pq.read_schema(out / "images.parquet").metadata[b"weight_hash"].decode() == (
        lite0.weight_hash
    )

    skipped = read_table(skipped_path("embed", tiny_corpus), SKIPPED).to_pylist()
    reasons = {(r["item"], r["reason"]) for r in skipped}
    assert reasons == {
        ("text:d4", "empty text"),
        ("captions:f4", "empty text"),
        ("images:f3", "image too small"),
        ("images:f4", "undecodable image"),
    }
    assert summary.encoded["text"] == 3 and summary.encoded["captions"] == 2

    # DVC deletes the outputs before a re-run; the cache outside them makes it encode nothing
    shutil.rmtree(out)
    rerun = run_embed(params, tiny_corpus)
    assert sum(rerun.encoded.values()) == 0
    assert _vectors(out / "captions.parquet") == captions

    # a grown corpus: only the new document is encoded
    write_articles(tiny_corpus, [*ARTICLE_ROWS, ("d5", "Prostate cancer", "PSA testing.", "b")])
    grown = run_embed(params, tiny_corpus)
    assert grown.encoded["text"] == 1 and grown.encoded["images"] == 0
    assert sorted(_vectors(out / "text.parquet")) == ["d1", "d2", "d3", "d5"]

    # a stricter size limit applies to cached images as well
    strict = params_from_dict({"embed": {"batch_size": 4, "min_image_px": 60}})
    assert run_embed(strict, tiny_corpus).encoded["images"] == 0
    assert list(_vectors(out / "images.parquet")) == ["f1"]  # f2 is 48 px
    skipped = read_table(skipped_path("embed", tiny_corpus), SKIPPED).to_pylist()
    assert ("images:f2", "image too small") in {(r["item"], r["reason"]) for r in skipped}


def test_text_only_corpus_gets_empty_files_with_the_right_dims(tmp_path: Path, monkeypatch):
    write_articles(tmp_path)

    def no_image_model(*args, **kwargs):
        raise AssertionError("no image model should be loaded without images")

    monkeypatch.setattr("medsim.encoders.stage.load_image_encoder", no_image_model)
    run_embed(params_from_dict({}), tmp_path)
    out = tmp_path / "data/embeddings"
    for name, dim in [("captions", 384), ("tables", 384), ("images", 1280)]:
        table = read_table(out / f"{name}.parquet", embedding_schema(dim))
        assert table.num_rows == 0
    assert pq.read_table(out / "text.parquet").num_rows == 3


def test_missing_articles_is_a_clear_error(tmp_path: Path):
    with pytest.raises(MedsimError, match="fetch stage"):
        run_embed(params_from_dict({}), tmp_path)
    assert not (tmp_path / "data/embeddings").exists()
