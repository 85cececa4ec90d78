"""The durable alert outbox: messages are written in the store, then delivered.

A message is inserted in the same transaction that records the run's outcome in the
ledger, under a deterministic `message_id` (unique), so a re-run of the same window
cannot queue it twice. Delivery is at least once: a row is leased while it is being
sent (a crash mid-send leaves it to be retried), retried with exponential backoff and
jitter (never sooner than a 429/503 `Retry-After`), and dead-lettered after the route's
`max_attempts` or at once on a permanent error. `driftline alerts list` shows it all.

Messages of one (route, dedup key) go out in the order they were queued: a message is due
only when no earlier one of its key is still pending or being sent, so a `resolved` never
overtakes its `firing` while that waits out a backoff (a dead-lettered one holds nothing
back). `serve`'s worker delivers each route in a lane of its own, so a receiver that hangs
holds up its own route only (each attempt is bounded by the sink's deadline).
"""

from __future__ import annotations

import json
import logging
import random
import threading
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Engine

from monitor.alerts.sinks import AlertMessage, DeliveryError, Sink
from core.errors import ConfigError
from monitor.ledger import aware, naive, now_utc

log = logging.getLogger("driftline.alerts")
metadata = MetaData()

outbox = Table(
    "driftline_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", String(64), nullable=False),
    Column("route", String(64), nullable=False),
    Column("sink", String(64), nullable=False),  # the sink kind: the bounded metric label
    Column("kind", String(16), nullable=False),  # firing | resolved | test
    Column("dedup_key", String(500), nullable=False),
    Column("payload_json", Text, nullable=False),
    Column("state", String(16), nullable=False),  # pending | sending | delivered | dead
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("lease_expires_at", DateTime(timezone=True)),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True)),
    UniqueConstraint("message_id", name="uq_outbox_message"),
)

alert_state = Table(
    "driftline_alert_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("route", String(64), nullable=False),
    Column("dedup_key", String(500), nullable=False),
    Column("model", String(100), nullable=False),
    Column("check_name", String(100), nullable=False),
    Column("feature", String(200), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("notified", String(16)),  # firing | resolved | None (never notified)
    Column("last_notified_at", DateTime(timezone=True)),
    Column("active_since", DateTime(timezone=True)),
    Column("last_window_end", DateTime(timezone=True)),
    Column("payload_json", Text),  # the last firing message (Alertmanager re-sends it)
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("route", "dedup_key", name="uq_alert_state_key"),
)

SENDING_LEASE = timedelta(minutes=2)
REFRESH_LANE = "(alertmanager refresh)"  # not a route id: those are "<model>/<name>"
MAX_ERROR = 500


def _insert_ignore(engine_or_connection, table, row: dict):
    if engine_or_connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table).values(**row).on_conflict_do_nothing()


def enqueue(connection, message: AlertMessage, sink_kind: str, max_attempts: int,
            now: datetime | None = None) -> bool:
    """Queue a message; False when a message with this id was already queued."""
    now = now or now_utc()
    row = dict(message_id=message.id, route=message.route, sink=sink_kind, kind=message.kind,
               dedup_key=message.dedup_key, payload_json=json.dumps(message.to_dict()), state="pending",
               attempts=0, max_attempts=max_attempts, next_attempt_at=naive(now), created_at=naive(now),
               updated_at=naive(now))
    # RETURNING, not rowcount: PostgreSQL reports -1 for INSERT .. ON CONFLICT DO NOTHING.
    return connection.execute(_insert_ignore(connection, outbox, row).returning(outbox.c.id)).first() is not None


