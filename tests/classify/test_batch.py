"""Reading a batch (CSV, Parquet, JSONL, a folder) and writing its predictions."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from medsim.classify.batch import BatchRow, read_batch, write_predictions
from medsim.errors import MedsimError


def test_jsonl_with_title_and_abstract_or_pmid(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(
        '{"title": "T", "abstract": "A"}\n{"pmid": 123}\n{"title": "", "abstract": " "}\n'
    )
    assert read_batch(path) == [
        BatchRow("0", "text", "T\nA"),
        BatchRow("123", "pmid", "123"),
        BatchRow("2", "bad", "empty text"),
    ]


def test_parquet_and_csv_keep_ids(tmp_path):
    frame = pd.DataFrame({"id": ["x", "y"], "text": ["one", None], "pmid": [None, "77"]})
    frame.to_parquet(tmp_path / "in.parquet")
    frame.to_csv(tmp_path / "in.csv", index=False)
    expected = [BatchRow("x", "text", "one"), BatchRow("y", "pmid", "77")]
    assert read_batch(tmp_path / "in.parquet") == expected == read_batch(tmp_path / "in.csv")


def test_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("alpha")
    (tmp_path / "b.PDF").write_bytes(b"%PDF")
    (tmp_path / "c.md").write_text("x")
    rows = read_batch(tmp_path)
    assert [(r.id, r.source) for r in rows] == [
        ("b.PDF", "pdf"),
        ("c.md", "bad"),
        ("sub/a.txt", "text"),
    ]
    assert rows[1].value == "unsupported file type '.md'"


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("in.xlsx", b"x", "takes .csv, .parquet, .jsonl or a folder"),
        ("in.csv", b"label,other\n1,2\n", "no text, title/abstract or pmid column"),
        ("in.parquet", b"not parquet", "cannot read"),
    ],
)
def test_unreadable_batches(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(MedsimError, match=re.escape(expected)):
        read_batch(path)
    with pytest.raises(MedsimError, match="no batch file or folder"):
        read_batch(tmp_path / "missing.csv")


def test_write_predictions_by_suffix(tmp_path):
    records = [{"id": "a", "label": "x", "reason": ""}]
    write_predictions(records, tmp_path / "out.csv")
    assert pd.read_csv(tmp_path / "out.csv", keep_default_na=False).to_dict("records") == records
    with pytest.raises(MedsimError, match=r"--out must end in \.parquet or \.csv"):
        write_predictions(records, tmp_path / "out.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]  # nothing half-written
