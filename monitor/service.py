"""`driftline serve`: scheduler, run ledger, alert delivery and HTTP in one process.

APScheduler 3.x (BackgroundScheduler, a SQLAlchemy job store in the results database,
threads only) wakes one job per configured (model, check) schedule; the run ledger
(monitor/ledger.py) decides which windows that wake-up runs. Around it:

- a single-instance lock (monitor/lock.py): a second `serve` on the same store refuses;
- overlap: a wake-up while the same (model, check) is still running is skipped and
  recorded (event `overlap`); the running job picks up newly due windows before it
  returns, so the window is not lost;
- transient errors (database or filesystem hiccups) are retried with bounded
  exponential backoff; other errors fail the window at once;
- a run that exceeds the schedule's `timeout` is marked failed; its thread is abandoned
  (Python cannot kill it) and its late writes are fenced out of the ledger;
- alert rules run in the same transaction that records success, and the outbox worker
  delivers what they queued.

Scheduled jobs reference `monitor.service:scheduled_tick`, which only ever uses the
scheduler already running in this process: APScheduler's process pool would start
workers with `spawn`, and an entry point that built a service on import would run a
second scheduler in each child. We use threads and keep every entry point guarded.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from core.results import CheckResult, worst_status
from monitor.config import Config
from monitor.database import is_transient
from monitor.ledger import Claim, Ledger, Owner, now_utc
from monitor.scheduling import Schedule, schedules_of, utc
from monitor.store import ResultsStore

log = logging.getLogger("driftline.service")
MAX_ROUNDS = 50  # plan/run rounds per wake-up (a run that takes longer than a window makes more due)

Executor = Callable[[str, str, datetime, datetime], list[CheckResult]]


class RunTimeout(Exception):
    pass


class RunInterrupted(Exception):
    """The service is stopping: the run's thread is abandoned and its window re-runs at the next start."""


def call_with_timeout(fn: Callable, timeout: float, name: str, stopping: threading.Event | None = None):
    box: dict = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    # Wait in short steps, so a stopping service does not wait for the check (a scheduler worker
    # blocked here would hold the process's exit until the check finished).
    while thread.is_alive() and time.monotonic() < deadline:
        if stopping is not None and stopping.is_set():
            raise RunInterrupted("the service is stopping")
        thread.join(min(0.2, max(0.0, deadline - time.monotonic())))
    if thread.is_alive():
        raise RunTimeout(f"still running after {timeout:.0f}s")
    if "error" in box:
        raise box["error"]
    return box["value"]


@contextmanager
def heartbeat(ledger: Ledger, lease: timedelta, extra: Callable[[], bool] | None = None,
              on_lost: Callable[[], None] | None = None):
    """Renew our leases every lease/3 while the body runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(lease.total_seconds() / 3):
            try:
                if extra is not None and not extra():
                    log.critical("lost the results store lock to another process; stopping")
                    if on_lost:
                        on_lost()
                    return
                ledger.heartbeat(lease)
            except Exception:  # the store may be briefly unreachable; the lease covers it
                log.exception("heartbeat failed")

    thread = threading.Thread(target=beat, name="driftline-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()


def default_executor(config: Config, store: ResultsStore, clock: Callable[[], datetime] = now_utc) -> Executor:
    """Runs one check of one window on the model's long-lived runner (one per model, created on
    first use), which owns the reference, the fitted checks and their caches across windows."""
    from monitor.runner import ModelRunner

    runners: dict[str, ModelRunner] = {}
    guard = threading.Lock()

    def execute(model: str, check: str, start: datetime, end: datetime) -> list[CheckResult]:
        with guard:
            runner = runners.get(model)
            if runner is None:
                runner = runners[model] = ModelRunner(config, config.model(model), store, clock=clock)
        return runner.run(start, end, [check])

    return execute


def preload_libraries(config: Config) -> list[str]:
    """Import, on the calling (main) thread, the heavy libraries the configured checks use, so
    that worker threads never import them concurrently. Returns the modules imported; a missing
    optional library is left for its check to report as that check's error."""
    import importlib

    from monitor.catalog import get_check

    names = {s.check for s in schedules_of(config)}
    for model in config.models:
        names.update(model.checks.enabled())
    loaded = []
    for module in sorted({m for name in names for m in get_check(name).preload}):
        try:
            importlib.import_module(module)
            loaded.append(module)
        except ImportError as exc:
            log.warning("preloading %s failed (%s); its checks will report the error", module, exc)
    return loaded


