"""How much does the one draw of K labelled documents decide Table 2's low-resource rows?

Runs the evaluate stage's low-resource Table 2 (``build_low_resource``) on a built project
(``dvc repro`` done) for several seeded draws of the K documents per class; draw 0 is the one
the stage's table reads. Prints, per draw and K, the proposed and ``transformer_prototype``
accuracies, their paired difference and the space the refit chose, then the mean over draws.
Every choice is made as in the stage (folds of the support; no test label); the project gains
nothing but evaluate cache entries.

    python benchmarks/support_draws.py --project RUN [--draws 0 1 2] [--out FILE.json]

Without 0 in ``--draws``, draw 0 is read from the stage's own files (``metrics/table2.json`` and
``metrics/details/table2.json``) instead of being built again.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from medsim.config import load_params
from medsim.evaluate.fewshot import AGAINST, build_low_resource
from medsim.evaluate.stage import load_context

DETAILS = "metrics/details/table2.json"


def _rows(table: dict, draw: int) -> list[dict]:
    """One record per K of a low-resource table."""
    shots = sorted(int(k.split("_")[0]) for k in table if k.endswith("_shot"))
    out = []
    for k in shots:
        block, diff = table[f"{k}_shot"], table.get("comparison", {}).get(f"{k}_shot", {})
        out.append(
            {
                "draw": draw,
                "shots": k,
                "proposed": block["proposed"].get("accuracy"),
                AGAINST: block[AGAINST].get("accuracy"),
                "difference": diff.get("accuracy_difference"),
                "difference_ci": [
                    diff.get("accuracy_difference_ci_low"),
                    diff.get("accuracy_difference_ci_high"),
                ],
                "chosen": table["meta"].get(f"proposed_space_{k}_shot"),
            }
        )
    return out


def _merged(metrics: dict, details: dict) -> dict:
    """A table as the stage built it, from its metrics and details files."""
    out = dict(metrics)
    for key, value in details.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merged(out[key], value) if both else value
    return out


def _stage_table(root: Path) -> dict:
    read = [json.loads((root / f).read_text()) for f in ("metrics/table2.json", DETAILS)]
    return _merged(*read)


def _markdown(records: list[dict]) -> str:
    lines = [
        f"| draw | K | proposed | {AGAINST} | difference [95% CI] | chosen |",
        "|---|---|---|---|---|---|",
    ]
    for r in records:
        lo, hi = r["difference_ci"]
        ci = f" [{lo:+.3f}, {hi:+.3f}]" if lo is not None else ""
        lines.append(
            f"| {r['draw']} | {r['shots']} | {r['proposed']:.3f} | {r[AGAINST]:.3f} | "
            f"{r['difference']:+.3f}{ci} | {r['chosen']} |"
        )
    for k in sorted({r["shots"] for r in records}):
        at_k = [r for r in records if r["shots"] == k]
        mean = {m: float(np.mean([r[m] for r in at_k])) for m in ("proposed", AGAINST)}
        wins = sum(r["difference"] >= 0 for r in at_k)
        lines.append(
            f"| mean of {len(at_k)} | {k} | {mean['proposed']:.3f} | {mean[AGAINST]:.3f} | "
            f"{mean['proposed'] - mean[AGAINST]:+.3f} (proposed >= frozen in {wins}) | |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--draws", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, help="write the records as JSON here")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    root = args.project.resolve()
    stage = _stage_table(root)
    if stage.get("protocol") != "low_resource":
        raise SystemExit(f"{root}: Table 2 is {stage.get('protocol')!r}, not low_resource")
    ctx = load_context(load_params(root / "params.yaml"), root)
    records = [] if 0 in args.draws else _rows(stage, 0)
    for draw in args.draws:
        start = time.perf_counter()
        table = build_low_resource(ctx, draw=draw)
        if "comparison" not in table:  # a proposed or frozen row that could not be computed
            raise SystemExit(f"{root}: draw {draw} has no comparison ({table['meta']})")
        records += _rows(table, draw)
        logging.info("draw %d done in %.0f s", draw, time.perf_counter() - start)
        if args.out:
            args.out.write_text(json.dumps(records, indent=1) + "\n")
    print(_markdown(records))


if __name__ == "__main__":
    main()
