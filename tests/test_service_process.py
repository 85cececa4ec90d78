"""`driftline serve` as a real process: kill -9 mid-run and restart, a second serve refused,
SIGTERM stops it cleanly. Deadlines and polling only, no fixed sleeps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from monitor.alerts import signing
from monitor.alerts.outbox import outbox
from monitor.ledger import Ledger, job_events
from monitor.lock import InstanceLock
from monitor.store import ResultsStore
from service_helpers import Receiver, free_port, model_dict, tiny_world, wait_for

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SECRET = signing.generate_secret()


@pytest.fixture()
def service(tmp_path):
    tiny_world(tmp_path)
    receiver = Receiver()
    probes = tmp_path / "probes"
    probes.mkdir()
    model = model_dict(base=tmp_path, schedules=[{"check": "probe", "interval": "1h", "window": "1h",
                                                  "max_backfill_windows": 0}],
                       alerts=[{"sink": "webhook", "name": "hook", "url": receiver.url, "secret_env": "HOOK_SECRET",
                                "allow_private": True}])
    model["checks"] = {"data_drift": {"enabled": False}, "prediction_drift": {"enabled": False}}
    url = f"sqlite:///{tmp_path / 'store.db'}"
    config = tmp_path / "driftline.yaml"
    config.write_text(yaml.safe_dump({"version": 1, "store": {"url": url, "reports_dir": "reports"},
                                      "models": [model]}))
    ResultsStore(url).close()  # `driftline db upgrade`: serve refuses a store that is not at head
    env = {**os.environ, "DRIFTLINE_PROBE_DIR": str(probes), "HOOK_SECRET": SECRET,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("DRIFTLINE_STORE_URL", None)
    processes = []

    def start(port: int, name: str) -> subprocess.Popen:
        log = open(tmp_path / f"{name}.log", "wb")
        process = subprocess.Popen([sys.executable, str(HERE / "serve_plugin.py"), "serve", "--config", str(config),
                                    "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env,
                                   cwd=tmp_path)
        processes.append(process)
        return process

    store = ResultsStore(url)
    yield {"start": start, "store": store, "probes": probes, "receiver": receiver, "logs": tmp_path}
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(30)
    store.close()
    receiver.close()


def metrics(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_kill_9_mid_run_then_restart_reruns_once_and_alerts_once(service):
    store, probes, receiver = service["store"], service["probes"], service["receiver"]
    ledger = Ledger(store.engine)
    first = service["start"](free_port(), "first")
    entered = wait_for(lambda: list(probes.glob(f"entered-{first.pid}-*")), 90, what="the first run to start")
    window = entered[0].name.rsplit("-", 1)[1]
    running = wait_for(lambda: ledger.rows(state="running"), 10, what="a running ledger row")
    assert running[0]["owner"].split(":")[1] == str(first.pid)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    assert ledger.rows(state="running"), "kill -9 leaves the row running"
    assert store.count_runs() == 0 and receiver.requests == []

    (probes / "release").touch()
    port = free_port()
    second = service["start"](port, "second")
    wait_for(lambda: any(r["state"] == "succeeded" for r in ledger.rows()), 90, what="the window to re-run")
    wait_for(lambda: receiver.requests, 30, what="the alert delivery")
    assert list(probes.glob(f"entered-{second.pid}-{window}")), "the same window ran again"

    # A second serve on the same store refuses to start, with a clear message.
    third = service["start"](free_port(), "third")
    assert third.wait(90) == 2
    message = (service["logs"] / "third.log").read_text()
    assert "another `driftline serve` is already running on this results store" in message

    wait_for(lambda: metrics(port).get(("driftline_alerts_sent_total", (("sink", "webhook"),))) == 1.0, 30,
             what="the delivery to show in /metrics")
    scraped = metrics(port)
    assert scraped[("driftline_check_status", (("check", "probe"), ("model", "m")))] == 2.0
    ids = [r["headers"]["webhook-id"] for r in receiver.requests]
    assert len(ids) == len(set(ids)) == 1  # one alert for the key, delivered once
    assert signing.verify(SECRET, receiver.requests[0]["headers"], receiver.requests[0]["body"])
    with store.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(outbox)).scalar() == 1
        kinds = [k for (k,) in connection.execute(select(job_events.c.kind))]
    assert "lease_expired" in kinds
    rerun = [r for r in ledger.rows() if r["state"] == "succeeded"][0]
    assert rerun["attempts"] == 2
    assert store.count_runs(check_name="probe") == len([r for r in ledger.rows() if r["state"] == "succeeded"])

    second.send_signal(signal.SIGTERM)
    assert second.wait(60) == 0
    assert InstanceLock(store.engine, ledger.owner).holder() is None
    health = json.dumps({"log": (service["logs"] / "second.log").read_text()[-2000:]})
    assert "Traceback" not in health
