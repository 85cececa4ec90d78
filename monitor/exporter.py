"""Prometheus exporter: a custom collector that reads the results store at scrape time.

Registered on a `CollectorRegistry` the caller passes in (never the global one). It
reads every check's latest result per (model, check) — latest by window end — as
generic CheckResult JSON, so a new check is exported without changes here:

| metric | labels | from |
|---|---|---|
| `driftline_check_status` | model, check | result status: 0 ok, 1 warn, 2 alert; `error` is 2 (a check that cannot be evaluated is as serious as an alert); `insufficient_data` is -1; `pending` (labels not mature, or a scheduled check with no result yet) is -2 |
| `driftline_check_window_end_timestamp_seconds` | model, check | end of the latest window (staleness) |
| `driftline_check_rows` | model, check | `current_rows` of the latest window |
| `driftline_feature_drift_score` | model, check, feature, method | `features[].score` |
| `driftline_feature_status` | model, check, feature | `features[].status`, same values as check_status |
| `driftline_calibration_ratio`, `driftline_ece`, `driftline_auc`, `driftline_normalized_entropy`, `driftline_prediction_skew_ratio` | model, check, prediction, segment | declared points, below |
| `driftline_skew_mismatch_ratio` | model, check, feature | declared points, below |
| `driftline_feature_importance` | model, check, feature, method | declared points, below |
| `driftline_<name>` | model, check, the point's own labels | `metrics`: the points a result declares (core.results.MetricPoint); any check, plug-ins included |
| `driftline_job_duration_seconds` (histogram) | model, check | run ledger: finished runs |
| `driftline_job_last_success_timestamp_seconds` | model, check | run ledger |
| `driftline_job_failures_total` | model, check | run ledger: failed attempts, retries included |
| `driftline_job_skipped_total` | model, check, reason | ledger `backfill_limit` skips and `overlap` events |
| `driftline_job_windows` | model, check, state | ledger rows per state (pending, running, succeeded, failed, skipped) |
| `driftline_alerts_sent_total` / `driftline_alerts_dead_lettered_total` | sink | outbox: delivered / dead-lettered messages |
| `driftline_alerts_pending` | sink | outbox: messages waiting for delivery |
| `driftline_alerts_active` | model, check, severity | alert keys currently active (any route) |
| `driftline_store_up` | | 1 when the store could be read at this scrape |

The `driftline_<name>` value families (calibration ratio, ECE, AUC, NE, skew ratios,
importances, and any plug-in's) are the metric points each result declares
(`CheckResult.metrics`); for a row stored before results declared points, the same points are
derived from its `details` by the same code (core/metric_points.py), so old and new rows
export alike.

Label values come from the config (models, features, checks) and from the checks' own
bounded outputs (methods, top-N segments); each family is capped at MAX_SERIES series.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from sqlalchemy import and_, case, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from core.metric_points import number as _number, points_from_details
from core.results import METRIC_NAME

log = logging.getLogger("driftline.exporter")

STATUS_VALUE = {"ok": 0, "warn": 1, "alert": 2, "error": 2, "insufficient_data": -1, "pending": -2}
PENDING_VALUE = -2
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
MAX_SERIES = 10_000


def _epoch(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    return (moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment).timestamp()


class _Families:
    """Gauge families with a per-family series cap and duplicate protection."""

    def __init__(self) -> None:
        self.families: dict[str, GaugeMetricFamily] = {}
        self.seen: dict[str, set] = {}

    def gauge(self, name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
        if name not in self.families:
            self.families[name] = GaugeMetricFamily(name, doc, labels=labels)
            self.seen[name] = set()
        return self.families[name]

    def add(self, name: str, doc: str, labels: dict[str, str], value) -> None:
        value = _number(value)
        family = self.gauge(name, doc, list(labels))
        if list(family._labelnames) != list(labels):
            return  # one family, one label set (a declared metric reusing a name with other labels)
        key = tuple(labels.values())
        if value is None or key in self.seen[name] or len(self.seen[name]) >= MAX_SERIES:
            return
        self.seen[name].add(key)
        family.add_metric([str(v) for v in key], value)


class DriftlineCollector:
    """Reads the store on every scrape; `models` limits it to configured models,
    `scheduled` lists (model, check) pairs reported as pending until they have a result
    (their job and alert series start at zero, so dashboards and rules see them at once)."""

    def __init__(self, engine: Engine, models: Iterable[str] | None = None,
                 scheduled: Iterable[tuple[str, str]] = (), sinks: Iterable[str] = ()) -> None:
        self.engine = engine
        self.models = set(models) if models is not None else None
        self.scheduled = sorted(set(scheduled))
        self.sinks = sorted(set(sinks))  # configured sink kinds: their counters exist from the start
        # Ledger aggregates (a scan of every run ever) are recomputed only when the ledger changed,
        # which a cheap probe tells (every state change bumps a row's revision); the latest
        # results are read on every scrape.
        self._jobs_cache: tuple | None = None

    def describe(self):
        return []  # families depend on the store's contents; nothing to pre-register

    def collect(self):
        try:
            with self.engine.connect() as connection:
                families = list(self._collect(connection))
            up = 1.0
        except (SQLAlchemyError, OSError) as exc:
            log.warning("metrics scrape could not read the store: %s", str(exc)[:200])
            families, up = [], 0.0
        store_up = GaugeMetricFamily("driftline_store_up", "1 when the results store was readable at this scrape.")
        store_up.add_metric([], up)
        yield store_up
        yield from families

    def _wanted(self, model: str) -> bool:
        return self.models is None or model in self.models

    def _collect(self, connection):
        from monitor.ledger import job_events, ledger

        yield from self._results(connection)
        probe = select(func.count(), func.sum(ledger.c.revision), func.max(ledger.c.id),
                       select(func.count()).select_from(job_events).scalar_subquery())
        key = tuple(connection.execute(probe).one())
        if self._jobs_cache is None or self._jobs_cache[0] != key:
            self._jobs_cache = (key, list(self._jobs(connection)))
        yield from self._jobs_cache[1]
        yield from self._alerts(connection)

    def _results(self, connection):
        from monitor.store import runs

        latest = select(runs.c.model, runs.c.check_name, func.max(runs.c.window_end).label("window_end")) \
            .group_by(runs.c.model, runs.c.check_name).subquery()
        query = select(runs.c.model, runs.c.check_name, runs.c.window_end, runs.c.result_json).join(
            latest, and_(runs.c.model == latest.c.model, runs.c.check_name == latest.c.check_name,
                         runs.c.window_end == latest.c.window_end))
        out = _Families()
        status_doc = "Latest check status: 0 ok, 1 warn, 2 alert or error, -1 insufficient_data, -2 pending."
        out.gauge("driftline_check_status", status_doc, ["model", "check"])
        seen_pairs = set()
        for model, check, window_end, text in connection.execute(query):
            if not self._wanted(model):
                continue
            try:
                data = json.loads(text)
            except ValueError:
                continue
            seen_pairs.add((model, check))
            base = {"model": model, "check": check}
            out.add("driftline_check_status", status_doc, base, STATUS_VALUE.get(data.get("status"), 2))
            out.add("driftline_check_window_end_timestamp_seconds", "End of the latest evaluated window.", base,
                    _epoch(window_end))
            out.add("driftline_check_rows", "Rows in the latest evaluated window.", base, data.get("current_rows"))
            for feature in data.get("features") or []:
                if not isinstance(feature, dict) or "feature" not in feature:
                    continue
                labels = {**base, "feature": str(feature["feature"])}
                out.add("driftline_feature_drift_score", "Drift score of a feature in the latest window.",
                        {**labels, "method": str(feature.get("method") or "")}, feature.get("score"))
                out.add("driftline_feature_status", "Feature status, same values as driftline_check_status.",
                        labels, STATUS_VALUE.get(feature.get("status"), 2))
            # What the result declares (core.results.MetricPoint); a row stored before results
            # declared points gets the same points from its details (core.metric_points).
            points = data.get("metrics")
            if not points:
                points = [p.to_dict() for p in points_from_details(data.get("details") or {})]
            for point in points:
                if isinstance(point, dict) and isinstance(point.get("labels", {}), dict) \
                        and METRIC_NAME.match(str(point.get("name", ""))):
                    labels = {k: str(v) for k, v in sorted(point.get("labels", {}).items())
                              if k not in base}
                    out.add(f"driftline_{point['name']}", str(point.get("help") or point["name"]),
                            {**base, **labels}, point.get("value"))
        for model, check in self.scheduled:
            if (model, check) not in seen_pairs and self._wanted(model):
                out.add("driftline_check_status", status_doc, {"model": model, "check": check}, PENDING_VALUE)
        yield from out.families.values()

    def _jobs(self, connection):
        from monitor.ledger import job_events, ledger

        finished = ledger.c.duration_seconds.isnot(None)
        columns = [ledger.c.model, ledger.c.check_name,
                   func.sum(case((finished, 1), else_=0)), func.sum(func.coalesce(ledger.c.duration_seconds, 0.0)),
                   func.sum(ledger.c.failures),
                   func.max(case((ledger.c.state == "succeeded", ledger.c.finished_at), else_=None))]
        columns += [func.sum(case((and_(finished, ledger.c.duration_seconds <= le), 1), else_=0))
                    for le in DURATION_BUCKETS]
        duration = HistogramMetricFamily("driftline_job_duration_seconds", "Duration of finished runs.",
                                         labels=["model", "check"])
        success = GaugeMetricFamily("driftline_job_last_success_timestamp_seconds",
                                    "When the latest successful run finished.", labels=["model", "check"])
        failures = CounterMetricFamily("driftline_job_failures", "Failed run attempts, retries included.",
                                       labels=["model", "check"])
        for row in connection.execute(select(*columns).group_by(ledger.c.model, ledger.c.check_name)):
            model, check, count, total, failed, last_success = row[:6]
            if not self._wanted(model):
                continue
            buckets = [(str(le), float(n or 0)) for le, n in zip(DURATION_BUCKETS, row[6:])]
            duration.add_metric([model, check], buckets + [("+Inf", float(count or 0))], float(total or 0.0))
            failures.add_metric([model, check], float(failed or 0))
            if last_success is not None:
                success.add_metric([model, check], _epoch(last_success))
        yield from (duration, success, failures)

        skipped = CounterMetricFamily("driftline_job_skipped", "Windows or triggers skipped, by reason.",
                                      labels=["model", "check", "reason"])
        counts = {(m, c, r): 0 for m, c in self.scheduled for r in ("backfill_limit", "overlap")}
        for reason, query in (
                ("backfill_limit", select(ledger.c.model, ledger.c.check_name, func.count())
                 .where(ledger.c.state == "skipped").group_by(ledger.c.model, ledger.c.check_name)),
                ("overlap", select(job_events.c.model, job_events.c.check_name, func.count())
                 .where(job_events.c.kind == "overlap").group_by(job_events.c.model, job_events.c.check_name))):
            for model, check, n in connection.execute(query):
                if self._wanted(model):
                    counts[(model, check, reason)] = n
        for (model, check, reason), n in sorted(counts.items()):
            skipped.add_metric([model, check, reason], float(n))
        yield skipped

        windows = GaugeMetricFamily("driftline_job_windows", "Ledger windows per state.",
                                    labels=["model", "check", "state"])
        for model, check, state, n in connection.execute(
                select(ledger.c.model, ledger.c.check_name, ledger.c.state, func.count())
                .group_by(ledger.c.model, ledger.c.check_name, ledger.c.state)):
            if self._wanted(model):
                windows.add_metric([model, check, state], float(n))
        yield windows

    def _alerts(self, connection):
        from monitor.alerts.outbox import alert_state, outbox

        sent = CounterMetricFamily("driftline_alerts_sent", "Alert messages delivered, by sink.", labels=["sink"])
        dead = CounterMetricFamily("driftline_alerts_dead_lettered", "Alert messages given up on, by sink.",
                                   labels=["sink"])
        pending = GaugeMetricFamily("driftline_alerts_pending", "Alert messages waiting for delivery, by sink.",
                                    labels=["sink"])
        totals: dict[str, dict[str, int]] = {sink: {} for sink in self.sinks}
        for sink, state, n in connection.execute(
                select(outbox.c.sink, outbox.c.state, func.count()).group_by(outbox.c.sink, outbox.c.state)):
            totals.setdefault(sink, {})[state] = n
        for sink, by_state in sorted(totals.items()):
            sent.add_metric([sink], float(by_state.get("delivered", 0)))
            dead.add_metric([sink], float(by_state.get("dead", 0)))
            pending.add_metric([sink], float(by_state.get("pending", 0) + by_state.get("sending", 0)))
        yield from (sent, dead, pending)

        active = GaugeMetricFamily("driftline_alerts_active", "Active alert keys (any route).",
                                   labels=["model", "check", "severity"])
        query = select(alert_state.c.model, alert_state.c.check_name, alert_state.c.severity,
                       func.count(func.distinct(alert_state.c.dedup_key))).where(
            alert_state.c.active.is_(True)).group_by(alert_state.c.model, alert_state.c.check_name,
                                                     alert_state.c.severity)
        found = {(m, c, s): 0 for m, c in self.scheduled for s in ("warn", "alert")}
        for model, check, severity, n in connection.execute(query):
            if self._wanted(model):
                found[(model, check, severity)] = n
        for labels, n in sorted(found.items()):
            active.add_metric(list(labels), float(n))
        yield active
