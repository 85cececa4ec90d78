"""Sinks: Standard Webhooks signatures, Slack, SMTP, Alertmanager, log; the plugin registry;
secrets only from env/files and never in errors or logs."""

from __future__ import annotations

import json
import logging
import random
from datetime import datetime, timedelta, timezone

import pytest
from typer.testing import CliRunner

from monitor.alerts import signing
from monitor.alerts.outbox import Outbox
from monitor.alerts.rules import make_test_message, routes_for
from monitor.alerts.sinks import AlertMessage, DeliveryError, Sink, build_sink, known_sinks, retry_after_seconds
from monitor.config import AlertRouteConfig
from core.errors import ConfigError
from monitor.store import ResultsStore
from service_helpers import Receiver, SmtpServer, make_config, model_dict, self_signed_certificate

UTC = timezone.utc


def message(kind: str = "firing") -> AlertMessage:
    return AlertMessage(id="msg_abc", kind=kind, dedup_key="m|data_drift|device|alert", route="m/r", model="m",
                        check="data_drift", feature="device", severity="alert", status="alert",
                        summary="m data_drift device: alert", window_start="2026-05-01T00:00:00+00:00",
                        window_end="2026-05-02T00:00:00+00:00", starts_at="2026-05-02T00:05:00+00:00")


@pytest.fixture()
def receiver():
    found = Receiver()
    yield found
    found.close()


def test_signature_matches_the_standard_webhooks_test_vector():
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    signature = signing.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    headers = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
               "webhook-signature": "v1,bm9wZQ== " + signature}
    assert signing.verify(secret, headers, body, now=1614265330)
    assert not signing.verify(secret, headers, body + b" ", now=1614265330)  # tampered body
    assert not signing.verify(secret, headers, body, now=1614265330 + 3600)  # replayed later
    with pytest.raises(signing.SignatureError):
        signing.decode_secret("whsec_not base64!")


def test_webhook_posts_a_signed_message(receiver, monkeypatch):
    secret = signing.generate_secret()
    monkeypatch.setenv("HOOK_SECRET", secret)
    sink = build_sink(AlertRouteConfig(sink="webhook", url=receiver.url + "/in", secret_env="HOOK_SECRET",
                                       allow_private=True))
    sink.send(message())
    request = receiver.requests[0]
    assert request["path"] == "/in"
    assert signing.verify(secret, request["headers"], request["body"])
    body = json.loads(request["body"])
    assert body["type"] == "driftline.alert.firing" and body["data"]["dedup_key"] == "m|data_drift|device|alert"
    assert not signing.verify(signing.generate_secret(), request["headers"], request["body"])


def test_webhook_without_a_secret_is_a_config_error(receiver):
    sink = build_sink(AlertRouteConfig(sink="webhook", url=receiver.url, allow_private=True))
    with pytest.raises(ConfigError, match="signing secret"):
        sink.send(message())
    assert receiver.requests == []


def test_slack_url_is_a_secret_that_never_reaches_errors_or_logs(monkeypatch, caplog, tmp_path):
    failing = Receiver(replies=[(500, {})])
    try:
        token_path = "/services/T000/B000/XXXXSECRETXXXX"
        monkeypatch.setenv("SLACK_URL", failing.url + token_path)
        config = make_config(tmp_path, [model_dict(alerts=[{"sink": "slack", "url_env": "SLACK_URL",
                                                              "allow_private": True, "max_attempts": 1}])])
        store = ResultsStore(config.store_url())
        try:
            routes = routes_for(config.models[0])
            from monitor.alerts.outbox import enqueue, rows

            with store.engine.begin() as connection:
                enqueue(connection, message(), "slack", 1)
            box = Outbox(store.engine, {"m/r": routes[0].sink}, rng=random.Random(0))
            with caplog.at_level(logging.DEBUG):
                box.deliver_due()
            row = rows(store.engine)[0]
            assert row["state"] == "dead" and "HTTP 500" in row["last_error"]
            assert "SECRET" not in row["last_error"] and "SECRET" not in caplog.text
            assert failing.requests[0]["path"] == token_path
            assert json.loads(failing.requests[0]["body"])["text"].endswith("m data_drift device: alert")
        finally:
            store.close()
    finally:
        failing.close()


