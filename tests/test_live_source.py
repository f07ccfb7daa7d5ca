"""The live source end to end: default classes against the fake NCBI and PMC Cloud bucket,
through the fetch and extract stage scripts as ``dvc repro`` runs them."""

from __future__ import annotations

import io
import json
import shutil

import pytest
import yaml
from PIL import Image

from medsim.io import read_table
from medsim.schemas import ARTICLES, FIGURES, SKIPPED, TABLES
from tests.conftest import run_stage_script
from tests.pubmed.fake_eutils import FakeServer, populate_classes

PER_CLASS = 20


@pytest.fixture
def ncbi(shared_data, repo_root):
    classes = yaml.safe_load((repo_root / "params.yaml").read_text())["fetch"]["classes"]
    with FakeServer() as state:
        state.texts = populate_classes(state, shared_data, classes, PER_CLASS)
        yield state


def test_default_classes_give_articles_full_text_figures_and_tables(
    ncbi, repo_root, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("MEDSIM_EUTILS_URL", ncbi.eutils_url)
    monkeypatch.setenv("MEDSIM_PMC_URL", ncbi.pmc_url)
    monkeypatch.setenv("MEDSIM_PMC_CLOUD_URL", ncbi.bucket_url)
    monkeypatch.setenv("NCBI_EMAIL", "tests@example.org")
    shutil.copy(repo_root / "params.yaml", tmp_path / "params.yaml")
    for stage in ("fetch", "extract"):
        done = run_stage_script(stage, tmp_path, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]

    articles = read_table(tmp_path / "data/articles.parquet", ARTICLES).to_pylist()
    classes = len(yaml.safe_load((repo_root / "params.yaml").read_text())["fetch"]["classes"])
    # 5 PMIDs of each class but the last are also the next class's: ambiguous, dropped
    assert len(articles) == classes * PER_CLASS - 5 * (classes - 1)
    with_text = [a for a in articles if a["jats_path"]]
    assert len(with_text) == len(ncbi.texts) == 8
    assert all(a["license"] == "CC BY" and a["pmcid"] for a in with_text)
    assert all((tmp_path / a["jats_path"]).is_file() for a in with_text)
    assert sum(1 for a in articles if a["pdf_path"]) == sum(t.has_pdf for t in ncbi.texts)

    figures = read_table(tmp_path / "data/figures.parquet", FIGURES).to_pylist()
    tables = read_table(tmp_path / "data/tables.parquet", TABLES).to_pylist()
    assert len(figures) == sum(t.figures for t in ncbi.texts) == 17  # the XML's own <fig>s
    assert {f["origin"] for f in figures} == {"jats"} and all(f["caption"] for f in figures)
    for figure in figures:
        with Image.open(io.BytesIO(figure["image"])) as image:
            assert image.size == (figure["width"], figure["height"])
    assert len(tables) == 21 and {t["origin"] for t in tables} == {"jats"}
    assert all(json.loads(t["cells"]) and t["caption"] for t in tables)
    skipped = read_table(tmp_path / "data/skipped.parquet/fetch.parquet", SKIPPED).to_pylist()
    reasons = {s["reason"] for s in skipped}
    assert reasons == {"ambiguous label", "no pmc id"}


def test_an_unreachable_bucket_keeps_every_abstract_and_licences_filter_full_text(
    ncbi, repo_root, tmp_path, monkeypatch
) -> None:
    from tests.pubmed.test_pmc import closed_port_url

    monkeypatch.setenv("MEDSIM_EUTILS_URL", ncbi.eutils_url)
    monkeypatch.setenv("MEDSIM_PMC_URL", ncbi.pmc_url)
    monkeypatch.setenv("MEDSIM_PMC_CLOUD_URL", closed_port_url())
    monkeypatch.setenv("NCBI_EMAIL", "tests@example.org")
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    done = run_stage_script("fetch", tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    articles = read_table(tmp_path / "data/articles.parquet", ARTICLES).to_pylist()
    classes = len(params["fetch"]["classes"])
    assert len(articles) == classes * PER_CLASS - 5 * (classes - 1)  # every abstract
    assert not any(a["jats_path"] or a["pdf_path"] for a in articles)
    skipped = read_table(tmp_path / "data/skipped.parquet/fetch.parquet", SKIPPED).to_pylist()
    reasons = {s["item"]: s["reason"] for s in skipped if s["item"].startswith("pmc/")}
    with_pmcid = {f"pmc/{a['doc_id']}" for a in articles if a["pmcid"]}
    assert with_pmcid and {i: reasons[i] for i in with_pmcid} == dict.fromkeys(
        with_pmcid, "pmc bucket unreachable"
    )
    # the bucket back, only CC0 kept: the recorded full texts (all CC BY) are left out
    monkeypatch.setenv("MEDSIM_PMC_CLOUD_URL", ncbi.bucket_url)
    params["fetch"]["licenses"] = ["CC0"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    done = run_stage_script("fetch", tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    articles = read_table(tmp_path / "data/articles.parquet", ARTICLES).to_pylist()
    assert not any(a["jats_path"] for a in articles)
    skipped = read_table(tmp_path / "data/skipped.parquet/fetch.parquet", SKIPPED).to_pylist()
    left_out = [s for s in skipped if s["reason"] == "licence not in fetch.licenses"]
    assert len(left_out) == len(ncbi.texts) and all("'CC BY'" in s["detail"] for s in left_out)
