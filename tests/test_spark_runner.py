"""Configured runs and the CLI on the Spark engine give the embedded engine's results."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from monitor.cli import app
from monitor.config import parse_config
from monitor.runner import ModelRunner
from monitor.store import ResultsStore

DRIFT = ["data_drift", "prediction_drift"]


@pytest.fixture()
def raw_config(demo_raw_config):
    demo_raw_config["models"][0]["profile_granularity"] = None  # one Spark job per window
    return demo_raw_config


def run_on_both(raw, small_world, tmp_path, day: int, checks=None, clock=None) -> dict:
    """{engine: {check: result}} for one demo day, each engine with a store of its own."""
    start = small_world.serving_start + timedelta(days=day)
    results = {}
    for engine in ("local", "spark"):
        config = parse_config(dict(raw, store={**raw["store"], "url": f"sqlite:///{tmp_path / engine}.db"}),
                              "test", small_world.root.parent)
        store = ResultsStore(config.store_url())
        try:
            runner = ModelRunner(config, config.models[0], store, clock=clock, engine=engine)
            results[engine] = {r.check: r for r in runner.run(start, start + timedelta(days=1), checks)}
        finally:
            store.close()
    return results


def test_runner_on_spark_matches_the_embedded_engine(spark, raw_config, small_world, tmp_path):
    both = run_on_both(raw_config, small_world, tmp_path, 1, DRIFT)  # the device-mix shift
    local, remote = both["local"], both["spark"]
    assert local["data_drift"].status == "alert"
    for check in DRIFT:
        mine, theirs = local[check], remote[check]
        assert theirs.status == mine.status
        assert theirs.current_rows == mine.current_rows > 0
        assert [(f.feature, f.status) for f in theirs.features] == [(f.feature, f.status) for f in mine.features]
        for a, b in zip(mine.features, theirs.features):
            assert b.score == pytest.approx(a.score, rel=1e-9, abs=1e-12)


def test_engine_is_a_validated_config_key(raw_config, small_world):
    from core.errors import ConfigError

    raw_config["models"][0]["engine"] = "flink"
    with pytest.raises(ConfigError, match="engine"):
        parse_config(raw_config, "test", small_world.root.parent)
    raw_config["models"][0]["engine"] = "spark"
    raw_config["models"][0]["spark"] = {"master": "local[2]", "conf": {"executor.memory": "2g"}}
    with pytest.raises(ConfigError, match="executor.memory"):
        parse_config(raw_config, "test", small_world.root.parent)


def test_cli_run_and_check_drift_with_engine_spark(spark, raw_config, small_world, tmp_path):
    import yaml

    model = raw_config["models"][0]
    for role in ("reference", "serving", "prediction_reference"):  # the file lives elsewhere: absolute paths
        model[role]["path"] = str(small_world.root.parent / model[role]["path"])
    path = tmp_path / "driftline.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(raw_config, default=str))))
    start = small_world.serving_start + timedelta(days=1)
    window = f"{start.isoformat()}/{(start + timedelta(days=1)).isoformat()}"
    runner = CliRunner()
    result = runner.invoke(app, ["run", "--config", str(path), "--window", window, "--check", "data_drift",
                                 "--format", "json", "--engine", "spark"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    ran = json.loads(result.stdout)[0]
    assert ran["status"] == "alert", ran["details"]

    day = small_world.serving_path / f"dt={start:%Y-%m-%d}"
    args = ["check", "drift", "--reference", str(small_world.reference_path), "--current", str(day), "--format", "json",
            "--features", "device,os,offer_price,cart_value"]
    local = json.loads(runner.invoke(app, args, catch_exceptions=False).stdout)
    report = tmp_path / "drift.html"  # the drill-down report's samples come through Spark too
    remote = runner.invoke(app, [*args, "--engine", "spark", "--report", str(report)], catch_exceptions=False)
    assert remote.exit_code == 0, remote.output
    remote = json.loads(remote.stdout)
    assert remote["report_path"] == str(report) and report.stat().st_size > 10_000
    assert remote["status"] == local["status"]
    assert [(f["feature"], f["status"]) for f in remote["features"]] == \
        [(f["feature"], f["status"]) for f in local["features"]]

    bad = runner.invoke(app, [*args, "--engine", "spark", "--spark-conf", "executor.memory=2g"])
    assert bad.exit_code == 2 and "--spark-conf" in bad.stderr


def test_hour_windows_prune_and_match(spark, raw_config, small_world):
    config = parse_config(raw_config, "test", small_world.root.parent)
    start = small_world.serving_start + timedelta(days=2, hours=23)  # crosses midnight: two dt folders
    end = start + timedelta(hours=2)
    store = ResultsStore(config.store_url())
    try:
        local, _ = ModelRunner(config, config.models[0], store).window_profile(start, end)
        runner = ModelRunner(config, config.models[0], store, engine="spark")
        remote, source = runner.window_profile(start, end)
    finally:
        store.close()
    assert remote.rows == local.rows > 0
    assert remote.features["device"].to_dict() == local.features["device"].to_dict()
    read = source.run(lambda frame: sorted({r.f for r in frame.selectExpr("input_file_name() AS f").collect()}),
                      None, start, end)
    assert len(read) == 2 and all("hour=23" in f or "hour=00" in f for f in read)  # 2 of 48 hourly files


def test_every_check_of_the_demo_on_spark_agrees_with_the_embedded_engine(spark, raw_config, small_world, tmp_path):
    """All enabled checks, label checks and attribution drift included, on the skew day (where
    most of them fire): rows for the checks that need rows come through Spark; no status changes."""
    from datetime import datetime, timezone

    day = [i for i in small_world.incidents() if i["kind"] == "skew"][0]["day"]
    index = [d for d in range(small_world.serving_days) if small_world.serving_day(d) == day][0]
    later = datetime(2100, 1, 1, tzinfo=timezone.utc)  # every label has matured
    results = run_on_both(raw_config, small_world, tmp_path, index, clock=lambda: later)
    local, remote = results["local"], results["spark"]
    assert set(remote) == set(local) and len(local) >= 6
    assert {c: r.status for c, r in remote.items()} == {c: r.status for c, r in local.items()}
    assert {c: r.current_rows for c, r in remote.items()} == {c: r.current_rows for c, r in local.items()}
    statuses = [r.status for r in local.values()]
    assert "error" not in statuses and statuses.count("alert") >= 3


def test_attribution_drift_against_a_holdout_read_by_spark(spark, raw_config, small_world, tmp_path):
    attribution = raw_config["models"][0]["checks"]["attribution_drift"]
    attribution.pop("baseline_window", None)
    attribution["holdout_path"] = str(small_world.reference_path)
    results = {engine: by_check["attribution_drift"] for engine, by_check in
               run_on_both(raw_config, small_world, tmp_path, 1, ["attribution_drift"]).items()}
    local, remote = results["local"], results["spark"]
    assert local.status not in ("error", "insufficient_data"), local.details
    assert remote.status == local.status and remote.reference_rows == local.reference_rows > 0

    # SHAP runs on a sample of rows, and Spark hands rows over in another order (it packs files by
    # size), so the samples differ: a feature may sit on a threshold's other side, never far off.
    def flagged(result, levels):
        return {f.feature for f in result.features if f.status in levels}

    assert flagged(local, ("alert",)) <= flagged(remote, ("warn", "alert"))
    assert flagged(remote, ("alert",)) <= flagged(local, ("warn", "alert"))