def test_email_goes_through_a_local_smtp_server(monkeypatch):
    server = SmtpServer()
    try:
        monkeypatch.setenv("SMTP_PASSWORD", "not-used-without-username")
        route = AlertRouteConfig(sink="email", allow_private=True, email={
            "host": "127.0.0.1", "port": server.port, "security": "none", "sender": "driftline@example.org",
            "to": ["oncall@example.org"], "password_env": "SMTP_PASSWORD"})
        build_sink(route).send(message())
        assert len(server.messages) == 1
        mail = server.messages[0]
        assert "oncall@example.org" in mail["to"][0]
        assert b"Subject: [driftline firing] m data_drift device: alert" in mail["data"]
        assert b"msg_abc" in mail["data"]
    finally:
        server.close()


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_email_over_tls_verifies_the_server_certificate(tmp_path, security):
    cert = self_signed_certificate(tmp_path)
    server = SmtpServer(tls=security, cert=cert)
    try:
        email = {"host": "127.0.0.1", "port": server.port, "security": security, "sender": "driftline@example.org",
                 "to": ["oncall@example.org"]}
        # Not signed by a CA this machine trusts: refused for good, nothing sent in the clear.
        with pytest.raises(DeliveryError, match="certificate not trusted.*ca_file") as caught:
            build_sink(AlertRouteConfig(sink="email", allow_private=True, email=email)).send(message())
        assert caught.value.permanent and server.messages == []
        # With the private CA configured (relative to the config's folder) it goes, encrypted.
        route = AlertRouteConfig(sink="email", allow_private=True, email={**email, "ca_file": "cert.pem"})
        build_sink(route, base_dir=tmp_path).send(message())
        assert len(server.messages) == 1 and server.messages[0]["tls"]
        assert b"msg_abc" in server.messages[0]["data"]
    finally:
        server.close()


def test_email_to_a_private_host_is_refused_unless_allowed():
    route = AlertRouteConfig(sink="email", email={"host": "10.0.0.25", "port": 25, "security": "none",
                                                  "sender": "a@example.org", "to": ["b@example.org"]})
    with pytest.raises(DeliveryError, match="private") as caught:
        build_sink(route).send(message())
    assert caught.value.permanent


def test_alertmanager_gets_v2_alerts_with_the_dedup_labels_and_resolves(receiver):
    sink = build_sink(AlertRouteConfig(sink="alertmanager", url=receiver.url, allow_private=True))
    now = datetime(2026, 5, 2, 0, 10, tzinfo=UTC)
    sink.send(message(), now=now)
    sink.send(message("resolved"), now=now + timedelta(hours=1))
    firing, resolved = (json.loads(r["body"]) for r in receiver.requests)
    assert {r["path"] for r in receiver.requests} == {"/api/v2/alerts"}
    assert firing[0]["labels"] == {"alertname": "DriftlineCheck", "model": "m", "check": "data_drift",
                                   "severity": "alert", "source": "driftline", "feature": "device"}
    assert datetime.fromisoformat(firing[0]["endsAt"]) > now  # held open; re-sent while active
    assert resolved[0]["labels"] == firing[0]["labels"]
    assert datetime.fromisoformat(resolved[0]["endsAt"]) == now + timedelta(hours=1)


def test_alertmanager_refresh_resends_active_alerts(receiver, tmp_path):
    from monitor.alerts.rules import evaluate
    from service_helpers import result

    config = make_config(tmp_path, [model_dict(alerts=[{"sink": "alertmanager", "url": receiver.url,
                                                         "allow_private": True}])])
    store = ResultsStore(config.store_url())
    try:
        routes = routes_for(config.models[0])
        start = datetime(2026, 5, 1, tzinfo=UTC)
        with store.engine.begin() as connection:
            evaluate(connection, routes, "m", result("data_drift", start, start + timedelta(days=1),
                                                     {"device": "alert"}), start + timedelta(days=1))
        box = Outbox(store.engine, {r.id: r.sink for r in routes})
        assert box.deliver_due() == 1
        assert box.refresh_alertmanager() == 1 and box.refresh_alertmanager() == 1
        assert len(receiver.requests) == 3
        assert all(json.loads(r["body"])[0]["labels"]["feature"] == "device" for r in receiver.requests)
    finally:
        store.close()


