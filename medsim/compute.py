"""Where a stage's per-batch core runs: in this process, or on a Ray cluster through Ray Data.

Two shapes of work. A stage hands :func:`map_batches` its input file and a *factory*: a
picklable callable that, called once per worker, loads what the core needs (a model) and
returns ``batch -> records``. ``compute.engine: local`` calls the factory once here and
streams the file through it; ``compute.engine: ray`` runs ``read_parquet -> map_batches(actor)
-> iter_batches``, one actor per model replica (a GPU each when ``compute.gpus_per_worker`` >
0), and streams the results back to the stage, which keeps the writing, the cache and the skip
log. The core is the same function either way. :func:`map_unordered` runs a function over
chunks of a list as plain Ray tasks (extract: a few PDFs per task, each under its time limit).
Only this module knows about Ray.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import pyarrow as pa

from medsim.config import ComputeParams
from medsim.errors import MedsimError
from medsim.io import iter_batches

__all__ = ["BatchFn", "map_batches", "map_unordered", "start_ray"]

log = logging.getLogger(__name__)

BatchFn = Callable[[pa.Table], pa.Table]
T = TypeVar("T")
R = TypeVar("R")


def start_ray(compute: ComputeParams) -> None:
    """Join ``compute.address`` (or start a local Ray) unless this process already has Ray."""
    try:
        import ray
    except ImportError as exc:  # an optional extra
        raise MedsimError(
            'compute.engine is ray but Ray is not installed: pip install -e ".[ray]"'
        ) from exc
    if ray.is_initialized():
        return
    if not compute.address:
        # Ray starts its workers at nice 15 (so they never starve its own daemons); on a
        # machine shared with other jobs that left the actors a sliver of the CPU the local
        # engine gets at nice 0 (an OHSUMED slice ran 4x slower). A local Ray here runs the
        # stage's own work: same priority as the stage.
        os.environ.setdefault("RAY_worker_niceness", "0")
    ray.init(address=compute.address or None, include_dashboard=False, log_to_driver=False)
    log.info("Ray resources: %s", ray.cluster_resources())


class _BatchActor:
    """One Ray actor: builds the core once (the model loads once per worker), then maps batches."""

    def __init__(self, factory: Callable[[], BatchFn]) -> None:
        self.fn = factory()

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.fn(batch)


def map_batches(
    path: str | Path,
    factory: Callable[[], BatchFn],
    compute: ComputeParams,
    *,
    columns: list[str],
    batch_rows: int,
) -> Iterator[pa.Table]:
    """Stream the Parquet file ``path`` (``columns`` only) through ``factory()``'s function.

    Yields one output table per input batch, in input order, on either engine. Locally the
    batches hold ``batch_rows`` rows; on Ray, ``compute.batch_size``.
    """
    if compute.engine == "local":
        fn = factory()
        for batch in iter_batches(path, batch_size=batch_rows, columns=columns):
            yield fn(batch)
        return
    yield from _ray_map_batches(Path(path), factory, compute, columns)


def _actor_cpus(workers: int) -> float:
    """CPUs each CPU actor asks for: one, or less where ``workers`` actors would take every
    CPU and leave none for Ray Data's read tasks (which then never run: a deadlock)."""
    import ray

    spare = ray.cluster_resources().get("CPU", 1.0) - 1.0
    return max(0.25, min(1.0, spare / workers))


def _ray_map_batches(
    path: Path, factory: Callable[[], BatchFn], compute: ComputeParams, columns: list[str]
) -> Iterator[pa.Table]:
    import ray.data

    start_ray(compute)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # same row order as the local engine
    context.enable_progress_bars = False  # the stage shows its own
    gpus = compute.gpus_per_worker
    workers = max(1, compute.workers)
    # one block per Ray batch, so every actor gets work: a block is one actor task, and Ray's
    # Parquet reader makes one block of a small file whatever override_num_blocks says (a
    # streaming repartition: no barrier, no shuffle)
    dataset = ray.data.read_parquet(str(path.resolve()), columns=columns).repartition(
        target_num_rows_per_block=compute.batch_size
    )
    dataset = dataset.map_batches(
        _BatchActor,
        fn_constructor_args=(factory,),
        batch_size=compute.batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_gpus=gpus if gpus > 0 else None,
        num_cpus=None if gpus > 0 else _actor_cpus(workers),
        zero_copy_batch=True,
    )
    yield from dataset.iter_batches(batch_format="pyarrow", batch_size=None)


def _apply(fn: Callable[[list[T]], list[R]], chunk: list[T]) -> list[R]:
    return fn(chunk)  # ray.remote takes functions, not partials: this carries any callable


def map_unordered(
    fn: Callable[[list[T]], list[R]],
    items: Sequence[T],
    compute: ComputeParams,
    *,
    per_task: int,
    on_error: Callable[[list[T], str], list[R]],
) -> Iterator[R]:
    """``fn`` over chunks of ``per_task`` items as Ray tasks (one CPU each), at most
    ``compute.workers`` in flight; yields each chunk's results as its task ends.

    ``fn`` must be picklable and importable by the workers (a module-level function or a
    ``functools.partial`` of one). A task that fails as a whole (its worker died, ``fn``
    raised) gives ``on_error(chunk, detail)`` instead of stopping the stage.
    """
    import ray

    start_ray(compute)
    remote = ray.remote(num_cpus=1, max_retries=0)(_apply)
    chunks = iter([list(items[i : i + per_task]) for i in range(0, len(items), per_task)])
    running: dict[ray.ObjectRef, list[T]] = {}

    def submit() -> None:
        chunk = next(chunks, None)
        if chunk is not None:
            running[remote.remote(fn, chunk)] = chunk

    for _ in range(max(1, compute.workers)):
        submit()
    while running:
        (ref,), _ = ray.wait(list(running), num_returns=1)
        chunk = running.pop(ref)
        submit()
        try:
            results = ray.get(ref)
        except (ray.exceptions.RayError, OSError) as exc:
            log.warning("a Ray task of %d items failed: %s", len(chunk), exc)
            results = on_error(chunk, f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
        yield from results
