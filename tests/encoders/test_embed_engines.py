"""Same corpus, two engines: the local loop and a local Ray cluster give the same outputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from medsim.config import params_from_dict
from medsim.encoders.embed import run_embed
from medsim.io import skipped_path

ray = pytest.importorskip("ray")  # the optional extra; CI installs it with .[dev]


@pytest.fixture(scope="module")
def local_ray():
    """A single-node Ray with two CPUs, started (and stopped) by the test itself."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _outputs(root: Path) -> dict[str, tuple[list[str], list[str], np.ndarray]]:
    out = {}
    for path in sorted((root / "data/embeddings").glob("*.parquet")):
        table = pq.read_table(path)
        vectors = np.array(table.column("vector").to_pylist(), dtype=np.float32)
        out[path.stem] = (
            table.column("id").to_pylist(),
            table.column("content_hash").to_pylist(),
            vectors,
        )
    return out


def test_ray_engine_matches_local(tiny_corpus: Path, tmp_path: Path, local_ray):
    ray_root = tmp_path / "ray"
    shutil.copytree(tiny_corpus / "data", ray_root / "data")  # its own (empty) cache too
    base = {"embed": {"batch_size": 4, "device": "cpu"}}
    run_embed(params_from_dict(base), tiny_corpus)
    ray_params = {**base, "compute": {"engine": "ray", "workers": 1, "batch_size": 2}}
    summary = run_embed(params_from_dict(ray_params), ray_root)

    local, remote = _outputs(tiny_corpus), _outputs(ray_root)
    assert sorted(local) == sorted(remote) == ["captions", "images", "tables", "text"]
    for name, (ids, hashes, vectors) in local.items():
        assert remote[name][0] == ids, name  # same rows, same order
        assert remote[name][1] == hashes, name
        np.testing.assert_allclose(remote[name][2], vectors, atol=1e-5, err_msg=name)
    assert local["text"][0] == ["d1", "d2", "d3"]  # not two empty outputs
    assert summary.rows_out["images"] == 2
    skips = [pq.read_table(skipped_path("embed", r)).to_pylist() for r in (tiny_corpus, ray_root)]
    assert {(r["item"], r["reason"]) for r in skips[0]} == {
        (r["item"], r["reason"]) for r in skips[1]
    }
    assert len(skips[1]) == 4
