"""The service's HTTP server: bearer token when exposed, /healthz, /metrics, reports confined."""

from __future__ import annotations

import http.client
import os

import pytest
from prometheus_client import CollectorRegistry, Gauge

from monitor.http import HttpServer, ServeError, authorized, is_loopback, load_token, resolve_report

TOKEN = "s3cr3t-token-value"


def get(port: int, path: str, token: str | None = None, method: str = "GET") -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)  # the raw path, unnormalised
        if token is not None:
            connection.putheader("Authorization", f"Bearer {token}")
        connection.endheaders()
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.fixture()
def reports(tmp_path):
    root = tmp_path / "reports"
    (root / "offer-ctr" / "data_drift").mkdir(parents=True)
    (root / "offer-ctr" / "data_drift" / "20240604T0000_20240605T0000.html").write_text("<html>day 2</html>")
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    os.symlink(tmp_path / "secret.txt", root / "link.html")
    return root


@pytest.fixture()
def server(reports):
    registry = CollectorRegistry(auto_describe=False)
    Gauge("driftline_probe", "a probe metric", registry=registry).set(7)
    started = []

    def start(exposed: bool, token: str | None):
        found = HttpServer("127.0.0.1", 0, registry, reports, token, exposed=exposed)
        found.start()
        started.append(found)
        return found.port

    yield start
    for found in started:
        found.stop()


def test_auth_decision():
    assert authorized(None, None)  # nothing configured (loopback only)
    assert authorized("anything", None)
    assert authorized(f"Bearer {TOKEN}", TOKEN)
    for header in (None, "", TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer ", f"bearer {TOKEN}"):
        assert not authorized(header, TOKEN), header


def test_loopback_detection():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "192.168.1.2", "driftline.internal"))


def test_binding_beyond_loopback_without_a_token_refuses_to_start():
    with pytest.raises(ServeError, match="needs a bearer token"):
        HttpServer("0.0.0.0", 0, CollectorRegistry(), None, token=None)


def test_exposed_server_answers_401_without_the_token(server):
    port = server(exposed=True, token=TOKEN)
    status, headers, _ = get(port, "/metrics")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert get(port, "/metrics", token="wrong")[0] == 401
    assert get(port, "/reports/", token=None)[0] == 401
    status, _, body = get(port, "/metrics", token=TOKEN)
    assert status == 200 and b"driftline_probe 7.0" in body
    assert get(port, "/healthz")[0] == 200  # probes need no token


def test_loopback_without_a_token_serves_metrics_and_health(server):
    port = server(exposed=False, token=None)
    status, headers, body = get(port, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert get(port, "/healthz")[2] == b'{"status": "ok"}'
    assert get(port, "/nope")[0] == 404
    assert get(port, "/metrics", method="HEAD")[2] == b""


def test_reports_are_served_and_confined(server, reports):
    port = server(exposed=False, token=None)
    status, headers, body = get(port, "/reports/offer-ctr/data_drift/20240604T0000_20240605T0000.html")
    assert status == 200 and body == b"<html>day 2</html>" and headers["Content-Type"].startswith("text/html")
    index = get(port, "/reports/offer-ctr/data_drift/")[2].decode()
    assert "20240604T0000_20240605T0000.html" in index
    for attempt in ("/reports/../secret.txt", "/reports/%2e%2e/secret.txt", "/reports/..%2fsecret.txt",
                    "/reports/offer-ctr/../../secret.txt", "/reports/%2E%2E%2Fsecret.txt", "/reports/link.html",
                    "/reports//etc/passwd", "/reports/..\\secret.txt", "/reports/%00", "/reports/missing.html"):
        status, _, body = get(port, attempt)
        assert status == 404, attempt
        assert b"SECRET" not in body


def test_resolve_report_unit(reports, tmp_path):
    assert resolve_report(reports, "/offer-ctr") == (reports / "offer-ctr").resolve()
    assert resolve_report(reports, "/../secret.txt") is None
    assert resolve_report(reports, "/link.html") is None  # a symlink out of the folder
    assert resolve_report(reports, "/" + str(tmp_path / "secret.txt")) is None


def test_token_comes_from_a_file_or_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("DRIFTLINE_TOKEN", raising=False)
    assert load_token(None) is None
    monkeypatch.setenv("DRIFTLINE_TOKEN", "from-env")
    assert load_token(None) == "from-env"
    path = tmp_path / "token"
    path.write_text("from-file\n")
    assert load_token(path) == "from-file"
    path.write_text("")
    with pytest.raises(Exception, match="empty"):
        load_token(path)


def test_a_burst_of_scrapers_is_queued_not_dropped():
    """Twenty parallel scrapers (and probes) must find room in the listen queue: with a
    backlog of 5 the kernel dropped the rest's SYNs, which retried after 1 s, 3 s, 7 s."""
    import select
    import socket

    server = HttpServer("127.0.0.1", 0, CollectorRegistry())  # bound and listening, not accepting yet
    clients = []
    try:
        for _ in range(40):
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", server.port))
            clients.append(client)
        pending, connected = set(clients), set()
        for _ in range(20):  # handshakes the kernel completes for the queue; a dropped SYN never does
            _, writable, _ = select.select([], list(pending), [], 0.1)
            for client in writable:
                if client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    connected.add(client)
            pending -= set(writable)
            if not pending:
                break
        assert len(connected) == 40
    finally:
        for client in clients:
            client.close()
        server.stop()