@dataclass
class TickReport:
    overlap: bool = False
    ran: dict = field(default_factory=dict)  # (start, end) -> outcome
    skipped: int = 0
    adopted: int = 0
    waiting: list[datetime] = field(default_factory=list)


class JobRunner:
    """Runs due windows through the ledger; shared by `serve` and `jobs run-now`."""

    def __init__(self, config: Config, store: ResultsStore, ledger: Ledger, routes: dict[str, list], *,
                 execute: Executor | None = None, clock: Callable[[], datetime] = now_utc,
                 lease: timedelta = timedelta(seconds=30), backoff: tuple[float, float] = (1.0, 60.0),
                 on_queued: Callable[[], None] | None = None) -> None:
        self.config = config
        self.store = store
        self.ledger = ledger
        self.routes = routes
        self.execute = execute or default_executor(config, store, clock)
        self.clock = clock
        self.lease = lease
        self.backoff = backoff
        self.on_queued = on_queued or (lambda: None)
        self.stopping = threading.Event()
        self._locks: dict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)
        self._locks_guard = threading.Lock()  # two first wake-ups must not create two locks

    def tick(self, schedule: Schedule) -> TickReport:
        report = TickReport()
        pair = (schedule.model, schedule.check)
        with self._locks_guard:
            lock = self._locks[pair]
        if not lock.acquire(blocking=False):
            report.overlap = True
            self.ledger.event(*pair, "overlap", "a run was still in progress; this wake-up was skipped "
                              "(the running job takes the newly due windows)", now=self.clock())
            return report
        try:
            for _ in range(MAX_ROUNDS):
                plan = self.ledger.plan(schedule, self.clock(), schedule.config.delay)
                report.skipped += len(plan.skipped)
                report.adopted += len(plan.adopted)
                report.waiting = plan.waiting
                if plan.skipped:
                    log.warning("%s/%s: %d window(s) beyond max_backfill_windows=%d recorded as skipped%s",
                                *pair, len(plan.skipped), schedule.config.max_backfill_windows,
                                "; older ones in one backfill_truncated event" if plan.truncated else "")
                if plan.adopted:
                    self._alert_adopted(schedule, plan.adopted[-1])
                todo = [w for w in plan.due if w not in report.ran]
                if not todo or self.stopping.is_set():
                    break
                for start, end in todo:
                    if self.stopping.is_set():
                        break
                    report.ran[(start, end)] = self.run_window(schedule.model, schedule.check, start, end,
                                                               schedule=schedule)
        finally:
            lock.release()
        return report

    def run_window(self, model: str, check: str, start: datetime, end: datetime, *,
                   schedule: Schedule | None = None, force: bool = False) -> str:
        """Claim, run (with retries and a timeout), record and alert. Returns the outcome."""
        cfg = schedule.config if schedule is not None else None
        timeout = (cfg.timeout if cfg else timedelta(hours=1)).total_seconds()
        retries = cfg.retries if cfg else 3
        claim = self.ledger.claim(model, check, start, end, lease=self.lease, now=self.clock(),
                                  grid=schedule.grid if schedule else "manual", force=force)
        if claim is None:
            row = [r for r in self.ledger.rows(model, check, limit=1000)
                   if r["window_start"] == utc(start) and r["window_end"] == utc(end)]
            if row and row[0]["state"] == "running":
                self.ledger.event(model, check, "overlap", "the window is being run by another process",
                                  (start, end), now=self.clock())
                return "busy"
            return row[0]["state"] if row else "not_due"
        began = time.monotonic()
        attempt = 0
        while True:
            try:
                results = call_with_timeout(lambda: self.execute(model, check, start, end), timeout,
                                            f"driftline-run {model}/{check}", self.stopping)
                break
            except RunInterrupted:
                log.warning("%s/%s %s: left running as the service stops; it re-runs at the next start",
                            model, check, _window(start, end))
                return "interrupted"
            except RunTimeout as exc:
                self.ledger.event(model, check, "timeout", str(exc), (start, end), now=self.clock())
                self.ledger.finish(claim, "failed", reason=f"timeout: {exc}", duration=time.monotonic() - began,
                                   now=self.clock())
                log.error("%s/%s %s: %s", model, check, _window(start, end), exc)
                return "failed"
            except Exception as exc:
                text = f"{type(exc).__name__}: {str(exc)[:300]}"
                if is_transient(exc) and attempt < retries and not self.stopping.is_set():
                    attempt += 1
                    base, cap = self.backoff
                    delay = min(cap, base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
                    self.ledger.attempt_failed(claim, f"attempt {attempt}: {text}", self.lease, now=self.clock())
                    log.warning("%s/%s %s: %s; retry %d/%d in %.1fs", model, check, _window(start, end), text,
                                attempt, retries, delay)
                    if self.stopping.wait(delay):
                        return "interrupted"
                    continue
                self.ledger.finish(claim, "failed", reason=text, duration=time.monotonic() - began, now=self.clock())
                log.error("%s/%s %s failed: %s", model, check, _window(start, end), text)
                return "failed"
        return self._record(claim, results, time.monotonic() - began)

    def _record(self, claim: Claim, results: list[CheckResult], duration: float) -> str:
        from monitor.alerts.rules import evaluate

        now = self.clock()
        queued = 0
        waiting = [r for r in results if r.status == "pending"]
        with self.store.engine.begin() as connection:
            if waiting:  # labels not mature yet: the window runs again when they are
                mature = max(_mature_at(r, now) for r in waiting)
                done = self.ledger.defer(claim, mature, f"labels mature at {mature.isoformat()}",
                                         duration=duration, now=now, connection=connection)
                return "pending" if done else "lost"
            for result in results:
                queued += evaluate(connection, self.routes.get(claim.model, []), claim.model, result, claim.end, now)
            status = worst_status([r.status for r in results]) if results else "insufficient_data"
            if not self.ledger.finish(claim, "succeeded", result_status=status, duration=duration, now=now,
                                      connection=connection):
                connection.rollback()  # the claim was lost (timed out, taken over): queue nothing
                return "lost"
        if queued:
            self.on_queued()
        return "succeeded"

    def _alert_adopted(self, schedule: Schedule, window: tuple[datetime, datetime]) -> None:
        """A result stored outside the service (e.g. `driftline run`) still drives the alert state."""
        from monitor.alerts.rules import evaluate

        result = self.store.get_result(schedule.model, schedule.check, *window)
        if result is None or not self.routes.get(schedule.model):
            return
        with self.store.engine.begin() as connection:
            queued = evaluate(connection, self.routes[schedule.model], schedule.model, result, window[1],
                              self.clock())
        if queued:
            self.on_queued()


def _mature_at(result: CheckResult, now: datetime) -> datetime:
    """When a `pending` result's labels mature (checks/labelled.py), else an hour from now."""
    try:
        return utc(datetime.fromisoformat(result.details["labels_mature_at"]))
    except (KeyError, TypeError, ValueError):
        return now + timedelta(hours=1)


def _window(start: datetime, end: datetime) -> str:
    return f"{utc(start):%Y-%m-%d %H:%M}..{utc(end):%Y-%m-%d %H:%M}"


# --- the service ---------------------------------------------------------------------

_ACTIVE: "Service | None" = None


def scheduled_tick(job_id: str) -> None:
    """What the persisted APScheduler jobs call. Uses the running service, never starts one."""
    service = _ACTIVE
    if service is None:
        log.error("scheduled job %s fired outside a running `driftline serve`; ignored", job_id)
        return
    service.tick(job_id)


RETENTION_EVERY = timedelta(hours=24)


def scheduled_prune() -> None:
    """The daily retention job (monitor/retention.py) of the running service."""
    service = _ACTIVE
    if service is not None:
        service.prune()


def scheduled_retrain(model: str) -> None:
    """The periodic retrain check (monitor/retrain_watch.py) of the running service."""
    service = _ACTIVE
    if service is not None:
        service.retrain_if_due(model)


class Service:
    def __init__(self, config: Config, *, host: str = "127.0.0.1", port: int = 9108, token: str | None = None,
                 lease: timedelta = timedelta(seconds=30), workers: int = 4,
                 execute: Executor | None = None, outbox_base_delay: float = 5.0,
                 backoff: tuple[float, float] = (1.0, 60.0)) -> None:
        self.config = config
        self.host, self.port, self.token = host, port, token
        self.lease = lease
        self.workers = workers
        self._execute = execute
        self.outbox_base_delay = outbox_base_delay
        self.backoff = backoff
        self.schedules = {s.job_id: s for s in schedules_of(config)}
        self.started_at: datetime | None = None
        self._stopped = threading.Event()
        self._exit = None  # the heartbeat context, entered at start

    # lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.jobstores.memory import MemoryJobStore
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.background import BackgroundScheduler
        from prometheus_client import CollectorRegistry

        from monitor import migrations
        from monitor.alerts.outbox import DeliveryWorker, Outbox
        from monitor.alerts.rules import routes_for
        from monitor.database import create_store_engine, store_errors
        from monitor.exporter import DriftlineCollector
        from monitor.http import HttpServer
        from monitor.lock import InstanceLock

        global _ACTIVE
        url = self.config.store_url()
        probe = create_store_engine(url)
        try:
            with store_errors(url):
                migrations.check_current(probe)  # never write through a stale schema
        finally:
            probe.dispose()
        preload_libraries(self.config)
        routes = {m.name: routes_for(m, self.config.base_dir) for m in self.config.models}
        for route in (r for model_routes in routes.values() for r in model_routes):
            route.sink.validate()  # a missing secret fails the start, not every delivery
        self.store = ResultsStore(url)
        engine = self.store.engine
        owner = Owner()
        self.ledger = Ledger(engine, owner)
        self.lock = InstanceLock(engine, owner, ttl=self.lease)
        try:
            self.lock.acquire()
        except BaseException:
            self.store.close()
            raise
        try:
            registry = CollectorRegistry(auto_describe=False)
            registry.register(DriftlineCollector(
                engine, [m.name for m in self.config.models], [(s.model, s.check) for s in self.schedules.values()],
                [route.sink.kind for model_routes in routes.values() for route in model_routes]))
            self.http = HttpServer(self.host, self.port, registry, self.config.reports_dir(), self.token,
                                   self.health)
            sinks = {route.id: route.sink for model_routes in routes.values() for route in model_routes}
            self.outbox = Outbox(engine, sinks, base_delay=self.outbox_base_delay)
            self.delivery = DeliveryWorker(self.outbox)
            self.jobs = JobRunner(self.config, self.store, self.ledger, routes, execute=self._execute,
                                  lease=self.lease, backoff=self.backoff, on_queued=self.delivery.poke)
            self.scheduler = BackgroundScheduler(
                jobstores={"default": SQLAlchemyJobStore(engine=engine), "memory": MemoryJobStore()},
                executors={"default": ThreadPoolExecutor(self.workers)},
                # coalesce + no misfire limit: a late wake-up still comes, once; the ledger does the rest.
                job_defaults={"coalesce": True, "max_instances": 2, "misfire_grace_time": None},
                timezone="UTC")
            _ACTIVE = self
            self.scheduler.start(paused=True)
            self._sync_jobs()
            # Retention: once at start, then daily; in memory, since the config says what to keep.
            self.scheduler.add_job(scheduled_prune, trigger="interval", seconds=RETENTION_EVERY.total_seconds(),
                                   next_run_time=now_utc(), id="retention", jobstore="memory",
                                   replace_existing=True)
            self._schedule_retraining()
            self._exit = heartbeat(self.ledger, self.lease, extra=self.lock.renew, on_lost=self.request_stop)
            self._exit.__enter__()
            self.http.start()
            self.delivery.start()
            self.started_at = now_utc()
            self.scheduler.resume()
        except BaseException:
            self._teardown()
            raise

    def _sync_jobs(self) -> None:
        for job in self.scheduler.get_jobs(jobstore="default"):
            if job.id not in self.schedules:
                job.remove()  # a schedule removed from the config
        now = now_utc()
        for job_id, schedule in self.schedules.items():
            self.scheduler.add_job("monitor.service:scheduled_tick", trigger=schedule.trigger(), args=[job_id],
                                   id=job_id, name=f"{schedule.model}/{schedule.check}", jobstore="default",
                                   replace_existing=True)
            # Catch up now: the ledger backfills what was missed while we were down.
            self._wake(job_id, now)

    def _wake(self, job_id: str, when: datetime) -> None:
        self.scheduler.add_job(scheduled_tick, trigger="date", run_date=when, args=[job_id],
                               id=f"wake:{job_id}", jobstore="memory", replace_existing=True)

    def tick(self, job_id: str) -> TickReport | None:
        schedule = self.schedules.get(job_id)
        if schedule is None:
            log.warning("no schedule %s in the config; ignored", job_id)
            return None
        report = self.jobs.tick(schedule)
        if report.waiting and not self._stopped.is_set():
            self._wake(job_id, min(report.waiting))  # a window waiting for its delay (labels)
        return report

    def _schedule_retraining(self) -> None:
        """Models with a retrain schedule or alert policy: checked now and every RETRAIN_CHECK_EVERY."""
        from monitor.retrain_watch import RETRAIN_CHECK_EVERY, RetrainWatcher, watched_models

        self.retrainer = RetrainWatcher(self.config, self.store)
        for model in watched_models(self.config):
            self.scheduler.add_job(scheduled_retrain, trigger="interval", args=[model],
                                   seconds=RETRAIN_CHECK_EVERY.total_seconds(), next_run_time=now_utc(),
                                   id=f"retrain:{model}", jobstore="memory", replace_existing=True,
                                   max_instances=1)

    def retrain_if_due(self, model: str):
        return self.retrainer.check(model)

    def prune(self) -> dict[str, int]:
        """Apply `store.retention`; a failure is logged, never fatal to the service."""
        from monitor.retention import prune

        try:
            removed = prune(self.store.engine, self.config.store.retention.policy())
        except Exception:
            log.exception("retention prune failed")
            return {}
        if any(removed.values()):
            log.info("retention pruned %s", ", ".join(f"{n} {k}" for k, n in removed.items() if n))
        return removed

    def health(self) -> dict:
        running = getattr(self, "scheduler", None) is not None and self.scheduler.running
        return {"status": "ok" if running and not self._stopped.is_set() else "stopping",
                "schedules": len(self.schedules),
                "started_at": self.started_at.isoformat() if self.started_at else None}

    def request_stop(self) -> None:
        self._stopped.set()

    def wait(self) -> None:
        while not self._stopped.wait(1.0):
            pass

    def stop(self) -> None:
        self._stopped.set()
        self._teardown()

    def _teardown(self) -> None:
        global _ACTIVE
        jobs = getattr(self, "jobs", None)
        if jobs is not None:
            jobs.stopping.set()
        scheduler = getattr(self, "scheduler", None)
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=False)
        for part in ("http", "delivery"):
            component = getattr(self, part, None)
            if component is not None:
                try:
                    component.stop()
                except Exception:  # stopping something that never started
                    pass
        if self._exit is not None:
            self._exit.__exit__(None, None, None)
            self._exit = None
        if getattr(self, "ledger", None) is not None:
            try:
                self.ledger.release_own()  # what we were running re-runs at the next start
                self.lock.release()
            except Exception:
                log.exception("could not release the store lock")
        if _ACTIVE is self:
            _ACTIVE = None
        if getattr(self, "store", None) is not None:
            self.store.close()
