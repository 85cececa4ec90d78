"""Retention: what is older than its configured age goes, everything else stays, and the
run ledger is never touched (it remembers which windows ran)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from sqlalchemy import func, insert, select
from typer.testing import CliRunner

from core.results import CheckResult
from monitor.alerts.outbox import outbox
from monitor.cli import app
from monitor.ledger import job_events, ledger, naive
from monitor.retention import Retention, prune
from monitor.store import ResultsStore, profiles, runs

NOW = datetime(2026, 11, 29, 12, tzinfo=timezone.utc)


def count(store, table) -> int:
    with store.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


@pytest.fixture()
def store(backend_url):
    store = ResultsStore(backend_url)  # SQLite and a real PostgreSQL
    for age_days in (1, 100, 400):
        end = NOW - timedelta(days=age_days)
        start = end - timedelta(days=1)
        store.save_run("m", CheckResult(check="data_drift", status="ok", model="m", window_start=start.isoformat(),
                                        window_end=end.isoformat()), start, end)
        store.save_profile("m", "serving", start, end, "k", {"rows": 1}, False)
    store.save_profile("m", "reference", datetime(1970, 1, 1, tzinfo=timezone.utc),
                       datetime(1970, 1, 1, tzinfo=timezone.utc), "k", {"rows": 1}, False)
    with store.engine.begin() as connection:
        for state, age in (("delivered", 40), ("dead", 40), ("pending", 40), ("delivered", 2)):
            at = naive(NOW - timedelta(days=age))
            connection.execute(insert(outbox).values(
                message_id=f"{state}-{age}", route="r", sink="log", kind="firing", dedup_key="k", payload_json="{}",
                state=state, attempts=1, max_attempts=5, next_attempt_at=at, created_at=at, updated_at=at))
        for age in (10, 100):
            connection.execute(insert(job_events).values(model="m", check_name="c", kind="retry",
                                                         at=naive(NOW - timedelta(days=age))))
        connection.execute(insert(ledger).values(
            model="m", check_name="c", window_start=naive(NOW - timedelta(days=500)),
            window_end=naive(NOW - timedelta(days=499)), grid="g", state="succeeded", attempts=1, failures=0,
            updated_at=naive(NOW - timedelta(days=499)), revision=1))
    yield store
    store.close()


def test_prune_removes_only_what_is_older_than_its_age(store):
    policy = Retention(results=timedelta(days=365), profiles=timedelta(days=30), outbox=timedelta(days=30),
                       job_events=timedelta(days=90))
    before = {t.name: count(store, t) for t in (runs, profiles, outbox, job_events, ledger)}
    assert prune(store.engine, policy, NOW, dry_run=True) == {"results": 1, "profiles": 2, "outbox": 2,
                                                              "job_events": 1}
    assert {t.name: count(store, t) for t in (runs, profiles, outbox, job_events, ledger)} == before  # dry run
    assert prune(store.engine, policy, NOW) == {"results": 1, "profiles": 2, "outbox": 2, "job_events": 1}
    assert count(store, runs) == 2 and count(store, job_events) == 1 and count(store, ledger) == 1
    with store.engine.connect() as connection:
        kept_profiles = {row.role for row in connection.execute(select(profiles.c.role))}
        kept_outbox = {row.message_id for row in connection.execute(select(outbox.c.message_id))}
    assert kept_profiles == {"serving", "reference"}  # the reference cache never ages out
    assert kept_outbox == {"pending-40", "delivered-2"}  # a pending message is never dropped
    assert prune(store.engine, policy, NOW) == {"results": 0, "profiles": 0, "outbox": 0, "job_events": 0}


def test_unset_ages_keep_everything(store):
    assert prune(store.engine, Retention(None, None, None, None), NOW) == {}
    assert count(store, runs) == 3 and count(store, outbox) == 4


def test_cli_prune_from_the_config(store, tmp_path):
    path = tmp_path / "driftline.yaml"
    config = {"store": {"url": store.url, "retention": {"results": "30d", "outbox": None, "job_events": None}},
              "models": [{"name": "m", "reference": {"path": "r.parquet"}, "serving": {"path": "s/"},
                          "schema": {"timestamp": "ts", "features": [{"name": "x", "kind": "numeric"}]}}]}
    path.write_text(yaml.safe_dump(config))
    runner = CliRunner()
    dry = runner.invoke(app, ["db", "prune", "--config", str(path), "--dry-run", "--format", "json"])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout) == {"dry_run": True, "removed": {"results": 2}}
    done = runner.invoke(app, ["db", "prune", "--config", str(path)])
    assert done.exit_code == 0 and "results: deleted 2" in done.stdout
    assert count(store, runs) == 1
    config["store"]["retention"]["results"] = "soon"
    path.write_text(yaml.safe_dump(config))
    bad = runner.invoke(app, ["db", "prune", "--config", str(path)])
    assert bad.exit_code == 2 and "store.retention.results" in bad.stderr


def test_serve_prunes_at_start(store, tmp_path):
    from monitor.config import parse_config
    from monitor.service import Service
    from service_helpers import free_port, model_dict, tiny_world, wait_for

    tiny_world(tmp_path)
    model = model_dict(base=tmp_path)
    model["checks"] = {"data_drift": {"enabled": False}, "prediction_drift": {"enabled": False}}
    config = parse_config({"version": 1, "store": {"url": store.url, "reports_dir": "reports",
                                                   "retention": {"outbox": "30d"}}, "models": [model]},
                          "test", tmp_path)
    service = Service(config, port=free_port())
    service.start()
    try:
        wait_for(lambda: count(store, outbox) == 2, what="the start-up prune of delivered and dead alerts")
        assert service.scheduler.get_job("retention", jobstore="memory") is not None  # and then daily
    finally:
        service.stop()
