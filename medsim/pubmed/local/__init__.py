"""Local corpora: one reader module per ``fetch.local.format``, picked from a registry.

Every reader module exposes ``read(path, opts, store, ambiguous) -> Iterator[Record]`` and
streams (it never loads a whole corpus), yielding :class:`~medsim.pubmed.records.Skipped` for
what it cannot use instead of raising.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from medsim.config import LocalSourceParams
from medsim.errors import MedsimError
from medsim.pubmed.raw import RawStore
from medsim.pubmed.records import Record

__all__ = [
    "READERS",
    "LocalSourceError",
    "detect_format",
    "looks_like_pubmed_xml",
    "looks_like_pubtator",
    "read_local",
    "resolve_path",
    "split_from_name",
    "splits_from_names",
]

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
            "folder, e.g. `dvc exp run -S fetch.local.path=/data/pubmed-baseline` for a folder "
            "of PubMed XML such as NLM's annual baseline"
        )
    resolved = Path(path) if Path(path).is_absolute() else root / path
    if not resolved.exists():
        raise LocalSourceError(f"fetch.local.path does not exist: {resolved}")
    return resolved


# Words in a file name that name a split. A token must equal one, or end in one of the long
# ones ("NCBItrainset"); short words must match whole ("interval" is no validation file).
_SPLIT_WORDS = {
    "train": "train",
    "develop": "val",
    "devel": "val",
    "validation": "val",
    "test": "test",
    "dev": "val",
    "val": "val",
    "valid": "val",
}
_SPLIT_SUFFIXES = ("train", "develop", "devel", "validation", "test")


def split_from_name(name: str) -> str | None:
    """The split a file name announces: ``NCBIdevelopset.txt`` -> val, ``x_test.csv`` -> test.

    Each alphabetic run of the stem, minus a trailing "set"/"ing", is checked (so
    "NCBItrainset", "training" and "medical_tc_test" all match).
    """
    stem = name.lower().split(".")[0]
    for token in re.split(r"[^a-z]+", stem):
        token = token.removesuffix("set").removesuffix("ing")
        if token in _SPLIT_WORDS:
            return _SPLIT_WORDS[token]
        for word in _SPLIT_SUFFIXES:
            if token.endswith(word):
                return _SPLIT_WORDS[word]
    return None


def splits_from_names(files: Sequence[Path]) -> dict[Path, str | None]:
    """Per-file splits from file names, kept only when one of the files is a train file.

    A lone ``*_test.csv`` says nothing about how to train, so without a train file every
    split is ``None`` and the fetch stage draws a hash split instead.
    """
    splits = {file: split_from_name(file.name) for file in files}
    if "train" not in splits.values():
        return dict.fromkeys(files)
    return splits


def looks_like_pubtator(path: Path) -> bool:
    """True when one of the first lines of ``path`` is a PubTator ``PMID|t|`` / ``PMID|a|`` line."""
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            head = [line for _, line in zip(range(5), fh, strict=False)]
    except OSError:
        return False
    return any(_PUBTATOR_LINE.match(line) for line in head)


_PUBTATOR_LINE = re.compile(r"^[^|\t]+\|[ta]\|")
_PUBMED_ROOTS = (b"<PubmedArticleSet", b"<MedlineCitationSet", b"<PubmedArticle>")
# Files that describe a corpus rather than hold it.
_METADATA = re.compile(r"^(readme|license|licence|provenance|citation|changelog)", re.IGNORECASE)


def looks_like_pubmed_xml(path: Path) -> bool:
    """True when the first 4 KB of an ``.xml``/``.xml.gz`` file open a PubMed/MEDLINE set."""
    import gzip

    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                head = fh.read(4096)
        else:
            with path.open("rb") as fh:
                head = fh.read(4096)
    except (OSError, EOFError):
        return False
    return any(root in head for root in _PUBMED_ROOTS)


def _data_files(path: Path) -> list[Path]:
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
        and not _METADATA.match(p.name)
    )


def detect_format(path: Path) -> str:
    """Guess the corpus format of a file or folder (the ``auto`` setting).

    Folders, in this order: MedPix (``Descriptions*.json`` + ``Case_topic*.json``), PubMed XML
    (an ``.xml``/``.xml.gz`` file whose opening names a PubMed/MEDLINE set, so a folder of
    PDFs with other XML beside them is still ``pdfs``), PDFs, CSV, PubTator text files, and
    last a folder of class sub-folders. README, LICENSE and PROVENANCE files are ignored.
    """
    if path.is_file():
        name = path.name.lower()
        if name.endswith((".xml", ".xml.gz")):
            if looks_like_pubmed_xml(path):
                return "pubmed-xml"
            raise LocalSourceError(f"{path} is not PubMed/MEDLINE XML: set fetch.local.format")
        if name.endswith((".csv", ".tsv")):
            return "csv"
        if name.endswith(".pdf"):
            return "pdfs"
        if looks_like_pubtator(path):
            return "pubtator"
        raise LocalSourceError(f"cannot tell the corpus format of {path}: set fetch.local.format")
    if any(path.glob("Descriptions*.json")) and any(path.glob("Case_topic*.json")):
        return "medpix"
    files = _data_files(path)
    names = [p.name.lower() for p in files]
    xml = [p for p, n in zip(files, names, strict=True) if n.endswith((".xml", ".xml.gz"))]
    if any(looks_like_pubmed_xml(p) for p in xml[:20]):
        return "pubmed-xml"
    if any(n.endswith(".pdf") for n in names):
        return "pdfs"
    if any(n.endswith((".csv", ".tsv")) for n in names):
        return "csv"
    texts = [p for p in files if p.suffix.lower() in (".txt", ".pubtator")]
    if any(looks_like_pubtator(p) for p in texts[:20]):
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
