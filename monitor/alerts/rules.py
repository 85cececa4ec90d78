"""From check results to alert messages: dedup keys, cooldown and resolve notifications.

One dedup key per (model, check, feature, severity) — the feature is "" for a check-level
alert (a check without features, or one that failed as a whole) — tracked per route in
`driftline_alert_state`:

- a key that becomes active is notified `firing`, unless the route notified this key less
  than `cooldown` ago (a flapping alert); it is then notified once the cooldown has passed
  and it is still active;
- an active key that is no longer found is notified `resolved` (same key) if its firing
  was notified;
- a feature whose status is `error` (missing or retyped column) counts as `alert`; `warn`
  keys are used by routes with `min_severity: warn`;
- results of a window older than the newest one a key has seen do not change it (a
  backfill runs oldest first, and a late re-run cannot undo a newer state).

Message ids are derived from (route, key, kind, window), so evaluating the same window
again (a re-run after a crash) queues nothing new.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select, update

from core.results import CheckResult
from monitor.alerts.outbox import alert_state, enqueue
from monitor.alerts.outbox import _insert_ignore as insert_ignore
from monitor.alerts.sinks import AlertMessage, Sink, build_sink
from monitor.config import AlertRouteConfig, ModelConfig
from core.errors import ConfigError
from monitor.ledger import aware, naive, now_utc

SEVERITY_OF = {"warn": "warn", "alert": "alert", "error": "alert"}


@dataclass(frozen=True)
class Route:
    id: str  # "<model>/<name>": the outbox and alert-state key
    model: str
    name: str
    config: AlertRouteConfig
    sink: Sink

    @property
    def levels(self) -> tuple[str, ...]:
        return ("warn", "alert") if self.config.min_severity == "warn" else ("alert",)


def routes_for(model: ModelConfig, base_dir: Path | None = None) -> list[Route]:
    routes, seen = [], set()
    for config in model.alerts:
        name = config.name or config.sink
        if name in seen:
            raise ConfigError(f"models.{model.name}.alerts: two routes named {name!r}; give each a distinct name")
        seen.add(name)
        routes.append(Route(f"{model.name}/{name}", model.name, name, config, build_sink(config, base_dir)))
    return routes


def dedup_key(model: str, check: str, feature: str, severity: str) -> str:
    return f"{model}|{check}|{feature}|{severity}"


def message_id(route_id: str, key: str, kind: str, window_end: datetime) -> str:
    text = f"{route_id}\n{key}\n{kind}\n{naive(window_end).isoformat()}"
    return "msg_" + hashlib.sha256(text.encode()).hexdigest()[:32]


def alert_keys(model: str, result: CheckResult, levels: tuple[str, ...]) -> dict[str, dict]:
    """Active keys of one result at the given severities, with what a message shows."""
    found: dict[str, dict] = {}
    for feature in result.features:
        severity = SEVERITY_OF.get(feature.status)
        if severity in levels:
            why = "; ".join(feature.reasons) or feature.message or ""
            found[dedup_key(model, result.check, feature.feature, severity)] = dict(
                feature=feature.feature, severity=severity, status=feature.status, score=feature.score,
                threshold=feature.threshold, method=feature.method, why=why)
    if not any(SEVERITY_OF.get(f.status) for f in result.features):
        severity = SEVERITY_OF.get(result.status)
        if severity in levels:
            notes = result.details.get("tolerance_notes", [])  # a widened tolerance explains a quiet or late alert
            why = str(result.details.get("error", "") or "; ".join(notes))[:300]
            found[dedup_key(model, result.check, "", severity)] = dict(
                feature="", severity=severity, status=result.status, score=None, threshold=None, method=None,
                why=why)
    return found


def _summary(model: str, check: str, info: dict, kind: str, start: str | None, end: str | None) -> str:
    subject = f"{model} {check}" + (f" {info['feature']}" if info["feature"] else "")
    if kind == "resolved":
        return f"{subject}: back to normal in {start}..{end}"
    detail = ""
    if info.get("score") is not None:
        detail = f" ({info.get('method')} {info['score']:.4g}"
        detail += f" > {info['threshold']:.4g})" if info.get("threshold") is not None else ")"
    why = f": {info['why']}" if info.get("why") else ""
    return f"{subject}: {info['status']}{detail} in {start}..{end}{why}"[:500]


def evaluate(connection, routes: list[Route], model: str, result: CheckResult, window_end: datetime,
             now: datetime | None = None) -> int:
    """Update the alert state for one result and queue its messages; returns how many were queued."""
    now = now or now_utc()
    queued = 0
    if result.status == "pending":  # not judged yet (labels): neither fires nor resolves anything
        return 0
    for route in routes:
        current = alert_keys(model, result, route.levels)
        known = {row.dedup_key: row for row in connection.execute(select(alert_state).where(
            alert_state.c.route == route.id, alert_state.c.model == model,
            alert_state.c.check_name == result.check))}
        for key, info in current.items():
            row = known.get(key)
            if row is not None and row.last_window_end is not None and aware(row.last_window_end) > window_end:
                continue
            last = aware(row.last_notified_at) if row is not None else None
            cooled = last is None or now - last >= route.config.cooldown
            fire = cooled and (row is None or row.notified != "firing")
            since = aware(row.active_since) if row is not None and row.active else now
            values = dict(active=True, active_since=naive(since), last_window_end=naive(window_end),
                          updated_at=naive(now))
            if fire:
                message = _message(route, key, "firing", info, result, window_end, since, now)
                values.update(notified="firing", last_notified_at=naive(now), payload_json=json.dumps(message.to_dict()))
                queued += enqueue(connection, message, route.sink.kind, route.config.max_attempts, now)
            _save(connection, route, model, result.check, key, info, row, values)
        for key, row in known.items():
            if key in current or not row.active:
                continue
            if row.last_window_end is not None and aware(row.last_window_end) > window_end:
                continue
            values = dict(active=False, last_window_end=naive(window_end), updated_at=naive(now))
            if row.notified == "firing":
                info = dict(feature=row.feature, severity=row.severity, status="ok")
                message = _message(route, key, "resolved", info, result, window_end, aware(row.active_since), now)
                values.update(notified="resolved", last_notified_at=naive(now))
                queued += enqueue(connection, message, route.sink.kind, route.config.max_attempts, now)
            connection.execute(update(alert_state).where(alert_state.c.id == row.id).values(**values))
    return queued


def _message(route: Route, key: str, kind: str, info: dict, result: CheckResult, window_end: datetime,
             since: datetime | None, now: datetime) -> AlertMessage:
    return AlertMessage(
        id=message_id(route.id, key, kind, window_end), kind=kind, dedup_key=key, route=route.id,
        model=route.model, check=result.check, feature=info["feature"], severity=info["severity"],
        status=info["status"], summary=_summary(route.model, result.check, info, kind, result.window_start,
                                                result.window_end),
        window_start=result.window_start, window_end=result.window_end, score=info.get("score"),
        threshold=info.get("threshold"), method=info.get("method"),
        starts_at=since.isoformat() if since else None, created_at=now.isoformat())


def _save(connection, route: Route, model: str, check: str, key: str, info: dict, row, values: dict) -> None:
    if row is None:
        connection.execute(insert_ignore(connection, alert_state, dict(
            route=route.id, dedup_key=key, model=model, check_name=check, feature=info["feature"],
            severity=info["severity"], notified=values.pop("notified", None),
            last_notified_at=values.pop("last_notified_at", None), **values)))
    else:
        connection.execute(update(alert_state).where(alert_state.c.id == row.id).values(**values))


def make_test_message(route: Route, now: datetime | None = None) -> AlertMessage:
    now = now or now_utc()
    key = dedup_key(route.model, "driftline_test", "", "warn")
    return AlertMessage(
        id=f"msg_test_{uuid.uuid4().hex[:24]}", kind="test", dedup_key=key, route=route.id, model=route.model,
        check="driftline_test", feature="", severity="warn", status="test",
        summary=f"driftline test alert for route {route.name} of model {route.model}",
        created_at=now.isoformat(), starts_at=now.isoformat())
