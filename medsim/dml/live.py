"""dvclive curves and summary of a :func:`~medsim.dml.train.train_space` run."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["Live", "log_best", "log_history"]

log = logging.getLogger(__name__)


class Live:
    """dvclive logger, or nothing when no log directory is given."""

    def __init__(self, log_dir: Path | None) -> None:
        self.live = None
        if log_dir is not None:
            from dvclive import Live  # heavy import, only where curves are wanted

            self.live = Live(dir=str(log_dir), save_dvc_exp=False, dvcyaml=False)

    def log(self, record: Mapping[str, Any]) -> None:
        if self.live is None:
            return
        for key, value in record.items():
            if isinstance(value, int | float) and key != "epoch" and value is not None:
                self.live.log_metric(key, value)
        self.live.next_step()

    def end(self, summary: Mapping[str, Any]) -> None:
        if self.live is None:
            return
        self.live.summary.update(summary)
        self.live.end()


def log_history(log_dir: Path | None, history: list[dict[str, Any]], best_epoch: int) -> None:
    """dvclive curves and summary of a finished :func:`train_space` run (its ``history``)."""
    if log_dir is None or not history:
        return
    live = Live(log_dir)
    for record in history:
        live.log(_curves(record))
    log_best(live, history, best_epoch)


def _curves(record: Mapping[str, Any]) -> dict[str, Any]:
    """What dvclive plots of one epoch's record."""
    val = record.get("val") or {}
    curves = {k: v for k, v in record.items() if k not in ("val", "seconds", "frozen_val")}
    return curves | {f"val/{k}": v for k, v in val.items() if k != "map_at_r"}


def log_best(live: Live, history: list[dict[str, Any]], best_epoch: int) -> None:
    summary = {
        "best_epoch": best_epoch,
        "val_map_at_r": history[best_epoch]["val_map_at_r"],
        "untrained_val_map_at_r": history[0]["val_map_at_r"],
    }
    live.end({k: v for k, v in summary.items() if v is not None})
    log.info(
        "best epoch %d: val MAP@R %s (untrained %s)",
        best_epoch,
        _fmt(summary["val_map_at_r"]),
        _fmt(summary["untrained_val_map_at_r"]),
    )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
