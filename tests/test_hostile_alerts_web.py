"""Hostile inputs on the alert and web paths, as a corpus: each entry is an input an
attacker (or a broken receiver) controls, and what driftline must do with it.

- SSRF: IPv6 spellings that embed an IPv4 address are judged by the address they embed;
- stored XSS: category values and column names from the logs cannot run script in any
  HTML page driftline serves;
- SMTP: no password goes over a clear-text connection unless the route opts in by name;
- receivers that drip their answer a byte at a time: each attempt ends at its deadline.
"""

from __future__ import annotations

import base64
import shutil
import socket

import pytest

from monitor.alerts import ssrf

# IPv6 forms that carry an IPv4 address (RFC 4291 compatible/mapped, RFC 2765 translated,
# RFC 6052/8215 NAT64, RFC 3056 6to4, RFC 4380 Teredo with its client address inverted).
PRIVATE_IPV6 = [
    "::127.0.0.1",  # IPv4-compatible (deprecated, still parsed)
    "::ffff:0:7f00:1",  # IPv4-translated 127.0.0.1
    "::ffff:127.0.0.1",  # IPv4-mapped
    "64:ff9b::a00:1",  # NAT64 well-known prefix, 10.0.0.1
    "64:ff9b:1::a00:1",  # NAT64 local-use prefix (/96 position), 10.0.0.1
    "64:ff9b:1:a00:0:100::",  # NAT64 local-use prefix (/48 position), 10.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
    "fec0::1",  # site-local (deprecated; Python 3.11 calls it global)
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


@pytest.mark.parametrize("address", PRIVATE_IPV6)
def test_ipv6_forms_of_private_addresses_are_refused(address, no_connections):
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
    from core.errors import ConfigError
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
    from monitor.alerts.sinks import build_sink
    from monitor.config import AlertRouteConfig
    from service_helpers import SmtpServer

    server = SmtpServer()
    try:
        monkeypatch.setenv("SMTP_PASSWORD", "s3cret")
        route = AlertRouteConfig(sink="email", allow_private=True,
                                 email=_email(port=server.port, allow_plaintext_auth=True))
        build_sink(route).send(_test_message())
        assert len(server.messages) == 1
        # What the opt-in means: the password crossed the wire readable by anyone on the path.
        (command, over_tls), = server.auth
        assert not over_tls and b"s3cret" in base64.b64decode(command.split()[-1])
    finally:
        server.close()


def test_a_tls_route_authenticates_only_after_starttls(tmp_path, monkeypatch):
    from monitor.alerts.sinks import build_sink
    from monitor.config import AlertRouteConfig
    from service_helpers import SmtpServer, self_signed_certificate

    server = SmtpServer(tls="starttls", cert=self_signed_certificate(tmp_path))
    try:
        monkeypatch.setenv("SMTP_PASSWORD", "s3cret")
        route = AlertRouteConfig(sink="email", allow_private=True,
                                 email=_email(port=server.port, security="starttls", ca_file="cert.pem"))
        build_sink(route, base_dir=tmp_path).send(_test_message())
        assert [over_tls for _, over_tls in server.auth] == [True]
    finally:
        server.close()


# --- Stored XSS: values from the logs in every HTML page ------------------------------------

MARK = "document.body.setAttribute('data-pwned','1')"
XSS = [
    f"</script><img src=x onerror={MARK}>",
    f"</SCRIPT ><svg onload={MARK}>",
    f"<!--<script>{MARK}</script>-->",  # the tokenizer's "double escaped" script state
    f"\"><img src=x onerror={MARK}>",  # out of an attribute
    "&lt;/script&gt;",  # already-escaped text stays that text
    "\u2028</script\u2029",
]


class _Audit:
    """What a page holds once parsed the way a browser tokenizes it (script content is raw text)."""

    def __init__(self, page: str) -> None:
        from html.parser import HTMLParser

        self.tags, self.handlers, self.text = [], [], []
        audit = self

        class Parser(HTMLParser):
            def handle_starttag(self, tag, attrs):
                audit.tags.append(tag)
                audit.handlers += [f"{tag} {name}" for name, _ in attrs if name.startswith("on")]

            def handle_data(self, data):
                audit.text.append(data)

        Parser(convert_charrefs=True).feed(page)

    def shows(self, value: str) -> bool:
        return value in "".join(self.text)


@pytest.fixture(scope="module")
def drift_reports(tmp_path_factory):
    """A drift report whose column names and category values are the XSS corpus, the same
    report as it was written before the fix, and a clean one."""
    pytest.importorskip("evidently")
    import numpy as np
    import pandas as pd

    from checks import drift_report as reports

    folder = tmp_path_factory.mktemp("reports")
    rng = np.random.default_rng(0)

    def frame(shift):
        data = {"x": rng.normal(shift, 1, 300), "device": rng.choice(["ios", "web"] + XSS, 300)}
        data.update({name: rng.choice(["a", "b"], 300) for name in XSS[:2]})
        return pd.DataFrame(data)

    reference, current = frame(0), frame(1)
    categorical = ["device"] + XSS[:2]
    reports.render_drift_report(reference, current, folder / "hostile.html", ["x"], categorical, title=XSS[0])
    unsafe = reports.script_safe_data
    reports.script_safe_data = lambda page: page  # what was written before the fix
    try:
        reports.render_drift_report(reference, current, folder / "unescaped.html", ["x"], categorical)
    finally:
        reports.script_safe_data = unsafe
    clean = reference.assign(device=rng.choice(["ios", "web"], 300))[["x", "device"]]
    reports.render_drift_report(clean, clean, folder / "clean.html", ["x"], ["device"], title="clean")
    return folder


def test_the_drift_report_keeps_hostile_names_and_values_as_data(drift_reports):
    import json
    import re

    page = (drift_reports / "hostile.html").read_text()
    clean = (drift_reports / "clean.html").read_text()
    audit, clean_audit = _Audit(page), _Audit(clean)
    # The same elements as a clean report: nothing from the data became a tag or a handler.
    assert audit.handlers == [] and sorted(set(audit.tags)) == sorted(set(clean_audit.tags))
    assert audit.tags.count("script") == clean_audit.tags.count("script")
    assert page.lower().count("</script") == clean.lower().count("</script")
    # ...and nothing is lost: the data block still holds every value exactly (the report
    # shows the category `</script><img ...>` as that text).
    block = re.search(r"var (metric_\w+) = ([^\n]*);\n", page)
    assert "<" not in block.group(2)
    shown = json.dumps(json.loads(block.group(2)))
    for value in XSS:
        assert json.dumps(value)[1:-1] in shown
    assert audit.shows(XSS[0])  # the title, as text


def test_the_unescaped_page_was_broken_open(drift_reports):
    """The planted fault: without the escaping the first value ends the data script."""
    audit = _Audit((drift_reports / "unescaped.html").read_text())
    assert "img onerror" in audit.handlers


def test_script_escaping_is_lossless_json():
    import json

    from hypothesis import given
    from hypothesis import strategies as st

    from checks.drift_report import json_for_script

    @given(st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(),
                        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=20))
    def law(value):
        text = json_for_script(json.dumps(value))
        assert not set("<>&") & set(text) and json.loads(text) == value

    law()
    for value in XSS:
        assert json.loads(json_for_script(json.dumps(value))) == value


