"""`report_on`: which windows get an HTML drill-down report (data_drift: Evidently; attribution_drift: explain).

By default only windows that warn or alert get one; `always` renders one per window, `alert` only
for alerts. A skipped report never changes the stored result beyond its missing `report_path`.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from explain.config import AttributionDriftConfig
from checks.drift_check import DriftParams as DriftCheckConfig
from monitor.config import parse_config
from monitor.demo.run import demo_config, write_scored_reference
from core.errors import ConfigError
from core.results import report_wanted
from monitor.runner import ModelRunner
from monitor.store import ResultsStore


@pytest.mark.parametrize("status", ["ok", "warn", "alert", "insufficient_data", "error", "pending"])
def test_report_wanted_follows_the_policy(status):
    assert report_wanted(status, "always")
    assert report_wanted(status, "warn") is (status in ("warn", "alert"))
    assert report_wanted(status, "alert") is (status == "alert")
    assert report_wanted(status) is report_wanted(status, "warn")


def test_the_default_reports_windows_that_warn_or_alert():
    assert DriftCheckConfig().report_on == "warn"
    assert AttributionDriftConfig().report_on == "warn"


def test_an_unknown_policy_is_a_config_error(small_world, tmp_path):
    raw = demo_config(small_world, small_world.root.parent)
    raw["models"][0]["checks"]["data_drift"]["report_on"] = "sometimes"
    with pytest.raises(ConfigError, match="report_on"):
        parse_config(raw, "test", small_world.root.parent)


def _runner(small_world, tmp_path, check: str, report_on: str | None):
    write_scored_reference(small_world)
    raw = demo_config(small_world, small_world.root.parent)
    raw["store"] = {"url": f"sqlite:///{tmp_path / 'store.db'}", "reports_dir": str(tmp_path / "reports")}
    settings = raw["models"][0]["checks"][check]
    settings["report"] = True
    if report_on is None:
        settings.pop("report_on", None)  # the default
    else:
        settings["report_on"] = report_on
    config = parse_config(raw, "test", small_world.root.parent)
    store = ResultsStore(config.store_url())
    return ModelRunner(config, config.models[0], store), store


def _day(runner, world, day: int, check: str):
    start = world.serving_start + timedelta(days=day)
    return runner.run(start, start + timedelta(days=1), checks=[check])[0]


def _reports(tmp_path, check: str) -> list[str]:
    folder = tmp_path / "reports" / "offer-ctr" / check
    return sorted(p.name for p in folder.glob("*.html")) if folder.is_dir() else []


def test_data_drift_renders_a_report_for_the_alerting_day_only_by_default(small_world, tmp_path):
    runner, store = _runner(small_world, tmp_path, "data_drift", None)
    try:
        clean = _day(runner, small_world, 0, "data_drift")
        shifted = _day(runner, small_world, 1, "data_drift")  # the planted device-mix shift
        start = small_world.serving_start
        stored = store.get_result("offer-ctr", "data_drift", start, start + timedelta(days=1))
    finally:
        store.close()
    assert clean.status == "ok" and clean.report_path is None
    assert stored is not None and stored.report_path is None
    assert shifted.status == "alert" and Path(shifted.report_path).is_file()
    assert _reports(tmp_path, "data_drift") == [Path(shifted.report_path).name]


def test_data_drift_report_on_always_renders_the_clean_day_too(small_world, tmp_path):
    runner, store = _runner(small_world, tmp_path, "data_drift", "always")
    try:
        clean = _day(runner, small_world, 0, "data_drift")
    finally:
        store.close()
    assert clean.status == "ok" and Path(clean.report_path).is_file()


def test_attribution_drift_skips_the_report_of_a_quiet_window_by_default(small_world, tmp_path):
    runner, store = _runner(small_world, tmp_path, "attribution_drift", None)
    try:
        baseline_day = _day(runner, small_world, 0, "attribution_drift")
    finally:
        store.close()
    assert baseline_day.status == "ok" and baseline_day.report_path is None
    assert "report_error" not in baseline_day.details
    assert _reports(tmp_path, "attribution_drift") == []
