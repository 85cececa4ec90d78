"""An outside check, installed as an entry point, is configured in YAML, run by `driftline run`
and exported to /metrics exactly like a built-in one, with nothing under monitor/ edited."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from check_plugin import install_plugin
from prometheus_client import CollectorRegistry, generate_latest
from typer.testing import CliRunner

from core.checks import REGISTRY
from monitor.catalog import load_checks
from monitor.cli import app

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _fresh_registry(monkeypatch, site) -> None:
    """The check registry as a process with `site` installed sees it; restored after the test."""
    load_checks()  # the built-ins register on import: do it before the copy, not into it
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(REGISTRY, "specs", dict(REGISTRY.specs))
    monkeypatch.setattr(REGISTRY, "broken", {})
    monkeypatch.setattr(REGISTRY, "_entry_points_loaded", False)


@pytest.fixture()
def plugin_registry(tmp_path, monkeypatch):
    _fresh_registry(monkeypatch, install_plugin(tmp_path / "site"))
    return REGISTRY


def _world(folder, rows: int = 500) -> dict:
    rng = np.random.default_rng(0)
    stamps = [START + timedelta(seconds=int(s)) for s in np.sort(rng.integers(0, 86_400, rows))]
    table = pa.table({"ts": pa.array(stamps, pa.timestamp("us", tz="UTC")), "x": rng.normal(size=rows)})
    pq.write_table(table, folder / "reference.parquet")
    pq.write_table(table, folder / "serving.parquet")
    return {
        "store": {"url": f"sqlite:///{folder / 'store.db'}", "reports_dir": str(folder / "reports")},
        "models": [{
            "name": "m",
            "reference": {"path": "reference.parquet"},
            "serving": {"path": "serving.parquet"},
            "schema": {"timestamp": "ts", "features": [{"name": "x", "kind": "numeric"}]},
            "checks": {"data_drift": {"report": False}, "prediction_drift": {"enabled": False},
                       "row_count": {"enabled": True, "min_rows": 100}},
        }],
    }


def _run(config_path, *extra):
    return CliRunner().invoke(app, ["run", "--config", str(config_path), "--window", "2026-01-01/2026-01-02",
                                    "--format", "json", *extra])


def test_plugin_check_is_configured_run_stored_and_exported(plugin_registry, tmp_path):
    raw = _world(tmp_path)
    config_path = tmp_path / "driftline.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    result = _run(config_path)
    assert result.exit_code == 0, result.output
    by_check = {r["check"]: r for r in json.loads(result.stdout)}
    assert set(by_check) == {"data_drift", "row_count"}  # enabled from YAML like a built-in
    assert by_check["row_count"]["status"] == "ok"
    assert by_check["row_count"]["metrics"] == [
        {"name": "window_rows", "value": 500.0, "labels": {}, "help": "Rows in the latest window."}]

    from monitor.config import load_config
    from monitor.exporter import DriftlineCollector
    from monitor.store import ResultsStore

    store = ResultsStore(load_config(config_path).store_url())
    try:
        registry = CollectorRegistry()
        registry.register(DriftlineCollector(store.engine))
        text = generate_latest(registry).decode()
    finally:
        store.close()
    assert 'driftline_window_rows{check="row_count",model="m"} 500.0' in text
    assert 'driftline_check_status{check="row_count",model="m"} 0.0' in text


def test_plugin_params_are_validated_like_a_builtin(plugin_registry, tmp_path):
    raw = _world(tmp_path)
    raw["models"][0]["checks"]["row_count"] = {"enabled": True, "min_rowz": 5}
    config_path = tmp_path / "driftline.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    result = _run(config_path)
    assert result.exit_code == 2
    assert "models.m.checks.row_count.min_rowz" in result.output
    assert "Traceback" not in result.output


def test_a_plugin_that_fails_to_load_breaks_only_itself(tmp_path, monkeypatch):
    _fresh_registry(monkeypatch, install_plugin(tmp_path / "site",
                                                "[driftline.checks]\nbroken = driftline_missing_module:spec\n"))
    raw = _world(tmp_path)
    raw["models"][0]["checks"] = {"data_drift": {"report": False}, "prediction_drift": {"enabled": False}}
    config_path = tmp_path / "driftline.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    result = _run(config_path)
    assert result.exit_code == 0, result.output
    assert [r["check"] for r in json.loads(result.stdout)] == ["data_drift"]
    named = _run(config_path, "--check", "broken")
    assert named.exit_code == 2
    assert "check 'broken': its plug-in failed to load (ModuleNotFoundError" in named.output
