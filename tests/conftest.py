"""Shared fixtures. Real corpora are read from ../shared (or $MEDSIM_SHARED), never copied."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDSIM_SHARED", REPO.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real corpora (``../shared/data``).

    Tests that need it skip without it on a developer's machine, but fail under
    ``MEDSIM_REQUIRE_SHARED=1`` (set by ``.ci/run``), so CI cannot go green by skipping them.
    """
    data = SHARED / "data"
    if not data.is_dir():
        message = f"shared data not found at {data} (set MEDSIM_SHARED)"
        if os.environ.get("MEDSIM_REQUIRE_SHARED") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return data


@pytest.fixture
def repo_root() -> Path:
    return REPO


def run_stage_script(stage: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``stages/<stage>.py`` in ``cwd`` as ``dvc repro`` does; never raises on failure."""
    return subprocess.run(
        [sys.executable, str(REPO / "stages" / f"{stage}.py")],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def local_ray():
    """A single-node Ray with two CPUs, started once for the session by the tests themselves
    (``compute.engine: ray`` tests; Ray is an optional extra, so they skip without it)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
