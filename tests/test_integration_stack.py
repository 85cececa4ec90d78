"""The whole stack for real: `driftline serve` on the demo world, Debian's Prometheus
scraping it with the committed rules, Debian's Alertmanager routing to a webhook receiver
in this test, and driftline's own signed webhook sink delivering to the same receiver.

Everything listens on 127.0.0.1 at free high ports with temporary storage; every wait is
a poll against a deadline. Asserts: Prometheus scrapes /metrics; every PromQL expression
of every committed dashboard panel returns at least one series; the drift alert rule
fires and Alertmanager delivers it; the webhook sink's Standard Webhooks signature
verifies (HMAC-SHA256 over `id.timestamp.body`, computed here independently).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from dashboards.generate import DASHBOARDS, concrete_query, panel_queries

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "dashboards" / "rules" / "driftline.rules.yml"
DEADLINE_S = 120  # an upper bound for a loaded 2-core machine; typically done in well under half
TOKEN = "integration-token-5b"
SECRET = "whsec_" + base64.b64encode(b"integration-secret-0123456789abcdef").decode()

PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None or ALERTMANAGER is None,
    reason="prometheus / prometheus-alertmanager missing (`make test` installs Debian's packages)")


def _serve_exists() -> bool:
    from typer.testing import CliRunner

    from monitor.cli import app

    return CliRunner().invoke(app, ["serve", "--help"]).exit_code == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, token: str | None = None, timeout: float = 2.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def poll(self, what: str, probe, interval: float = 0.25, diagnostics=lambda: ""):
        """Call `probe` until it returns something truthy; fail with `what` at the deadline."""
        last = None
        while True:
            try:
                last = probe()
            except Exception as exc:  # a probe that raises is retried, and reported at the end
                last = exc
            else:
                if last:
                    return last
            if time.monotonic() > self.end:
                pytest.fail(f"timed out waiting for {what} (last: {str(last)[:300]})\n{diagnostics()}")
            time.sleep(interval)


class Receiver(BaseHTTPRequestHandler):
    """A webhook receiver: records every POST (path, headers, raw body)."""

    received: list = []
    lock = threading.Lock()

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.lock:
            self.received.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                  "body": body})
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

    @classmethod
    def posts(cls, path: str) -> list[dict]:
        with cls.lock:
            return [r for r in cls.received if r["path"] == path]


def verify_standard_webhook(secret: str, headers: dict, body: bytes) -> bool:
    """Standard Webhooks, independently of monitor.alerts.signing."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = [part.split(",", 1)[1] for part in headers["webhook-signature"].split() if part.startswith("v1,")]
    fresh = abs(time.time() - int(headers["webhook-timestamp"])) < 300
    return fresh and any(hmac.compare_digest(expected, sig) for sig in offered)


# The checks whose results feed dashboard panels; the others (data_quality, concept_drift)
# only add status rows and cost time (Great Expectations).
PANEL_CHECKS = ("data_drift", "prediction_drift", "calibration", "performance", "attribution_drift",
                "train_serve_skew", "id_drift", "label_maturity")
WINDOWS = 4  # serving days 0-3: the last one holds the planted train/serve skew, so drift ends in alert


def _config(world, workdir: Path, receiver_port: int) -> dict:
    from monitor.config import parse_config
    from monitor.demo.run import demo_config, write_scored_reference

    write_scored_reference(world)
    raw = demo_config(world, world.root.parent)
    model = raw["models"][0]
    _absolute_paths(model, world.root.parent)  # the config is written elsewhere than the demo's
    raw["store"] = {"url": f"sqlite:///{workdir / 'store.db'}", "reports_dir": str(workdir / "reports")}
    for name in ("data_drift", "attribution_drift"):  # HTML reports: slow, and not what this tests
        if name in model["checks"]:
            model["checks"][name]["report"] = False
    enabled = parse_config(raw, "demo", world.root.parent).models[0].checks.enabled()
    start = world.serving_start
    end = start + timedelta(days=WINDOWS)
    # The drift checks run every window; the label, attribution and skew checks are slow
    # (SHAP, replays), so they run the last two only.
    model["schedules"] = [
        {"check": name, "interval": "1d", "window": "1d", "end": end.isoformat(), "max_backfill_windows": WINDOWS,
         "start": (start if name in ("data_drift", "prediction_drift") else end - timedelta(days=2)).isoformat()}
        for name in PANEL_CHECKS if name in enabled]
    # data_drift's grid starts two days before the logs, beyond its backfill limit: those two
    # windows are recorded as skipped (driftline_job_skipped_total).
    assert model["schedules"][0]["check"] == "data_drift"
    model["schedules"][0].update(start=(start - timedelta(days=2)).isoformat(), max_backfill_windows=WINDOWS - 1)
    model["alerts"] = [
        {"sink": "log", "min_severity": "alert"},
        {"sink": "webhook", "name": "hook", "url": f"http://127.0.0.1:{receiver_port}/hook",
         "secret_env": "DRIFTLINE_IT_SECRET", "allow_private": True, "min_severity": "alert"},
    ]
    raw["models"].append(_ranker(workdir / "ranking"))
    return raw


