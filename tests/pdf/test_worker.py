"""TimedPool: results, a hard per-task time limit, task errors and dead workers."""

from __future__ import annotations

import time

from medsim.pdf.worker import TimedPool
from tests.pdf import workerfns


def test_results_for_every_item():
    out = list(TimedPool(workerfns.square, workers=2, timeout_s=30).imap_unordered(range(5)))
    assert sorted(o.result for o in out) == [0, 1, 4, 9, 16]
    assert {o.status for o in out} == {"ok"}


def test_timeout_kills_only_the_slow_task():
    start = time.monotonic()
    pool = TimedPool(workerfns.slow_or_square, workers=2, timeout_s=3)
    out = {o.item: o for o in pool.imap_unordered([2, -1, 3, 4])}
    assert time.monotonic() - start < 30  # the 60 s task was killed, not waited for
    assert out[-1].status == "timeout" and "3 s" in out[-1].detail
    assert [out[i].result for i in (2, 3, 4)] == [4, 9, 16]


def test_errors_and_crashes_are_reported_per_item():
    out = {o.item: o for o in TimedPool(workerfns.fail_on_odd, 1, 30).imap_unordered([1, 2])}
    assert out[1].status == "error" and "odd input 1" in out[1].detail
    assert out[2].status == "ok" and out[2].result == 2
    out = {o.item: o for o in TimedPool(workerfns.die_on_three, 1, 30).imap_unordered([3, 4])}
    assert out[3].status == "crash" and "7" in out[3].detail
    assert out[4].result == 4  # a fresh worker took over


def test_no_items_no_processes():
    assert list(TimedPool(workerfns.square, workers=2, timeout_s=1).imap_unordered([])) == []
