"""Same corpus, two engines: the local loop and a local Ray cluster give the same outputs."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from medsim.compute import map_batches
from medsim.config import ComputeParams
from medsim.encoders.embed import SOURCES
from medsim.encoders.image import load_image_encoder
from medsim.encoders.stage import EmbedSummary, embed_file
from medsim.encoders.text import load_text_encoder
from medsim.io import SkipLog, write_table

ray = pytest.importorskip("ray")  # the optional extra; CI installs it with .[dev]

RAY = ComputeParams(engine="ray", workers=1, batch_size=2)


def _double_factory() -> object:
    return lambda batch: batch.set_column(1, "x", pc.multiply(batch.column("x"), 2))


def test_map_batches_keeps_order_and_rows_on_both_engines(tmp_path: Path, local_ray):
    schema = pa.schema([("id", pa.string()), ("x", pa.int64())])
    table = pa.table({"id": [f"r{i}" for i in range(25)], "x": list(range(25))}, schema=schema)
    write_table(table, tmp_path / "in.parquet", schema)
    runs = {}
    for compute in (ComputeParams(), ComputeParams(engine="ray", workers=2, batch_size=4)):
        out = map_batches(
            tmp_path / "in.parquet", _double_factory, compute, columns=["id", "x"], batch_rows=7
        )
        runs[compute.engine] = pa.concat_tables(list(out))
    for result in runs.values():
        assert result.column("id").to_pylist() == table.column("id").to_pylist()
        assert result.column("x").to_pylist() == [2 * i for i in range(25)]


def _pid_factory(meeting: Path, actors: int) -> object:
    """A batch function that tags rows with its process id; each actor's first batch waits
    (up to a minute) until ``actors`` actors have each started one, so the test does not
    depend on how fast an actor starts on a loaded machine."""
    import os
    import time

    def fn(batch: pa.Table) -> pa.Table:
        (meeting / str(os.getpid())).touch()
        deadline = time.monotonic() + 60
        while len(list(meeting.iterdir())) < actors and time.monotonic() < deadline:
            time.sleep(0.05)
        return pa.table({"id": batch.column("id"), "pid": [os.getpid()] * batch.num_rows})

    return fn


def test_every_ray_actor_gets_batches_of_a_one_block_file(tmp_path: Path, local_ray):
    """Ray's Parquet reader makes one block of a small file: without the repartition, one
    actor would do all the work while the others idle."""
    schema = pa.schema([("id", pa.string())])
    write_table(
        pa.table({"id": [f"r{i}" for i in range(40)]}, schema), tmp_path / "in.parquet", schema
    )
    compute = ComputeParams(engine="ray", workers=2, batch_size=4)
    (meeting := tmp_path / "meeting").mkdir()
    factory = partial(_pid_factory, meeting, 2)
    out = pa.concat_tables(
        list(map_batches(tmp_path / "in.parquet", factory, compute, columns=["id"], batch_rows=4))
    )
    assert out.column("id").to_pylist() == [f"r{i}" for i in range(40)]
    assert len(set(out.column("pid").to_pylist())) == 2


def _embed(source: str, root: Path, load, compute: ComputeParams, dest: Path):
    skips = SkipLog("embed")
    embed_file(
        SOURCES[source],
        root,
        load(),
        dest,
        cache=None,
        skips=skips,
        summary=EmbedSummary(),
        read_rows=4,
        compute=compute,
        load=load,
    )
    table = pq.read_table(dest)
    vectors = np.array(table.column("vector").to_pylist(), dtype=np.float32)
    items = sorted((r["item"], r["reason"]) for r in skips.rows)
    return table.column("id").to_pylist(), table.column("content_hash").to_pylist(), vectors, items


@pytest.mark.timeout(900)  # two Ray actors each import torch and load a model
@pytest.mark.parametrize(
    ("source", "load", "ids", "skipped"),
    [
        (
            "text",
            partial(load_text_encoder, "packaged:all-MiniLM-L6-v2", batch_size=4, device="cpu"),
            ["d1", "d2", "d3"],
            [("text:d4", "empty text")],
        ),
        (
            "images",
            partial(load_image_encoder, "packaged:efficientnet-lite0", batch_size=4, device="cpu"),
            ["f1", "f2"],
            [("images:f3", "image too small"), ("images:f4", "undecodable image")],
        ),
    ],
)
def test_ray_engine_matches_local(tiny_corpus, tmp_path, local_ray, source, load, ids, skipped):
    local = _embed(source, tiny_corpus, load, ComputeParams(), tmp_path / "local.parquet")
    remote = _embed(source, tiny_corpus, load, RAY, tmp_path / "ray.parquet")
    assert local[0] == remote[0] == ids  # same rows, same order
    assert local[1] == remote[1]
    np.testing.assert_allclose(remote[2], local[2], atol=1e-5)
    assert local[3] == remote[3] == skipped
