"""Build the HoC single-hallmark corpus: train/dev/test CSVs of one-hallmark abstracts.

Why: medsim's defaults were tuned on cancer-type corpora; the Hallmarks of Cancer corpus (Baker
et al., Bioinformatics 2016; 1852 expert-annotated PubMed abstracts) is a real cancer corpus
with a different, harder label set, so it checks those defaults on data they were not tuned on
(issue 23). The corpus is read in place from the read-only shared folder and never copied into
the repository; only the derived CSVs are written, to ``--out``.

What: each ``labels/PMID.txt`` is one line holding one ``<``-prefixed entry per sentence; an
entry holds zero or more labels joined by ``AND`` (written " AND" with or without a space after
it, e.g. ``...--Receptors ANDSustaining...``), each label a ``Hallmark--sub--label`` path, or
``NULL``/blank for none. A document is kept when the union over its sentences of the top-level
hallmarks (the part before the first ``--``, stripped; NULL and blanks ignored) has exactly one
element, and that hallmark is its label. The text is the sentences of ``text/PMID.txt`` joined
with single spaces. The documents are split, stratified by label with seed 0, into test (20%),
dev (12.5% of the rest, i.e. 10% of all) and train.

Issue 23 quotes 976 abstracts (682 / 98 / 196, 45-189 per class). This rule gives 920 on the
corpus at commit 3bc6e6d (644 / 92 / 184, 44-186 per class); splitting on " AND " (space on
both sides) gives 997 and on "<" alone 1081, so no union rule found here gives 976.

    .venv/bin/python benchmarks/hoc_single.py --out /tmp/hoc-single [--hoc PATH]

The corpus is ``--hoc``, else ``$MEDSIM_SHARED/data/hoc``, else ``../shared/data/hoc`` next to
the repository. The CSVs (columns ``text,label``; files ``train.csv``, ``dev.csv``,
``test.csv``, whose names the csv reader takes as the split) then run through the pipeline with

    dvc exp run -S fetch.source=local -S fetch.local.path=/tmp/hoc-single \\
        -S fetch.local.format=csv
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sklearn.model_selection import train_test_split

REPO = Path(__file__).resolve().parents[1]
SEED = 0
TEST_SIZE = 0.2  # of all documents
DEV_SIZE = 0.125  # of the documents left after the test split: 10% of all
_SENTENCE = re.compile(r"<")
_LABEL_JOIN = re.compile(r"AND")
NONE_LABELS = {"", "NULL"}


@dataclass(frozen=True)
class Document:
    """One HoC abstract reduced to a single hallmark."""

    pmid: str
    text: str
    label: str


def default_hoc() -> Path:
    """``$MEDSIM_SHARED/data/hoc`` when set, else ``../shared/data/hoc`` beside the repo."""
    shared = os.environ.get("MEDSIM_SHARED")
    return (Path(shared) if shared else REPO.parent / "shared") / "data" / "hoc"


def top_hallmarks(labels: str) -> set[str]:
    """The top-level hallmarks named anywhere in one ``labels/PMID.txt`` file."""
    found = set()
    for entry in _SENTENCE.split(labels):
        for label in _LABEL_JOIN.split(entry):
            top = label.split("--", 1)[0].strip()
            if top not in NONE_LABELS:
                found.add(top)
    return found


def read_document(text_file: Path, label_file: Path) -> Document | None:
    """The document, or None when its abstract names no hallmark or several."""
    hallmarks = top_hallmarks(label_file.read_text(encoding="utf-8"))
    if len(hallmarks) != 1:
        return None
    sentences = text_file.read_text(encoding="utf-8").splitlines()
    text = " ".join(s.strip() for s in sentences if s.strip())
    if not text:
        return None
    return Document(pmid=text_file.stem, text=text, label=hallmarks.pop())


def read_corpus(root: Path) -> list[Document]:
    """The single-hallmark documents of the corpus at ``root``, in PMID order."""
    text_dir, label_dir = root / "text", root / "labels"
    if not text_dir.is_dir() or not label_dir.is_dir():
        raise SystemExit(f"no HoC corpus (text/ and labels/) at {root}")
    docs = []
    for text_file in sorted(text_dir.glob("*.txt")):
        label_file = label_dir / text_file.name
        if not label_file.is_file():
            print(f"skipped {text_file.name}: no labels file", file=sys.stderr)
            continue
        doc = read_document(text_file, label_file)
        if doc is not None:
            docs.append(doc)
    return docs


def split(docs: Sequence[Document], seed: int = SEED) -> dict[str, list[Document]]:
    """``train``/``dev``/``test``, stratified by label: 20% test, then 12.5% of the rest dev."""
    labels = [d.label for d in docs]
    rest, test = train_test_split(
        list(docs), test_size=TEST_SIZE, stratify=labels, random_state=seed
    )
    train, dev = train_test_split(
        rest, test_size=DEV_SIZE, stratify=[d.label for d in rest], random_state=seed
    )
    return {"train": train, "dev": dev, "test": test}


def write_csv(path: Path, docs: Sequence[Document]) -> None:
    """Write ``text,label`` rows atomically: a temporary file beside ``path``, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would hide the files from other users
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            writer.writerows([d.text, d.label] for d in docs)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def report(splits: dict[str, list[Document]]) -> None:
    """Print the documents per split and per class."""
    counts = {name: Counter(d.label for d in docs) for name, docs in splits.items()}
    total = sum((c for c in counts.values()), Counter())
    sizes = "  ".join(f"{name} {len(docs)}" for name, docs in splits.items())
    print(f"documents {total.total()}: {sizes}")
    width = max(len(label) for label in total)
    print(f"{'class':{width}s} {'all':>5s} " + " ".join(f"{n:>5s}" for n in splits))
    for label, n in sorted(total.items(), key=lambda item: (-item[1], item[0])):
        per = " ".join(f"{counts[name][label]:5d}" for name in splits)
        print(f"{label:{width}s} {n:5d} {per}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hoc", type=Path, default=None, help="HoC corpus (text/, labels/)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the CSV files")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    root = (args.hoc or default_hoc()).resolve()
    out = args.out.resolve()
    if out == root or root in out.parents:
        raise SystemExit(f"--out {out} is inside the read-only corpus {root}")
    docs = read_corpus(root)
    if not docs:
        raise SystemExit(f"no single-hallmark documents under {root}")
    splits = split(docs, args.seed)
    for name, part in splits.items():
        write_csv(out / f"{name}.csv", part)
    report(splits)
    print(f"wrote {', '.join(f'{name}.csv' for name in splits)} to {out}")


if __name__ == "__main__":
    main()
