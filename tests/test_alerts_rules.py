"""Alert rules: one key per (model, check, feature, severity), cooldown, resolve with the same key."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from monitor.alerts.outbox import outbox
from monitor.alerts.rules import alert_keys, dedup_key, evaluate, routes_for
from monitor.store import ResultsStore
from service_helpers import make_config, model_dict, result

UTC = timezone.utc
DAY = timedelta(days=1)
D0 = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture()
def env(tmp_path):
    def build(**route):
        config = make_config(tmp_path, [model_dict(alerts=[{"sink": "log", **route}])])
        store = ResultsStore(config.store_url())
        stores.append(store)
        routes = routes_for(config.models[0])

        def feed(day: int, statuses: dict, status=None, now=None, details=None) -> list[dict]:
            start = D0 + day * DAY
            found = result("data_drift", start, start + DAY, statuses, status=status, details=details)
            with store.engine.begin() as connection:
                evaluate(connection, routes, "m", found, start + DAY, now or start + DAY + timedelta(minutes=5))
            return messages()

        def messages() -> list[dict]:
            with store.engine.connect() as connection:
                rows = connection.execute(select(outbox).order_by(outbox.c.id))
                return [{"kind": r.kind, "key": r.dedup_key, **json.loads(r.payload_json)} for r in rows]

        return feed

    stores = []
    yield build
    for store in stores:
        store.close()


def test_one_firing_per_key_while_active_then_one_resolve_with_the_same_key(env):
    feed = env(cooldown="1h")
    assert [(m["kind"], m["key"]) for m in feed(0, {"device": "alert", "os": "ok"})] == [
        ("firing", "m|data_drift|device|alert")]
    assert len(feed(1, {"device": "alert", "os": "ok"})) == 1  # still active: no second message
    messages = feed(2, {"device": "ok", "os": "ok"})
    assert [(m["kind"], m["key"]) for m in messages] == [("firing", "m|data_drift|device|alert"),
                                                         ("resolved", "m|data_drift|device|alert")]
    assert messages[1]["summary"].startswith("m data_drift device: back to normal")
    assert len(feed(3, {"device": "ok", "os": "ok"})) == 2  # nothing more to resolve


def test_cooldown_suppresses_a_flapping_key_until_it_has_passed(env):
    feed = env(cooldown="2d")
    feed(0, {"device": "alert"})
    feed(1, {"device": "ok"})  # resolved (the firing was notified)
    assert [m["kind"] for m in feed(2, {"device": "alert"})] == ["firing", "resolved"]  # within 2 days: held back
    messages = feed(3, {"device": "alert"}, now=D0 + 4 * DAY + timedelta(hours=1))
    assert [m["kind"] for m in messages] == ["firing", "resolved", "firing"]  # cooled down, still active


def test_severity_levels_and_errors(env):
    feed = env(min_severity="warn", cooldown="0s")
    keys = [m["key"] for m in feed(0, {"device": "warn", "os": "error", "x": "insufficient_data"})]
    assert sorted(keys) == ["m|data_drift|device|warn", "m|data_drift|os|alert"]  # error counts as alert
    messages = feed(1, {"device": "alert", "os": "error"})
    new = [(m["kind"], m["key"]) for m in messages[2:]]
    assert ("firing", "m|data_drift|device|alert") in new and ("resolved", "m|data_drift|device|warn") in new
    assert len(new) == 2


def test_a_check_that_failed_as_a_whole_alerts_at_check_level():
    found = result("performance", D0, D0 + DAY, {}, status="error", details={"error": "labels missing"})
    keys = alert_keys("m", found, ("alert",))
    assert list(keys) == [dedup_key("m", "performance", "", "alert")]
    assert keys[dedup_key("m", "performance", "", "alert")]["why"] == "labels missing"
    assert alert_keys("m", result("c", D0, D0 + DAY, {"x": "ok"}), ("warn", "alert")) == {}


def test_an_older_window_does_not_undo_a_newer_state(env):
    feed = env(cooldown="0s")
    feed(5, {"device": "alert"})
    assert len(feed(4, {"device": "ok"})) == 1  # a backfilled older window: no resolve
    assert [m["kind"] for m in feed(6, {"device": "ok"})] == ["firing", "resolved"]


def test_reevaluating_the_same_window_queues_nothing_new(env):
    feed = env()
    feed(0, {"device": "alert"})
    assert len(feed(0, {"device": "alert"})) == 1
