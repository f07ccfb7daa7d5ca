"""REPORT.md: the design note and the frozen / head-only / tuned rows side by side."""

from medsim.evaluate.report import render_report


def test_side_by_side_rows_and_protocol_are_in_the_report():
    tables = {
        "table1": {
            "frozen_knn": {"accuracy": 0.681},
            "head_only": {"accuracy": 0.699},
            "proposed": {"accuracy": 0.723},
            "text_softmax": {"accuracy": 0.688},
        },
        "table2": {
            "protocol": "low_resource",
            "5_shot": {
                "transformer_prototype": {"accuracy": 0.7},
                "head_only": {"accuracy": 0.71},
                "proposed": {"accuracy": 0.72},
            },
            "meta": {
                "n_test": 40,
                "proposed_selection_5_shot": [
                    {
                        "candidate": "frozen",
                        "criterion": "support_folds",
                        "probe_accuracy": 0.8,
                        "chosen": True,
                    },
                    {"candidate": "head_only", "probe_accuracy": 0.75, "chosen": False},
                    {"candidate": "tuned", "skipped": "train.select_budget_s (1 s)"},
                ],
            },
        },
        "textbench": {
            "before": {"retrieval_ndcg_at_10": 0.97},
            "after": {"retrieval_ndcg_at_10": 0.956},
        },
    }
    report = render_report(tables, [], [], design="Tuned. Head-only.")
    assert "## The proposed space: how it was chosen" in report and "Tuned. Head-only." in report
    lines = {line.split(" | ")[0]: line for line in report.splitlines() if line.startswith("| ")}
    assert lines["| frozen encoder"] == "| frozen encoder | 0.681 | 0.700 | — | 0.970 |"
    assert lines["| head-only (residual heads)"].startswith(
        "| head-only (residual heads) | 0.699 | 0.710"
    )
    assert (
        lines["| proposed (the chosen space)"]
        == "| proposed (the chosen space) | 0.723 | 0.720 | — | 0.956 |"
    )
    assert "Table 2 5-shot (low_resource)" in report
    # the refit's choice: one short line of candidate scores, not its records in the meta
    assert "meta: `{'n_test': 40}`" in report
    assert (
        "proposed_selection_5_shot (support_folds): frozen 0.8 (chosen), head_only 0.75, "
        "tuned train.select_budget_s (1 s)" in report
    )
    assert "## Table 2: few-shot (low-resource: K labelled training documents per class" in report
    # no design note (an old run): no side-by-side section
    assert "how it was chosen" not in render_report(tables, [], [])


def test_a_skipped_candidate_says_why_once_in_the_design_note():
    from types import SimpleNamespace

    from medsim.config import params_from_dict
    from medsim.evaluate.space import design_note

    ctx = SimpleNamespace(
        space=SimpleNamespace(candidate="frozen", rule="knn"), params=params_from_dict({})
    )
    table = {
        "candidates": {
            "frozen": {"val_knn_accuracy": 0.8, "val_prototype_accuracy": 0.7, "rule": "knn"},
            "tuned_opening": {"skipped": "untuned, frozen reads documents better"},
        }
    }
    rows = [line for line in design_note(ctx, table) if line.startswith("| ")]
    assert rows[1] == "| **frozen** (chosen) | 0.8 | 0.7 | knn | — | — | — |"
    assert rows[2] == (
        "| tuned_opening | skipped: untuned, frozen reads documents better | — | — | — | — | — |"
    )


def test_the_paired_differences_are_one_line_under_their_table():
    tables = {
        "table1": {
            "proposed": {"accuracy": 0.607},
            "metric_learning_no_llm": {"accuracy": 0.612},
            "comparison": {
                "against": "metric_learning_no_llm",
                "accuracy_difference": -0.005,
                "accuracy_difference_ci_low": -0.031,
                "accuracy_difference_ci_high": 0.02,
            },
        },
        "table2": {
            "protocol": "heldout_classes",
            "5_shot": {"proposed": {"accuracy": 0.8}},
            "20_shot": {"proposed": {"accuracy": 0.9}},
            "comparison": {
                "5_shot": {"against": "transformer_prototype", "accuracy_difference": 0.01},
                "20_shot": {"against": "transformer_prototype", "accuracy_difference": -0.005},
            },
        },
    }
    report = render_report(tables, [], [])
    rows = [line.split(" | ")[0] for line in report.splitlines() if line.startswith("| `")]
    assert rows == ["| `proposed`", "| `metric_learning_no_llm`", "| `proposed`"]
    tail = "the row it must beat (paired 95% interval; one that holds 0: the test split cannot tell"
    assert (
        f"Proposed minus `metric_learning_no_llm`, {tail} the two apart): -0.005 [-0.031, 0.020]."
        in report
    )
    assert (
        f"Proposed minus `transformer_prototype`, {tail} the two apart): 5-shot 0.010; "
        "20-shot -0.005." in report
    )
