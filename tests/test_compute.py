"""``map_unordered``: plain Ray tasks over chunks of a list, with a per-item time limit inside."""

from __future__ import annotations

from functools import partial

import pytest

from medsim.compute import map_unordered
from medsim.config import ComputeParams
from medsim.pdf.stage import timed_batch
from tests.pdf import workerfns

pytest.importorskip("ray")  # the optional extra; CI installs it with .[dev]

RAY = ComputeParams(engine="ray", workers=2)


def _errors(chunk, detail):
    return [(item, "task failed", detail) for item in chunk]


def _raise(chunk):
    raise ValueError(f"no {chunk}")


def test_timed_ray_tasks_return_every_item_and_time_out_the_slow_one(local_ray):
    fn = partial(timed_batch, workerfns.slow_or_square, timeout_s=5)
    outcomes = list(map_unordered(fn, [1, -1, 2, 3], RAY, per_task=2, on_error=_errors))
    got = {o.item: (o.status, o.result) for o in outcomes}
    assert got == {1: ("ok", 1), -1: ("timeout", None), 2: ("ok", 4), 3: ("ok", 9)}


def test_a_failed_task_becomes_rows_for_its_items(local_ray):
    rows = list(map_unordered(_raise, [1, 2, 3], RAY, per_task=2, on_error=_errors))
    assert sorted(item for item, _, _ in rows) == [1, 2, 3]
    assert all(reason == "task failed" and "ValueError" in d for _, reason, d in rows)
