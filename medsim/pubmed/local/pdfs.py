"""``pdfs``: a folder of article PDFs, one document each, read with PyMuPDF.

* title: the PDF's metadata title when it is sensible (several words, not a file or
  word-processor name, and found on page 1), else the largest-font run of lines on page 1
  that reads like a title (4-40 words, not a journal banner such as "Research Article",
  "Open Access" or a URL);
* abstract: the text after an "Abstract" / "Summary" heading (inline "ABSTRACT:" too) up to
  the next section heading (Introduction, Background, Keywords, ...); else, for abstracts
  without heading, from the first structured-abstract label (``Objectives.``,
  ``Background:``...) to that heading; else the first substantial paragraph of page 1;
* label: the top sub-folder name when the PDFs sit in two or more sub-folders (one folder
  per class; a single sub-folder such as ``pdf/`` is no class), else ``None``;
* ``doc_id``: the file stem. Each PDF is copied to ``data/raw/pdfs/<doc_id>.pdf`` and
  ``pdf_path`` points there, for the extract stage.

Files other than PDFs are ignored. A corrupt, encrypted or empty PDF, or one without text
(a scan), is skipped with the reason. Only the first two pages are read for text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pymupdf

from medsim.config import LocalSourceParams
from medsim.names import SkipReason
from medsim.pubmed.local import LocalSourceError
from medsim.pubmed.raw import RawStore
from medsim.pubmed.records import Article, Record, Skipped, clean_text

SOURCE = "local:pdfs"
MAX_ABSTRACT_CHARS = 5_000
MIN_PARAGRAPH_WORDS = 40

_ABSTRACT_HEADING = re.compile(r"^\s*(abstract|summary)\b\s*[:.\-\u2014]?\s*(.*)$", re.IGNORECASE)
# A heading line that ends an abstract: alone on its line ("Introduction", "1. Background"),
# or a keywords / abbreviations line (which usually runs on: "Key words: dementia, ...").
_STOP_ALONE = re.compile(
    r"^\s*(?:\d+\.?|[IVX]+\.)?\s*(introduction|background|main text|methods|"
    r"materials and methods|references)\s*$",
    re.IGNORECASE,
)
_STOP_PREFIX = re.compile(
    r"^\s*((key\s*-?\s*words?|index terms|abbreviations)\b|subjects\s+(?-i:[A-Z]))", re.IGNORECASE
)
_STRUCTURED_START = re.compile(
    r"^\s*(objectives?|background|purpose|aims?|context|introduction)\s*[.:]\s+\S", re.IGNORECASE
)
_BANNER = re.compile(  # a journal's banner line above the title, not the title
    r"^\s*((original|research|review|short|brief)?\s*(research\s+)?"
    r"(article|paper|report|communication|review|letter|editorial)s?|open\s+access|"
    r"case\s+report|research|review)\s*$",
    re.IGNORECASE,
)
_BOILERPLATE = re.compile(  # front matter that is neither the title nor the abstract
    r"(copyright|©|licen[cs]e|correspondence|received\s|accepted\s|published\s|"
    r"www\.|https?://|doi\s*:|e-?mail)",
    re.IGNORECASE,
)
_BAD_META_TITLE = re.compile(
    r"(microsoft\s+word|\.docx?\b|\.pdf\b|\.tex\b|untitled|^\s*title\s*$)", re.IGNORECASE
)
_WORD = re.compile(r"[A-Za-z]{2,}")
_NORMALIZE = re.compile(r"[^a-z0-9]+")


def _normalized(text: str) -> str:
    return _NORMALIZE.sub("", text.lower())


def _join_lines(lines: list[str]) -> str:
    """Join text lines, undoing end-of-line hyphenation ("appro-" + "priately")."""
    out = ""
    for line in lines:
        line = line.strip()
        if not line:
            continue
        if out.endswith("-") and line[:1].islower():
            out = out[:-1] + line
        else:
            out = f"{out} {line}" if out else line
    return clean_text(unicodedata.normalize("NFKC", out))  # NFKC: ligatures such as "ﬁ" -> "fi"


def _lines(page: pymupdf.Page) -> list[tuple[str, float]]:
    """Page lines in reading order, each with its largest font size (rounded)."""
    lines = []
    for block in page.get_text("dict")["blocks"]:
        for line in block.get("lines", []):
            spans = [s for s in line["spans"] if s["text"].strip()]
            if spans:
                text = clean_text("".join(s["text"] for s in line["spans"]))
                lines.append((text, round(max(s["size"] for s in spans) * 2) / 2))
    return lines


def _title_ok(text: str) -> bool:
    words = _WORD.findall(text)
    return len(words) >= 4 and len(text.split()) <= 40 and not _BOILERPLATE.search(text)


def title_from_layout(lines: list[tuple[str, float]]) -> str:
    """The largest-font run of consecutive page-1 lines that reads like a title."""
    runs: list[tuple[float, list[str]]] = []
    for text, size in lines:
        if _BANNER.match(text) or _BOILERPLATE.search(text):
            runs.append((0.0, []))  # a banner line breaks a run
            continue
        if runs and runs[-1][1] and runs[-1][0] == size:
            runs[-1][1].append(text)
        else:
            runs.append((size, [text]))
    candidates = [(size, _join_lines(texts)) for size, texts in runs if texts]
    candidates = [(size, text) for size, text in candidates if _title_ok(text)]
    if not candidates:
        return ""
    best = max(size for size, _ in candidates)
    return next(text for size, text in candidates if size == best)


def pdf_title(meta_title: str | None, lines: list[tuple[str, float]]) -> str:
    """The metadata title when it is sensible and printed on page 1, else the layout title."""
    meta = clean_text(meta_title)
    page_text = _normalized(" ".join(text for text, _ in lines))
    if (
        meta
        and len(_WORD.findall(meta)) >= 3
        and not _BAD_META_TITLE.search(meta)
        and _normalized(meta)[:40] in page_text
    ):
        return meta
    return title_from_layout(lines)


def _until_stop(lines: list[str]) -> str:
    taken = []
    for line in lines:
        if _STOP_ALONE.match(line) or _STOP_PREFIX.match(line):
            break
        taken.append(line)
    return _join_lines(taken)[:MAX_ABSTRACT_CHARS]


def _inline_heading(line: str, word: str) -> bool:
    """Whether text after the word makes it a heading: "ABSTRACT: text" yes, "Summary of" no."""
    after = line.lstrip()[len(word) :][:1]
    return after in (":", ".", "-", "\u2014") or (word.isupper() and after == " ")


def pdf_abstract(lines: list[str], blocks: list[str]) -> str:
    """The abstract from the text lines of the first pages (see the module docstring)."""
    for i, line in enumerate(lines):
        match = _ABSTRACT_HEADING.match(line)
        if match and (not match.group(2) or _inline_heading(line, match.group(1))):
            text = _until_stop([match.group(2), *lines[i + 1 :]])
            if len(_WORD.findall(text)) >= 20:
                return text
    for i, line in enumerate(lines):
        if _STRUCTURED_START.match(line):
            text = _until_stop(lines[i:])
            if len(_WORD.findall(text)) >= 20:
                return text
    for block in blocks:
        text = _join_lines(block.splitlines())
        if len(_WORD.findall(text)) >= MIN_PARAGRAPH_WORDS and not _BOILERPLATE.search(text):
            return text[:MAX_ABSTRACT_CHARS]
    return ""


def read_pdf(file: Path, item: str | None = None) -> tuple[str, str] | Skipped:
    """``(title, abstract)`` of one PDF, or why it cannot be used (``item`` names it)."""
    item = item or file.name
    try:
        doc = pymupdf.open(file)
    except Exception as exc:  # PyMuPDF raises several types for broken files
        return Skipped(item, SkipReason.UNREADABLE_PDF, f"{type(exc).__name__}: {exc}")
    with doc:
        if doc.needs_pass or doc.is_encrypted:
            return Skipped(item, SkipReason.ENCRYPTED_PDF)
        if doc.page_count == 0:
            return Skipped(item, SkipReason.PDF_WITHOUT_PAGES)
        try:
            first = doc[0]
            layout = _lines(first)
            text_lines = [t for p in doc.pages(0, min(2, doc.page_count)) for t in _page_lines(p)]
            blocks = [b[4] for b in first.get_text("blocks") if b[6] == 0]
        except Exception as exc:
            return Skipped(item, SkipReason.UNREADABLE_PDF, f"{type(exc).__name__}: {exc}")
        metadata = doc.metadata or {}
    title = pdf_title(metadata.get("title"), layout)
    abstract = pdf_abstract(text_lines, blocks)
    if not title and not abstract:
        return Skipped(item, SkipReason.NO_TEXT_IN_PDF, "a scanned PDF needs OCR first")
    if not abstract:
        return Skipped(item, SkipReason.NO_ABSTRACT, title)
    if not title:
        title = abstract.split(". ")[0][:200]
    return title, abstract


def _page_lines(page: pymupdf.Page) -> list[str]:
    return page.get_text("text").splitlines()


def pdf_files(path: Path) -> list[Path]:
    """PDFs at ``path`` (a file, or a folder searched recursively), in name order."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".pdf")


def read(path: Path, opts: LocalSourceParams, store: RawStore, ambiguous: str) -> Iterator[Record]:
    """Yield one article per readable PDF, each PDF copied under ``data/raw/pdfs/``."""
    files = pdf_files(path)
    if not files:
        raise LocalSourceError(f"no PDF files under {path}")
    relative = {f: f.relative_to(path).parts if path.is_dir() else (f.name,) for f in files}
    class_folders = {parts[0] for parts in relative.values() if len(parts) > 1}
    by_folder = len(class_folders) >= 2
    for file in files:
        result = read_pdf(file, "/".join(relative[file]))
        if isinstance(result, Skipped):
            yield result
            continue
        title, abstract = result
        doc_id = file.stem
        parts = relative[file]
        label = parts[0] if by_folder and len(parts) > 1 else None
        pdf_path = store.add_file(file, f"pdfs/{doc_id}.pdf")
        yield Article(doc_id, title, abstract, SOURCE, label=label, pdf_path=pdf_path)
