"""``csv``: CSV/TSV files with a text column and a label column, one row per document.

Columns are found by name (case-insensitive): the text in ``text``, ``abstract``,
``medical_abstract`` (any name ending in "abstract" or "text"), else the column with the
longest values in the first rows; the label in ``label``, ``condition_label``, ``class``,
``category``, ``target`` (any name ending in "_label" or "_class"); optional ``title`` and
``pmid`` columns. Numeric labels are mapped to names through a sibling label-map file
(``*label*.csv`` / ``*classes*.csv``: first column the id, a ``*name*`` column or the second
column the name), as the Medical Abstracts corpus ships ``medical_tc_labels.csv``; label-map
files are never read as data.

Without a title column the title is the text's first sentence and the abstract the rest.
``doc_id`` is ``<file stem>-<row number>`` (1-based data rows): unique even where a corpus
repeats one text under several labels (the Medical Abstracts CSV has 113 such groups, kept as
separate documents). A split is taken from the file names (``*_train.csv``, ``*_test.csv``)
when one of them is a train file; otherwise the fetch stage draws a hash split, hashed from
the text rather than the id, so that the copies of one text land on the same side (else a test
document's text was trained on under its other label: in that CSV, 32 of a test split's 602
documents).
Files are streamed row by row; a malformed row is skipped with its row number.
"""

from __future__ import annotations

import csv
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from medsim.config import LocalSourceParams
from medsim.names import SkipReason
from medsim.pubmed.local import LocalSourceError, splits_from_names
from medsim.pubmed.raw import RawStore
from medsim.pubmed.records import Article, Record, Skipped, clean_text

SOURCE = "local:csv"
TEXT_NAMES = ("text", "abstract", "medical_abstract", "body", "content", "document")
LABEL_NAMES = ("label", "labels", "condition_label", "class", "category", "target", "y")
TITLE_NAMES = ("title", "article_title", "articletitle")
PMID_NAMES = ("pmid", "pubmed_id")
MAX_TITLE = 300
_LABEL_MAP_FILE = re.compile(r"(^|[^a-z])(labels?|classes|label_names)([^a-z]|$)", re.IGNORECASE)
# A sentence ends at . ! or ? followed by space and a capital, digit or bracket; the first 20
# characters are not searched so that "Dr. " or "A. " at the start does not end a title.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[\"'])")

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # abstracts can exceed the 128 KB default


@dataclass(frozen=True)
class Columns:
    """Indexes of the columns a CSV file's rows are read from."""

    text: int
    label: int | None
    title: int | None
    pmid: int | None


def is_label_map(path: Path) -> bool:
    """True for a file that maps label ids to names (``medical_tc_labels.csv``)."""
    return bool(_LABEL_MAP_FILE.search(path.stem))


def _delimiter(path: Path) -> str:
    return "\t" if path.suffix.lower() == ".tsv" else ","


