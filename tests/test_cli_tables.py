"""Each command's table shows its own key fields, rendered from the CheckResult record, and wide
values wrap instead of being cut (to a terminal of any width, or to a pipe)."""

from __future__ import annotations

import io

from rich.console import Console

from core.results import CheckResult, FeatureDrift
from monitor.commands.tables import render

LONG_WHY = "null rate 0.4100 over alert threshold 0.1000 and unseen categories 'android-tv', 'kaios', 'tizen'"


def _text(result, width=80) -> str:
    buffer = io.StringIO()
    render(result, Console(file=buffer, width=width, color_system=None))
    return buffer.getvalue()


def _flat(text: str) -> str:
    return "".join(ch for ch in text if ch not in "│┃ \n")


def _column(text: str, index: int) -> str:
    """One column's cells, joined across the lines they wrap onto."""
    cells = [line.split("│")[index + 1] for line in text.splitlines() if line.startswith("│")]
    return _flat("".join(cells))


def test_wide_values_wrap_and_nothing_is_cut():
    feature = FeatureDrift(feature="device_operating_system_family", kind="categorical", method="linf",
                           score=0.5, threshold=0.075, status="alert", reference_count=10, current_count=10,
                           reasons=(LONG_WHY,))
    text = _text(CheckResult(check="data_drift", status="alert", features=(feature,)), width=60)
    assert "…" not in text
    assert _column(text, 8) == _flat(LONG_WHY) and _column(text, 0) == "device_operating_system_family"


def test_quality_shows_failed_expectations_not_drift_columns():
    expectation = {"expectation": "expect_column_values_to_be_between", "column": "cart_value", "severity": "critical",
                   "status": "alert", "unexpected_count": 19181, "unexpected_fraction": 0.959, "why": "range",
                   "offending_values": [{"value": 3314.0, "count": 2}, {"value": None, "count": 1}]}
    passed = dict(expectation, expectation="expect_column_to_exist", status="ok")
    result = CheckResult(check="data_quality", status="alert", details={
        "expectations": [expectation, passed], "expectations_total": 2, "expectations_failed": 1,
        "validated_rows": 100, "window_rows": 100, "sampled": False})
    text = _text(result, width=100)
    assert _column(text, 0) == "expect_column_values_to_be_between"  # whole, not truncated
    assert "expect_column_to_exist" not in text  # passed expectations are counted, not listed
    assert "ref n" not in text and "threshold" not in text
    assert _column(text, 6) == "3314.0(x2),null"
    assert "1 of 2 expectations failed on 100 of 100 rows" in text


def _calibration(baseline: str | None) -> CheckResult:
    group = {"count": 20000, "positives": 350.0, "predicted_positives": 591.2, "calibration_ratio": 1.689,
             "ci_low": 1.521, "ci_high": 1.881, "ece": 0.0121, "brier": 0.0173, "status": "alert",
             "relative_ratio": 1.778 if baseline else 1.689, "relative_ci_low": 1.585, "relative_ci_high": 1.999}
    segment = dict(group, segment="os", value="android", status="ok")
    return CheckResult(check="calibration", status="alert", details={
        "prediction": "score", "label": "click", "baseline": baseline, "overall": group, "segments": [segment]})


def test_calibration_shows_the_reference_columns_only_with_a_reference():
    from monitor.commands.tables import render_labelled

    alone, against = io.StringIO(), io.StringIO()
    render_labelled(_calibration(None), Console(file=alone, width=200), every=True)
    render_labelled(_calibration("reference"), Console(file=against, width=200), every=True)
    assert "vs reference" not in alone.getvalue() and "1.778" not in alone.getvalue()
    assert "vs reference" in against.getvalue() and "1.778" in against.getvalue()
    assert "os=android" in alone.getvalue()  # the one-off command lists every segment


def test_run_shows_why_a_label_check_alerts():
    overall = {"count": 20000, "positives": 584.0, "auc": 0.591, "log_loss": 0.133, "ne": 1.008,
               "calibration_ratio": 1.016, "status": "alert",
               "statuses": {"auc_drop": "alert", "ne_rise": "ok", "calibration": "ok"},
               "reference": {"auc": 0.658, "ne": 0.97, "calibration_ratio": 0.95}}
    quiet = dict(overall, segment="os", value="ios", status="ok", statuses={})
    result = CheckResult(check="performance", status="alert", window_start="2024-06-07T00:00:00+00:00",
                         window_end="2024-06-08T00:00:00+00:00",
                         details={"prediction": "score", "label": "click", "overall": overall, "segments": [quiet]})
    text = _text(result, width=160)
    assert "AUC 0.591 vs reference 0.658: alert" in text
    assert "os=ios" not in text and "1 segment(s) ok, not shown" in text
    assert "2024-06-07T00:00..2024-06-08T00:00" in text


def test_a_pipe_gets_wide_lines(monkeypatch):
    from monitor.commands.tables import WIDE_OUTPUT, console

    monkeypatch.delenv("COLUMNS", raising=False)
    assert console().width == WIDE_OUTPUT  # pytest's stdout is not a terminal
    monkeypatch.setenv("COLUMNS", "97")
    assert console().width == 97
