"""Reports are written alike: the same file mode for drift and explain reports, one date format
in every title, and the one-off explain report titled by the model file with its importances."""

from __future__ import annotations

import os
import stat

from typer.testing import CliRunner

from core.results import CheckResult
from explain.report import render_explain_report
from monitor.cli import app
from checks.drift_report import write_report
from core.results import window_text
from tests.explain_fixtures import synthetic, train


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_drift_and_explain_reports_get_the_same_mode_as_any_new_file(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    write_report(tmp_path / "drift.html", "<html></html>")
    summary = CheckResult(check="explain", status="ok",
                          details={"importance": [{"feature": "a", "method": "mean_abs_shap", "importance": 0.5}]})
    render_explain_report(tmp_path / "explain.html", "t", summary, None, [])
    assert _mode(tmp_path / "drift.html") == _mode(tmp_path / "explain.html") == _mode(plain)
    assert not list(tmp_path.glob(".*.tmp"))


def test_one_date_format_for_windows():
    text = window_text("2024-06-03T00:00:00+00:00", "2024-06-04T00:00:00+00:00")
    assert text == "2024-06-03 00:00 .. 2024-06-04 00:00"
    from datetime import datetime, timezone

    assert window_text(datetime(2024, 6, 3, tzinfo=timezone.utc), datetime(2024, 6, 4, tzinfo=timezone.utc)) == text


def test_the_explain_report_from_the_cli_names_the_model_and_lists_importances(tmp_path):
    model = train(synthetic(3000, seed=1), tmp_path / "ranker.txt", trees=20)
    data = tmp_path / "holdout.parquet"
    synthetic(800, seed=3).to_parquet(data)
    report = tmp_path / "report.html"
    done = CliRunner().invoke(app, ["explain", "--model", str(model), "--data", str(data), "--sample", "300",
                                    "--report", str(report)])
    assert done.exit_code == 0, done.output
    page = report.read_text()
    assert f"<title>{model}: shap importance on 300 rows of {data}</title>" in page
    features_table = page.split("<h2>Features</h2>", 1)[1]
    assert "<td>strong</td>" in features_table and "<td>mean_abs_shap</td>" in features_table
