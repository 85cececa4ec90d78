"""The results store, its migrations and the APScheduler job store on SQLite and on a real
PostgreSQL server (tests/pg_fixture.py): same rows, same keys, same schema on both."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import MetaData, create_engine, inspect
from typer.testing import CliRunner

from core.results import CheckResult, FeatureDrift
from monitor import migrations
from monitor.database import create_store_engine, database_url, redacted
from monitor.store import ResultsStore, metadata

START = datetime(2026, 3, 1, tzinfo=timezone.utc)
END = START + timedelta(days=1)


def _result(status="ok", score=0.01, check="data_drift") -> CheckResult:
    feature = FeatureDrift("cart_value", "numeric", "wasserstein", score, 0.2, status, 1000, 900)
    return CheckResult(check=check, status=status, features=(feature,), model="m",
                       window_start=START.isoformat(), window_end=END.isoformat())


def _all_metadata() -> list[MetaData]:
    """Every SQLAlchemy table set that lives in the results store."""
    found = [metadata]
    for module, name in (("monitor.ledger", "metadata"), ("monitor.alerts.outbox", "metadata")):
        try:
            found.append(getattr(__import__(module, fromlist=[name]), name))
        except (ImportError, AttributeError):
            pass
    return found


@pytest.fixture
def store(backend_url):
    store = ResultsStore(backend_url)
    yield store
    store.close()


def test_store_opens_at_head_and_schema_matches_tables(store):
    assert migrations.current(store.engine) == migrations.head()
    assert migrations.check_current(store.engine) == migrations.head()
    # APScheduler manages its own job table; everything else must come from a migration.
    assert migrations.schema_diff(store.engine, _all_metadata(), ignore_tables=("apscheduler_jobs",)) == []


def test_upsert_is_idempotent_per_key(store):
    store.save_run("m", _result("ok", 0.01), START, END)
    store.save_run("m", _result("alert", 0.5), START, END)
    assert store.count_runs(model="m") == 1
    stored = store.get_result("m", "data_drift", START, END)
    assert stored.status == "alert" and stored.features[0].score == 0.5
    # Another window and another check are other keys.
    store.save_run("m", _result("ok"), END, END + timedelta(days=1))
    store.save_run("m", _result("warn", check="prediction_drift"), START, END)
    assert store.count_runs(model="m") == 3
    assert [r.check for r in store.results("m", "data_drift")] == ["data_drift", "data_drift"]


def test_window_keys_are_instants_not_wall_clocks(store):
    paris = timezone(timedelta(hours=1))
    store.save_run("m", _result("warn"), START.astimezone(paris), END.astimezone(paris))
    assert store.get_result("m", "data_drift", START, END).status == "warn"
    store.save_run("m", _result("alert"), START, END)
    assert store.count_runs(model="m") == 1


def test_result_and_profile_are_written_together_or_not_at_all(store):
    profile = ("spec", {"rows": 10, "features": {}})
    bad = _result().with_updates(details={"not_json": object()})
    with pytest.raises(TypeError):
        store.save_run("m", bad, START, END, profile=profile)
    assert store.load_profile("m", "serving", START, END, "spec") is None
    assert store.count_runs() == 0
    store.save_run("m", _result(), START, END, profile=profile)
    assert store.load_profile("m", "serving", START, END, "spec") == {"rows": 10, "features": {}}


def test_concurrent_writers_of_one_key_leave_one_row(store):
    errors = []

    def write(status):
        try:
            for _ in range(5):
                store.save_run("m", _result(status), START, END)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s,)) for s in ("ok", "warn", "alert")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.count_runs(model="m") == 1


def test_check_current_names_the_fix(backend_url):
    engine = create_store_engine(backend_url)
    try:
        with pytest.raises(migrations.SchemaVersionError, match="driftline db upgrade"):
            migrations.check_current(engine)
        assert migrations.upgrade(engine) == migrations.head()
        migrations.check_current(engine)
        assert migrations.downgrade(engine, "base") is None
        assert not inspect(engine).has_table("driftline_runs")
        with pytest.raises(migrations.SchemaVersionError, match="no schema yet"):
            migrations.check_current(engine)
    finally:
        engine.dispose()


def test_unversioned_store_is_adopted_not_recreated(backend_url):
    """A store created before the migrations existed keeps its rows."""
    legacy = create_engine(database_url(backend_url))
    runs = metadata.tables["driftline_runs"]
    runs.create(legacy)
    metadata.tables["driftline_profiles"].create(legacy)
    with legacy.begin() as connection:
        connection.execute(runs.insert().values(
            model="m", check_name="data_drift", window_start=START.replace(tzinfo=None),
            window_end=END.replace(tzinfo=None), status="warn", partial=False,
            result_json='{"check": "data_drift", "status": "warn"}', finished_at=END.replace(tzinfo=None)))
    legacy.dispose()
    store = ResultsStore(backend_url)
    try:
        assert migrations.current(store.engine) == migrations.head()
        assert store.get_result("m", "data_drift", START, END).status == "warn"
        store.save_run("m", _result("alert"), START, END)
        assert store.count_runs() == 1
    finally:
        store.close()


def test_apscheduler_job_store_persists_jobs(backend_url):
    """APScheduler's SQLAlchemyJobStore on the same database, as `serve` uses it."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    store = ResultsStore(backend_url)  # the job table lives beside the results
    try:
        first = BackgroundScheduler(timezone="UTC", jobstores={"default": SQLAlchemyJobStore(engine=store.engine)})
        first.add_job("time:sleep", "interval", args=[0], hours=1, id="offer-ctr.data_drift",
                      next_run_time=datetime(2030, 1, 1, tzinfo=timezone.utc))
        first.start(paused=True)
        first.shutdown(wait=False)
        second = SQLAlchemyJobStore(engine=store.engine)
        second.start(None, "default")
        jobs = second.get_all_jobs()
        assert [job.id for job in jobs] == ["offer-ctr.data_drift"]
        assert jobs[0].next_run_time == datetime(2030, 1, 1, tzinfo=timezone.utc)
        second.remove_job("offer-ctr.data_drift")
        assert second.get_all_jobs() == []
    finally:
        store.close()