def test_a_page_layout_that_cannot_be_made_safe_is_not_written():
    from checks.drift_report import UnsafeReportError, script_safe_data

    with pytest.raises(UnsafeReportError, match="data blocks"):
        script_safe_data("<html><script>var data = {\"x\": \"</script>\"};</script></html>")


def test_the_explain_report_escapes_feature_names_and_reasons(tmp_path):
    from core.results import CheckResult, FeatureDrift
    from explain.report import render_explain_report

    name = XSS[0]
    importance = [{"feature": name, "method": "mean_abs_shap", "importance": 0.5, "std": 0.1},
                  {"feature": "x", "method": "mean_abs_shap", "importance": 0.2, "std": 0.0}]
    result = CheckResult(check="attribution_drift", status="alert", model="m", window_start="2026-01-01",
                         window_end="2026-01-02", features=(FeatureDrift(name, "numeric", "wasserstein", 0.4, 0.1,
                                                                         "alert", 10, 10, reasons=(XSS[3],)),),
                         details={"importance": importance, "reference_importance": importance,
                                  "rankings": {"mean_abs_shap": {"spearman": 0.1, "ndcg": 0.2, "k": 2, "flagged": True,
                                                                 "reference_top": [name], "current_top": [XSS[1]]}},
                                  "additivity_error": 1e-9, "explainer": XSS[2], "base_value": 0.1})
    page = render_explain_report(tmp_path / "e.html", XSS[1], result, None, []).read_text()
    audit = _Audit(page)
    assert audit.handlers == [] and "script" not in audit.tags and "svg" not in audit.tags
    assert all(audit.shows(value) for value in XSS[:4])


