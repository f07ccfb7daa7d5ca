"""Extract stage speed on one core: medsim's extractor vs camelot on every page.

Both sides run over the six real PDFs in ../shared/data/pmc-pdfs/pdf (or $MEDSIM_SHARED),
pinned to one CPU, after a warm-up (imports, the layout model's ONNX session). Table recall
is scored against the ground truth counted by eye (tests/pdf/groundtruth.py), so that the
speed ratio is taken at the recall each side reaches.

    .venv/bin/python benchmarks/extract_speed.py [--pdfs DIR]

medsim's time is the whole extract_pdf (figures and tables); the baseline runs camelot
lattice on every page and stream where lattice finds nothing (the usual camelot recipe).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medsim.config import ExtractParams  # noqa: E402
from medsim.pdf.extract import extract_pdf  # noqa: E402
from tests.pdf import groundtruth as gt  # noqa: E402

SHARED = Path(os.environ.get("MEDSIM_SHARED", REPO.parent / "shared"))


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def run_medsim(pdfs: list[Path]) -> dict:
    params = ExtractParams()
    rows, pages, layout_pages, camelot_pages = {}, 0, 0, 0
    wall, cpu = _clock()
    for pdf in pdfs:
        result = extract_pdf(pdf, pdf.name, params)
        rows[pdf.name] = result.tables
        pages += result.pages
        layout_pages += result.layout_pages
        camelot_pages += result.table_pages
    wall_end, cpu_end = _clock()
    return {
        "tables": rows,
        "pages": pages,
        "wall_s": wall_end - wall,
        "cpu_s": cpu_end - cpu,
        "layout_pages": layout_pages,
        "camelot_pages": camelot_pages,
    }


def run_camelot_every_page(pdfs: list[Path]) -> dict:
    import camelot
    import pymupdf

    rows, pages = {}, 0
    wall, cpu = _clock()
    for pdf in pdfs:
        with pymupdf.open(pdf) as doc:
            count = doc.page_count
        pages += count
        found = []
        for number in range(1, count + 1):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tables = list(camelot.read_pdf(str(pdf), pages=str(number), flavor="lattice"))
                if not tables:
                    tables = list(camelot.read_pdf(str(pdf), pages=str(number), flavor="stream"))
            for table in tables:
                cells = json.dumps(table.df.values.tolist(), ensure_ascii=False)
                found.append({"page": number, "caption": "", "cells": cells})
        rows[pdf.name] = found
    wall_end, cpu_end = _clock()
    return {"tables": rows, "pages": pages, "wall_s": wall_end - wall, "cpu_s": cpu_end - cpu}


def run_layout_every_page(pdfs: list[Path]) -> dict:
    """The layout model alone on every page (what region boxes for figures would cost)."""
    import pymupdf

    from medsim.pdf.layout import detect_layout

    pages = 0
    wall, cpu = _clock()
    for pdf in pdfs:
        with pymupdf.open(pdf) as doc:
            for page in doc:
                detect_layout(page)
                pages += 1
    wall_end, cpu_end = _clock()
    return {"pages": pages, "wall_s": wall_end - wall, "cpu_s": cpu_end - cpu}


def score(tables: dict[str, list[dict]]) -> tuple[float, float, int]:
    matched = found = truth = 0
    for name, expected in gt.TABLES.items():
        got = tables.get(name, [])
        matched += len(gt.match_tables(expected, got))
        found += len(got)
        truth += len(expected)
    return matched / truth, (matched / found if found else 1.0), found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pdfs", type=Path, default=SHARED / "data/pmc-pdfs/pdf")
    args = parser.parse_args()
    pdfs = sorted(p for p in args.pdfs.glob("*.pdf") if p.name in gt.TABLES)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    # warm-up: imports, the layout model session, camelot's first parse
    extract_pdf(pdfs[0], "warmup", ExtractParams())
    run_camelot_every_page(pdfs[:1])

    ours = run_medsim(pdfs)
    base = run_camelot_every_page(pdfs)
    for name, res in [("medsim extract_pdf", ours), ("camelot every page", base)]:
        recall, precision, found = score(res["tables"])
        res.update(recall=recall, precision=precision, found=found)
        print(
            f"{name:20s} pages={res['pages']} wall={res['wall_s']:.1f}s cpu={res['cpu_s']:.1f}s "
            f"pages/s={res['pages'] / res['wall_s']:.2f} tables found={found} "
            f"recall={recall:.3f} precision={precision:.3f}"
        )
    print(
        f"layout model ran on {ours['layout_pages']} pages, camelot on {ours['camelot_pages']} "
        f"of {ours['pages']}"
    )
    print(
        f"speed-up: wall {base['wall_s'] / ours['wall_s']:.2f}x, "
        f"cpu {base['cpu_s'] / ours['cpu_s']:.2f}x"
    )
    layout = run_layout_every_page(pdfs)
    print(
        f"layout model on every page: wall={layout['wall_s']:.1f}s cpu={layout['cpu_s']:.1f}s; "
        f"medsim extract_pdf is {layout['wall_s'] / ours['wall_s']:.2f}x (wall), "
        f"{layout['cpu_s'] / ours['cpu_s']:.2f}x (cpu) faster"
    )


if __name__ == "__main__":
    main()
