"""A process pool with a hard per-task time limit.

``concurrent.futures`` cannot stop one running task; here each worker is a process of its
own, so a task past its limit (a PDF that sends MuPDF or camelot into a loop) is killed with
its process and a fresh worker takes its place. A worker that dies (a segfault in a C
library) costs only its task.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Generic, Literal, TypeVar

__all__ = ["Outcome", "TimedPool"]

T = TypeVar("T")

Status = Literal["ok", "timeout", "error", "crash"]

STARTUP_TIMEOUT_S = 300.0


@dataclass
class Outcome(Generic[T]):
    """What became of one task: its result, or why there is none (``detail``)."""

    item: T
    status: Status
    result: Any = None
    detail: str | None = None


def _serve(fn: Callable[[Any], Any], conn: Connection) -> None:
    conn.send(("ready", None))  # imports are done: task time limits start from here
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        try:
            conn.send(("ok", fn(task)))
        except Exception as exc:  # reported to the parent, which records it as skipped
            conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"))


class _Worker:
    def __init__(self, ctx: Any, fn: Callable[[Any], Any]) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(fn, child), daemon=True)
        self.process.start()
        child.close()
        self.item: Any = None
        self.deadline = 0.0
        # Wait for the worker's imports (PyMuPDF loads its layout model on import), so that
        # they do not count against the first task's time limit.
        try:
            if not self.conn.poll(STARTUP_TIMEOUT_S) or self.conn.recv()[0] != "ready":
                raise RuntimeError(f"worker did not start within {STARTUP_TIMEOUT_S} s")
        except (EOFError, OSError) as exc:
            self.kill()
            raise RuntimeError(f"worker died on start (exit code {self.process.exitcode})") from exc

    def kill(self) -> None:
        self.process.kill()
        self.process.join()
        self.conn.close()

    def stop(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self.conn.send(None)
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.kill()
        else:
            self.conn.close()


class TimedPool:
    """Run ``fn`` over items in ``workers`` processes, each task limited to ``timeout_s``.

    ``fn`` must be importable (module level) because workers are spawned, not forked: forking
    a process that already runs ONNX Runtime or PDFium threads is unsafe.
    """

    def __init__(
        self, fn: Callable[[Any], Any], workers: int, timeout_s: float, start_method: str = "spawn"
    ) -> None:
        self.fn = fn
        self.workers = max(1, workers)
        self.timeout_s = timeout_s
        self.ctx = mp.get_context(start_method)

    def imap_unordered(self, items: Iterable[T]) -> Iterator[Outcome[T]]:
        """Yield one :class:`Outcome` per item, in completion order."""
        pending = iter(items)
        idle: list[_Worker] = []
        busy: dict[Connection, _Worker] = {}
        exhausted = False
        try:
            while True:
                while not exhausted and (idle or len(busy) < self.workers):
                    item = next(pending, _END)
                    if item is _END:
                        exhausted = True
                        break
                    # workers start on demand: no process for a pool with nothing to do
                    worker = idle.pop() if idle else _Worker(self.ctx, self.fn)
                    worker.item, worker.deadline = item, time.monotonic() + self.timeout_s
                    worker.conn.send(item)
                    busy[worker.conn] = worker
                if not busy:
                    return
                soonest = min(w.deadline for w in busy.values())
                ready = wait(list(busy), timeout=max(0.0, soonest - time.monotonic()))
                for conn in ready:
                    worker = busy.pop(conn)  # type: ignore[arg-type]
                    try:
                        status, payload = conn.recv()  # type: ignore[union-attr]
                    except (EOFError, OSError):
                        worker.process.join(timeout=1)
                        code = worker.process.exitcode
                        worker.kill()
                        yield Outcome(worker.item, "crash", detail=f"worker exit code {code}")
                        continue
                    idle.append(worker)
                    if status == "ok":
                        yield Outcome(worker.item, "ok", result=payload)
                    else:
                        yield Outcome(worker.item, "error", detail=payload)
                now = time.monotonic()
                for conn, worker in list(busy.items()):
                    if worker.deadline <= now and conn not in ready:
                        del busy[conn]
                        worker.kill()
                        yield Outcome(worker.item, "timeout", detail=f"over {self.timeout_s:g} s")
        finally:
            for worker in idle:
                worker.stop()
            for worker in busy.values():  # the consumer stopped early: nothing waits for these
                worker.kill()


_END = object()
