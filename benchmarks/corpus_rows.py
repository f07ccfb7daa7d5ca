"""One row per corpus: does the proposed space win where it is run with default params?

Reads the metrics files of finished project runs (``dvc repro`` in a clone whose params point
``fetch.local.path`` at a corpus; nothing else changed) and prints a Markdown table with, per
run, the space chosen on validation, Table 1's proposed accuracy against the best other row,
Table 2's proposed against ``transformer_prototype`` at every K, textbench classification
before and after, and title -> abstract nDCG@10. Issue 23's bar: on every corpus the proposed
row is at least each of those. The last column holds the paired differences the evaluate stage
writes to ``metrics/details`` (proposed minus that row, 95% interval): Table 1, then Table 2
per K.

    .venv/bin/python benchmarks/corpus_rows.py NAME=RUN_DIR [NAME=RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from medsim.evaluate.classification import ROWS

# Table 1's rows other than the proposed space's own
TABLE1_ROWS = tuple(r for r in ROWS if not r.startswith("proposed"))


def _load(run: Path, name: str, folder: str = "metrics") -> dict[str, Any]:
    path = run / folder / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _difference(row: dict[str, Any]) -> str:
    value = row.get("accuracy_difference")
    if value is None:
        return "—"
    lo, hi = row.get("accuracy_difference_ci_low"), row.get("accuracy_difference_ci_high")
    return f"{value:+.3f}" + (f" [{lo:+.3f}, {hi:+.3f}]" if lo is not None else "")


def _differences(run: Path) -> str:
    """Paired differences (old runs have none: —)."""
    t1 = _load(run, "table1", "metrics/details").get("comparison", {})
    t2 = _load(run, "table2", "metrics/details").get("comparison", {})
    shots = sorted(t2, key=lambda k: int(k.split("_")[0]))
    return "; ".join([_difference(t1), *(_difference(t2[k]) for k in shots)])


def _accuracy(table: dict[str, Any], row: str) -> float | None:
    value = table.get(row, {})
    return value.get("accuracy") if isinstance(value, dict) else None


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _table1(run: Path) -> tuple[str, bool]:
    t1 = _load(run, "table1")
    proposed = _accuracy(t1, "proposed")
    others = {r: _accuracy(t1, r) for r in TABLE1_ROWS if _accuracy(t1, r) is not None}
    best = max(others, key=others.get) if others else None
    ok = proposed is not None and all(proposed >= v for v in others.values())
    cell = f"{_fmt(proposed)} vs {best} {_fmt(others.get(best))}" if best else _fmt(proposed)
    return cell, ok


def _table2(run: Path) -> tuple[str, bool]:
    t2 = _load(run, "table2")
    shots = sorted(int(k.split("_")[0]) for k in t2 if k.endswith("_shot"))
    cells, ok = [], True
    for k in shots:
        block = t2[f"{k}_shot"]
        p, f = _accuracy(block, "proposed"), _accuracy(block, "transformer_prototype")
        cells.append(f"{_fmt(p)}/{_fmt(f)}")
        ok &= p is not None and f is not None and p >= f
    return " ".join(cells) or "—", ok and bool(shots)


def row(name: str, run: Path) -> str:
    """One Markdown row for the run in ``run``."""
    details = run / "metrics/details/space.json"
    chosen = json.loads(details.read_text()).get("chosen", "?") if details.is_file() else "?"
    t1, ok1 = _table1(run)
    t2, ok2 = _table2(run)
    tb = _load(run, "textbench")
    before = tb.get("before", {}).get("classification_accuracy")
    after = tb.get("after", {}).get("classification_accuracy")
    ok3 = before is not None and after is not None and after >= before
    ndcg = tb.get("after", {}).get("retrieval_ndcg_at_10")
    marks = "".join("yes " if ok else "no " for ok in (ok1, ok2, ok3)).strip()
    return (
        f"| {name} | {chosen} | {t1} | {t2} | {_fmt(before)} -> {_fmt(after)} | "
        f"{_fmt(ndcg)} | {marks} | {_differences(run)} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="NAME=RUN_DIR")
    args = parser.parse_args()
    print(
        "| corpus | chosen space | Table 1 proposed vs best other | Table 2 proposed/frozen "
        "per K | textbench classification before -> after | nDCG@10 | T1 T2 TB met | "
        "paired differences: T1; T2 per K |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for spec in args.runs:
        name, _, run = spec.partition("=")
        print(row(name, Path(run)))


if __name__ == "__main__":
    main()
