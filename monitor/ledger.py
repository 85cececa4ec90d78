"""The run ledger: one row per (model, check, window) saying what happened to that window.

APScheduler only wakes us; this ledger decides what is due, so nothing is silently lost
or run twice:

- `plan` accepts every window a schedule has closed since its last known window: the
  newest `1 + max_backfill_windows` become `pending` (due once `window_end + delay` has
  passed — labels that arrive late keep a window pending), older ones are recorded
  `skipped` (reason `backfill_limit`), at most MAX_SKIPPED_ROWS of them; a span older than
  that (a `start` years back) is one `backfill_truncated` event, so a plan is bounded work.
  A window that already has a stored result (e.g. from `driftline run`) is adopted as
  `succeeded`.
- `claim` turns a due row into `running` under a lease (owner, token, expiry) that the
  service's heartbeat renews. A row whose lease expired, or whose owner process on this
  host is gone (kill -9), is claimable again, so the window re-runs after a restart.
  Every update is fenced by the claim's token: a run that timed out cannot finish it.
- `finish` records `succeeded` / `failed` with duration and result status; retried
  attempts count in `failures`. `defer` puts a window back to `pending` when its check
  answered `pending` (labels not mature, checks/labelled.py) until `labels_mature_at`. Events (overlap skipped, retry, lease expired, timeout)
  go to `driftline_job_events`.

Timestamps are stored as naive UTC, like the results store.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine

from monitor.scheduling import Schedule, utc

metadata = MetaData()

ledger = Table(
    "driftline_ledger",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(100), nullable=False),
    Column("check_name", String(100), nullable=False),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("window_end", DateTime(timezone=True), nullable=False),
    Column("grid", String(200), nullable=False),  # the schedule grid that produced it; "manual" for run-now
    Column("state", String(16), nullable=False),  # pending | running | succeeded | failed | skipped
    Column("reason", Text),  # skip reason code, adoption note or the last error (bounded)
    Column("result_status", String(32)),
    Column("attempts", Integer, nullable=False),
    Column("failures", Integer, nullable=False),
    Column("owner", String(200)),
    Column("token", String(32)),
    Column("lease_expires_at", DateTime(timezone=True)),
    Column("not_before", DateTime(timezone=True)),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("duration_seconds", Float),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("revision", Integer, nullable=False),  # bumped by every state change (the exporter's cache key)
    UniqueConstraint("model", "check_name", "window_start", "window_end", name="uq_ledger_key"),
)

job_events = Table(
    "driftline_job_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(100), nullable=False),
    Column("check_name", String(100), nullable=False),
    Column("window_start", DateTime(timezone=True)),
    Column("window_end", DateTime(timezone=True)),
    Column("kind", String(32), nullable=False),  # overlap | retry | lease_expired | timeout
    Column("message", Text),
    Column("at", DateTime(timezone=True), nullable=False),
)

instance_lock = Table(
    "driftline_instance_lock",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("acquired_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

TERMINAL = ("succeeded", "failed", "skipped")
MAX_REASON = 500
MAX_SKIPPED_ROWS = 1_000  # skipped windows recorded one by one per plan, beyond max_backfill_windows


def naive(moment: datetime | None) -> datetime | None:
    return None if moment is None else utc(moment).replace(tzinfo=None)


def aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else utc(moment)


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


_LIVE_OWNERS: set[str] = set()  # owners created in this process (same pid, other nonce: a dead process)


@dataclass(frozen=True)
class Owner:
    """Who holds a lease: `host:pid:nonce`. A dead pid on this host frees its leases at once."""

    id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}")

    def __post_init__(self) -> None:
        _LIVE_OWNERS.add(self.id)

    def holder_alive(self, other: str | None) -> bool | None:
        """True/False when we can tell (same host), None otherwise (trust the lease)."""
        if not other:
            return False
        if other == self.id:
            return True
        try:
            host, pid, _ = other.rsplit(":", 2)
            pid_number = int(pid)
        except ValueError:
            return None
        if host != socket.gethostname():
            return None
        if pid_number == os.getpid():  # this process, or an earlier one that had our pid
            return other in _LIVE_OWNERS
        try:
            os.kill(pid_number, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def describe(self, other: str) -> str:
        try:
            host, pid, _ = other.rsplit(":", 2)
            return f"host {host} pid {pid}"
        except ValueError:
            return other


@dataclass(frozen=True)
class Claim:
    id: int
    model: str
    check: str
    start: datetime
    end: datetime
    token: str
    attempt: int


@dataclass
class Plan:
    due: list[tuple[datetime, datetime]] = field(default_factory=list)  # oldest first
    skipped: list[tuple[datetime, datetime]] = field(default_factory=list)
    waiting: list[datetime] = field(default_factory=list)  # not_before of pending windows not due yet
    adopted: list[tuple[datetime, datetime]] = field(default_factory=list)
    expired: int = 0
    truncated: bool = False  # older windows than the skipped ones went into one backfill_truncated event


class Ledger:
    def __init__(self, engine: Engine, owner: Owner | None = None) -> None:
        self.engine = engine
        self.owner = owner or Owner()

    # --- planning -------------------------------------------------------------------

    def plan(self, schedule: Schedule, now: datetime, delay: timedelta = timedelta(0)) -> Plan:
        """Accept the windows closed since the last known one; return what is due now."""
        from monitor.store import runs

        now = utc(now)
        cfg = schedule.config
        key = and_(ledger.c.model == schedule.model, ledger.c.check_name == schedule.check)
        result = Plan()
        with self.engine.begin() as connection:
            cursor = connection.execute(
                select(func.max(ledger.c.window_end)).where(key, ledger.c.grid == schedule.grid)).scalar()
            if cursor is None and cfg.start is None:
                ends = schedule.closed_ends(now, limit=cfg.max_backfill_windows + 1)  # a new schedule
            else:
                # Bounded however far back `start` (or the last known window) lies: the newest windows
                # are run or recorded skipped one by one, the older span in one event.
                limit = cfg.max_backfill_windows + 1 + MAX_SKIPPED_ROWS
                ends = schedule.closed_ends(now, limit=limit + 1, after=aware(cursor))
                if len(ends) > limit:
                    ends = ends[:limit]
                    since = aware(cursor) or utc(cfg.start)
                    self._event(connection, schedule.model, schedule.check, "backfill_truncated", None, None,
                                f"windows from {since.isoformat()} to {schedule.start_for(ends[-1]).isoformat()} "
                                f"are neither run nor recorded one by one (more than max_backfill_windows + "
                                f"{MAX_SKIPPED_ROWS} skipped)", now)
                    result.truncated = True
            windows = [(schedule.start_for(end), end) for end in ends]  # newest first
            if windows:
                known = self._existing(connection, key, windows)
                stored = {
                    (aware(s), aware(e)): (status, aware(at))
                    for s, e, status, at in connection.execute(
                        select(runs.c.window_start, runs.c.window_end, runs.c.status, runs.c.finished_at).where(
                            runs.c.model == schedule.model, runs.c.check_name == schedule.check,
                            runs.c.window_end <= naive(windows[0][1]), runs.c.window_end >= naive(windows[-1][1])))
                }
                accepted = 0
                for start, end in windows:
                    if (start, end) in known:
                        continue
                    row = self._row(schedule, start, end, now)
                    if (start, end) in stored and stored[(start, end)][0] != "pending":
                        status, finished = stored[(start, end)]
                        row.update(state="succeeded", reason="adopted: result already stored",
                                   result_status=status, finished_at=naive(finished))
                        result.adopted.append((start, end))
                    elif accepted <= cfg.max_backfill_windows:
                        row.update(state="pending", not_before=naive(end + delay))
                        accepted += 1
                    else:
                        row.update(state="skipped", reason="backfill_limit", finished_at=naive(now))
                        result.skipped.append((start, end))
                    connection.execute(self._insert_ignore(row))
            for row in connection.execute(select(ledger).where(key, ledger.c.state.in_(("pending", "running")))):
                window = (aware(row.window_start), aware(row.window_end))
                if row.state == "pending":
                    if aware(row.not_before) is None or aware(row.not_before) <= now:
                        result.due.append(window)
                    else:
                        result.waiting.append(aware(row.not_before))
                elif self._stale(row, now):
                    result.due.append(window)
                    result.expired += 1
        result.due.sort(key=lambda w: w[1])
        result.adopted.sort(key=lambda w: w[1])
        return result

    def _existing(self, connection, key, windows) -> set:
        ends = [naive(e) for _, e in windows]
        rows = connection.execute(select(ledger.c.window_start, ledger.c.window_end).where(
            key, ledger.c.window_end <= max(ends), ledger.c.window_end >= min(ends)))
        return {(aware(s), aware(e)) for s, e in rows}

    def _row(self, schedule: Schedule, start, end, now) -> dict:
        return dict(model=schedule.model, check_name=schedule.check, window_start=naive(start),
                    window_end=naive(end), grid=schedule.grid, attempts=0, failures=0, updated_at=naive(now),
                    revision=0)

    def _insert_ignore(self, row: dict):
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        return dialect_insert(ledger).values(**row).on_conflict_do_nothing()

    def _stale(self, row, now: datetime) -> bool:
        """A running row nobody is working on any more."""
        alive = self.owner.holder_alive(row.owner)
        if alive is False:
            return True
        expires = aware(row.lease_expires_at)
        return expires is None or expires <= now

    # --- running --------------------------------------------------------------------

    def claim(self, model: str, check: str, start: datetime, end: datetime, *, lease: timedelta,
              now: datetime | None = None, grid: str = "manual", force: bool = False) -> Claim | None:
        """Take the window for a run; None when it is done (unless force), not due or busy."""
        now = utc(now or now_utc())
        start, end = utc(start), utc(end)
        token = uuid.uuid4().hex
        where = and_(ledger.c.model == model, ledger.c.check_name == check,
                     ledger.c.window_start == naive(start), ledger.c.window_end == naive(end))
        running = dict(state="running", owner=self.owner.id, token=token, lease_expires_at=naive(now + lease),
                       started_at=naive(now), finished_at=None, duration_seconds=None, updated_at=naive(now))
        with self.engine.begin() as connection:
            row = connection.execute(select(ledger).where(where)).first()
            if row is None:
                # RETURNING, not rowcount: PostgreSQL reports -1 for INSERT .. ON CONFLICT DO NOTHING.
                inserted = connection.execute(self._insert_ignore(dict(
                    model=model, check_name=check, window_start=naive(start), window_end=naive(end), grid=grid,
                    attempts=1, failures=0, revision=0, **running)).returning(ledger.c.id)).first()
                return None if inserted is None else Claim(inserted[0], model, check, start, end, token, 1)
            if row.state == "running" and not self._stale(row, now):
                return None
            if row.state in TERMINAL and not force:
                return None
            if row.state == "pending" and row.not_before is not None and aware(row.not_before) > now and not force:
                return None
            if row.state == "running":
                self._event(connection, model, check, "lease_expired", start, end,
                            f"re-running: {self.owner.describe(row.owner or '')} stopped working on it", now)
            same = ledger.c.token.is_(None) if row.token is None else ledger.c.token == row.token
            changed = connection.execute(update(ledger).where(ledger.c.id == row.id, same, ledger.c.state == row.state)
                                         .values(attempts=ledger.c.attempts + 1, revision=ledger.c.revision + 1,
                                                 **running))
            if changed.rowcount != 1:
                return None
            return Claim(row.id, model, check, start, end, token, row.attempts + 1)

    def attempt_failed(self, claim: Claim, message: str, lease: timedelta, now: datetime | None = None) -> bool:
        """A transient failure: count it, keep the lease (the caller retries)."""
        now = utc(now or now_utc())
        with self.engine.begin() as connection:
            changed = connection.execute(self._fenced(claim).values(
                failures=ledger.c.failures + 1, reason=message[:MAX_REASON],
                lease_expires_at=naive(now + lease), updated_at=naive(now)))
            self._event(connection, claim.model, claim.check, "retry", claim.start, claim.end, message, now)
        return changed.rowcount == 1

    def finish(self, claim: Claim, state: str, *, now: datetime | None = None, reason: str | None = None,
               result_status: str | None = None, duration: float | None = None, connection=None) -> bool:
        """Record the outcome; False when the claim was lost (timed out, taken over)."""
        assert state in ("succeeded", "failed")
        now = utc(now or now_utc())
        values = dict(state=state, reason=(reason or None) and reason[:MAX_REASON], result_status=result_status,
                      finished_at=naive(now), duration_seconds=duration, lease_expires_at=None,
                      updated_at=naive(now))
        if state == "failed":
            values["failures"] = ledger.c.failures + 1
        statement = self._fenced(claim).values(**values)
        if connection is not None:
            return connection.execute(statement).rowcount == 1
        with self.engine.begin() as own:
            return own.execute(statement).rowcount == 1

    def defer(self, claim: Claim, not_before: datetime, reason: str, *, duration: float | None = None,
              now: datetime | None = None, connection=None) -> bool:
        """The check said `pending` (labels not mature): back to pending until `not_before`."""
        now = utc(now or now_utc())
        statement = self._fenced(claim).values(
            state="pending", not_before=naive(not_before), reason=reason[:MAX_REASON], result_status="pending",
            duration_seconds=duration, lease_expires_at=None, updated_at=naive(now))
        if connection is not None:
            return connection.execute(statement).rowcount == 1
        with self.engine.begin() as own:
            return own.execute(statement).rowcount == 1

    def _fenced(self, claim: Claim):
        return update(ledger).where(ledger.c.id == claim.id, ledger.c.token == claim.token,
                                    ledger.c.state == "running").values(revision=ledger.c.revision + 1)

    def heartbeat(self, lease: timedelta, now: datetime | None = None) -> int:
        now = utc(now or now_utc())
        with self.engine.begin() as connection:
            return connection.execute(update(ledger).where(
                ledger.c.owner == self.owner.id, ledger.c.state == "running").values(
                lease_expires_at=naive(now + lease))).rowcount

    def event(self, model: str, check: str, kind: str, message: str,
              window: tuple[datetime, datetime] | None = None, now: datetime | None = None) -> None:
        with self.engine.begin() as connection:
            self._event(connection, model, check, kind, *(window or (None, None)), message,
                        utc(now or now_utc()))

    @staticmethod
    def _event(connection, model, check, kind, start, end, message, now) -> None:
        connection.execute(insert(job_events).values(
            model=model, check_name=check, kind=kind, message=(message or "")[:MAX_REASON],
            window_start=naive(start), window_end=naive(end), at=naive(now)))

    # --- reading ----------------------------------------------------------------------

    def rows(self, model: str | None = None, check: str | None = None, state: str | None = None,
             limit: int = 100) -> list[dict]:
        query = select(ledger).order_by(ledger.c.window_end.desc(), ledger.c.check_name).limit(limit)
        query = _filtered(query, ledger, model, check)
        if state:
            query = query.where(ledger.c.state == state)
        with self.engine.connect() as connection:
            return [_plain(row) for row in connection.execute(query)]

    def events(self, model: str | None = None, check: str | None = None, limit: int = 100) -> list[dict]:
        query = _filtered(select(job_events).order_by(job_events.c.at.desc(), job_events.c.id.desc()).limit(limit),
                          job_events, model, check)
        with self.engine.connect() as connection:
            return [_plain(row) for row in connection.execute(query)]

    def latest(self, model: str, check: str, grid: str | None = None) -> dict | None:
        query = select(ledger).where(ledger.c.model == model, ledger.c.check_name == check)
        if grid:
            query = query.where(ledger.c.grid == grid)
        with self.engine.connect() as connection:
            row = connection.execute(query.order_by(ledger.c.window_end.desc()).limit(1)).first()
        return None if row is None else _plain(row)

    def release_own(self, now: datetime | None = None) -> int:
        """On a clean shutdown: make our running rows claimable at once."""
        now = utc(now or now_utc())
        with self.engine.begin() as connection:
            return connection.execute(update(ledger).where(
                ledger.c.owner == self.owner.id, ledger.c.state == "running").values(
                lease_expires_at=naive(now), owner=None)).rowcount


def _filtered(query, table, model, check):
    if model:
        query = query.where(table.c.model == model)
    if check:
        query = query.where(table.c.check_name == check)
    return query


def _plain(row) -> dict:
    data = dict(row._mapping)
    for name, value in data.items():
        if isinstance(value, datetime):
            data[name] = aware(value)
    if "check_name" in data:
        data["check"] = data.pop("check_name")
    return data