def _ranker(root: Path) -> dict:
    """The ranking demo's model (slots, two versions, exploration) with its three checks scheduled over
    the rollout's days, so the Ranking dashboard's panels have series too."""
    from monitor.demo import ranking

    ranking.build_world(root, rows_per_day=12_000)
    rolled_out = ranking.START + timedelta(days=ranking.ROLLOUT_DAY)
    model = ranking.ranking_config(root, ranking.demo_checks(rolled_out))["models"][0]
    end = ranking.START + timedelta(days=ranking.DAYS)
    model["schedules"] = [{"check": name, "interval": "1d", "window": "1d", "start": rolled_out.isoformat(),
                           "end": end.isoformat(), "max_backfill_windows": ranking.DAYS}
                          for name in ("rollout", "exploration", "slot_calibration")]
    return model


def _absolute_paths(node, base: Path) -> None:
    """Resolve every relative `...path` value (sources, models, vocabularies) against `base`."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in list(items):
        if isinstance(value, str) and str(key).endswith("path") and "://" not in value and not os.path.isabs(value):
            node[key] = str((base / value).resolve())
        else:
            _absolute_paths(value, base)


def _prometheus_config(serve_port: int, am_port: int, token_file: Path) -> dict:
    config = yaml.safe_load((ROOT / "dashboards" / "prometheus" / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(RULES)]
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{am_port}"]
    scrape = config["scrape_configs"][0]
    assert scrape["job_name"] == "driftline"
    scrape["static_configs"][0]["targets"] = [f"127.0.0.1:{serve_port}"]
    scrape["authorization"]["credentials_file"] = str(token_file)
    return config


def _alertmanager_config(receiver_port: int) -> dict:
    config = yaml.safe_load((ROOT / "dashboards" / "alertmanager" / "alertmanager.yml").read_text())
    config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"http://127.0.0.1:{receiver_port}/alertmanager"
    return config


def _start(argv: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def _stop(process: subprocess.Popen) -> int | None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    return process.returncode


@pytest.fixture(scope="module")
def stack(small_world, tmp_path_factory):
    if not _serve_exists():
        pytest.skip("`driftline serve` is not available in this build yet")
    workdir = tmp_path_factory.mktemp("stack")
    Receiver.received = []
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    receiver_port = receiver.server_address[1]
    serve_port, prom_port, am_port = _free_port(), _free_port(), _free_port()

    config_path = workdir / "driftline.yaml"
    config_path.write_text(yaml.safe_dump(_config(small_world, workdir, receiver_port), sort_keys=False))
    token_file = workdir / "token"
    token_file.write_text(TOKEN + "\n")
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(_prometheus_config(serve_port, am_port, token_file)))
    (workdir / "alertmanager.yml").write_text(yaml.safe_dump(_alertmanager_config(receiver_port)))

    logs = {name: workdir / f"{name}.log" for name in ("prometheus", "alertmanager", "serve", "upgrade")}
    processes: dict[str, subprocess.Popen] = {}

    def diagnostics() -> str:
        return "\n".join(f"--- {name} log (tail) ---\n{path.read_text(errors='replace')[-3000:]}"
                         for name, path in logs.items() if path.exists())

    try:
        processes["alertmanager"] = _start([
            ALERTMANAGER, f"--config.file={workdir / 'alertmanager.yml'}", f"--storage.path={workdir / 'am'}",
            f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=",
        ], logs["alertmanager"])
        processes["prometheus"] = _start([
            PROMETHEUS, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ], logs["prometheus"])
        driftline = [str(Path(sys.executable).parent / "driftline")]
        env = {**os.environ, "DRIFTLINE_TOKEN": TOKEN, "DRIFTLINE_IT_SECRET": SECRET}
        env.pop("DRIFTLINE_STORE_URL", None)
        upgrade = subprocess.run([*driftline, "db", "upgrade", "--config", str(config_path)], env=env,
                                 capture_output=True, text=True, timeout=60)
        logs["upgrade"].write_text(upgrade.stdout + upgrade.stderr)
        assert upgrade.returncode == 0, upgrade.stderr
        processes["serve"] = _start([*driftline, "serve", "--config", str(config_path), "--host", "127.0.0.1",
                                     "--port", str(serve_port)], logs["serve"], env=env)
        yield {"prom": f"http://127.0.0.1:{prom_port}", "am": f"http://127.0.0.1:{am_port}",
               "serve": f"http://127.0.0.1:{serve_port}", "processes": processes, "diagnostics": diagnostics,
               "deadline": Deadline(DEADLINE_S)}
    finally:
        for process in processes.values():
            _stop(process)
        receiver.shutdown()
        receiver.server_close()


def _query(prom: str, expr: str) -> list:
    status, body = _get(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    if status != 200:
        raise AssertionError(f"HTTP {status}: {body[:300]!r}")
    return json.loads(body)["data"]["result"]


def _backfill_done(prom: str) -> bool:
    """Every scheduled check has a result and no window is pending or running."""
    return bool(_query(prom, "driftline_check_status")) and not _query(prom, "driftline_check_status == -2") \
        and not _query(prom, 'driftline_job_windows{state=~"pending|running"} > 0')


def test_prometheus_scrapes_driftline_with_the_token(stack):
    deadline, diagnostics = stack["deadline"], stack["diagnostics"]
    deadline.poll("driftline /healthz", lambda: _get(f"{stack['serve']}/healthz")[0] == 200, diagnostics=diagnostics)
    assert _get(f"{stack['serve']}/metrics")[0] == 401  # the token is enforced
    assert _get(f"{stack['serve']}/metrics", TOKEN)[0] == 200
    deadline.poll("Prometheus ready", lambda: _get(f"{stack['prom']}/-/ready")[0] == 200, diagnostics=diagnostics)
    up = deadline.poll('up{job="driftline"} == 1',
                       lambda: [s for s in _query(stack["prom"], 'up{job="driftline"}') if s["value"][1] == "1"],
                       diagnostics=diagnostics)
    assert len(up) == 1
    assert _query(stack["prom"], 'driftline_check_status{model="no-such-model"}') == []  # empty is seen as empty


def test_every_dashboard_query_returns_a_series(stack):
    deadline, diagnostics = stack["deadline"], stack["diagnostics"]
    deadline.poll("the backfill to finish", lambda: _backfill_done(stack["prom"]), diagnostics=diagnostics)
    empty = {}
    for name in DASHBOARDS:
        dashboard = json.loads((ROOT / "dashboards" / "json" / f"{name}.json").read_text())
        queries = [(title, concrete_query(expr, range_="1h", rate_interval="1m"))
                   for title, expr in panel_queries(dashboard)]
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":  # label_values(SELECTOR, LABEL): the selector must match
                selector = variable["query"].removeprefix("label_values(").rsplit(",", 1)[0]
                queries.append((f"variable {variable['name']}", concrete_query(selector)))
        for title, query in queries:
            try:
                deadline.poll(f"{name} / {title}", lambda q=query: _query(stack["prom"], q), interval=0.5)
            except pytest.fail.Exception:
                empty[f"{name} / {title}"] = query
                deadline = Deadline(2)  # the rest get a short look each, to report them all at once
    assert not empty, "panels with no series:\n" + "\n".join(f"{k}: {v}" for k, v in empty.items()) + diagnostics()


def test_drift_alert_rule_fires_and_alertmanager_delivers_it(stack):
    deadline, diagnostics = stack["deadline"], stack["diagnostics"]

    def delivered():
        for post in Receiver.posts("/alertmanager"):
            payload = json.loads(post["body"])
            for alert in payload.get("alerts", []):
                labels = alert["labels"]
                if labels.get("alertname") == "DriftlineDriftAlert" and alert["status"] == "firing":
                    return alert
        return None

    alert = deadline.poll("Alertmanager to deliver DriftlineDriftAlert", delivered, diagnostics=diagnostics)
    assert alert["labels"]["model"] == "offer-ctr"
    assert alert["labels"]["check"] in ("data_drift", "prediction_drift")
    assert alert["labels"]["severity"] == "critical"
    assert "is in alert" in alert["annotations"]["summary"]
    firing = _query(stack["prom"], 'ALERTS{alertname="DriftlineDriftAlert", alertstate="firing"}')
    assert firing


def test_webhook_sink_delivers_a_verifiable_signed_alert(stack):
    deadline, diagnostics = stack["deadline"], stack["diagnostics"]
    posts = deadline.poll("a signed webhook from driftline", lambda: Receiver.posts("/hook"), diagnostics=diagnostics)
    for post in posts:
        headers = post["headers"]
        assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= set(headers)
        assert headers["webhook-signature"].startswith("v1,")
        assert verify_standard_webhook(SECRET, headers, post["body"])
        # A body or an id changed in transit no longer verifies.
        assert not verify_standard_webhook(SECRET, headers, post["body"] + b" ")
        assert not verify_standard_webhook(SECRET, {**headers, "webhook-id": "msg_other"}, post["body"])
    payloads = [json.loads(p["body"]) for p in posts]
    drift = [p["data"] for p in payloads if p["data"]["check"] == "data_drift" and p["data"]["kind"] == "firing"]
    assert drift and drift[0]["model"] == "offer-ctr"
    assert {d["feature"] for d in drift} & {"device", "os"}  # the planted device-mix shift
    # The same message is never delivered twice.
    ids = [p["headers"]["webhook-id"] for p in posts]
    assert len(ids) == len(set(ids))


def test_serve_stops_cleanly_on_sigterm(stack):
    process = stack["processes"]["serve"]
    assert process.poll() is None, stack["diagnostics"]()
    assert _stop(process) == 0, stack["diagnostics"]()
