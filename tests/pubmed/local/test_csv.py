"""The ``csv`` local reader on the Medical Abstracts corpus and on hand-made files."""

from __future__ import annotations

import csv as stdlib_csv
from collections import Counter
from pathlib import Path

from medsim.config import LocalSourceParams
from medsim.pubmed.local import csv as csv_reader
from medsim.pubmed.records import Article, Skipped


def read(path: Path) -> list:
    return list(csv_reader.read(path, LocalSourceParams(), None, "drop"))


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as fh:
        stdlib_csv.writer(fh).writerows(rows)
    return path


def test_medical_abstracts_corpus(shared_data: Path) -> None:
    out = read(shared_data / "medical-abstracts-tc")
    assert all(isinstance(r, Article) for r in out)
    assert len(out) == 2888
    assert Counter(a.label for a in out) == {
        "general pathological conditions": 961,
        "neoplasms": 633,
        "cardiovascular diseases": 610,
        "nervous system diseases": 385,
        "digestive system diseases": 299,
    }
    assert len({a.doc_id for a in out}) == 2888  # repeated abstracts stay separate documents
    texts = Counter(a.title + " " + a.abstract for a in out)
    assert sum(1 for n in texts.values() if n > 1) >= 100  # the corpus's multi-label groups
    assert {a.split for a in out} == {None}  # only a test file: the fetch stage hashes a split
    first = out[0]
    assert first.doc_id == "medical_tc_test-1"
    assert first.title == (
        "Obstructive sleep apnea following topical oropharyngeal anesthesia in loud snorers."
    )
    assert first.abstract.startswith("Previous studies support the presence of an upper airway")
    assert first.label == "nervous system diseases"


def test_the_file_itself_uses_its_sibling_label_map(shared_data: Path) -> None:
    out = read(shared_data / "medical-abstracts-tc/medical_tc_test.csv")
    assert len(out) == 2888
    assert out[0].label == "nervous system diseases"


def test_split_from_names_needs_a_train_file(tmp_path: Path) -> None:
    header = ["abstract", "label"]
    text = "First sentence of the abstract here. The rest of it follows."
    write_csv(tmp_path / "x_train.csv", [header, [text, "a"], [text, "b"]])
    write_csv(tmp_path / "x_test.csv", [header, [text, "a"]])
    write_csv(tmp_path / "x_val.csv", [header, [text, "b"]])
    out = read(tmp_path)
    assert [(a.doc_id, a.split, a.label) for a in out] == [
        ("x_test-1", "test", "a"),
        ("x_train-1", "train", "a"),
        ("x_train-2", "train", "b"),
        ("x_val-1", "val", "b"),
    ]
    assert out[0].title == "First sentence of the abstract here."
    assert out[0].abstract == "The rest of it follows."
    (tmp_path / "x_train.csv").unlink()
    assert {a.split for a in read(tmp_path)} == {None}


def test_copies_of_one_text_under_other_labels_share_a_drawn_split(tmp_path: Path) -> None:
    header = ["abstract", "label"]
    rows = [[f"Abstract number {i}. It is about topic {i}.", "a"] for i in range(40)]
    rows += [["Abstract number 7. It is about topic 7.", "b"]]  # row 8's text, another label
    out = read(write_csv(tmp_path / "corpus.csv", [header, *rows]))
    first, copy = out[7], out[40]
    assert (first.label, copy.label) == ("a", "b") and first.doc_id != copy.doc_id
    for seed in range(20):
        split = {a.doc_id: a.to_row(seed, 0.2, 0.3)["split"] for a in out}
        assert split[first.doc_id] == split[copy.doc_id], seed
    # and the key never reaches the articles table
    assert "split_key" not in first.to_row(0, 0.2, 0.3)
    # distinct texts still spread over every side
    assert {a.to_row(0, 0.2, 0.3)["split"] for a in out} == {"train", "val", "test"}


def test_bad_rows_are_skipped_and_the_rest_read(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text(
        "pmid,title,text,class\n"
        "11,Title one,Body one is long enough.,c1\n"
        "12,Too,many,fields,here\n"
        "13,Title three,,c1\n"
        "\n"
        '14,Title four,"Body four, quoted, with commas.",c2\n'
        "15,only two\n"
    )
    out = read(path)
    assert [
        (a.doc_id, a.pmid, a.title, a.abstract, a.label) for a in out if isinstance(a, Article)
    ] == [
        ("data-1", "11", "Title one", "Body one is long enough.", "c1"),
        ("data-5", "14", "Title four", "Body four, quoted, with commas.", "c2"),
    ]
    assert [(s.item, s.reason) for s in out if isinstance(s, Skipped)] == [
        ("data-2", "malformed row"),
        ("data-3", "empty text"),
        ("data-6", "malformed row"),
    ]


def test_unknown_column_names_fall_back_to_the_longest(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "corpus.tsv.csv",
        [["code", "blurb", "category"], ["A1", "A long document text. With two sentences.", "x"]],
    )
    (article,) = read(path)
    assert article.title == "A long document text."
    assert article.abstract == "With two sentences."
    assert article.label == "x"


def test_split_title_rules() -> None:
    assert csv_reader.split_title("Dr. Smith and the heart. Second sentence.") == (
        "Dr. Smith and the heart.",
        "Second sentence.",
    )
    text = ("no sentence end " * 40).strip()
    title, abstract = csv_reader.split_title(text)
    assert title.endswith(" ...")
    assert len(title) <= csv_reader.MAX_TITLE + 4
    assert abstract == text  # nothing is lost when the title had to be cut
