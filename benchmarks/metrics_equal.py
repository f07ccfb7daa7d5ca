"""Compare the numbers of two runs' metrics files, leaf by leaf (a refactor's "no number moved").

    python benchmarks/metrics_equal.py RUN_BEFORE RUN_AFTER [--details]

Reads ``metrics/*.json`` (and ``metrics/details/*.json`` with ``--details``) under each run's
folder, prints how many numeric leaves are equal and every one that differs or exists in one
run only. Exit status 1 when any differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def leaves(tree: object, path: str = "") -> dict[str, float]:
    """Every numeric leaf of a JSON tree by its dotted path (booleans are no numbers)."""
    if isinstance(tree, dict):
        out: dict[str, float] = {}
        for key, value in tree.items():
            out |= leaves(value, f"{path}.{key}" if path else str(key))
        return out
    if isinstance(tree, list):
        out = {}
        for i, value in enumerate(tree):
            out |= leaves(value, f"{path}[{i}]")
        return out
    if isinstance(tree, int | float) and not isinstance(tree, bool):
        return {path: float(tree)}
    return {}


def run_numbers(run: Path, details: bool) -> dict[str, float]:
    """``file:leaf -> value`` over the run's metrics files."""
    files = sorted((run / "metrics").glob("*.json"))
    if details:
        files += sorted((run / "metrics" / "details").glob("*.json"))
    numbers = {}
    for file in files:
        name = file.relative_to(run / "metrics").as_posix()
        numbers |= {f"{name}:{k}": v for k, v in leaves(json.loads(file.read_text())).items()}
    return numbers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--details", action="store_true", help="also metrics/details/*.json")
    args = parser.parse_args()
    a, b = run_numbers(args.before, args.details), run_numbers(args.after, args.details)
    same = [k for k in a if k in b and a[k] == b[k]]
    changed = [k for k in a if k in b and a[k] != b[k]]
    print(
        f"{len(same)} numbers equal, {len(changed)} differ, "
        f"{len(a.keys() - b.keys())} only before, {len(b.keys() - a.keys())} only after"
    )
    for key in changed:
        print(f"  {key}: {a[key]} -> {b[key]}")
    for key in sorted(a.keys() ^ b.keys()):
        print(f"  {key}: only {'before' if key in a else 'after'}")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
