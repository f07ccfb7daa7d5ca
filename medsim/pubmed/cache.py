"""The on-disk cache of NCBI and PMC Cloud answers, one file per request, with an age limit."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from pathlib import Path

from medsim.io import atomic_path

__all__ = ["AGEING_CATEGORIES", "IDENTITY_PARAMS", "ResponseCache"]

# Query parameters that identify the caller, not the request: never part of a cache key (the
# API key must not leak into file names, and adding a key must not invalidate the cache).
IDENTITY_PARAMS = frozenset({"tool", "email", "api_key"})
# Cached answers that go stale as NCBI's data changes: asked again after ``max_age_s``.
AGEING_CATEGORIES = frozenset({"esearch", "idconv", "s3-metadata"})


class ResponseCache:
    """Raw responses on disk, one file per request: ``<root>/<category>/<aa>/<sha256>.<ext>``.

    The key hashes the endpoint and every parameter except the caller's identity, never the
    host: a mirror or a test server on another port shares the cache. Entries of the
    :data:`AGEING_CATEGORIES` older than ``max_age_s`` (None: never) read as missing.
    """

    def __init__(self, root: str | Path, max_age_s: float | None = None) -> None:
        self.root = Path(root)
        self.max_age_s = max_age_s

    def stale(self, path: Path, category: str) -> bool:
        """Whether a cached answer of ``category`` at ``path`` is past ``max_age_s``."""
        if self.max_age_s is None or category not in AGEING_CATEGORIES:
            return False
        try:
            return time.time() - path.stat().st_mtime > self.max_age_s
        except FileNotFoundError:
            return False

    @staticmethod
    def key(endpoint: str, params: Mapping[str, str]) -> str:
        items = sorted((k, str(v)) for k, v in params.items() if k not in IDENTITY_PARAMS)
        return hashlib.sha256(json.dumps([endpoint, items]).encode()).hexdigest()

    def path(self, category: str, key: str, ext: str = "xml") -> Path:
        return self.root / category / key[:2] / f"{key}.{ext}"

    def get(self, path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def put(self, path: Path, data: bytes) -> None:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
