"""Retraining defaults a new user meets: the sliding window follows the data when the data ends
before now, and `--when-due` says when the schedule is next due."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from monitor.config import parse_config
from retrain.pipeline import latest_timestamp, resolve_window
from retrain.triggers import decide, next_due

NOW = datetime(2026, 12, 6, 11, 40, tzinfo=timezone.utc)


def _model(raw: dict, **retrain):
    model = raw["models"][0]
    model["retrain"] = {**model.get("retrain", {}), **retrain}
    return model


def test_the_window_ends_with_the_data_not_with_now(small_world, demo_raw_config):
    config = parse_config(demo_raw_config, "t", small_world.root.parent)
    model = config.models[0]
    latest = latest_timestamp(config, model)
    serving_end = small_world.serving_start + timedelta(days=small_world.serving_days)
    assert serving_end - timedelta(hours=1) <= latest < serving_end
    start, end = resolve_window(model, None, NOW, latest)
    assert end == serving_end and end - start == model.retrain.training_window
    # Data that reaches now: the window ends at the current hour, as before.
    assert resolve_window(model, None, NOW, NOW)[1] == NOW.replace(minute=0)
    # An explicit window is kept as given.
    given = (datetime(2024, 6, 1, tzinfo=timezone.utc), datetime(2024, 6, 5, tzinfo=timezone.utc))
    assert resolve_window(model, given, NOW, latest) == given


def test_not_due_says_when_the_schedule_is_next_due(small_world, demo_raw_config, tmp_path):
    from retrain.registry import ModelRegistry

    _model(demo_raw_config, schedule="0 3 * * *")
    model = parse_config(demo_raw_config, "t", small_world.root.parent).models[0]
    registry = ModelRegistry(tmp_path / "registry")
    assert decide(model, registry, now=NOW).due  # never retrained: due at once
    last = NOW - timedelta(hours=2)  # after today's 03:00: the next fire is tomorrow's
    assert next_due("0 3 * * *", last, NOW) == datetime(2026, 12, 7, 3, 0, tzinfo=timezone.utc)
    from unittest import mock

    with mock.patch("retrain.triggers.last_retrain", return_value=last):
        decision = decide(model, registry, now=NOW)
    assert not decision.due
    assert "next due 2026-12-07 03:00 UTC" in decision.reason and "last retrain: 2026-12-06 09:40 UTC" in decision.reason
