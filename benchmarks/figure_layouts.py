"""Figure precision and recall per file on layouts beyond the six test PDFs (issue 12).

Scores medsim's extractor against figures counted by eye: the generated layouts of
tests/pdf/pdfgen.LAYOUTS (grids of panels, side captions, captions overleaf, mixed raster and
vector figures, logos and icons), the committed real PDFs in tests/pdf/fixtures, the six real
PDFs in ../shared/data/pmc-pdfs/pdf (or $MEDSIM_SHARED), and any PDFs named in
tests/pdf/groundtruth.LAYOUT_FIGURES found in ``--extra`` folders (PDFs whose licence forbids
committing them).

    python benchmarks/figure_layouts.py [--extra DIR ...]

A figure matches when it is on the same page with box IoU >= 0.5; it is captioned right when
its caption starts with the label counted by eye (an uncaptioned truth row wants none).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medsim.config import ExtractParams  # noqa: E402
from medsim.pdf.extract import extract_pdf  # noqa: E402
from tests.pdf import groundtruth as gt  # noqa: E402
from tests.pdf import pdfgen  # noqa: E402

SHARED = Path(os.environ.get("MEDSIM_SHARED", REPO.parent / "shared"))


def score(path: Path, truth: list) -> dict:
    """Extract one PDF and score its figure rows against ``truth``."""
    start = time.perf_counter()
    result = extract_pdf(path, path.name, ExtractParams())
    seconds = time.perf_counter() - start
    rows = result.figures
    pairs = gt.match_figures(truth, rows)
    right = 0
    for i, j in pairs:
        label, caption = truth[i][1], rows[j]["caption"]
        right += caption.startswith(label) if label else caption == ""
    return {
        "truth": len(truth),
        "found": len(rows),
        "matched": len(pairs),
        "captioned": right,
        "skipped": sum(1 for _, reason, _ in result.skipped if reason.startswith("uncaptioned")),
        "seconds": seconds,
    }


def files(extra: list[Path], tmp: Path) -> list[tuple[str, Path, list]]:
    out = []
    for name, (build, truth) in pdfgen.LAYOUTS.items():
        out.append(("generated", build(tmp / name), truth))
    fixtures = REPO / "tests/pdf/fixtures"
    for name, truth in gt.LAYOUT_FIGURES.items():
        for kind, folder in [("real, committed", fixtures)] + [("real, local", d) for d in extra]:
            if (folder / name).is_file():
                out.append((kind, folder / name, truth))
                break
    six = SHARED / "data/pmc-pdfs/pdf"
    for name, truth in gt.FIGURES.items():
        if (six / name).is_file():
            out.append(("real, six", six / name, truth))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra", type=Path, action="append", default=[])
    args = parser.parse_args()
    print(
        "| set | file | true | found | matched | precision | recall | captioned right | "
        "uncaptioned graphics skipped | s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    totals: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, path, truth in files(args.extra, Path(tmp)):
            s = score(path, truth)
            p = s["matched"] / s["found"] if s["found"] else 1.0
            r = s["matched"] / s["truth"] if s["truth"] else 1.0
            print(
                f"| {kind} | {path.name} | {s['truth']} | {s['found']} | {s['matched']} | "
                f"{p:.2f} | {r:.2f} | {s['captioned']}/{s['matched']} | {s['skipped']} | "
                f"{s['seconds']:.1f} |"
            )
            group = "six" if kind == "real, six" else "new"
            t = totals.setdefault(group, {"truth": 0, "found": 0, "matched": 0, "captioned": 0})
            for key in t:
                t[key] += s[key]
    for group, t in totals.items():
        p = t["matched"] / t["found"] if t["found"] else 1.0
        r = t["matched"] / t["truth"] if t["truth"] else 1.0
        print(
            f"{group}: {t['matched']} matched, {t['found']} found, {t['truth']} true; "
            f"precision {p:.3f} recall {r:.3f}; captioned right {t['captioned']}/{t['matched']}"
        )


if __name__ == "__main__":
    main()
