"""Hostile inputs on the alert and web paths, as a corpus: each entry is an input an
attacker (or a broken receiver) controls, and what driftline must do with it.

- SSRF: IPv6 spellings that embed an IPv4 address are judged by the address they embed;
- stored XSS: category values and column names from the logs cannot run script in any
  HTML page driftline serves;
- SMTP: no password goes over a clear-text connection unless the route opts in by name.
"""

from __future__ import annotations

import base64
import socket

import pytest

from monitor.alerts import ssrf

# IPv6 forms that carry an IPv4 address (RFC 4291 compatible/mapped, RFC 2765 translated,
# RFC 6052/8215 NAT64, RFC 3056 6to4, RFC 4380 Teredo with its client address inverted).
EMBEDDED_PRIVATE = [
    "::127.0.0.1",  # IPv4-compatible (deprecated, still parsed)
    "::ffff:0:7f00:1",  # IPv4-translated 127.0.0.1
    "::ffff:127.0.0.1",  # IPv4-mapped
    "64:ff9b::a00:1",  # NAT64 well-known prefix, 10.0.0.1
    "64:ff9b:1::a00:1",  # NAT64 local-use prefix (/96 position), 10.0.0.1
    "64:ff9b:1:a00:0:100::",  # NAT64 local-use prefix (/48 position), 10.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
]
EMBEDDED_METADATA = [
    "::169.254.169.254",
    "::ffff:0:a9fe:a9fe",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b:1::a9fe:a9fe",
    "64:ff9b:1:a9fe:a9:fe00::",  # /56 position
    "2002:a9fe:a9fe::",
    "2001:0:4136:e378:8000:63bf:5601:5601",  # Teredo, client 169.254.169.254
]
EMBEDDED_PUBLIC = [
    "64:ff9b::5db8:d822",  # NAT64 of 93.184.216.34: a real route to a public host
    "2002:5db8:d822::1",  # 6to4 of 93.184.216.34
    "2001:4860:4860::8888",  # plain global unicast
]


@pytest.fixture()
def no_connections(monkeypatch):
    attempts = []

    def connect(sock, address):
        attempts.append(address)
        raise AssertionError(f"connection attempted to {address}")

    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


@pytest.mark.parametrize("address", EMBEDDED_PRIVATE)
def test_ipv6_that_embeds_a_private_ipv4_is_refused(address, no_connections):
    with pytest.raises(ssrf.SSRFError, match="private"):
        ssrf.check_url(f"http://[{address}]:9/hook")
    with pytest.raises(ssrf.SSRFError):
        ssrf.request("POST", f"http://[{address}]:9/hook", b"{}")
    assert no_connections == []


@pytest.mark.parametrize("address", EMBEDDED_METADATA)
def test_ipv6_that_embeds_a_metadata_address_is_refused_even_with_allow_private(address, no_connections):
    with pytest.raises(ssrf.SSRFError, match="metadata"):
        ssrf.check_url(f"http://[{address}]/latest/meta-data/", allow_private=True)
    assert no_connections == []


@pytest.mark.parametrize("address", EMBEDDED_PUBLIC)
def test_ipv6_forms_of_public_addresses_still_pass(address):
    assert ssrf.refusal(address, allow_private=False) is None


def test_embedded_addresses_are_decoded_exactly():
    import ipaddress

    decoded = {str(a) for a in ssrf.embedded_ipv4(ipaddress.ip_address("2001:0:4136:e378:8000:63bf:80ff:fffe"))}
    assert decoded == {"65.54.227.120", "127.0.0.1"}  # Teredo server, then the inverted client
    assert [str(a) for a in ssrf.embedded_ipv4(ipaddress.ip_address("::ffff:0:7f00:1"))] == ["127.0.0.1"]
    assert ssrf.embedded_ipv4(ipaddress.ip_address("2001:4860:4860::8888")) == []


# --- SMTP credentials over a clear-text connection -------------------------------------------

def _email(**overrides) -> dict:
    return {"host": "127.0.0.1", "port": 2525, "security": "none", "sender": "driftline@example.org",
            "to": ["oncall@example.org"], "username": "driftline", "password_env": "SMTP_PASSWORD", **overrides}


def test_a_password_without_tls_is_a_config_error_that_names_the_opt_in_key(tmp_path):
    from monitor.errors import ConfigError
    from service_helpers import make_config, model_dict

    with pytest.raises(ConfigError, match=r"email.*security: none.*email\.allow_plaintext_auth: true") as caught:
        make_config(tmp_path, [model_dict(alerts=[{"sink": "email", "allow_private": True, "email": _email()}])])
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("email", [
    _email(security="starttls"), _email(security="ssl", port=465), _email(username=None),
    _email(password_env=None), _email(allow_plaintext_auth=True)], ids=["starttls", "ssl", "no-username",
                                                                        "no-password", "explicit-opt-in"])
def test_routes_that_send_no_clear_text_password_or_opt_in_are_accepted(email):
    from monitor.config import AlertRouteConfig

    assert AlertRouteConfig(sink="email", email=email).email.security == email["security"]


def test_an_opted_in_route_authenticates_over_the_clear_text_connection(monkeypatch):
    from monitor.alerts.sinks import AlertMessage, build_sink
    from monitor.config import AlertRouteConfig
    from service_helpers import SmtpServer

    server = SmtpServer()
    try:
        monkeypatch.setenv("SMTP_PASSWORD", "s3cret")
        route = AlertRouteConfig(sink="email", allow_private=True,
                                 email=_email(port=server.port, allow_plaintext_auth=True))
        build_sink(route).send(AlertMessage(id="msg_p", kind="test", dedup_key="k", route="m/r", model="m",
                                            check="c", feature="", severity="warn", status="test", summary="s"))
        assert len(server.messages) == 1
        # What the opt-in means: the password crossed the wire readable by anyone on the path.
        (command, over_tls), = server.auth
        assert not over_tls and b"s3cret" in base64.b64decode(command.split()[-1])
    finally:
        server.close()


def test_a_tls_route_authenticates_only_after_starttls(tmp_path, monkeypatch):
    from monitor.alerts.sinks import AlertMessage, build_sink
    from monitor.config import AlertRouteConfig
    from service_helpers import SmtpServer, self_signed_certificate

    server = SmtpServer(tls="starttls", cert=self_signed_certificate(tmp_path))
    try:
        monkeypatch.setenv("SMTP_PASSWORD", "s3cret")
        route = AlertRouteConfig(sink="email", allow_private=True,
                                 email=_email(port=server.port, security="starttls", ca_file="cert.pem"))
        build_sink(route, base_dir=tmp_path).send(AlertMessage(
            id="msg_t", kind="test", dedup_key="k", route="m/r", model="m", check="c", feature="", severity="warn",
            status="test", summary="s"))
        assert [over_tls for _, over_tls in server.auth] == [True]
    finally:
        server.close()
