"""Grafana dashboards: generated from code, committed as JSON, valid PromQL, pushed over HTTP."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dashboards.generate import DASHBOARDS, build_all, concrete_query, panel_queries, render
from monitor.cli import app

ROOT = Path(__file__).resolve().parents[1]
JSON_DIR = ROOT / "dashboards" / "json"
# The metrics of issue 5; histograms add their _bucket/_sum/_count series.
ISSUE_METRICS = {
    "driftline_feature_drift_score", "driftline_check_status", "driftline_calibration_ratio", "driftline_ece",
    "driftline_auc", "driftline_normalized_entropy", "driftline_skew_mismatch_ratio",
    "driftline_prediction_skew_ratio", "driftline_feature_importance", "driftline_job_duration_seconds_bucket",
    "driftline_job_duration_seconds_sum", "driftline_job_duration_seconds_count",
    "driftline_job_last_success_timestamp_seconds", "driftline_job_failures_total", "driftline_alerts_sent_total",
}


def exported_metrics() -> set[str]:
    """Series names monitor/exporter.py can expose, read from its source."""
    from monitor import exporter

    source = Path(exporter.__file__).read_text()
    names = set(re.findall(r'GaugeMetricFamily\(\s*"(driftline_[a-z_]+)"', source))
    names |= {n + "_total" for n in re.findall(r'CounterMetricFamily\(\s*"(driftline_[a-z_]+)"', source)}
    for name in re.findall(r'HistogramMetricFamily\(\s*"(driftline_[a-z_]+)"', source):
        names |= {name + "_bucket", name + "_sum", name + "_count"}
    names |= set(re.findall(r'out\.add\(\s*"(driftline_[a-z_]+)"', source))
    from monitor.catalog import load_checks

    # Beyond the exporter's own families: the metric points registered checks declare.
    names |= {f"driftline_{metric}" for spec in load_checks().specs.values() for metric in spec.exports}
    return names


def _metric_names(expr: str) -> set[str]:
    without_labels = re.sub(r"\{[^}]*\}", "", expr)
    without_strings = re.sub(r'"[^"]*"', "", without_labels)
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_strings))
    return {n for n in names if n.startswith("driftline_")}


@pytest.fixture(scope="module")
def generated():
    return build_all()


def test_committed_json_equals_generated(generated):
    committed = {p.stem for p in JSON_DIR.glob("*.json")}
    assert committed == set(DASHBOARDS), "dashboards/json/ is out of date: run `driftline dashboards export dashboards/json`"
    for name, dashboard in generated.items():
        assert (JSON_DIR / f"{name}.json").read_text() == render(dashboard), (
            f"dashboards/json/{name}.json differs from the code: run `driftline dashboards export dashboards/json`")


def test_generation_is_deterministic(generated):
    assert build_all() == generated


def test_eight_dashboards_each_with_queries_on_the_prometheus_variable(generated):
    uids = [d["uid"] for d in generated.values()]
    assert len(set(uids)) == len(uids) == 8
    for name, dashboard in generated.items():
        assert dashboard["schemaVersion"] >= 39, name  # Grafana 11 schema
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["query"] == "prometheus"
        assert variables["model"]["allValue"] == ".*"
        queries = panel_queries(dashboard)
        assert queries, name
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(set(ids)) == len(ids)
        for panel in dashboard["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, (name, panel["title"])
                assert panel["gridPos"]["w"] > 0 and panel["gridPos"]["h"] > 0


def test_dashboards_query_only_exported_metrics(generated):
    exported = exported_metrics()
    assert ISSUE_METRICS <= exported, f"the exporter lacks {sorted(ISSUE_METRICS - exported)}"
    used = set()
    for dashboard in generated.values():
        for title, expr in panel_queries(dashboard):
            names = _metric_names(expr)
            assert names <= exported, (title, sorted(names - exported))
            used |= names
    # Every metric of the issue is on some dashboard.
    assert ISSUE_METRICS - used == set()
    # The README's "Metrics" table documents every metric a dashboard uses.
    readme = (ROOT / "README.md").read_text().split("## Metrics", 1)[1].split("\n## ", 1)[0]
    bases = {re.sub(r"_(bucket|sum|count)$", "", n) if n.startswith("driftline_job_duration") else n for n in used}
    assert sorted(n for n in bases if f"`{n}`" not in readme) == []


def test_no_query_is_non_empty_by_construction(generated):
    """`or vector(0)` / `absent()` would make the integration test's "returns a series" vacuous."""
    for dashboard in generated.values():
        for title, expr in panel_queries(dashboard):
            assert "vector(" not in expr and "absent(" not in expr, title


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing (`make test` installs prometheus)")
def test_every_panel_query_is_valid_promql(generated, tmp_path):
    """Each query, variables substituted as Grafana does, compiled by promtool as a recording rule."""
    rules = []
    for name, dashboard in generated.items():
        for number, (_title, expr) in enumerate(panel_queries(dashboard)):
            rules.append({"record": f"check:{name.replace('-', '_')}:{number}", "expr": concrete_query(expr)})
    path = tmp_path / "panels.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    completed = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    # A broken query is caught (the check above can fail).
    path.write_text(yaml.safe_dump({"groups": [{"name": "bad", "rules": [
        {"record": "x:y", "expr": concrete_query('max by (model (driftline_ece{model=~"$model"})')}]}]}))
    assert subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True).returncode != 0


