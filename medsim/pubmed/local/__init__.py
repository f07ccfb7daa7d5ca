"""Local corpora: one reader module per ``fetch.local.format``, picked from a registry.

Every reader module exposes ``read(path, opts, store, ambiguous) -> Iterator[Record]`` and
streams (it never loads a whole corpus), yielding :class:`~medsim.pubmed.records.Skipped` for
what it cannot use instead of raising.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from medsim.config import LocalSourceParams
from medsim.errors import MedsimError

if TYPE_CHECKING:
    from medsim.fetch import RawStore, Record

__all__ = ["READERS", "LocalSourceError", "detect_format", "read_local", "resolve_path"]

# format -> module under medsim.pubmed.local; imported on use so that, say, reading a CSV
# never imports PyMuPDF.
READERS: dict[str, str] = {
    "pubmed-xml": "pubmed_xml",
    "folders": "folders",
    "csv": "csv",
    "pubtator": "pubtator",
    "medpix": "medpix",
    "pdfs": "pdfs",
}


class LocalSourceError(MedsimError, ValueError):
    """A local source that cannot be read at all (missing path, unknown layout)."""


def resolve_path(path: str, root: Path) -> Path:
    """``fetch.local.path`` relative to the repo root (or absolute); it must exist."""
    if not path:
        raise LocalSourceError(
            "fetch.source is 'local' but fetch.local.path is empty: set it to a corpus file or "
            "folder, e.g. `dvc exp run -S fetch.local.path=../shared/data/ohsumed-23`"
        )
    resolved = Path(path) if Path(path).is_absolute() else root / path
    if not resolved.exists():
        raise LocalSourceError(f"fetch.local.path does not exist: {resolved}")
    return resolved


def _looks_like_pubtator(path: Path) -> bool:
    with path.open(encoding="utf-8", errors="replace") as fh:
        head = [line for _, line in zip(range(5), fh, strict=False)]
    return any("|t|" in line or "|a|" in line for line in head)


def detect_format(path: Path) -> str:
    """Guess the corpus format of a file or folder (the ``auto`` setting)."""
    if path.is_file():
        name = path.name.lower()
        if name.endswith((".xml", ".xml.gz")):
            return "pubmed-xml"
        if name.endswith(".csv"):
            return "csv"
        if name.endswith(".pdf"):
            return "pdfs"
        if name.endswith(".txt") and _looks_like_pubtator(path):
            return "pubtator"
        raise LocalSourceError(f"cannot tell the corpus format of {path}: set fetch.local.format")
    if any(path.glob("Descriptions*.json")) and any(path.glob("Case_topic*.json")):
        return "medpix"
    files = [p for p in path.rglob("*") if p.is_file()]
    names = [p.name.lower() for p in files]
    if any(n.endswith((".xml", ".xml.gz")) for n in names):
        return "pubmed-xml"
    if any(n.endswith(".csv") for n in names):
        return "csv"
    if any(n.endswith(".pdf") for n in names):
        return "pdfs"
    texts = [p for p in files if p.suffix.lower() == ".txt"]
    if texts and _looks_like_pubtator(texts[0]):
        return "pubtator"
    if files and any(p.is_dir() for p in path.iterdir()):
        return "folders"
    raise LocalSourceError(f"cannot tell the corpus format of {path}: set fetch.local.format")


def read_local(
    opts: LocalSourceParams, root: Path, store: RawStore, ambiguous: str
) -> Iterator[Record]:
    """Stream the records of the local corpus that ``opts`` names."""
    path = resolve_path(opts.path, root)
    fmt = detect_format(path) if opts.format == "auto" else opts.format
    module = importlib.import_module(f"{__name__}.{READERS[fmt]}")
    return module.read(path, opts, store, ambiguous)
