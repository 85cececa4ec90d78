"""The `rollout` check on logged traffic of two model versions: planted harm stops the rollout
(alert, exported), a clean candidate does not, and bad config or columns give one clear error."""

from __future__ import annotations

import json

import pytest
from rankingsim import exported, run_check, with_setting, write_rollout_world

from core.errors import ConfigError


def look(path, hours: int, now_hours: int = 72):
    # An hourly job: the window is the last hour; the look covers the rollout since `started`.
    return run_check(path, "rollout", hours - 1, hours, now_hours)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    def world(name, **kwargs):
        return write_rollout_world(tmp_path_factory.mktemp(name), **kwargs)

    return {"clean": world("clean", seed=1), "drop": world("drop", candidate_lift=0.8, seed=2),
            "overpredicts": world("over", candidate_overprediction=1.3, seed=3)}


def test_a_candidate_that_loses_clicks_is_stopped_and_the_stop_is_exported(worlds):
    result = look(worlds["drop"], hours=24)
    assert result.status == "alert", result.details
    assert result.details["decision"] == "stop" and "ctr" in result.details["harmful"]
    ctr = result.details["metrics"]["ctr"]
    assert ctr["relative_high"] < 0 and ctr["relative_low"] < -0.2 < ctr["relative_high"]  # covers the truth
    text = exported(worlds["drop"])
    assert 'driftline_rollout_decision{candidate="v7",check="rollout",control="v6",model="ranker",stage="50%"} -1.0' \
        in text
    assert "driftline_rollout_lift_high{" in text and 'metric="revenue"' in text


def test_an_overpredicting_candidate_is_stopped_on_calibration(worlds):
    result = look(worlds["overpredicts"], hours=24)
    assert result.details["decision"] == "stop" and result.details["harmful"] == ["calibration"]
    calibration = result.details["metrics"]["calibration"]
    assert calibration["low"] > 1.1 and calibration["low"] < 1.3 < calibration["high"]


def test_a_clean_candidate_is_never_stopped_at_any_hourly_look(worlds):
    decisions = []
    for hours in range(1, 49):
        result = look(worlds["clean"], hours)
        decisions.append(result.details.get("decision"))
        assert result.status in ("ok", "insufficient_data")
    assert "stop" not in decisions and decisions[-1] in ("continue", "promote")
    # Each look after the first added its hour to the previous look's sums; the same as reading it all.
    assert result.details["carried_from"] == "2026-03-03T22:00:00+00:00/2026-03-03T23:00:00+00:00"
    whole = invoke("rollout", "status", "--config", worlds["clean"], "--window",
                   "2026-03-02T00:00:00+00:00/2026-03-04T00:00:00+00:00", "--format", "json")
    data = json.loads(whole.stdout)
    assert data["carried_from"] is None
    for arm in ("control", "candidate"):
        assert data["arms"][arm] == pytest.approx(result.details["arms"][arm], rel=1e-12)


def test_labels_not_yet_mature_leave_the_look_pending(worlds):
    result = look(worlds["clean"], hours=24, now_hours=24)  # click delay 1h
    assert result.status == "pending"


def test_bad_config_and_missing_columns_are_one_line_errors(worlds, tmp_path):
    from monitor.config import load_config
    from checks.rollout import RolloutParams, rollout_check

    model = load_config(worlds["clean"]).models[0]
    with pytest.raises(ConfigError, match="control and candidate"):
        rollout_check(model, RolloutParams(control="v6"))
    with pytest.raises(ConfigError, match="'no_score' is not paired"):
        rollout_check(model, RolloutParams(control="v6", candidate="v7", prediction="no_score"))
    with pytest.raises(ValueError, match="revenue needs price_column"):
        RolloutParams(control="a", candidate="b", metrics=["revenue"])
    result = look(with_setting(worlds["clean"], "rollout", "price_column", "no_such_price", tmp_path), hours=24)
    assert result.status == "error" and "no_such_price" in result.details["error"]


def invoke(*args):
    from typer.testing import CliRunner

    from monitor.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_rollout_status_cli_json_table_and_exit_codes(worlds, tmp_path):
    window = "2026-03-02T00:00:00+00:00/2026-03-03T00:00:00+00:00"
    result = invoke("rollout", "status", "--config", worlds["drop"], "--window", window, "--format", "json",
                    "--fail-on", "alert")
    assert result.exit_code == 1, result.stderr
    data = json.loads(result.stdout)
    assert data["decision"] == "stop" and data["status"] == "alert" and data["candidate"] == "v7"
    assert data["metrics"]["ctr"]["relative_high"] < 0
    table = invoke("rollout", "status", "--config", worlds["drop"], "--window", window)
    assert table.exit_code == 0 and "stop" in table.stdout and "always-valid interval" in table.stdout
    bad = with_setting(worlds["drop"], "rollout", "candidate", "v6", tmp_path)
    broken = invoke("rollout", "status", "--config", bad, "--window", window)
    assert broken.exit_code == 2 and "control and candidate" in broken.stderr
    assert "Traceback" not in broken.stderr
