"""``medsim classify --batch``: many inputs in, one table of predictions out.

Inputs: a CSV, Parquet or JSONL file with a ``text`` column (or ``title`` and ``abstract``)
and/or a ``pmid`` column, an optional ``id``; or a folder of ``.txt`` and ``.pdf`` files.
Texts are encoded a chunk at a time (the encoder's batch, not one call per row). A bad row
(empty text, unknown PMID, unreadable PDF, unsupported file) is kept with its ``reason`` and
no label; the batch goes on. The table is written atomically (Parquet or CSV by suffix).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medsim.classify.classifier import Classifier
from medsim.classify.inputs import Inputs
from medsim.errors import MedsimError

__all__ = ["CHUNK", "BatchRow", "classify_rows", "read_batch", "write_predictions"]

CHUNK = 64  # rows per encoder call: the embed stage's default batch size
READERS = {".csv": pd.read_csv, ".parquet": pd.read_parquet, ".jsonl": None}
WRITERS = (".parquet", ".csv")


@dataclass(frozen=True)
class BatchRow:
    """One input of a batch: ``source`` is text, pmid, pdf or bad (``value`` is then the reason)."""

    id: str
    source: str
    value: str


def _table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix not in READERS:
        raise MedsimError(f"--batch takes .csv, .parquet, .jsonl or a folder, not {path.name}")
    try:
        if suffix == ".jsonl":
            return pd.read_json(path, lines=True, dtype=False)
        return READERS[suffix](path, dtype=str) if suffix == ".csv" else pd.read_parquet(path)
    except Exception as exc:  # pandas and pyarrow raise many types for a damaged file
        raise MedsimError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc


def _cell(row: pd.Series, name: str) -> str:
    value = row.get(name)
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def read_batch(path: Path) -> list[BatchRow]:
    """The rows of a batch file or folder; a MedsimError when it cannot be read at all."""
    path = Path(path)
    if path.is_dir():
        rows = []
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            name = file.relative_to(path).as_posix()
            if file.suffix.lower() == ".pdf":
                rows.append(BatchRow(name, "pdf", str(file)))
            elif file.suffix.lower() == ".txt":
                rows.append(BatchRow(name, "text", file.read_text(errors="replace")))
            else:
                rows.append(BatchRow(name, "bad", f"unsupported file type '{file.suffix}'"))
        return rows
    if not path.is_file():
        raise MedsimError(f"no batch file or folder at {path}")
    table = _table(path)
    if not {"text", "title", "abstract", "pmid"} & set(table.columns):
        raise MedsimError(f"{path} has no text, title/abstract or pmid column")
    rows = []
    for n, (_, row) in enumerate(table.iterrows()):
        text = _cell(row, "text") or "\n".join(
            filter(None, (_cell(row, "title"), _cell(row, "abstract")))
        )
        pmid = _cell(row, "pmid").strip().removesuffix(".0")
        ident = _cell(row, "id") or pmid or str(n)
        if text.strip():
            rows.append(BatchRow(ident, "text", text))
        elif pmid:
            rows.append(BatchRow(ident, "pmid", pmid))
        else:
            rows.append(BatchRow(ident, "bad", "empty text"))
    return rows


def _chunk_vectors(
    rows: list[BatchRow], inputs: Inputs
) -> tuple[list[np.ndarray | None], list[str | None], list[str]]:
    """Per row: its vector (None if bad), the stored doc to exclude, and the skip reason."""
    vectors: list[np.ndarray | None] = [None] * len(rows)
    exclude: list[str | None] = [None] * len(rows)
    reasons = [r.value if r.source == "bad" else "" for r in rows]
    texts: dict[int, str] = {i: r.value for i, r in enumerate(rows) if r.source == "text"}
    to_fetch: dict[int, str] = {}
    for i, row in enumerate(rows):
        if row.source == "pmid":
            stored = inputs.stored(row.value)
            if stored is not None:
                vectors[i], exclude[i] = stored.vector, stored.exclude
            elif row.value.isdigit():
                to_fetch[i] = row.value
            else:
                reasons[i] = f"'{row.value}' is neither a PMID nor a doc id of the corpus"
        elif row.source == "pdf":
            try:
                vectors[i] = inputs.pdf(Path(row.value)).vector
            except MedsimError as exc:
                reasons[i] = str(exc)
    if to_fetch:
        fetched = inputs.fetch_texts(sorted(set(to_fetch.values())))
        for i, pmid in to_fetch.items():
            if fetched.get(pmid) is None:
                reasons[i] = f"PubMed has no record with PMID {pmid}"
            else:
                texts[i] = fetched[pmid]
    for i in [i for i, t in texts.items() if not t.strip()]:
        reasons[i] = "empty text"
        del texts[i]
    if texts:
        encoded = inputs.texts(list(texts.values()))
        for row, i in enumerate(texts):
            vectors[i] = encoded[row : row + 1]
    return vectors, exclude, reasons


def classify_rows(
    rows: list[BatchRow], inputs: Inputs, classifier: Classifier, show: int = 3
) -> Iterator[dict]:
    """One output record per input row, in order (with ``show`` neighbours' doc ids)."""
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        vectors, exclude, reasons = _chunk_vectors(chunk, inputs)
        good = [i for i, v in enumerate(vectors) if v is not None]
        predictions = {}
        if good:
            matrix = np.vstack([vectors[i] for i in good])
            found = classifier.predict(matrix, [exclude[i] for i in good], show)
            predictions = dict(zip(good, found, strict=True))
        for i, row in enumerate(chunk):
            record: dict = {"id": row.id, "source": row.source, "label": None, "probability": None}
            record |= {f"p:{c}": None for c in classifier.classes}
            if i in predictions:
                p = predictions[i]
                record |= {"label": p.label, "probability": p.probability}
                record |= {f"p:{c.label}": c.probability for c in p.classes}
                record["neighbours"] = json.dumps([n.doc_id for n in p.neighbours])
            else:
                record["neighbours"] = "[]"
            record["reason"] = reasons[i] or ""
            yield record


def write_predictions(records: list[dict], out: Path) -> None:
    """The predictions table at ``out`` (.parquet or .csv), written atomically."""
    from medsim.io import atomic_path

    out = Path(out)
    if out.suffix.lower() not in WRITERS:
        raise MedsimError(f"--out must end in .parquet or .csv, not {out.name}")
    frame = pd.DataFrame.from_records(records)
    with atomic_path(out) as tmp:
        if out.suffix.lower() == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
