"""Precision and recall of the PDF extractor's figures and tables, with JATS as ground truth.

For every article of a fetched corpus that has both a JATS full text and a PDF (a live
``fetch.source: entrez`` run with ``fetch.pdfs: true``), both extractors run and their items
are matched by caption label ("Figure 2", "Fig. 2", "Table 1"): precision is the share of the
PDF path's labelled items that JATS has too, recall the share of JATS items the PDF path found.
A PDF item without a label number counts as unmatched (it lowers precision).

    python benchmarks/pdf_vs_jats.py --root .      # after `dvc repro fetch` online
    python benchmarks/pdf_vs_jats.py --pair a.xml a.pdf --pair b.xml b.pdf
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medsim.config import ExtractParams  # noqa: E402
from medsim.io import read_table  # noqa: E402
from medsim.pdf.extract import extract_pdf  # noqa: E402
from medsim.pdf.jats import extract_jats  # noqa: E402
from medsim.schemas import ARTICLES  # noqa: E402

_LABEL = re.compile(r"^\s*(fig(?:ure)?|table)\s*\.?\s*(S?\d+)", re.I)


def label_key(caption: str) -> tuple[str, str] | None:
    """``("figure", "2")`` for "Fig. 2 ...", ``("table", "S1")`` for "Table S1. ...", else None."""
    match = _LABEL.match(caption or "")
    if not match:
        return None
    kind = "table" if match.group(1).lower() == "table" else "figure"
    return kind, match.group(2).upper()


def score(truth: Iterable[str], found: Iterable[str]) -> tuple[int, int, int]:
    """``(matched, found, truth)`` counts over caption labels (each label matched once)."""
    truth_keys = {k for k in map(label_key, truth) if k}
    found_keys = [label_key(c) for c in found]
    matched = len({k for k in found_keys if k in truth_keys})
    return matched, len(found_keys), len(truth_keys)


def pairs_from_root(root: Path) -> list[tuple[Path, Path]]:
    articles = read_table(root / "data/articles.parquet", ARTICLES, ["jats_path", "pdf_path"])
    return [
        (root / row["jats_path"], root / row["pdf_path"])
        for row in articles.to_pylist()
        if row["jats_path"] and row["pdf_path"]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="a repo root whose fetch stage ran")
    parser.add_argument("--pair", nargs=2, action="append", type=Path, metavar=("XML", "PDF"))
    args = parser.parse_args()
    pairs = [tuple(p) for p in args.pair or []]
    if args.root:
        pairs += pairs_from_root(args.root)
    if not pairs:
        sys.exit("no article with both a JATS full text and a PDF: nothing to compare")
    params = ExtractParams()
    totals = {"figure": [0, 0, 0], "table": [0, 0, 0]}
    for xml, pdf in pairs:
        jats, from_pdf = extract_jats(xml, "a", params), extract_pdf(pdf, "a", params)
        for kind, truth, found in (
            ("figure", jats.figures, from_pdf.figures),
            ("table", jats.tables, from_pdf.tables),
        ):
            counts = score([r["caption"] for r in truth], [r["caption"] for r in found])
            totals[kind] = [a + b for a, b in zip(totals[kind], counts, strict=True)]
    print(f"articles with both: {len(pairs)}")
    for kind, (matched, found, truth) in totals.items():
        precision = matched / found if found else float("nan")
        recall = matched / truth if truth else float("nan")
        print(
            f"{kind}s: JATS {truth}, PDF {found}, matched {matched}; "
            f"precision {precision:.2f}, recall {recall:.2f}"
        )


if __name__ == "__main__":
    main()