def _find(header: list[str], names: tuple[str, ...], suffixes: tuple[str, ...]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    for i, h in enumerate(lowered):
        if h.endswith(suffixes):
            return i
    return None


def detect_columns(header: list[str], sample: list[list[str]]) -> Columns:
    """Pick the text, label, title and pmid columns from a header and a few rows."""
    label = _find(header, LABEL_NAMES, ("_label", "_class"))
    title = _find(header, TITLE_NAMES, ("_title",))
    pmid = _find(header, PMID_NAMES, ())
    text = _find(header, TEXT_NAMES, ("abstract", "_text"))
    if text is None:
        taken = {label, title, pmid}
        lengths = {
            i: sum(len(row[i]) for row in sample if i < len(row))
            for i in range(len(header))
            if i not in taken
        }
        if not lengths or max(lengths.values()) == 0:
            raise LocalSourceError(f"no text column among {header}")
        text = max(lengths, key=lengths.__getitem__)
    return Columns(text=text, label=label, title=title, pmid=pmid)


def read_label_map(path: Path) -> dict[str, str]:
    """``id -> name`` from a label-map CSV: first column the id, a ``*name*`` column the name."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh, delimiter=_delimiter(path)))
    if not rows or len(rows[0]) < 2:
        return {}
    header = [h.strip().lower() for h in rows[0]]
    name_col = next((i for i, h in enumerate(header) if "name" in h), 1)
    return {
        row[0].strip(): row[name_col].strip()
        for row in rows[1:]
        if len(row) > name_col and row[0].strip()
    }


def split_title(text: str) -> tuple[str, str]:
    """``(title, abstract)`` from a text without title: its first sentence, and the rest."""
    match = _SENTENCE_END.search(text, 20)
    if match and match.start() <= MAX_TITLE:
        return text[: match.start()].strip(), text[match.end() :].strip()
    if len(text) <= MAX_TITLE:
        return text, text
    cut = text.rfind(" ", 0, MAX_TITLE)
    return text[: cut if cut > 0 else MAX_TITLE] + " ...", text


def csv_files(path: Path) -> tuple[list[Path], list[Path]]:
    """``(data files, label-map files)`` at ``path`` (a file, whose siblings may map labels)."""
    folder = path.parent if path.is_file() else path
    found = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in (".csv", ".tsv")
    )
    maps = [p for p in found if is_label_map(p)]
    data = [path] if path.is_file() else [p for p in found if p not in maps]
    return data, maps


def _label_map_for(file: Path, maps: list[Path]) -> dict[str, str]:
    siblings = [m for m in maps if m.parent == file.parent]
    merged: dict[str, str] = {}
    for label_map in siblings:
        merged.update(read_label_map(label_map))
    return merged


def read(path: Path, opts: LocalSourceParams, store: RawStore, ambiguous: str) -> Iterator[Record]:
    """Yield one article per CSV row with a text."""
    data, maps = csv_files(path)
    if not data:
        raise LocalSourceError(f"no CSV data files under {path}")
    splits = splits_from_names(data)
    for file in data:
        yield from read_file(file, _label_map_for(file, maps), splits[file])


def _rows(reader: Iterator[list[str]]) -> Iterator[tuple[int, list[str] | str]]:
    """``(row number, fields)``, or ``(row number, error)`` for a row csv cannot parse."""
    number = 0
    while True:
        number += 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield number, str(exc)
            continue
        yield number, row


def read_file(file: Path, label_map: dict[str, str], split: str | None) -> Iterator[Record]:
    """Stream the articles of one CSV file."""
    stem = file.stem
    try:
        fh = file.open(newline="", encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        yield Skipped(file.name, SkipReason.UNREADABLE_FILE, str(exc))
        return
    with fh:
        reader = csv.reader(fh, delimiter=_delimiter(file))
        header = next(reader, None)
        if not header:
            yield Skipped(file.name, SkipReason.EMPTY_FILE)
            return
        sample = list(islice(csv.reader(_peek(file), delimiter=_delimiter(file)), 1, 201))
        try:
            columns = detect_columns(header, sample)
        except LocalSourceError as exc:
            yield Skipped(file.name, SkipReason.NO_TEXT_COLUMN, str(exc))
            return
        for number, row in _rows(reader):
            item = f"{stem}-{number}"
            if isinstance(row, str):
                yield Skipped(item, SkipReason.MALFORMED_ROW, row)
                continue
            if not any(field.strip() for field in row):
                continue  # blank line
            if len(row) != len(header):
                yield Skipped(
                    item, SkipReason.MALFORMED_ROW, f"{len(row)} fields, header has {len(header)}"
                )
                continue
            text = clean_text(row[columns.text])
            if not text:
                yield Skipped(item, SkipReason.EMPTY_TEXT, file.name)
                continue
            if columns.title is not None and clean_text(row[columns.title]):
                title, abstract = clean_text(row[columns.title]), text
            else:
                title, abstract = split_title(text)
            label = None
            if columns.label is not None:
                raw = row[columns.label].strip()
                label = label_map.get(raw, raw) or None
            pmid = clean_text(row[columns.pmid]) if columns.pmid is not None else ""
            yield Article(
                doc_id=item,
                pmid=pmid or None,
                title=title,
                abstract=abstract,
                source=SOURCE,
                label=label,
                split=split,
                split_key=f"{title}\n{abstract}",  # repeated texts share a split
            )


def _peek(file: Path) -> Iterator[str]:
    """The file's first lines again, for column detection (the main reader is not rewound)."""
    with file.open(newline="", encoding="utf-8-sig", errors="replace") as fh:
        yield from islice(fh, 5_000)
