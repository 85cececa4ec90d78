"""Configured runs: idempotent per window, hourly profiles merge into the window's profile."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import yaml

from monitor.config import parse_config
from monitor.demo.run import demo_config
from monitor.runner import ModelRunner

# These tests are about the runner; the other checks have their own tests.
DRIFT = ["data_drift", "prediction_drift"]


@pytest.fixture()
def configured(demo_store, demo_raw_config):
    config, store = demo_store
    return config, store, demo_raw_config


def test_running_a_window_twice_leaves_one_set_of_rows(configured, small_world):
    config, store, _ = configured
    start = small_world.serving_start
    end = start + timedelta(days=1)
    first = ModelRunner(config, config.models[0], store).run(start, end, DRIFT)
    second = ModelRunner(config, config.models[0], store).run(start, end, DRIFT)
    assert [r.to_dict() for r in first] == [r.to_dict() for r in second]
    assert store.count_runs() == len(DRIFT)
    stored = store.get_result("offer-ctr", "data_drift", start, end)
    assert stored is not None and stored.to_dict() == first[0].to_dict()


def test_hourly_profiles_merge_into_the_direct_window_profile(configured, small_world):
    config, store, raw = configured
    start = small_world.serving_start + timedelta(days=2)
    end = start + timedelta(days=1)
    hourly_profile, _ = ModelRunner(config, config.models[0], store).window_profile(start, end)
    raw["models"][0]["profile_granularity"] = None
    direct_config = parse_config(raw, "test", small_world.root.parent)
    direct_profile, _ = ModelRunner(direct_config, direct_config.models[0], store).window_profile(start, end)
    merged, direct = hourly_profile.to_dict(), direct_profile.to_dict()
    assert merged["rows"] == direct["rows"] > 0
    for name, feature in direct["features"].items():
        other = merged["features"][name]
        if feature["kind"] == "numeric":
            assert other["bin_counts"] == feature["bin_counts"]
            assert other["sketch"] == feature["sketch"]
            assert other["null_count"] == feature["null_count"]
            assert other["mean"] == pytest.approx(feature["mean"], rel=1e-9)
        else:
            assert other["counts"] == feature["counts"]


def test_planted_device_shift_alerts_and_clean_day_is_quiet(configured, small_world):
    config, store, _ = configured
    runner = ModelRunner(config, config.models[0], store)
    clean = small_world.serving_start
    shifted = clean + timedelta(days=1)
    quiet = {r.check: r for r in runner.run(clean, clean + timedelta(days=1), DRIFT)}
    loud = {r.check: r for r in runner.run(shifted, shifted + timedelta(days=1), DRIFT)}
    assert quiet["data_drift"].status in ("ok", "warn")
    assert loud["data_drift"].status == "alert"
    assert {"device", "os"} <= set(loud["data_drift"].alerting_features)


def test_unreadable_serving_source_records_an_error_result(configured, small_world, tmp_path):
    _, store, raw = configured
    raw["models"][0]["serving"]["path"] = str(tmp_path / "nowhere")
    config = parse_config(raw, "test", small_world.root.parent)
    start = small_world.serving_start
    results = ModelRunner(config, config.models[0], store).run(start, start + timedelta(days=1), DRIFT)
    assert {r.status for r in results} == {"error"}
    assert "nowhere" in results[0].details["error"]
    assert store.count_runs(status="error") == len(results)


def test_result_json_is_valid_and_versioned(configured, small_world):
    config, store, _ = configured
    start = small_world.serving_start + timedelta(days=3)
    results = ModelRunner(config, config.models[0], store).run(start, start + timedelta(days=1), DRIFT)
    for result in results:
        text = json.dumps(result.to_dict(), allow_nan=False)
        assert json.loads(text)["schema_version"] == 1


def test_generated_demo_config_round_trips_through_yaml(small_world, tmp_path):
    raw = demo_config(small_world, small_world.root.parent)
    again = yaml.safe_load(yaml.safe_dump(raw))
    assert parse_config(again, "test", small_world.root.parent).models[0].name == "offer-ctr"
