"""kill -9 in the middle of a fetch of 3,000 records with faults injected: the re-run resumes
to exactly the articles table an uninterrupted run writes (no loss, no duplicates)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from medsim.config import params_from_dict
from medsim.pubmed.stage import run_fetch
from tests.pubmed.fake_eutils import FakeServer, clone, has_abstract, recorded_articles

REPO = Path(__file__).resolve().parents[2]
RECORDS = 3_000
FAULTS = ["500", "ok", "truncate", "ok", "reset", "ok", "429:0.2", "ok"]


@pytest.fixture
def ncbi(shared_data):
    templates = [a for a in recorded_articles(shared_data).values() if has_abstract(a)]
    with FakeServer() as state:
        for c in range(3):  # 1,000 PMIDs per class, 50 of them shared with the next class
            ids = [str(80_000_000 + i) for i in range(c * 1000, c * 1000 + 1050)]
            state.searches[f"class{c}[query]"] = ids
        for n, pmid in enumerate(sorted({p for ids in state.searches.values() for p in ids})):
            state.add_article(clone(templates[n % len(templates)], pmid))
        yield state


def _params(root: Path) -> dict:
    params = {
        "fetch": {
            "source": "entrez",
            "classes": {f"c{c}": f"class{c}[query]" for c in range(3)},
            "max_per_class": 1000,
            "pdfs": False,
            "batch_size": 100,
        }
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return params


def _table(root: Path):
    return pq.read_table(root / "data/articles.parquet").to_pandas().sort_values("doc_id")


# three fetches of 3,000 records (reference, killed, resumed): about 60 s of CPU, more wall
# time on shared cores than the suite's 300 s default allows
@pytest.mark.timeout(900)
def test_kill_9_mid_fetch_resumes_to_the_same_articles(ncbi, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MEDSIM_EUTILS_URL", ncbi.eutils_url)
    monkeypatch.setenv("NCBI_EMAIL", "tests@example.org")
    monkeypatch.setenv("NCBI_API_KEY", "test-key")  # 10 requests/s
    monkeypatch.delenv("MEDSIM_RETRY_FAILED", raising=False)

    clean = tmp_path / "clean"
    run_fetch(params_from_dict(_params(clean)), clean)
    expected = _table(clean)
    # each class takes its first 1,000; the 50 a class shares with the next are ambiguous
    assert len(expected) == RECORDS - 2 * 50

    killed = tmp_path / "killed"
    params = _params(killed)
    ncbi.faults["efetch"] += FAULTS * 2
    ncbi.faults["esearch"] += ["500", "reset"]
    env = os.environ | {"PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "stages" / "fetch.py")],
        cwd=killed,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    records = killed / "data/cache/entrez/pubmed"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if records.is_dir() and sum(1 for _ in records.rglob("*.xml")) >= 1000:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # killed mid-way, not finished
    cached = {path.stem for path in records.rglob("*.xml")}
    assert 1000 <= len(cached) < len(expected)
    asked = len(ncbi.fetched_pmids())
    assert not (killed / "data/articles.parquet").exists()  # nothing half-written

    run_fetch(params_from_dict(params), killed)
    resumed = _table(killed)
    assert resumed["doc_id"].is_unique
    assert resumed.reset_index(drop=True).equals(expected.reset_index(drop=True))
    # the resumed run fetched exactly what the killed one had not saved
    assert set(ncbi.fetched_pmids()[asked:]) == set(expected["doc_id"]) - cached