def test_the_evaluation_report_escapes_segment_values_and_reasons():
    from retrain.report import render_html

    metrics = {"auc": 0.7, "log_loss": 0.3, "normalized_entropy": 0.9, "calibration_ratio": 1.0, "rows": 10,
               "positives": 2}
    segment = {"rows": 5, "auc": 0.6, "calibration_ratio": 1.1}
    report = {"model": XSS[0], "version": XSS[1], "trainer": XSS[3], "production_version": XSS[2],
              "window": {"start": XSS[0], "end": "b", "train_rows": XSS[1], "holdout_rows": XSS[3],
                         "holdout_start": "c"},
              "candidate": {"overall": metrics, "segments": {XSS[1]: {XSS[0]: segment}}},
              "production": {"overall": metrics, "segments": {}},
              "gates": {"passed": False, "reasons": [XSS[3]],
                        "checks": [{"scope": XSS[0], "metric": "auc", "candidate": 0.6, "production": 0.7,
                                    "limit": 0.01, "passed": False}]},
              "infra": {"passed": False, "message": XSS[2]}}
    audit = _Audit(render_html(report, {"roc": {XSS[0]: [(0.0, 0.0), (1.0, 1.0)]}}))
    assert audit.handlers == [] and "script" not in audit.tags and "img" not in audit.tags
    assert all(audit.shows(value) for value in XSS[:4])


def test_the_reports_index_escapes_file_names(tmp_path):
    from monitor.http import _index

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "\"><img src=x onerror=alert(1)>.html").write_text("x")
    audit = _Audit(_index(tmp_path, tmp_path / "m"))
    assert audit.handlers == [] and "img" not in audit.tags and audit.shows("\"><img src=x onerror=alert(1)>.html")


@pytest.fixture()
def served(drift_reports):
    from monitor.http import HttpServer

    server = HttpServer("127.0.0.1", 0, registry=None, reports_dir=drift_reports)
    server.start()
    yield server
    server.stop()


