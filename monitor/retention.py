"""Retention: prune what the store no longer needs (`store.retention`, `driftline db prune`).

What is pruned, each only when its age is configured:
- `results`: check results whose window ended before the cutoff (Grafana's history goes with them);
- `profiles`: stored serving profiles (hourly slices) of windows that ended before the cutoff; reference
  profiles and cached baselines are caches keyed by content, never aged out;
- `outbox`: alert messages delivered or dead-lettered before the cutoff (never pending ones);
- `job_events`: overlap/retry/timeout events before the cutoff.

The run ledger is kept whole: it is the memory of which windows ran or were skipped, so a
window it forgot could be planned again as missed. It holds one small row per window and
check (8 checks hourly for a year: 70k rows per model). Deletes run in one transaction per
table, so a prune interrupted half-way leaves whole tables consistent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, func, select
from sqlalchemy.engine import Engine

from monitor.ledger import naive, now_utc


@dataclass(frozen=True)
class Retention:
    results: timedelta | None = None
    profiles: timedelta | None = None
    outbox: timedelta | None = timedelta(days=30)
    job_events: timedelta | None = timedelta(days=90)


def _targets(retention: Retention, now: datetime):
    """(name, table, condition) for every configured age."""
    from monitor.alerts.outbox import outbox
    from monitor.ledger import job_events
    from monitor.store import profiles, runs

    def cutoff(age: timedelta) -> datetime:
        return naive(now - age)

    if retention.results is not None:
        yield "results", runs, runs.c.window_end < cutoff(retention.results)
    if retention.profiles is not None:
        yield "profiles", profiles, and_(profiles.c.role == "serving",
                                         profiles.c.window_end < cutoff(retention.profiles))
    if retention.outbox is not None:
        yield "outbox", outbox, and_(outbox.c.state.in_(("delivered", "dead")),
                                     outbox.c.updated_at < cutoff(retention.outbox))
    if retention.job_events is not None:
        yield "job_events", job_events, job_events.c.at < cutoff(retention.job_events)


def prune(engine: Engine, retention: Retention, now: datetime | None = None, dry_run: bool = False) -> dict[str, int]:
    """Delete (or with `dry_run` only count) what is older than its retention; rows per table."""
    now = now or now_utc()
    removed: dict[str, int] = {}
    for name, table, condition in _targets(retention, now):
        with engine.begin() as connection:
            if dry_run:
                removed[name] = int(connection.execute(select(func.count()).select_from(table)
                                                       .where(condition)).scalar_one())
            else:
                removed[name] = int(connection.execute(delete(table).where(condition)).rowcount or 0)
    return removed
