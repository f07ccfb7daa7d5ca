"""``medpix``: the MedPix 2.0 layout: cases with history and findings, CT/MR images with captions.

``Case_topic*.json`` holds one record per case (``U_id``, ``Case`` with Title, History,
Findings, diagnosis..., ``Topic`` with the disease discussion); ``Descriptions*.json`` one
record per image (``image``, ``U_id``, ``Type`` CT/MR, ``Location Category``,
``Description`` with Caption, Modality, Plane); the images are ``images/<image>.png``.

A case is a document: ``doc_id`` = ``U_id``, title = the case title, text = History and
Findings as ``"HISTORY: ...\\nFINDINGS: ..."`` paragraphs. Diagnosis, differential diagnosis,
discussion and treatment are left out, so the text stays what a reader has before the answer.
The label is the case's body region: the most common ``Location Category`` among its images
(ties go to the region of its first image); a case without images is unlabelled. The split
is drawn by the fetch stage from a hash of ``U_id``, so a case and all its images are on one
side. Each image with a file and a caption becomes a
:class:`~medsim.pubmed.records.CorpusImage` (the fetch stage copies it to
``data/raw/images/`` and lists it in ``data/raw/images.parquet``); image labels (modality,
plane, body region) stay in that manifest and never enter the text.

The JSON files are read whole: the full MedPix 2.0 release is 671 cases and 2,050 image
records (a few MB). Both a JSON array and JSON Lines are accepted.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medsim.config import LocalSourceParams
from medsim.names import SkipReason
from medsim.pubmed.local import LocalSourceError
from medsim.pubmed.raw import RawStore
from medsim.pubmed.records import Article, CorpusImage, Record, Skipped, clean_text, format_abstract

SOURCE = "local:medpix"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_EMPTY = {"", "n/a", "na", "none", "null", "-"}


def _value(text: Any) -> str:
    """A field's text, with MedPix's placeholders ("N/A") read as empty."""
    cleaned = clean_text(text if isinstance(text, str) else None)
    return "" if cleaned.lower() in _EMPTY else cleaned


def load_records(path: Path) -> list[dict[str, Any]]:
    """Records of a MedPix JSON file: a JSON array, or one JSON object per line."""
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = [json.loads(line) for line in text.splitlines() if line.strip()]
    if isinstance(data, dict):
        data = [data]
    return [r for r in data if isinstance(r, dict)]


def _one(path: Path, pattern: str) -> Path:
    found = sorted(path.glob(pattern))
    if len(found) != 1:
        raise LocalSourceError(f"expected one {pattern} in {path}, found {len(found)}")
    return found[0]


def case_label(images: list[dict[str, Any]]) -> str | None:
    """The body region of a case: its images' most common Location Category (first on ties)."""
    regions = [_value(r.get("Location Category")) for r in images]
    counts = Counter(r for r in regions if r)
    if not counts:
        return None
    best = max(counts.values())
    return next(r for r in regions if counts.get(r) == best)


def case_text(case: dict[str, Any]) -> str:
    """History and findings of a case record, as labelled paragraphs."""
    body = case.get("Case") or {}
    return format_abstract(
        [("History", _value(body.get("History"))), ("Findings", _value(body.get("Findings")))]
    )


def _image_file(folder: Path, name: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        candidate = folder / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def image_record(desc: dict[str, Any], images_dir: Path) -> CorpusImage | Skipped:
    """One ``Descriptions`` record as a corpus image, or why it cannot be used."""
    name = _value(desc.get("image"))
    details = desc.get("Description") or {}
    caption = _value(details.get("Caption"))
    file = _image_file(images_dir, name) if name else None
    if file is None:
        return Skipped(name or "(no image name)", SkipReason.MISSING_IMAGE_FILE, str(images_dir))
    if not caption:
        return Skipped(name, SkipReason.EMPTY_CAPTION, _value(desc.get("U_id")))
    return CorpusImage(
        image_id=name,
        doc_id=_value(desc.get("U_id")),
        source_path=str(file),
        caption=caption,
        modality=_value(desc.get("Type")) or None,
        modality_detail=_value(details.get("Modality")) or None,
        plane=_value(details.get("Plane")) or None,
        body_region=_value(desc.get("Location Category")) or None,
    )


def read(path: Path, opts: LocalSourceParams, store: RawStore, ambiguous: str) -> Iterator[Record]:
    """Yield, per case, its article and then its images."""
    cases = load_records(_one(path, "Case_topic*.json"))
    descriptions = load_records(_one(path, "Descriptions*.json"))
    images_dir = path / "images"
    by_case: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for desc in descriptions:
        by_case[_value(desc.get("U_id"))].append(desc)
    seen: set[str] = set()
    for case in cases:
        uid = _value(case.get("U_id"))
        if not uid:
            yield Skipped("(case without U_id)", SkipReason.MALFORMED_RECORD, str(case)[:80])
            continue
        seen.add(uid)
        images = by_case.get(uid, [])
        title = _value((case.get("Case") or {}).get("Title")) or _value(
            (case.get("Topic") or {}).get("Title")
        )
        text = case_text(case)
        if not text or not title:
            yield Skipped(uid, SkipReason.EMPTY_TEXT if not text else SkipReason.NO_TITLE, SOURCE)
            for desc in images:
                yield Skipped(_value(desc.get("image")) or uid, "case skipped", uid)
        else:
            yield Article(
                doc_id=uid, title=title, abstract=text, source=SOURCE, label=case_label(images)
            )
            for desc in images:
                yield image_record(desc, images_dir)
    for uid, images in by_case.items():
        if uid not in seen:
            for desc in images:
                yield Skipped(_value(desc.get("image")) or uid, "no case record", uid)