class Outbox:
    """Delivers due messages through the configured sinks (keyed by route name)."""

    def __init__(self, engine: Engine, sinks: dict[str, Sink], *, base_delay: float = 5.0,
                 max_delay: float = 3600.0, rng: random.Random | None = None,
                 clock: Callable[[], datetime] = now_utc) -> None:
        self.engine = engine
        self.sinks = sinks
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.rng = rng or random.Random()
        self.clock = clock

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Exponential with 'equal jitter' (half fixed, half random); at least Retry-After."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** max(attempt - 1, 0))
        delay = ceiling / 2 + self.rng.uniform(0, ceiling / 2)
        return max(delay, retry_after or 0.0)

    def due(self, now: datetime, limit: int = 50, skip_routes: frozenset[str] = frozenset()) -> list:
        """Messages to send now: the oldest unsent one of each key, if its time has come."""
        earlier = outbox.alias("earlier")
        blocked = select(earlier.c.id).where(
            earlier.c.route == outbox.c.route, earlier.c.dedup_key == outbox.c.dedup_key,
            earlier.c.id < outbox.c.id, earlier.c.state.in_(("pending", "sending"))).exists()
        query = select(outbox).where(or_(
            and_(outbox.c.state == "pending", outbox.c.next_attempt_at <= naive(now)),
            and_(outbox.c.state == "sending", outbox.c.lease_expires_at <= naive(now)),
        ), ~blocked).order_by(outbox.c.next_attempt_at, outbox.c.id).limit(limit)
        if skip_routes:
            query = query.where(outbox.c.route.not_in(sorted(skip_routes)))
        with self.engine.connect() as connection:
            return list(connection.execute(query))

    def deliver_due(self, limit: int = 50) -> int:
        """One pass over due messages, one after the other; returns how many were delivered."""
        return self.deliver_rows(self.due(self.clock(), limit))

    def deliver_rows(self, rows) -> int:
        delivered = 0
        for row in rows:
            if self.deliver(row):
                delivered += 1
        return delivered

    def deliver(self, row) -> bool:
        now = self.clock()
        with self.engine.begin() as connection:
            claimed = connection.execute(update(outbox).where(
                outbox.c.id == row.id, outbox.c.state == row.state, outbox.c.attempts == row.attempts).values(
                state="sending", attempts=row.attempts + 1, lease_expires_at=naive(now + SENDING_LEASE),
                updated_at=naive(now)))
        if claimed.rowcount != 1:
            return False  # another worker took it
        attempt = row.attempts + 1
        message = AlertMessage.from_dict(json.loads(row.payload_json))
        sink = self.sinks.get(row.route)
        try:
            if sink is None:
                raise DeliveryError(f"alert route {row.route!r} is no longer configured", permanent=True)
            sink.send(message)
        except Exception as exc:  # any sink failure is recorded, never lost
            # A refused URL, a 4xx or a missing secret will not get better by retrying.
            permanent = (isinstance(exc, DeliveryError) and exc.permanent) or isinstance(exc, ConfigError)
            retry_after = exc.retry_after if isinstance(exc, DeliveryError) else None
            text = str(exc) if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {exc}"
            dead = permanent or attempt >= row.max_attempts
            later = self.clock() + timedelta(seconds=self.backoff(attempt, retry_after))
            self._settle(row.id, "dead" if dead else "pending", last_error=text[:MAX_ERROR],
                         next_attempt_at=naive(later))
            log.warning("alert %s via %s: attempt %d failed%s: %s", message.id, row.route, attempt,
                        " (dead-lettered)" if dead else "", text[:200])
            return False
        self._settle(row.id, "delivered", delivered_at=naive(self.clock()), last_error=None)
        return True

    def _settle(self, row_id: int, state: str, **values) -> None:
        with self.engine.begin() as connection:
            connection.execute(update(outbox).where(outbox.c.id == row_id).values(
                state=state, lease_expires_at=None, updated_at=naive(self.clock()), **values))

    def refresh_alertmanager(self) -> int:
        """Re-send every active, notified alert to Alertmanager routes (their endsAt moves on)."""
        from monitor.alerts.sinks import AlertmanagerSink

        sent = 0
        routes = [name for name, sink in self.sinks.items() if isinstance(sink, AlertmanagerSink)]
        if not routes:
            return 0
        with self.engine.connect() as connection:
            rows = list(connection.execute(select(alert_state.c.route, alert_state.c.payload_json).where(
                alert_state.c.route.in_(routes), alert_state.c.active.is_(True),
                alert_state.c.notified == "firing")))
        for route, payload in rows:
            try:
                self.sinks[route].send(AlertMessage.from_dict(json.loads(payload)))
                sent += 1
            except Exception as exc:  # the outbox already delivered it once; this is best effort
                log.warning("alertmanager refresh via %s failed: %s", route, str(exc)[:200])
        return sent


