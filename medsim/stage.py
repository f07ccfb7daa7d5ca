"""What every ``stages/<stage>.py`` script shares: logging, params, and a clean exit on error."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from medsim.config import Params, load_params
from medsim.errors import MedsimError

__all__ = ["run_stage"]

log = logging.getLogger("medsim")


def run_stage(name: str, body: Callable[[Params, Path], object], root: str | Path = ".") -> int:
    """Load ``params.yaml`` under ``root``, run ``body(params, root)``, return an exit code.

    A :class:`~medsim.errors.MedsimError` (bad params, no network, unreadable input)
    prints one clear line and returns 2; anything else propagates with its traceback.
    """
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    root = Path(root)
    start = time.perf_counter()
    try:
        body(load_params(root / "params.yaml"), root)
    except MedsimError as exc:
        print(f"medsim {name}: {exc}", file=sys.stderr)
        return 2
    log.info("%s stage finished in %.1f s", name, time.perf_counter() - start)
    return 0
