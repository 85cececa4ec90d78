"""SSRF guard: refused targets are refused before any connection; no traffic leaves 127.0.0.1."""

from __future__ import annotations

import socket

import pytest

from monitor.alerts import ssrf
from monitor.alerts.sinks import DeliveryError, build_sink
from monitor.config import AlertRouteConfig
from service_helpers import Receiver

FAKE_DNS = {
    "internal.example": ["10.0.0.5"],
    "mixed.example": ["93.184.216.34", "10.0.0.1"],  # one public, one private record
    "public.example": ["93.184.216.34"],
    "metadata.example": ["169.254.169.254"],
}


@pytest.fixture(autouse=True)
def only_loopback(monkeypatch):
    """Names resolve from FAKE_DNS (no DNS traffic); any connection off 127.0.0.1 fails the test."""
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    attempts = []

    def getaddrinfo(host, port, *args, **kwargs):
        if host in FAKE_DNS:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in FAKE_DNS[host]]
        if isinstance(host, str) and host.replace(".", "").replace(":", "").isalpha() and host != "localhost":
            raise AssertionError(f"a test tried to resolve {host} through DNS")
        return real_getaddrinfo(host, port, *args, **kwargs)

    def connect(sock, address):
        attempts.append(address)
        if address[0] not in ("127.0.0.1", "::1"):
            raise AssertionError(f"connection attempted to {address}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    yield attempts


REFUSED = [
    "http://127.0.0.1:9/hook",
    "http://localhost:9/hook",
    "http://[::1]:9/",
    "http://[::ffff:127.0.0.1]/",
    "http://2130706433/",  # 127.0.0.1 as one number
    "http://0x7f.1/",
    "http://10.1.2.3/hook",
    "http://192.168.1.10/",
    "http://172.16.0.1/",
    "http://100.64.0.1/",  # carrier-grade NAT
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/",
    "http://0.0.0.0/",
    "http://internal.example/hook",
    "http://mixed.example/hook",
    "http://metadata.example/",
]


@pytest.mark.parametrize("url", REFUSED)
def test_private_targets_are_refused_before_any_connection(url, only_loopback):
    with pytest.raises(ssrf.SSRFError):
        ssrf.check_url(url)
    with pytest.raises(ssrf.SSRFError):
        ssrf.request("POST", url, b"{}")
    assert only_loopback == []


@pytest.mark.parametrize("url", ["ftp://public.example/", "file:///etc/passwd", "http://user:pw@public.example/",
                                 "gopher://127.0.0.1/"])
def test_only_plain_http_urls(url):
    with pytest.raises(ssrf.SSRFError):
        ssrf.check_url(url, allow_private=True)


def test_allow_private_lets_loopback_and_private_through_but_never_metadata():
    assert ssrf.check_url("http://127.0.0.1:8080/x", allow_private=True).addresses == ("127.0.0.1",)
    assert ssrf.check_url("http://internal.example/x", allow_private=True).addresses == ("10.0.0.5",)
    for url in ("http://169.254.169.254/", "http://[fd00:ec2::254]/", "http://metadata.example/"):
        with pytest.raises(ssrf.SSRFError, match="metadata"):
            ssrf.check_url(url, allow_private=True)
    target = ssrf.check_url("https://public.example/services/T/B/secret?x=1")
    assert target.addresses == ("93.184.216.34",) and target.port == 443
    assert "secret" not in target.safe_url


def _message():
    from monitor.alerts.sinks import AlertMessage

    return AlertMessage(id="msg_1", kind="firing", dedup_key="k", route="m/r", model="m", check="c", feature="f",
                        severity="alert", status="alert", summary="s")


@pytest.mark.parametrize("sink", ["webhook", "slack", "alertmanager"])
def test_a_sink_to_a_private_address_fails_permanently_without_traffic(sink, only_loopback, monkeypatch):
    monkeypatch.setenv("S", "whsec_" + "A" * 44)
    route = AlertRouteConfig(sink=sink, url="http://10.0.0.1/hook", secret_env="S")
    with pytest.raises(DeliveryError) as caught:
        build_sink(route).send(_message())
    assert caught.value.permanent and "private" in str(caught.value)
    assert only_loopback == []


def test_redirects_are_not_followed(monkeypatch):
    target = Receiver()
    bouncer = Receiver(replies=[(302, {"Location": target.url + "/elsewhere"})])
    try:
        monkeypatch.setenv("S", "whsec_" + "A" * 44)
        sink = build_sink(AlertRouteConfig(sink="webhook", url=bouncer.url, secret_env="S", allow_private=True))
        with pytest.raises(DeliveryError, match="redirects are not followed") as caught:
            sink.send(_message())
        assert caught.value.permanent
        assert len(bouncer.requests) == 1 and target.requests == []
    finally:
        target.close()
        bouncer.close()
