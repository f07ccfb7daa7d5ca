"""Where a stage's per-batch core runs: in this process, or on a Ray cluster through Ray Data.

A stage hands :func:`map_batches` its input file and a *factory*: a picklable callable that,
called once per worker, loads what the core needs (a model) and returns ``batch -> records``.
``compute.engine: local`` calls the factory once here and streams the file through it;
``compute.engine: ray`` runs ``read_parquet -> map_batches(actor) -> iter_batches``, one actor
per model replica (a GPU each when ``compute.gpus_per_worker`` > 0), and streams the results
back to the stage, which keeps the writing, the cache and the skip log. The core is the same
function either way; only this module knows about Ray.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from medsim.config import ComputeParams
from medsim.errors import MedsimError
from medsim.io import iter_batches

__all__ = ["BatchFn", "map_batches", "start_ray"]

log = logging.getLogger(__name__)

BatchFn = Callable[[pa.Table], pa.Table]


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
    rows = pq.ParquetFile(path).metadata.num_rows
    # one block per Ray batch: a block is one actor task, so a single-block file would keep
    # all but one actor idle
    blocks = max(1, math.ceil(rows / compute.batch_size))
    dataset = ray.data.read_parquet(
        str(path.resolve()), columns=columns, override_num_blocks=blocks
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
