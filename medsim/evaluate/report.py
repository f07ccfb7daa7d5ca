"""metrics/REPORT.md: every table beside the figures the seed papers report, with the ways
the corpora differ said plainly. Pure text generation from the tables' dicts."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from importlib.resources import files

__all__ = ["SEED", "render_report"]


def _seed_figures() -> dict:
    """Figures reported by the seed papers, on their data (fractions; not comparable one to
    one), from ``seed_figures.json``: table -> source and rows (name -> label, value)."""
    seed = json.loads(files("medsim.evaluate").joinpath("seed_figures.json").read_text("utf-8"))
    for table in seed.values():
        for name, (label, value) in table["rows"].items():
            if isinstance(value, dict):  # few-shot: K -> accuracy; JSON keys are strings
                value = {int(k): v for k, v in value.items()}
            table["rows"][name] = (label, value)
    return seed


SEED = _seed_figures()

REFERENCE = """Reference figures measured on these corpora outside the project (shared/README):
OHSUMED-23 test accuracy TF-IDF + LR 0.649, frozen MiniLM + LR 0.683, a small metric-learning
head with kNN 0.695-0.707; OHSUMED -> Medical Abstracts without its 363 overlapping rows: MiniLM
+ LR 0.590, TF-IDF 0.568; MedPix grouped 5-fold CV: CT vs MR from EfficientNet-Lite0 + LR
0.943, image + caption 0.956; image -> own caption retrieval with a ridge map mAP 0.155
(chance 0.056)."""


PROTOCOL_TITLES = {
    "heldout_classes": "held-out classes: episodes on classes no model was trained on",
    "low_resource": "low-resource: K labelled training documents per class, whole test split",
    "none": "no protocol fits this corpus",
}


def _fmt(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _with_ci(row: Mapping, name: str) -> str:
    value = row.get(name)
    if value is None:
        return "—"
    lo, hi = row.get(f"{name}_ci_low"), row.get(f"{name}_ci_high")
    if lo is None or hi is None:
        return _fmt(value)
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _classification(table: Mapping, seed: Mapping) -> list[str]:
    rows = []
    for model, row in table.items():
        if model in ("meta", "comparison") or not isinstance(row, Mapping):
            continue
        seed_name, seed_value = seed["rows"].get(model, ("", None))
        rows.append(
            [
                f"`{model}`",
                _with_ci(row, "accuracy"),
                _with_ci(row, "macro_f1"),
                _with_ci(row, "auc"),
                row.get("reason", ""),
                f"{seed_name} {_fmt(seed_value)}".strip(),
            ]
        )
    header = ["model", "accuracy [95% CI]", "macro-F1", "macro OvR AUC", "null because", "seed"]
    return _table(header, rows)


def _fewshot(table: Mapping, seed: Mapping) -> list[str]:
    shots = sorted(int(k.split("_")[0]) for k in table if k.endswith("_shot"))
    models = sorted({m for k in shots for m in table[f"{k}_shot"]})
    rows = []
    for model in models:
        cells = [_with_ci(table[f"{k}_shot"][model], "accuracy") for k in shots]
        seed_name, seed_values = seed["rows"].get(model, ("", {}))
        seeds = " / ".join(_fmt(seed_values.get(k)) for k in shots) if seed_values else ""
        reason = next((table[f"{k}_shot"][model].get("reason", "") for k in shots), "")
        rows.append([f"`{model}`", *cells, reason, f"{seed_name} {seeds}".strip()])
    return _table(["model", *(f"{k}-shot" for k in shots), "null because", "seed"], rows)


def _nested(table: Mapping, seed: Mapping | None = None) -> list[str]:
    lines: list[str] = []
    for block, content in table.items():
        if not isinstance(content, Mapping):
            continue
        lines.append(f"**{block}**")
        if seed and block in seed["rows"]:
            name, value = seed["rows"][block]
            lines.append(f"(seed: {name}: {value})")
        lines.append("")
        flat = {k: v for k, v in content.items() if isinstance(v, Mapping)}
        scalars = {k: v for k, v in content.items() if not isinstance(v, Mapping)}
        if flat:
            metrics = sorted(
                {m for row in flat.values() for m, v in row.items() if not isinstance(v, Mapping)}
            )
            rows = [
                [f"`{name}`", *(_fmt(row.get(m)) for m in metrics)] for name, row in flat.items()
            ]
            lines += _table(["", *metrics], rows)
        if scalars:
            lines += _table(list(scalars), [[_fmt(v) for v in scalars.values()]])
        lines.append("")
    return lines


def _cell(table: Mapping, *keys: str) -> str:
    node: object = table
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return "—"
        node = node[key]
    return _fmt(node) if node is not None else "—"


def _side_by_side(tables: Mapping[str, Mapping]) -> list[str]:
    """Frozen encoder, head-only space and the proposed (chosen) space on the same tests."""
    t1, t2, t3 = tables.get("table1", {}), tables.get("table2", {}), tables.get("table3", {})
    tb = tables.get("textbench", {})
    shots = sorted(int(k.split("_")[0]) for k in t2 if k.endswith("_shot"))
    protocol = t2.get("protocol", "—")
    rows = {
        "frozen encoder": ("frozen_knn", "transformer_prototype", "text_softmax", "before"),
        "head-only (residual heads)": ("head_only", "head_only", None, "head_only"),
        "proposed (the chosen space)": ("proposed", "proposed", "proposed", "after"),
    }
    body = []
    for name, (r1, r2, r3, rb) in rows.items():
        body.append(
            [
                name,
                _cell(t1, r1, "accuracy"),
                *(_cell(t2, f"{k}_shot", r2, "accuracy") for k in shots),
                _cell(t3, r3, "accuracy") if r3 else "—",
                _cell(tb, rb, "retrieval_ndcg_at_10"),
            ]
        )
    header = [
        "space",
        "Table 1 accuracy",
        *(f"Table 2 {k}-shot ({protocol})" for k in shots),
        "Table 3 accuracy",
        "title -> abstract nDCG@10",
    ]
    note = (
        "Table 1: kNN@k in the frozen (the embed stage's vectors) and head-only spaces, the "
        "proposed space by the rule it chose on validation (Table 1's `proposed_knn` row is "
        "its kNN); "
        "Table 3's frozen row is the frozen encoder + logistic regression."
    )
    return [*_table(header, body), "", note]


def render_report(
    tables: Mapping[str, Mapping],
    plots: Sequence[str],
    corpus_notes: Sequence[str],
    design: str = "",
) -> str:
    """The whole REPORT.md as one string (``design``: how the proposed space is built)."""
    out = _header(corpus_notes)
    if design:
        out += ["## The proposed space: how it was chosen", "", design, ""]
        out += _side_by_side(tables)
        out.append("")
    protocol = PROTOCOL_TITLES.get(tables.get("table2", {}).get("protocol"), "")
    for name, title, render in (
        ("table1", "Table 1: classification (test split)", _classification),
        ("table2", f"Table 2: few-shot ({protocol})", _fewshot),
        ("table3", "Table 3: cross-domain", _classification),
    ):
        if name in tables:
            out += [f"## {title}", "", f"Seed: {SEED[name]['source']}.", ""]
            out += render(tables[name], SEED[name])
            out += _comparison_lines(tables[name].get("comparison", {}))
            out += _meta_lines(tables[name].get("meta", {}))
    for name, title in (
        ("retrieval", "Cross-modal retrieval"),
        ("modality", "Figure modality classification"),
        ("textbench", "Text-embedding benchmark (before / after metric learning)"),
        ("calibration", "Calibration of `medsim classify` (expected calibration error, test)"),
    ):
        if name in tables:
            seed = SEED.get(name)
            out += [f"## {title}", ""]
            if seed:
                out += [f"Seed: {seed['source']}.", ""]
            out += _nested(tables[name], seed)
    if plots:
        out += ["## Figures", ""]
        out += [f"![{p}](../{p})" for p in plots]
        out.append("")
    return "\n".join(out)


def _comparison_lines(comparison: Mapping) -> list[str]:
    """The proposed row minus the row it must beat, paired over the same test documents or
    episodes (:func:`medsim.evaluate.stats.difference_row`): one line; per K in Table 2."""
    blocks = {"": comparison} if "against" in comparison else comparison
    if not blocks:
        return []
    against = ", ".join(sorted({f"`{row['against']}`" for row in blocks.values()}))
    cells = [
        (f"{key.replace('_', '-')} " if key else "") + _with_ci(row, "accuracy_difference")
        for key, row in blocks.items()
    ]
    intro = (
        f"Proposed minus {against}, the row it must beat (paired 95% interval; one that holds 0: "
        "the test split cannot tell the two apart)"
    )
    return ["", f"{intro}: " + "; ".join(cells) + "."]


def _meta_lines(meta: Mapping) -> list[str]:
    """A table's meta, with each refitted space's choice (``proposed_selection*``: records of
    :mod:`medsim.dml.choice`) as one short line of candidate scores rather than its records."""
    selections = {k: v for k, v in meta.items() if k.startswith("proposed_selection")}
    rest = {k: v for k, v in meta.items() if k not in selections}
    out = ["", f"meta: `{rest}`"]
    for key, records in selections.items():
        cells = []
        for r in records:
            score = r.get("probe_accuracy", r.get("val_accuracy", r.get("skipped")))
            cells.append(f"{r['candidate']} {score}" + (" (chosen)" if r.get("chosen") else ""))
        criterion = records[0].get("criterion", "") if records else ""
        out += ["", f"{key} ({criterion}): " + ", ".join(cells)]
    return [*out, ""]


def _header(corpus_notes: Sequence[str]) -> list[str]:
    return [
        "# medsim evaluation report",
        "",
        "Generated by the `evaluate` stage; every metric below is in `metrics/*.json`, counts",
        "and reasons in `metrics/details/*.json`. Values are fractions in [0, 1] (times in",
        "seconds); `—` is a row that cannot be computed on this corpus, with the reason beside",
        "it. The seed papers' figures are shown beside ours for orientation only: they were",
        "measured on other data, with other encoders.",
        "",
        "## How this corpus differs from the seed papers'",
        "",
        *(f"- {note}" for note in corpus_notes),
        "",
        REFERENCE,
        "",
    ]