def _get(port: int, path: str):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_reports_are_served_with_a_policy_that_runs_only_their_own_scripts(served, drift_reports):
    import base64
    import hashlib
    import re

    status, headers, body = _get(served.port, "/reports/hostile.html")
    assert status == 200 and headers["x-content-type-options"] == "nosniff"
    policy = dict(part.strip().split(" ", 1) for part in headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'none'" and policy["base-uri"] == "'none'"
    assert policy["frame-ancestors"] == "'none'" and policy["img-src"] == "data:"
    # The page's inline scripts, each by hash; no 'unsafe-inline', so no event handler runs.
    scripts = re.findall(rb"<script>(.*?)</script>", body, re.S)
    assert len(scripts) == 4
    expected = {f"'sha256-{base64.b64encode(hashlib.sha256(s).digest()).decode()}'" for s in scripts}
    assert set(policy["script-src"].split()) == expected
    # Pages without scripts (the index, the explain report) and other files run none.
    for path in ("/reports/", "/reports/missing"):
        assert "script-src 'none'" in _get(served.port, path)[1]["content-security-policy"]


def _chromium_dom(url: str) -> str:
    import subprocess

    completed = subprocess.run(["chromium", "--headless=new", "--no-sandbox", "--disable-gpu",
                                "--virtual-time-budget=15000", "--dump-dom", url],
                               capture_output=True, text=True, timeout=180)
    return completed.stdout


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium missing (`make test` installs Debian's)")
def test_in_a_browser_the_report_renders_and_the_payload_never_runs(served):
    """Measured in Chromium: the escaped report draws its plots under the policy; the page as
    written before the fix is broken open by the payload, and the policy stops the handler."""
    import re

    pwned = re.compile(r"<body[^>]*data-pwned")
    dom = _chromium_dom(f"http://127.0.0.1:{served.port}/reports/hostile.html")
    assert dom.count("<svg") >= 10 and not pwned.search(dom)  # Evidently drew its plots
    old = _chromium_dom(f"http://127.0.0.1:{served.port}/reports/unescaped.html")
    assert "<img src=\"x\"" in old and not pwned.search(old)


# --- Receivers that answer one byte at a time ----------------------------------------------

class _Drip:
    """A TCP server on 127.0.0.1 that, once a client speaks (or at once), writes `script` one
    byte every `pause` seconds; `forever` repeats it. Each byte resets a per-read timeout."""

    def __init__(self, script: bytes, pause: float = 0.2, forever: bool = False, wait_for_request: bool = True):
        import threading

        self.listener = socket.create_server(("127.0.0.1", 0))
        self.stop = threading.Event()

        def serve():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with connection:
                if wait_for_request:
                    connection.recv(65536)
                try:
                    while not self.stop.is_set():
                        for byte in script:
                            connection.sendall(bytes([byte]))
                            if self.stop.wait(pause):
                                return
                        if not forever:
                            self.stop.wait()
                except OSError:  # the client hung up: what a deadline does
                    return

        threading.Thread(target=serve, daemon=True).start()

    @property
    def port(self) -> int:
        return self.listener.getsockname()[1]

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


def _bounded(call, limit: float = 60.0):
    """Run call() in a thread; what it raised, or a failure when it is still running after
    `limit` seconds (an attempt without an overall deadline)."""
    import threading

    outcome = {}

    def run():
        try:
            call()
            outcome["returned"] = True
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcome["raised"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"the attempt was still running after {limit:g}s"
    return outcome.get("raised")


def _test_message():
    from monitor.alerts.sinks import AlertMessage

    return AlertMessage(id="msg_d", kind="test", dedup_key="k", route="m/r", model="m", check="c", feature="",
                        severity="warn", status="test", summary="s")


@pytest.mark.parametrize("sink", ["webhook", "slack", "alertmanager"])
def test_a_receiver_that_drips_its_answer_fails_the_attempt_at_the_deadline(sink, monkeypatch):
    """A complete, valid 200 that takes ~10 s to arrive: 'sent' before, a retryable failure now."""
    from monitor.alerts import sinks
    from monitor.alerts.sinks import DeliveryError, build_sink
    from monitor.config import AlertRouteConfig

    monkeypatch.setattr(sinks, "ATTEMPT_DEADLINE", 1.0)
    monkeypatch.setenv("S", "whsec_" + "A" * 44)
    drip = _Drip(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    try:
        route = AlertRouteConfig(sink=sink, url=f"http://127.0.0.1:{drip.port}/hook", secret_env="S",
                                 allow_private=True)
        raised = _bounded(lambda: build_sink(route).send(_test_message()))
        assert isinstance(raised, DeliveryError) and not raised.permanent
        assert "deadline" in str(raised) and "1s" in str(raised)
    finally:
        drip.close()


def test_an_smtp_server_that_drips_forever_fails_the_attempt_at_the_deadline(monkeypatch):
    from monitor.alerts import sinks
    from monitor.alerts.sinks import DeliveryError, build_sink
    from monitor.config import AlertRouteConfig

    monkeypatch.setattr(sinks, "ATTEMPT_DEADLINE", 1.0)
    drip = _Drip(b"220-still greeting\r\n", forever=True, wait_for_request=False)
    try:
        route = AlertRouteConfig(sink="email", allow_private=True, email=_email(port=drip.port, username=None, password_env=None))
        raised = _bounded(lambda: build_sink(route).send(_test_message()))
        assert isinstance(raised, DeliveryError) and not raised.permanent and "deadline" in str(raised)
    finally:
        drip.close()