def test_export_command_writes_the_committed_files(tmp_path):
    result = CliRunner().invoke(app, ["dashboards", "export", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    for name in DASHBOARDS:
        assert (tmp_path / "out" / f"{name}.json").read_text() == (JSON_DIR / f"{name}.json").read_text()


def test_provisioning_points_at_the_committed_dashboards():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    provider = yaml.safe_load((ROOT / "dashboards/provisioning/dashboards/driftline.yaml").read_text())
    datasources = yaml.safe_load((ROOT / "dashboards/provisioning/datasources/driftline.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./dashboards/json:{path}:ro" in mounts
    assert "./dashboards/provisioning:/etc/grafana/provisioning:ro" in mounts
    prometheus = [d for d in datasources["datasources"] if d["type"] == "prometheus"]
    assert len(prometheus) == 1 and prometheus[0]["isDefault"] is True
    assert prometheus[0]["url"] == "http://prometheus:9090"


class _FakeGrafana(BaseHTTPRequestHandler):
    """Records requests; answers like Grafana's folder and dashboard APIs."""

    requests: list = []
    folders: set = set()
    status_for_dashboards = 200

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.requests.append({"method": self.command, "path": self.path,
                              "auth": self.headers.get("Authorization"), "body": body})
        return body

    def do_GET(self):  # noqa: N802
        self._record()
        uid = self.path.rsplit("/", 1)[-1]
        if self.path.startswith("/api/folders/") and uid in self.folders:
            self._reply(200, {"uid": uid, "title": uid})
        else:
            self._reply(404, {"message": "folder not found"})

    def do_POST(self):  # noqa: N802
        body = self._record()
        if self.headers.get("Authorization") != "Bearer s3cret-token":
            self._reply(401, {"message": "invalid API key"})
        elif self.path == "/api/folders":
            self.folders.add(body["uid"])
            self._reply(200, {"uid": body["uid"], "title": body["title"]})
        elif self.path == "/api/dashboards/db":
            self._reply(self.status_for_dashboards, {"status": "success", "uid": body["dashboard"]["uid"]}
                        if self.status_for_dashboards == 200 else {"message": "boom"})
        else:
            self._reply(404, {"message": "not found"})

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_grafana():
    _FakeGrafana.requests = []
    _FakeGrafana.folders = set()
    _FakeGrafana.status_for_dashboards = 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeGrafana)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _FakeGrafana
    server.shutdown()
    server.server_close()


def test_push_creates_folder_and_upserts_every_dashboard(fake_grafana, monkeypatch, generated):
    url, handler = fake_grafana
    monkeypatch.setenv("GRAFANA_TOKEN", "s3cret-token")
    result = CliRunner().invoke(app, ["dashboards", "push", "--url", url])
    assert result.exit_code == 0, result.output
    assert "s3cret-token" not in result.output
    posts = [r for r in handler.requests if r["method"] == "POST"]
    assert posts[0]["path"] == "/api/folders" and posts[0]["body"]["uid"] == "driftline"
    pushed = [r["body"] for r in posts if r["path"] == "/api/dashboards/db"]
    assert [b["dashboard"]["uid"] for b in pushed] == [d["uid"] for d in generated.values()]
    assert all(b["overwrite"] is True and b["folderUid"] == "driftline" for b in pushed)
    assert all(r["auth"] == "Bearer s3cret-token" for r in handler.requests)
    # The pushed dashboard is the committed one (id cleared so Grafana matches on uid).
    first = pushed[0]["dashboard"]
    assert first.pop("id") is None
    committed = json.loads((JSON_DIR / "overview.json").read_text())
    committed.pop("id", None)
    assert first == committed
    # A second push finds the folder and does not create it again.
    handler.requests.clear()
    assert CliRunner().invoke(app, ["dashboards", "push", "--url", url]).exit_code == 0
    assert not [r for r in handler.requests if r["path"] == "/api/folders"]


def test_push_without_token_or_with_a_bad_one_is_bad_input(fake_grafana, monkeypatch):
    url, handler = fake_grafana
    monkeypatch.delenv("GRAFANA_TOKEN", raising=False)
    missing = CliRunner().invoke(app, ["dashboards", "push", "--url", url])
    assert missing.exit_code == 2 and "GRAFANA_TOKEN" in missing.output
    assert handler.requests == []  # nothing sent without a token
    monkeypatch.setenv("GRAFANA_TOKEN", "tok-WRONG-123")
    refused = CliRunner().invoke(app, ["dashboards", "push", "--url", url])
    assert refused.exit_code == 2 and "401" in refused.output and "tok-WRONG-123" not in refused.output


def test_push_reports_the_failing_dashboard(fake_grafana, monkeypatch):
    url, handler = fake_grafana
    handler.status_for_dashboards = 500
    monkeypatch.setenv("GRAFANA_TOKEN", "s3cret-token")
    result = CliRunner().invoke(app, ["dashboards", "push", "--url", url])
    assert result.exit_code == 2
    assert "driftline-overview" in result.output and "500" in result.output


def test_push_to_nothing_listening_is_bad_input(monkeypatch):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("GRAFANA_TOKEN", "s3cret-token")
    result = CliRunner().invoke(app, ["dashboards", "push", "--url", f"http://127.0.0.1:{port}"])
    assert result.exit_code == 2 and f"127.0.0.1:{port}" in result.output
