"""A window with an unreadable hourly file stays partial when its stored hourly profiles are reused.

Before: the first run said `partial: true`, a rerun (or any window reusing the hour) said
`partial: false`, because the bad hour was not read again and nothing remembered it.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from typer.testing import CliRunner

from monitor.cli import app

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _table(n: int, seed: int, start: datetime) -> pa.Table:
    rng = np.random.default_rng(seed)
    ts = [start + timedelta(seconds=int(s)) for s in rng.integers(0, 3600, n)]
    return pa.table({"ts": pa.array(ts, pa.timestamp("us", tz="UTC")), "a": rng.normal(0, 1, n)})


def _world(root: Path, hours: int = 3, bad_hour: int = 1) -> Path:
    pq.write_table(_table(5_000, 0, START), root / "ref.parquet")
    for hour in [*range(hours), 24]:  # and the next day's first hour: `dt=` is then a partition key
        at = START + timedelta(hours=hour)
        folder = root / "serving" / f"dt={at:%Y-%m-%d}" / f"hour={at:%H}"
        folder.mkdir(parents=True)
        path = folder / "part-0.parquet"
        pq.write_table(_table(2_000, hour + 1, at), path)
        if hour == bad_hour:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])  # truncated mid-write
    config = root / "driftline.yaml"
    config.write_text(yaml.safe_dump({
        "store": {"url": f"sqlite:///{root / 'store.db'}", "reports_dir": str(root / "reports")},
        "models": [{
            "name": "m", "reference": {"path": "ref.parquet"}, "serving": {"path": "serving"},
            "profile_granularity": "1h",
            "schema": {"timestamp": "ts", "features": [{"name": "a", "kind": "numeric"}]},
            "checks": {"data_drift": {"report": False, "min_samples": 100}, "prediction_drift": {"enabled": False}},
        }],
    }))
    return config


def _run(config: Path, window: str) -> dict:
    result = CliRunner().invoke(app, ["run", "--config", str(config), "--window", window, "--check", "data_drift",
                                      "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    [drift] = json.loads(result.stdout)
    return drift


def test_rerun_of_a_window_with_a_truncated_hour_is_still_partial(tmp_path):
    config = _world(tmp_path)
    first = _run(config, "2026-01-01T00:00/2026-01-01T03:00")
    assert first["partial"] is True
    assert len(first["bad_files"]) == 1 and "hour=01" in first["bad_files"][0]
    assert first["current_rows"] == 4_000
    rerun = _run(config, "2026-01-01T00:00/2026-01-01T03:00")  # every hour now comes from the store
    assert rerun["partial"] is True
    assert rerun["bad_files"] == first["bad_files"]
    assert rerun["current_rows"] == first["current_rows"]


def test_a_window_reusing_only_the_bad_hour_is_partial_and_one_without_it_is_not(tmp_path):
    config = _world(tmp_path)
    _run(config, "2026-01-01T00:00/2026-01-01T03:00")
    assert _run(config, "2026-01-01T01:00/2026-01-01T02:00")["partial"] is True
    clean = _run(config, "2026-01-01T02:00/2026-01-01T03:00")
    assert clean["partial"] is False and clean["bad_files"] == []


def test_a_slice_stored_partial_without_its_file_list_still_says_partial(tmp_path):
    """Profiles stored before the list was kept have only the partial flag: that is reported."""
    from monitor.store import ResultsStore

    config = _world(tmp_path)
    _run(config, "2026-01-01T00:00/2026-01-01T03:00")
    store = ResultsStore(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        from sqlalchemy import update

        from monitor.store import profiles

        with store.engine.begin() as connection:
            for row in connection.execute(profiles.select().where(profiles.c.role == "serving")).all():
                payload = json.loads(row.profile_json)
                payload.pop("bad_files", None)
                connection.execute(update(profiles).where(profiles.c.id == row.id)
                                   .values(profile_json=json.dumps(payload)))
    finally:
        store.close()
    rerun = _run(config, "2026-01-01T00:00/2026-01-01T03:00")
    assert rerun["partial"] is True
    assert rerun["bad_files"] == ["2026-01-01T01:00:00+00:00/2026-01-01T02:00:00+00:00: unreadable file(s) when "
                                  "first profiled"]