def test_postgres_url_uses_psycopg_and_hides_password():
    assert database_url("postgresql://u:secret@db/x").startswith("postgresql+psycopg://u:secret@db/x")
    assert "secret" not in redacted("postgresql://u:secret@db/x")


def test_db_upgrade_command(backend_url):
    from monitor.cli import app

    runner = CliRunner()
    behind = runner.invoke(app, ["db", "current", "--url", backend_url])
    assert behind.exit_code == 1 and "revision none" in behind.output
    done = runner.invoke(app, ["db", "upgrade", "--url", backend_url])
    assert done.exit_code == 0, done.output
    assert f"at revision {migrations.head()}" in done.output
    again = runner.invoke(app, ["db", "upgrade", "--url", backend_url])  # idempotent
    assert again.exit_code == 0
    assert runner.invoke(app, ["db", "current", "--url", backend_url]).exit_code == 0


def test_db_upgrade_unreachable_database_is_bad_input():
    from monitor.cli import app

    result = CliRunner().invoke(app, ["db", "upgrade", "--url", "postgresql://u:pw@127.0.0.1:1/x"])
    assert result.exit_code == 2
    assert "127.0.0.1:1" in result.output and "pw" not in result.output


# The service's tables (run ledger, instance lock, alert outbox) on both backends.

def _hourly(max_backfill: int = 2):
    from monitor.config import ScheduleConfig
    from monitor.scheduling import Schedule

    return Schedule("m", "data_drift", ScheduleConfig(check="data_drift", interval="1h", window="1h",
                                                      max_backfill_windows=max_backfill))


def test_ledger_backfills_up_to_the_limit_and_claims_each_window_once(store):
    from monitor.ledger import Ledger, Owner

    now = datetime(2026, 5, 4, 10, 30, tzinfo=timezone.utc)
    # Owners on other hosts: their leases are trusted (one process's owners see each other as dead).
    ledger = Ledger(store.engine, Owner(id="host-a:1:aaaa"))
    schedule = _hourly()
    plan = ledger.plan(schedule, now)
    assert [end.hour for _, end in plan.due] == [8, 9, 10]  # the newest window and two before it
    # Five hours later: 5 windows closed, 3 accepted (the newest + 2), 2 skipped.
    later = ledger.plan(schedule, now + timedelta(hours=5))
    assert len(later.skipped) == 2
    assert {r["reason"] for r in ledger.rows(state="skipped", limit=100)} == {"backfill_limit"}
    start, end = later.due[0]
    claim = ledger.claim("m", "data_drift", start, end, lease=timedelta(minutes=5), now=now, grid=schedule.grid)
    assert claim is not None
    rival = Ledger(store.engine, Owner(id="host-b:1:bbbb"))
    assert rival.claim("m", "data_drift", start, end, lease=timedelta(minutes=5), now=now) is None  # busy
    assert ledger.finish(claim, "succeeded", now=now, result_status="ok", duration=1.5)
    assert rival.claim("m", "data_drift", start, end, lease=timedelta(minutes=5), now=now) is None  # done
    assert (start, end) not in ledger.plan(schedule, now + timedelta(hours=5)).due


