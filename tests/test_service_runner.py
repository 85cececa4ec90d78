"""The run ledger driving real runs (in-process, with a settable clock and a scripted executor):
backfill limits, overlaps, retries, timeouts, expired leases, adoption, delays, no duplicate alerts."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from monitor.alerts.outbox import outbox
from monitor.alerts.rules import routes_for
from monitor.ledger import Ledger, Owner
from monitor.scheduling import schedules_of
from monitor.service import JobRunner
from monitor.store import ResultsStore
from service_helpers import Clock, make_config, model_dict, result, wait_for

UTC = timezone.utc
T0 = datetime(2026, 5, 4, 10, 0, 30, tzinfo=UTC)


class Executor:
    """Records calls, stores a result like the real runner, and can fail or block on cue."""

    def __init__(self, store: ResultsStore, statuses=None) -> None:
        self.store = store
        self.calls: list[tuple] = []
        self.failures: list[BaseException] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.statuses = statuses or {"x": "ok"}

    def __call__(self, model, check, start, end):
        self.calls.append((start, end))
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(30)
        if self.failures:
            raise self.failures.pop(0)
        found = result(check, start, end, self.statuses, model=model)
        self.store.save_run(model, found, start, end)
        return [found]


@pytest.fixture()
def setup(tmp_path):
    def build(schedule=None, alerts=({"sink": "log", "min_severity": "warn"},), statuses=None):
        schedule = {"check": "fake", "interval": "1h", "window": "1h", "max_backfill_windows": 2,
                    **(schedule or {})}
        config = make_config(tmp_path, [model_dict(schedules=[schedule], alerts=alerts)])
        store = ResultsStore(config.store_url())
        clock = Clock(T0)
        ledger = Ledger(store.engine)
        executor = Executor(store, statuses)
        runner = JobRunner(config, store, ledger, {"m": routes_for(config.models[0])}, execute=executor,
                           clock=clock, backoff=(0.01, 0.05))
        built.append(store)
        return runner, schedules_of(config)[0], clock, executor, ledger, store

    built: list[ResultsStore] = []
    yield build
    for store in built:
        store.close()


def hour(h: int) -> datetime:
    return datetime(2026, 5, 4, h, tzinfo=UTC)


def states(ledger: Ledger) -> dict:
    return {row["window_end"].hour: row["state"] for row in ledger.rows(limit=1000)}


def test_downtime_of_three_windows_is_backfilled_up_to_the_limit_and_the_rest_skipped(setup):
    runner, schedule, clock, executor, ledger, _ = setup()
    runner.tick(schedule)  # a new schedule: the current window plus max_backfill_windows=2 before it
    assert states(ledger) == {10: "succeeded", 9: "succeeded", 8: "succeeded"}
    clock.advance(timedelta(hours=1))
    runner.tick(schedule)
    assert executor.calls[-1] == (hour(10), hour(11))
    executor.calls.clear()
    clock.advance(timedelta(hours=4))  # down over the windows ending 12, 13 and 14; 15 is the current one
    report = runner.tick(schedule)
    # Windows ending 12, 13 and 14 were missed; 15 is current. Two are backfilled, oldest first.
    assert executor.calls == [(hour(12), hour(13)), (hour(13), hour(14)), (hour(14), hour(15))]
    assert report.skipped == 1
    assert states(ledger) == {8: "succeeded", 9: "succeeded", 10: "succeeded", 11: "succeeded",
                              12: "skipped", 13: "succeeded", 14: "succeeded", 15: "succeeded"}
    skipped = ledger.rows(state="skipped")
    assert [r["reason"] for r in skipped] == ["backfill_limit"]
    # Nothing is due twice: a second wake-up runs nothing.
    executor.calls.clear()
    runner.tick(schedule)
    assert executor.calls == []


def test_an_overlapping_wakeup_is_skipped_recorded_and_loses_nothing(setup):
    runner, schedule, clock, executor, ledger, _ = setup({"max_backfill_windows": 0})
    executor.gate = threading.Event()
    first = threading.Thread(target=runner.tick, args=(schedule,))
    first.start()
    assert executor.entered.wait(10)
    clock.advance(timedelta(hours=1))  # the next window closes while the first run is still going
    report = runner.tick(schedule)
    assert report.overlap
    assert [e["kind"] for e in ledger.events()] == ["overlap"]
    executor.gate.set()
    first.join(10)
    # The running job took the newly due window before it returned.
    assert executor.calls == [(hour(9), hour(10)), (hour(10), hour(11))]
    assert set(states(ledger).values()) == {"succeeded"}


def test_transient_errors_are_retried_with_backoff_then_succeed(setup):
    runner, schedule, _, executor, ledger, _ = setup({"max_backfill_windows": 0, "retries": 3})
    executor.failures = [OperationalError("SELECT 1", {}, Exception("database is locked")), OSError("NFS hiccup")]
    runner.tick(schedule)
    row = ledger.rows()[0]
    assert row["state"] == "succeeded" and row["failures"] == 2 and row["attempts"] == 1
    assert [e["kind"] for e in ledger.events()] == ["retry", "retry"]
    assert len(executor.calls) == 3


def test_retries_are_bounded(setup):
    runner, schedule, _, executor, ledger, _ = setup({"max_backfill_windows": 0, "retries": 2})
    executor.failures = [OSError("down")] * 5
    runner.tick(schedule)
    row = ledger.rows()[0]
    assert row["state"] == "failed" and row["failures"] == 3 and "OSError" in row["reason"]
    assert len(executor.calls) == 3


def test_a_bug_is_not_retried(setup):
    runner, schedule, _, executor, ledger, _ = setup({"max_backfill_windows": 0, "retries": 3})
    executor.failures = [ValueError("a bug")]
    runner.tick(schedule)
    row = ledger.rows()[0]
    assert row["state"] == "failed" and row["failures"] == 1 and "ValueError: a bug" in row["reason"]
    assert len(executor.calls) == 1


def test_a_stuck_run_times_out_and_is_marked_failed(setup):
    runner, schedule, _, executor, ledger, store = setup({"max_backfill_windows": 0, "timeout": "1s"})
    executor.gate = threading.Event()
    runner.tick(schedule)
    row = ledger.rows()[0]
    assert row["state"] == "failed" and row["reason"].startswith("timeout")
    assert "timeout" in [e["kind"] for e in ledger.events()]
    executor.gate.set()  # the abandoned thread finishes late: its claim is fenced out
    wait_for(lambda: store.count_runs() == 1, 10, what="the late result")
    assert ledger.rows()[0]["state"] == "failed"


def test_a_run_whose_owner_died_is_rerun(setup):
    runner, schedule, clock, executor, ledger, _ = setup({"max_backfill_windows": 0})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    crashed = Ledger(ledger.engine, Owner(f"{socket.gethostname()}:{dead.pid}:deadbeef"))
    assert crashed.claim("m", "fake", hour(9), hour(10), lease=timedelta(hours=1), now=clock(), grid=schedule.grid)
    runner.tick(schedule)  # same host, pid gone: no need to wait for the lease
    assert executor.calls == [(hour(9), hour(10))]
    assert "lease_expired" in [e["kind"] for e in ledger.events()]
    assert ledger.rows()[0]["state"] == "succeeded" and ledger.rows()[0]["attempts"] == 2


def test_a_run_held_elsewhere_waits_for_its_lease(setup):
    runner, schedule, clock, executor, ledger, _ = setup({"max_backfill_windows": 0})
    elsewhere = Ledger(ledger.engine, Owner("another-host:4242:cafe"))
    assert elsewhere.claim("m", "fake", hour(9), hour(10), lease=timedelta(seconds=30), now=clock(), grid=schedule.grid)
    runner.tick(schedule)
    assert executor.calls == []  # another machine's live lease: not ours to take
    clock.advance(timedelta(seconds=31))
    runner.tick(schedule)
    assert executor.calls == [(hour(9), hour(10))]


def test_results_stored_outside_the_service_are_adopted(setup):
    runner, schedule, _, executor, ledger, store = setup()
    store.save_run("m", result("fake", hour(9), hour(10), {"x": "ok"}), hour(9), hour(10))
    report = runner.tick(schedule)
    assert report.adopted == 1
    assert (hour(9), hour(10)) not in executor.calls
    adopted = [r for r in ledger.rows() if r["window_end"] == hour(10)][0]
    assert adopted["state"] == "succeeded" and adopted["reason"].startswith("adopted")


def test_a_delayed_window_stays_pending_until_it_matures(setup):
    runner, schedule, clock, executor, ledger, _ = setup({"max_backfill_windows": 0, "delay": "2h"})
    report = runner.tick(schedule)
    assert executor.calls == [] and states(ledger) == {10: "pending"}
    assert report.waiting == [hour(12)]
    clock.now = hour(12) + timedelta(seconds=1)
    runner.tick(schedule)
    assert (hour(9), hour(10)) in executor.calls
    assert states(ledger)[10] == "succeeded"


def test_rerunning_a_window_queues_no_duplicate_alert(setup):
    runner, schedule, _, executor, ledger, store = setup({"max_backfill_windows": 0}, statuses={"x": "alert"})
    runner.tick(schedule)
    assert runner.run_window("m", "fake", hour(9), hour(10), schedule=schedule, force=True) == "succeeded"
    assert runner.run_window("m", "fake", hour(9), hour(10), schedule=schedule, force=True) == "succeeded"
    with store.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(outbox)).scalar() == 1
    assert store.count_runs() == 1
    assert len(executor.calls) == 3


def test_a_pending_result_waits_for_its_labels_and_does_not_resolve_alerts(setup):
    runner, schedule, clock, executor, ledger, store = setup({"max_backfill_windows": 0}, statuses={"x": "alert"})
    runner.tick(schedule)  # window 09-10 alerts
    clock.advance(timedelta(hours=1))
    mature = hour(16)
    original = executor.__call__

    def labels_late(model, check, start, end):
        if end == hour(11) and clock() < mature:
            from core.results import CheckResult

            return [CheckResult(check=check, status="pending", model=model,
                                details={"labels_mature_at": mature.isoformat()})]
        return original(model, check, start, end)

    runner.execute = labels_late
    report = runner.tick(schedule)
    row = [r for r in ledger.rows() if r["window_end"] == hour(11)][0]
    assert row["state"] == "pending" and row["not_before"] == mature and report.waiting == [mature]
    with store.engine.connect() as connection:
        kinds = [k for (k,) in connection.execute(select(outbox.c.kind))]
    assert kinds == ["firing"]  # the pending window resolved nothing
    clock.now = mature + timedelta(seconds=1)
    runner.tick(schedule)
    assert [r for r in ledger.rows() if r["window_end"] == hour(11)][0]["state"] == "succeeded"


def test_a_lost_claim_records_nothing_and_queues_no_alert(setup):
    runner, schedule, clock, executor, ledger, store = setup({"max_backfill_windows": 0}, statuses={"x": "alert"})
    original = executor.__call__

    def taken_over(model, check, start, end):
        found = original(model, check, start, end)
        thief = Ledger(ledger.engine, Owner("another-host:1:thief"))
        assert thief.claim(model, check, start, end, lease=timedelta(hours=1), now=clock(), force=True) is None
        with ledger.engine.begin() as connection:  # as if our lease had expired and another host took it
            from monitor.ledger import ledger as table

            connection.execute(table.update().values(token="stolen", owner="another-host:1:thief"))
        return found

    runner.execute = taken_over
    assert runner.run_window("m", "fake", hour(9), hour(10), schedule=schedule) == "lost"
    with store.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(outbox)).scalar() == 0
    assert ledger.rows()[0]["state"] == "running"


def test_a_stopping_service_does_not_wait_for_a_running_check(setup):
    """SIGTERM during a long check: the worker returns at once ("interrupted"), the window stays
    claimed until the shutdown releases it, and the next start runs it again."""
    runner, schedule, clock, executor, ledger, _ = setup({"max_backfill_windows": 0})
    executor.gate = threading.Event()
    outcome: list[str] = []
    worker = threading.Thread(target=lambda: outcome.append(runner.run_window("m", "fake", hour(9), hour(10),
                                                                              schedule=schedule)))
    worker.start()
    assert executor.entered.wait(10)
    runner.stopping.set()
    worker.join(20)  # generous: the check itself would block for 30 s on its gate
    try:
        assert not worker.is_alive() and outcome == ["interrupted"]
        assert states(ledger) == {10: "running"}
        ledger.release_own(clock())  # what the service's teardown does
        runner.stopping.clear()
        assert ledger.claim("m", "fake", hour(9), hour(10), lease=timedelta(seconds=30), now=clock()) is not None
    finally:
        executor.gate.set()
