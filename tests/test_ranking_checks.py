"""The ranking checks (rollout, exploration, slot_calibration) under the check contract, on a
clean simulated day: quiet, their results survive the JSON round trip, and every point they
declare is on /metrics (the conformance suite runs the demo's checks; these are not in it)."""

from __future__ import annotations

import json

import pytest
from rankingsim import exported, run_check, write_rollout_world

from core.results import CheckResult

CHECKS = ["rollout", "exploration", "slot_calibration"]


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    path = write_rollout_world(tmp_path_factory.mktemp("clean"), hours=24, per_hour=2000, seed=31)
    results = {name: run_check(path, name, 0, 24) for name in CHECKS}
    return results, exported(path)


@pytest.mark.parametrize("name", CHECKS)
def test_quiet_on_a_clean_day(name, clean):
    result = clean[0][name]
    assert result.status in ("ok", "insufficient_data"), (name, result.status, result.details.get("error"))
    assert result.current_rows > 0


@pytest.mark.parametrize("name", CHECKS)
def test_result_round_trips_and_declared_points_are_exported(name, clean):
    results, metrics = clean
    data = results[name].to_dict()
    assert CheckResult.from_dict(json.loads(json.dumps(data))).to_dict() == data
    assert results[name].metrics, name
    from monitor.catalog import get_check

    assert {p.name for p in results[name].metrics} <= set(get_check(name).exports)
    assert f'driftline_check_status{{check="{name}",model="ranker"}}' in metrics
    for point in results[name].metrics:
        labels = ",".join(sorted([f'check="{name}"', 'model="ranker"'] + [f'{k}="{v}"' for k, v in point.labels]))
        assert f"driftline_{point.name}{{{labels}}}" in metrics, point
