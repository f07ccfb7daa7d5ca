"""``folders``: one sub-folder per class, one text file per document.

Optionally under ``training/`` and ``test/`` (OHSUMED's layout), in which case that split is
kept. A document's first non-empty line is its title and the rest its abstract; a file of one
paragraph is all text, with no title.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from medsim.config import LocalSourceParams
from medsim.names import SkipReason
from medsim.pubmed.local import LocalSourceError
from medsim.pubmed.raw import RawStore
from medsim.pubmed.records import Article, Record, Skipped, clean_text

PARALLEL_ANNOTATION_DIRS = {"text", "labels"}

# Folder names that mean a split rather than a class.
SPLIT_FOLDERS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}


def _class_dirs(path: Path) -> Iterator[tuple[str | None, Path]]:
    subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if {p.name.lower() for p in subdirs} >= PARALLEL_ANNOTATION_DIRS:
        # e.g. Hallmarks of Cancer: text/ and labels/ hold the same file names, so reading
        # them as two classes would invent labels.
        raise LocalSourceError(
            f"{path} holds text/ and labels/ folders (a parallel-annotation layout such as "
            "Hallmarks of Cancer), not one folder per class; convert it to folders or csv"
        )
    split_dirs = [p for p in subdirs if p.name.lower() in SPLIT_FOLDERS]
    if split_dirs:
        for split_dir in split_dirs:
            for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
                yield SPLIT_FOLDERS[split_dir.name.lower()], class_dir
    else:
        for class_dir in subdirs:
            yield None, class_dir


def parse_document(text: str) -> tuple[str, str]:
    """Split a plain-text document into (title, body): the first non-empty line is the title.

    A file of one paragraph has no title line: that paragraph is the document's text.
    """
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    if len(lines) < 2:
        return "", clean_text(" ".join(lines))
    return clean_text(lines[0]), clean_text(" ".join(lines[1:]))


def read(path: Path, opts: LocalSourceParams, store: RawStore, ambiguous: str) -> Iterator[Record]:
    """Yield one article per text file under ``path/<split>/<class>/`` or ``path/<class>/``."""
    for split, class_dir in _class_dirs(path):
        for file in sorted(p for p in class_dir.iterdir() if p.is_file()):
            item = file.relative_to(path).as_posix()
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                yield Skipped(item, SkipReason.UNREADABLE_FILE, str(exc))
                continue
            title, body = parse_document(text)
            if not body:
                yield Skipped(item, SkipReason.EMPTY_TEXT)
                continue
            # A file name is unique only within its class folder; the same document can sit in
            # two class folders (multi-label corpora), which the duplicate check then reports.
            yield Article(
                doc_id=file.stem,
                title=title,
                abstract=body,
                source="local:folders",
                label=class_dir.name,
                split=split,
            )
