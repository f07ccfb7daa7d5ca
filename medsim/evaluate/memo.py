"""Rows no experiment on ``loss`` or the encoder tuning changes, computed once per input.

The frozen-encoder, TF-IDF and no-LLM rows of Tables 1 and 3 and the text benchmark's
``before`` side read only the corpus, the frozen embeddings, the seed and the head-training
params; a ``dvc exp run -S loss=...`` re-runs the evaluate stage, which would otherwise refit
all of them. :func:`cached` keeps their results under ``data/cache/evaluate`` (beside the embed
stage's cache, not a DVC output, so ``dvc repro`` does not delete it), keyed by a content hash
of every input the computation reads plus the source of the code that computes them: a change
of data, params or code is a new key, never a stale row.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import pickle
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

import medsim
from medsim.io import atomic_path
from medsim.paths import EVALUATE_CACHE_DIR
from medsim.sources import PACKAGE_ROOT, source_digest

__all__ = ["HEAD_PARAMS_IGNORED", "cached", "content_key", "head_params"]

log = logging.getLogger(__name__)


# train.* keys that only the encoder tuning and the choice among candidate spaces read: heads
# trained on fixed features (the no-LLM baseline) do not depend on them
HEAD_PARAMS_IGNORED = (
    "choose",
    "lexical_weights",
    "lexical_dim",
    "select_budget_s",
    "tune_encoder",
    "tune_layers",
    "tune_epochs",
    "tune_batch_size",
    "tune_lr",
    "max_tokens",
    "interpolation",
    "retrieval_weight",
)

# Everything a cached row can run is reachable from this package: its own modules (fewshot,
# crossdomain and context call into cached() too) and all they import (dml, encoders, ...).
_CODE = ("medsim.evaluate",)
_ROOT = PACKAGE_ROOT  # the tree whose source is read (a test points it at an edited copy)
# Libraries whose upgrade can change a cached number (solvers, kNN, tokenisation).
_LIBRARIES = (
    "numpy",
    "scikit-learn",
    "torch",
    "faiss-cpu",
    "pytorch-metric-learning",
    "sentence-transformers",
    "transformers",
)

T = TypeVar("T")


def head_params(train: object) -> dict[str, Any]:
    """``train.*`` as the head training reads it (tuning-only keys left out)."""
    return {k: v for k, v in dataclasses.asdict(train).items() if k not in HEAD_PARAMS_IGNORED}


def _feed(digest: Any, value: object) -> None:
    """Hash ``value`` with its type and shape, so distinct inputs cannot collide."""
    if isinstance(value, np.ndarray) and value.dtype == object:  # bytes would be pointers
        digest.update(f"obj{value.shape}".encode())
        _feed(digest, [str(v) for v in value.ravel()])
    elif isinstance(value, np.ndarray):
        value = np.ascontiguousarray(value)
        digest.update(f"nd{value.dtype.str}{value.shape}".encode())
        digest.update(value.tobytes())
    elif isinstance(value, pd.DataFrame):
        digest.update(f"df{list(value.columns)}{len(value)}".encode())
        for column in value.columns:
            _feed(digest, value[column].astype(str).to_numpy())
    elif isinstance(value, Mapping):
        digest.update(f"map{len(value)}".encode())
        for key in sorted(value, key=str):
            _feed(digest, str(key))
            _feed(digest, value[key])
    elif isinstance(value, list | tuple):
        digest.update(f"seq{len(value)}".encode())
        for item in value:
            _feed(digest, item)
    elif isinstance(value, np.generic):
        _feed(digest, value.item())
    elif isinstance(value, str | int | float | bool) or value is None:
        text = repr(value).encode()
        digest.update(f"{type(value).__name__}{len(text)}:".encode() + text)
    else:
        raise TypeError(f"cannot hash a {type(value).__name__} for the evaluate cache")


def _code_version() -> str:
    """medsim's version, the source of every module a cached row can run, its key libraries."""
    versions = [f"{name}=={_installed(name)}" for name in _LIBRARIES]
    return f"medsim=={medsim.__version__};{source_digest(_CODE, _ROOT)};{';'.join(versions)}"


def _installed(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "absent"


def content_key(name: str, parts: Sequence[object]) -> str:
    """sha256 of ``name``, ``parts`` and the code (and versions) behind cached rows."""
    digest = hashlib.sha256(name.encode())
    digest.update(_code_version().encode())
    _feed(digest, list(parts))
    return digest.hexdigest()


def cached(root: Path | None, name: str, parts: Sequence[object], compute: Callable[[], T]) -> T:
    """``compute()``, stored under ``root/data/cache/evaluate`` by :func:`content_key`.

    ``root`` None computes without a cache (tests, ad-hoc calls). An unreadable entry is
    recomputed and replaced.
    """
    if root is None:
        return compute()
    path = Path(root) / EVALUATE_CACHE_DIR / f"{name}-{content_key(name, parts)[:32]}.pkl"
    if path.is_file():
        try:
            with path.open("rb") as handle:
                value = pickle.load(handle)
            log.info("%s: from the evaluate cache", name)
            return value
        except (OSError, pickle.UnpicklingError, EOFError) as exc:
            log.warning("recomputing %s: unreadable cache entry %s (%s)", name, path, exc)
    value = compute()
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        pickle.dump(value, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return value
