"""One `driftline serve` per results store: a row lease in the store itself.

It works for any database URL (SQLite and PostgreSQL alike) and across machines: the
holder renews `expires_at` from its heartbeat; another process may take the row over
only once the lease has expired, or at once when the holder was a process on this host
that no longer exists (a kill -9 does not block the restart). APScheduler 3.x forbids
two schedulers on one job store; this is what enforces it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from core.errors import DriftlineError
from monitor.ledger import Owner, aware, instance_lock, naive, now_utc

LOCK_NAME = "serve"


class ServiceLockedError(DriftlineError):
    """Another `driftline serve` holds the store."""


class InstanceLock:
    def __init__(self, engine: Engine, owner: Owner, ttl: timedelta = timedelta(seconds=30),
                 name: str = LOCK_NAME) -> None:
        self.engine = engine
        self.owner = owner
        self.ttl = ttl
        self.name = name

    def acquire(self, now: datetime | None = None) -> None:
        now = now or now_utc()
        values = dict(owner=self.owner.id, acquired_at=naive(now), heartbeat_at=naive(now),
                      expires_at=naive(now + self.ttl))
        with self.engine.begin() as connection:
            row = connection.execute(select(instance_lock).where(instance_lock.c.name == self.name)).first()
            if row is None:
                if self.engine.dialect.name == "postgresql":
                    from sqlalchemy.dialects.postgresql import insert
                else:
                    from sqlalchemy.dialects.sqlite import insert
                done = connection.execute(insert(instance_lock).values(name=self.name, **values)
                                          .on_conflict_do_nothing().returning(instance_lock.c.name)).first()
                if done is not None:  # RETURNING: PostgreSQL's rowcount is -1 for ON CONFLICT DO NOTHING
                    return
                row = connection.execute(select(instance_lock).where(instance_lock.c.name == self.name)).first()
            alive = self.owner.holder_alive(row.owner)
            if row.owner != self.owner.id and alive is not False and aware(row.expires_at) > now:
                age = (now - aware(row.heartbeat_at)).total_seconds()
                raise ServiceLockedError(
                    f"another `driftline serve` is already running on this results store "
                    f"({self.owner.describe(row.owner)}, last heartbeat {age:.0f}s ago); stop it first, or wait "
                    f"until its lease expires at {aware(row.expires_at):%Y-%m-%d %H:%M:%S} UTC if it is gone")
            taken = connection.execute(update(instance_lock).where(
                instance_lock.c.name == self.name, instance_lock.c.owner == row.owner).values(**values))
            if taken.rowcount != 1:
                raise ServiceLockedError("another `driftline serve` took the results store lock at the same moment")

    def renew(self, now: datetime | None = None) -> bool:
        """Extend the lease; False means we lost it (the service must stop)."""
        now = now or now_utc()
        with self.engine.begin() as connection:
            changed = connection.execute(update(instance_lock).where(
                instance_lock.c.name == self.name, instance_lock.c.owner == self.owner.id).values(
                heartbeat_at=naive(now), expires_at=naive(now + self.ttl)))
        return changed.rowcount == 1

    def release(self) -> None:
        with self.engine.begin() as connection:
            connection.execute(instance_lock.delete().where(
                instance_lock.c.name == self.name, instance_lock.c.owner == self.owner.id))

    def holder(self) -> dict | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(instance_lock).where(instance_lock.c.name == self.name)).first()
        return None if row is None else {k: aware(v) if isinstance(v, datetime) else v
                                         for k, v in row._mapping.items()}
