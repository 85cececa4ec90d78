"""`driftline jobs list | history | run-now` through the CLI runner, on a tiny real world."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from typer.testing import CliRunner

from monitor.cli import app
from service_helpers import model_dict, tiny_world


@pytest.fixture()
def config(tmp_path):
    tiny_world(tmp_path)
    model = model_dict(base=tmp_path, schedules=[{"check": "data_drift", "interval": "1h", "window": "1h",
                                                  "max_backfill_windows": 0}], alerts=[{"sink": "log"}])
    model["checks"] = {"data_drift": {"report": False, "min_samples": 5}, "prediction_drift": {"enabled": False}}
    path = tmp_path / "driftline.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "store": {"url": f"sqlite:///{tmp_path / 's.db'}"},
                                    "models": [model]}))
    return str(path)


def invoke(*args):
    return CliRunner().invoke(app, list(args))


def test_jobs_commands(config):
    listed = invoke("jobs", "list", "--config", config, "--format", "json")
    assert listed.exit_code == 0, listed.output
    jobs = json.loads(listed.output)
    assert [(j["model"], j["check"], j["latest_state"]) for j in jobs] == [("m", "data_drift", None)]
    assert datetime.fromisoformat(jobs[0]["next_wake_up"]) > datetime.now(timezone.utc)

    ran = invoke("jobs", "run-now", "--config", config)
    assert ran.exit_code == 0, ran.output
    assert ": succeeded" in ran.output
    again = invoke("jobs", "run-now", "--config", config)  # a forced re-run of the same window
    assert again.exit_code == 0, again.output

    hour = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=30)
    window = f"{hour.isoformat()}/{(hour + timedelta(hours=1)).isoformat()}"
    with_data = invoke("jobs", "run-now", "--config", config, "--check", "data_drift", "--window", window)
    assert with_data.exit_code == 0, with_data.output

    history = json.loads(invoke("jobs", "history", "--config", config, "--format", "json").output)
    assert [r["state"] for r in history] == ["succeeded", "succeeded"]
    assert history[0]["attempts"] == 2 and history[0]["result_status"] == "insufficient_data"
    assert history[1]["result_status"] in ("ok", "warn", "alert") and history[1]["grid"].startswith("every 3600s")
    assert "data_drift" in invoke("jobs", "history", "--config", config).output
    assert invoke("jobs", "history", "--config", config, "--events", "--format", "json").exit_code == 0
    listed = json.loads(invoke("jobs", "list", "--config", config, "--format", "json").output)
    assert listed[0]["latest_state"] == "succeeded"

    unknown = invoke("jobs", "run-now", "--config", config, "--check", "no_such_check", "--window", window)
    assert unknown.exit_code == 2 and "did not succeed" in unknown.output
    failed = json.loads(invoke("jobs", "history", "--config", config, "--state", "failed", "--format", "json").output)
    assert "unknown check 'no_such_check'" in failed[0]["reason"]
    active = invoke("alerts", "list", "--config", config, "--active", "--format", "json")
    assert active.exit_code == 0 and isinstance(json.loads(active.output), list)


def test_serve_refuses_a_store_without_schema_and_bad_binding(config, tmp_path, monkeypatch):
    monkeypatch.delenv("DRIFTLINE_TOKEN", raising=False)
    fresh = invoke("serve", "--config", config, "--port", "0")
    assert fresh.exit_code == 2 and "driftline db upgrade" in fresh.output
    assert invoke("db", "upgrade", "--config", config).exit_code == 0
    exposed = invoke("serve", "--config", config, "--host", "0.0.0.0", "--port", "0")
    assert exposed.exit_code == 2 and "needs a bearer token" in exposed.output
