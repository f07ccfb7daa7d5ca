"""Deterministic train/val/test assignment from a hash of (seed, doc_id).

A hash split is a pure function of one row, so it streams, runs in parallel and stays stable
when a corpus grows: a document never changes side because others were added.
"""

from __future__ import annotations

import hashlib

__all__ = ["assign_split", "unit_hash"]


def unit_hash(key: str, seed: int) -> float:
    """Map ``key`` to a float in [0, 1), uniformly and reproducibly for a given ``seed``."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def assign_split(
    doc_id: str,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    fixed: str | None = None,
) -> str:
    """Return ``"train"``, ``"val"`` or ``"test"`` for one document.

    ``fixed`` is a split the corpus brings itself: ``"test"`` and ``"val"`` are kept, and a
    corpus ``"train"`` side gives up ``val_fraction`` of its documents to validation.
    """
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(f"bad split fractions: val={val_fraction}, test={test_fraction}")
    if fixed in ("val", "test"):
        return fixed
    u = unit_hash(doc_id, seed)
    if fixed == "train":
        return "val" if u < val_fraction else "train"
    if fixed is not None:
        raise ValueError(f"unknown fixed split {fixed!r}")
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"
