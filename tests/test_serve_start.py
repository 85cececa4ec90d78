"""`driftline serve` started with five schedules that use data quality and drift: the first
windows of both checks run side by side on worker threads (great_expectations and evidently are
imported on the main thread at start), none fails, none deadlocks. `python -m
bench.serve_starts --starts 10` repeats this ten times in a row."""

from __future__ import annotations

from bench.serve_starts import EXPECTED_WINDOWS, start_once, write_config
from monitor.store import ResultsStore


def test_serve_with_quality_and_drift_schedules_leaves_no_window_failed(tmp_path):
    config = write_config(tmp_path)
    ResultsStore(f"sqlite:///{tmp_path / 'store.db'}").close()  # `driftline db upgrade`
    outcome = start_once(config, expected=EXPECTED_WINDOWS, timeout=400)
    assert outcome["settled_s"] is not None, outcome
    assert outcome["states"].get("failed", 0) == 0, outcome
    assert outcome["states"].get("succeeded", 0) >= EXPECTED_WINDOWS, outcome
    assert outcome["deadlocks"] == 0
    assert outcome["exit"] == 0
