"""The durable outbox: at-least-once delivery, backoff with jitter, Retry-After, dead letters."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from monitor.alerts import outbox as outbox_module
from monitor.alerts import signing
from monitor.alerts.outbox import Outbox, enqueue, outbox
from monitor.alerts.rules import routes_for
from monitor.alerts.sinks import AlertMessage
from monitor.exporter import DriftlineCollector
from monitor.ledger import naive
from monitor.store import ResultsStore
from service_helpers import Clock, Receiver, free_port, make_config, model_dict

UTC = timezone.utc
SECRET = signing.generate_secret()
NOW = datetime(2026, 5, 4, 12, tzinfo=UTC)


def message(n: int = 1, route: str = "m/hook") -> AlertMessage:
    return AlertMessage(id=f"msg_{n}", kind="firing", dedup_key=f"m|data_drift|f{n}|alert", route=route, model="m",
                        check="data_drift", feature=f"f{n}", severity="alert", status="alert",
                        summary=f"feature f{n} drifted")


@pytest.fixture()
def box(tmp_path, monkeypatch):
    monkeypatch.setenv("HOOK_SECRET", SECRET)

    def build(url: str, max_attempts: int = 5):
        route = {"sink": "webhook", "name": "hook", "url": url, "secret_env": "HOOK_SECRET",
                 "allow_private": True, "max_attempts": max_attempts}
        config = make_config(tmp_path, [model_dict(alerts=[route])])
        store = ResultsStore(config.store_url())
        stores.append(store)
        clock = Clock(NOW)
        routes = routes_for(config.models[0])
        delivery = Outbox(store.engine, {r.id: r.sink for r in routes}, base_delay=10.0, max_delay=600.0,
                          rng=random.Random(3), clock=clock)
        return delivery, store, clock

    stores = []
    yield build
    for store in stores:
        store.close()


def put(store, msg: AlertMessage, max_attempts: int = 5) -> None:
    with store.engine.begin() as connection:
        assert enqueue(connection, msg, "webhook", max_attempts, NOW)
        assert not enqueue(connection, msg, "webhook", max_attempts, NOW)  # same id: queued once


def state(store) -> list[dict]:
    return outbox_module.rows(store.engine)


def test_a_sink_that_is_down_is_retried_and_delivered_once_it_is_back(box):
    port = free_port()  # nothing listens here yet
    delivery, store, clock = box(f"http://127.0.0.1:{port}/hook")
    put(store, message())
    assert delivery.deliver_due() == 0
    row = state(store)[0]
    assert row["state"] == "pending" and row["attempts"] == 1 and "Connection refused" in row["last_error"]
    assert row["next_attempt_at"] > NOW
    assert delivery.deliver_due() == 0 and state(store)[0]["attempts"] == 1  # backoff: not due yet
    receiver = Receiver(port=port)
    try:
        clock.now = state(store)[0]["next_attempt_at"]
        assert delivery.deliver_due() == 1
        assert state(store)[0]["state"] == "delivered"
        assert len(receiver.requests) == 1
        request = receiver.requests[0]
        assert request["headers"]["webhook-id"] == "msg_1"
        assert signing.verify(SECRET, request["headers"], request["body"])
        assert delivery.deliver_due() == 0 and len(receiver.requests) == 1
    finally:
        receiver.close()


def test_after_max_attempts_a_message_is_dead_lettered_and_counted(box):
    receiver = Receiver(replies=[(500, {})])
    try:
        delivery, store, clock = box(receiver.url, max_attempts=3)
        put(store, message(), max_attempts=3)
        for _ in range(5):
            delivery.deliver_due()
            clock.advance(timedelta(hours=2))
        row = state(store)[0]
        assert row["state"] == "dead" and row["attempts"] == 3 and "HTTP 500" in row["last_error"]
        assert len(receiver.requests) == 3
        # A retry keeps the webhook id and signs a fresh timestamp.
        assert {r["headers"]["webhook-id"] for r in receiver.requests} == {"msg_1"}
        registry = CollectorRegistry(auto_describe=False)
        registry.register(DriftlineCollector(store.engine, sinks=["webhook"]))
        families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
        dead = {s.labels["sink"]: s.value for s in families["driftline_alerts_dead_lettered"].samples
                if s.name.endswith("_total")}
        sent = {s.labels["sink"]: s.value for s in families["driftline_alerts_sent"].samples
                if s.name.endswith("_total")}
        assert dead == {"webhook": 1.0} and sent == {"webhook": 0.0}
    finally:
        receiver.close()


def test_429_retry_after_is_honoured(box):
    receiver = Receiver(replies=[(429, {"Retry-After": "120"}), (200, {})])
    try:
        delivery, store, clock = box(receiver.url)
        put(store, message())
        delivery.deliver_due()
        row = state(store)[0]
        assert row["state"] == "pending" and row["next_attempt_at"] >= NOW + timedelta(seconds=120)
        clock.now = NOW + timedelta(seconds=119)
        assert delivery.deliver_due() == 0 and len(receiver.requests) == 1
        clock.now = row["next_attempt_at"]
        assert delivery.deliver_due() == 1 and len(receiver.requests) == 2
    finally:
        receiver.close()


def test_a_client_error_is_dead_lettered_at_once(box):
    receiver = Receiver(replies=[(404, {})])
    try:
        delivery, store, _ = box(receiver.url)
        put(store, message())
        delivery.deliver_due()
        assert state(store)[0]["state"] == "dead" and state(store)[0]["attempts"] == 1
    finally:
        receiver.close()


def test_backoff_doubles_with_equal_jitter_and_is_capped(box):
    delivery, _, _ = box("http://127.0.0.1:9/")
    for attempt in range(1, 12):
        ceiling = min(600.0, 10.0 * 2 ** (attempt - 1))
        samples = [delivery.backoff(attempt) for _ in range(200)]
        assert all(ceiling / 2 <= s <= ceiling for s in samples)
        assert max(samples) - min(samples) > ceiling / 4  # jittered, not fixed
    assert delivery.backoff(1, retry_after=300) == 300


def test_a_crash_while_sending_is_retried(box):
    receiver = Receiver()
    try:
        delivery, store, clock = box(receiver.url)
        put(store, message())
        with store.engine.begin() as connection:  # what a kill -9 mid-send leaves behind
            connection.execute(update(outbox).values(state="sending", attempts=1,
                                                     lease_expires_at=naive(NOW + timedelta(minutes=2))))
        assert delivery.deliver_due() == 0
        clock.advance(timedelta(minutes=3))
        assert delivery.deliver_due() == 1 and len(receiver.requests) == 1
        assert state(store)[0]["attempts"] == 2
    finally:
        receiver.close()


def test_messages_of_one_key_are_delivered_in_the_order_they_were_queued(box):
    """A resolve queued while its firing waits out a backoff must not overtake it; another
    key is not held up."""
    import json

    receiver = Receiver(replies=[(503, {}), (200, {})])
    try:
        delivery, store, clock = box(receiver.url + "/hook")
        firing = message(1)
        put(store, firing)
        assert delivery.deliver_due() == 0  # 503: the firing now waits for its backoff
        resolved = AlertMessage(**{**firing.to_dict(), "id": "msg_1_resolved", "kind": "resolved"})
        put(store, resolved)
        put(store, message(2))  # another key
        assert delivery.deliver_due() == 1  # only the other key: the resolve waits behind its firing
        clock.advance(timedelta(minutes=5))
        while delivery.deliver_due():
            pass
        sent = [(json.loads(r["body"])["data"]["dedup_key"], json.loads(r["body"])["type"])
                for r in receiver.requests[1:]]
        assert sent == [("m|data_drift|f2|alert", "driftline.alert.firing"),
                        ("m|data_drift|f1|alert", "driftline.alert.firing"),
                        ("m|data_drift|f1|alert", "driftline.alert.resolved")]
    finally:
        receiver.close()


def test_a_dead_letter_does_not_hold_back_the_next_message_of_its_key(box):
    receiver = Receiver(replies=[(400, {}), (200, {})])
    try:
        delivery, store, _ = box(receiver.url + "/hook")
        put(store, message(1))
        assert delivery.deliver_due() == 0  # 400: dead at once
        put(store, AlertMessage(**{**message(1).to_dict(), "id": "msg_1_resolved", "kind": "resolved"}))
        assert delivery.deliver_due() == 1
        assert sorted(r["state"] for r in state(store)) == ["dead", "delivered"]
    finally:
        receiver.close()


class _Blocking:
    """A sink whose send blocks until released (a receiver that hangs)."""

    def __init__(self) -> None:
        import threading

        self.entered, self.release = threading.Event(), threading.Event()

    def send(self, msg) -> None:
        self.entered.set()
        self.release.wait(30)


class _Recording:
    def __init__(self) -> None:
        import threading

        self.sent, self.done = [], threading.Event()

    def send(self, msg) -> None:
        self.sent.append(msg.id)
        self.done.set()


def test_a_hanging_route_does_not_hold_up_the_others(tmp_path):
    """serve's delivery worker gives each route its own lane."""
    from monitor.alerts.outbox import DeliveryWorker

    config = make_config(tmp_path, [model_dict()])
    store = ResultsStore(config.store_url())
    slow, fast = _Blocking(), _Recording()
    worker = DeliveryWorker(Outbox(store.engine, {"m/slow": slow, "m/fast": fast}), interval=0.05)
    try:
        put(store, message(1, route="m/slow"))  # queued first: a single thread would take it first
        put(store, message(2, route="m/fast"))
        worker.start()
        assert slow.entered.wait(30)
        assert fast.done.wait(30), "the fast route waited for the hanging one"
        assert fast.sent == ["msg_2"]
        for _ in range(600):  # the lane records the delivery just after send returns
            states = {r["route"]: r["state"] for r in state(store)}
            if states["m/fast"] == "delivered":
                break
            slow.entered.wait(0.05)
        assert states == {"m/slow": "sending", "m/fast": "delivered"}
        slow.release.set()
    finally:
        slow.release.set()
        worker.stop()
        worker.join(30)
        store.close()


def test_a_hanging_alertmanager_refresh_does_not_hold_up_delivery(tmp_path):
    from monitor.alerts.outbox import DeliveryWorker

    class HangingRefresh(Outbox):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.hang = _Blocking()

        def refresh_alertmanager(self) -> int:
            self.hang.send(None)
            return 0

    config = make_config(tmp_path, [model_dict()])
    store = ResultsStore(config.store_url())
    fast = _Recording()
    box = HangingRefresh(store.engine, {"m/fast": fast})
    worker = DeliveryWorker(box, interval=0.05, refresh_every=0.0)
    try:
        worker.start()
        assert box.hang.entered.wait(30)  # the refresh is stuck in a receiver
        put(store, message(2, route="m/fast"))
        worker.poke()
        assert fast.done.wait(30), "delivery waited for the Alertmanager refresh"
    finally:
        box.hang.release.set()
        worker.stop()
        worker.join(30)
        store.close()