def test_log_sink_logs(caplog):
    with caplog.at_level(logging.WARNING, logger="driftline.alerts"):
        build_sink(AlertRouteConfig(sink="log")).send(message())
    assert "m data_drift device: alert" in caplog.text


def test_registry_names_the_known_sinks_and_loads_entry_points(monkeypatch):
    with pytest.raises(ConfigError, match=r"unknown sink 'pager'.*alertmanager, email, log, slack, webhook"):
        build_sink(AlertRouteConfig(sink="pager"))

    class PagerSink(Sink):
        sent: list = []

        def send(self, msg):
            self.sent.append(msg.id)

    class Entry:
        name = "pager-test"

        def load(self):
            return PagerSink

    import importlib.metadata

    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: [Entry()] if kw.get("group") == "driftline.alert_sinks" else real(**kw))
    assert "pager-test" in known_sinks()
    build_sink(AlertRouteConfig(sink="pager-test")).send(message())
    assert PagerSink.sent == ["msg_abc"]


def test_retry_after_accepts_seconds_and_dates():
    now = datetime(2026, 5, 4, 12, tzinfo=UTC)
    assert retry_after_seconds("30") == 30
    assert retry_after_seconds("Mon, 04 May 2026 12:01:00 GMT", now) == 60
    assert retry_after_seconds("99999999") == 3600  # bounded
    assert retry_after_seconds("soon") is None


def test_alerts_test_command_sends_to_the_named_route(receiver, tmp_path, monkeypatch):
    import yaml

    from monitor.cli import app

    secret = signing.generate_secret()
    monkeypatch.setenv("HOOK_SECRET", secret)
    raw = {"version": 1, "store": {"url": f"sqlite:///{tmp_path / 's.db'}"}, "models": [model_dict(alerts=[
        {"sink": "webhook", "name": "oncall", "url": receiver.url, "secret_env": "HOOK_SECRET",
         "allow_private": True}, {"sink": "log"}])]}
    path = tmp_path / "driftline.yaml"
    path.write_text(yaml.safe_dump(raw))
    runner = CliRunner()
    done = runner.invoke(app, ["alerts", "test", "oncall", "--config", str(path)])
    assert done.exit_code == 0, done.output
    assert "m/oncall: test alert sent" in done.output
    assert signing.verify(secret, receiver.requests[0]["headers"], receiver.requests[0]["body"])
    unknown = runner.invoke(app, ["alerts", "test", "nowhere", "--config", str(path)])
    assert unknown.exit_code == 2 and "routes: log, oncall" in unknown.output
    listed = runner.invoke(app, ["alerts", "list", "--config", str(path), "--format", "json"])
    assert listed.exit_code == 0 and json.loads(listed.output) == []
    assert make_test_message(routes_for(make_config(tmp_path, [raw["models"][0]]).models[0])[1]).kind == "test"


def test_validate_catches_missing_secrets_before_any_delivery(monkeypatch, tmp_path):
    monkeypatch.delenv("NOPE", raising=False)
    for route in (AlertRouteConfig(sink="webhook", url="http://127.0.0.1:9/", secret_env="NOPE"),
                  AlertRouteConfig(sink="webhook", url_env="NOPE", secret_env="NOPE"),
                  AlertRouteConfig(sink="slack", url_file=str(tmp_path / "missing")),
                  AlertRouteConfig(sink="email"),
                  AlertRouteConfig(sink="alertmanager")):
        with pytest.raises(ConfigError):
            build_sink(route).validate()
    monkeypatch.setenv("NOPE", "whsec_tooshort")
    with pytest.raises(ConfigError, match="shorter than 16 bytes|base64"):
        build_sink(AlertRouteConfig(sink="webhook", url="http://127.0.0.1:9/", secret_env="NOPE")).validate()
    build_sink(AlertRouteConfig(sink="log")).validate()