def test_concurrent_claims_of_one_window_have_one_winner(store):
    """Eight owners race for the same window on the real database: exactly one gets it."""
    from monitor.ledger import Ledger, Owner

    start = datetime(2026, 5, 4, 9, tzinfo=timezone.utc)
    planned = Ledger(store.engine, Owner()).plan(_hourly(0), start + timedelta(hours=1, minutes=30))
    assert planned.due == [(start, start + timedelta(hours=1))]  # a pending row, as `serve` makes it
    barrier = threading.Barrier(8)
    claims, errors = [], []

    def race(number: int):
        ledger = Ledger(store.engine, Owner(id=f"host-{number}:1:cccc"))
        barrier.wait()
        try:
            claims.append(ledger.claim("m", "data_drift", start, start + timedelta(hours=1),
                                       lease=timedelta(minutes=5)))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len([c for c in claims if c is not None]) == 1


def test_a_second_service_on_the_store_is_refused(store):
    from monitor.ledger import Owner
    from monitor.lock import InstanceLock, ServiceLockedError

    first = InstanceLock(store.engine, Owner(id="other-host:1:aaaa"))
    first.acquire()
    with pytest.raises(ServiceLockedError, match="already running"):
        InstanceLock(store.engine, Owner()).acquire()
    first.release()
    InstanceLock(store.engine, Owner()).acquire()


# SQLAlchemy adds `RETURNING id` to a single-row INSERT on PostgreSQL, and psycopg then
# reports rowcount -1 for `insert ... on conflict do nothing`; claim() and enqueue() use
# RETURNING to tell whether the row went in (this caught them testing rowcount == 1).


def test_claiming_a_window_the_ledger_never_planned(store, request):
    """`jobs run-now` on a window with no ledger row yet: the claim inserts it."""
    from monitor.ledger import Ledger, Owner

    ledger = Ledger(store.engine, Owner())
    claim = ledger.claim("m", "data_drift", START, END, lease=timedelta(minutes=5))
    assert claim is not None and claim.attempt == 1
    assert [r["state"] for r in ledger.rows(limit=10)] == ["running"]


def test_outbox_queues_a_message_once_and_delivers_it(store, request):
    from monitor.alerts.outbox import Outbox, enqueue, rows
    from monitor.alerts.sinks import AlertMessage

    class Recorder:
        sent: list = []

        def send(self, message):
            self.sent.append(message.id)

    message = AlertMessage(id="msg_1", kind="firing", dedup_key="m|data_drift|device|alert", route="m/hook",
                           model="m", check="data_drift", feature="device", severity="alert", status="alert",
                           summary="device drifted")
    with store.engine.begin() as connection:
        assert enqueue(connection, message, "webhook", max_attempts=3)
    with store.engine.begin() as connection:
        assert not enqueue(connection, message, "webhook", max_attempts=3)  # same id: not queued twice
    sink = Recorder()
    outbox = Outbox(store.engine, {"m/hook": sink})
    assert outbox.deliver_due() == 1
    assert outbox.deliver_due() == 0
    assert sink.sent == ["msg_1"]
    assert [r["state"] for r in rows(store.engine)] == ["delivered"]


def test_a_store_at_an_older_revision_is_upgraded_in_place(backend_url):
    """A ledger row written at 0002 survives 0003 and gets its revision."""
    from monitor.ledger import ledger

    engine = create_store_engine(backend_url)
    try:
        migrations.upgrade(engine, "0002")
        now = datetime(2026, 5, 4, tzinfo=timezone.utc).replace(tzinfo=None)
        with engine.begin() as connection:
            connection.execute(ledger.insert().values(
                model="m", check_name="data_drift", window_start=now, window_end=now, grid="manual",
                state="succeeded", attempts=1, failures=0, updated_at=now))
    finally:
        engine.dispose()
    store = ResultsStore(backend_url)
    try:
        assert migrations.current(store.engine) == migrations.head()
        with store.engine.connect() as connection:
            assert [tuple(r) for r in connection.execute(ledger.select().with_only_columns(
                ledger.c.state, ledger.c.revision))] == [("succeeded", 0)]
        assert migrations.downgrade(store.engine, "0002") == "0002"
        assert migrations.upgrade(store.engine) == migrations.head()
    finally:
        store.close()
