"""The evaluate stage's calibration table on the synthetic corpus."""

from __future__ import annotations

from medsim.evaluate.calibration import build_calibration
from medsim.evaluate.report import render_report
from medsim.evaluate.stage import split_details


def test_calibration_table(synthetic):
    table = build_calibration(synthetic)
    for row in ("proposed", "proposed_prototype"):
        assert 0.0 <= table[row]["ece"] <= 1.0
        assert 0.0 <= table[row]["ece_uncalibrated"] <= 1.0
        assert "validation documents" in table[row]["fit"]
    n_val = int((synthetic.docs["split"] == "val").sum())
    assert table["meta"]["n_val"] == n_val > 0
    # fitted on validation, the kNN rule is no worse calibrated on test than raw vote shares
    assert table["proposed"]["ece"] <= table["proposed"]["ece_uncalibrated"] + 0.05
    report = render_report({"calibration": table}, [], [])
    assert "## Calibration of `medsim classify`" in report and "ece_uncalibrated" in report
    metrics, details = split_details(table)
    assert set(metrics["proposed"]) == {"ece", "ece_uncalibrated"}
    assert details["proposed"]["fit"].startswith("temperature")


def test_calibration_without_test_documents(synthetic):
    from dataclasses import replace

    a = synthetic.articles.assign(split=synthetic.articles["split"].replace("test", "val"))
    ctx = replace(synthetic, articles=a)
    table = build_calibration(ctx)
    assert table["proposed"]["ece"] is None
    assert "no labelled" in table["proposed"]["reason"]