def rows(engine: Engine, state: str | None = None, limit: int = 100) -> list[dict]:
    query = select(outbox).order_by(outbox.c.id.desc()).limit(limit)
    if state:
        query = query.where(outbox.c.state == state)
    with engine.connect() as connection:
        found = []
        for row in connection.execute(query):
            data = {k: aware(v) if isinstance(v, datetime) else v for k, v in row._mapping.items()}
            found.append(data)
        return found


def counts(engine: Engine) -> dict[tuple[str, str], int]:
    """(sink kind, state) -> messages; what the exporter reports."""
    query = select(outbox.c.sink, outbox.c.state, func.count()).group_by(outbox.c.sink, outbox.c.state)
    with engine.connect() as connection:
        return {(sink, state): n for sink, state, n in connection.execute(query)}


def active_alerts(engine: Engine) -> list[dict]:
    query = select(alert_state).where(alert_state.c.active.is_(True)).order_by(alert_state.c.route,
                                                                             alert_state.c.dedup_key)
    with engine.connect() as connection:
        return [{k: aware(v) if isinstance(v, datetime) else v for k, v in row._mapping.items()}
                for row in connection.execute(query)]


class DeliveryWorker(threading.Thread):
    """Background delivery for `serve`: wakes on `poke()` or every `interval` seconds and
    hands each route's due messages to a lane (a thread) of that route, unless the route's
    lane is still busy; the lane pokes the worker when it is done, for what came due since."""

    def __init__(self, box: Outbox, interval: float = 1.0, refresh_every: float = 60.0) -> None:
        super().__init__(name="driftline-outbox", daemon=True)
        self.box = box
        self.interval = interval
        self.refresh_every = refresh_every
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._last_refresh = 0.0
        self._lanes: dict[str, threading.Thread] = {}

    def poke(self) -> None:
        self._wake.set()

    def stop(self, wait: float = 5.0) -> None:
        """Stop dispatching; give sends in flight up to `wait` seconds to record their outcome
        (one cut short stays leased and is sent again after a restart: at least once)."""
        import time

        self._halt.set()
        self._wake.set()
        end = time.monotonic() + wait
        for lane in list(self._lanes.values()):
            lane.join(max(end - time.monotonic(), 0.0))

    def run(self) -> None:
        import time

        while not self._halt.is_set():
            try:
                self._dispatch()
                if time.monotonic() - self._last_refresh >= self.refresh_every:
                    self._last_refresh = time.monotonic()
                    self._start_lane(REFRESH_LANE, self._refresh)
            except Exception:  # keep delivering; the store may be briefly unavailable
                log.exception("alert delivery pass failed")
            self._wake.wait(self.interval)
            self._wake.clear()

    def _dispatch(self) -> None:
        self._lanes = {route: lane for route, lane in self._lanes.items() if lane.is_alive()}
        by_route: dict[str, list] = {}
        for row in self.box.due(self.box.clock(), skip_routes=frozenset(self._lanes)):
            by_route.setdefault(row.route, []).append(row)
        for route, rows in by_route.items():
            self._start_lane(route, self._lane, route, rows)

    def _start_lane(self, name: str, target, *args) -> None:
        lane = self._lanes.get(name)
        if lane is not None and lane.is_alive():
            return
        lane = threading.Thread(target=target, args=args, name=f"driftline-outbox-{name}", daemon=True)
        self._lanes[name] = lane
        lane.start()

    def _refresh(self) -> None:
        try:
            self.box.refresh_alertmanager()
        except Exception:  # best effort; the next refresh tries again
            log.exception("alertmanager refresh failed")

    def _lane(self, route: str, rows: list) -> None:
        try:
            self.box.deliver_rows(rows)
        except Exception:  # the rows stay pending or leased; the next pass retries them
            log.exception("alert delivery via %s failed", route)
        finally:
            self.poke()
