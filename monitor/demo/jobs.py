"""The demo's monitoring week, run the way `driftline serve` runs it: every enabled check has a
daily schedule over the world's serving days, and each schedule's windows go through the run
ledger (claim, run, record) and the alert rules; the outbox then delivers the alerts through
the config's `log` sink, whose lines are written to `alerts.log` in the demo's workdir.

`driftline jobs history`, `driftline alerts list` and `/metrics` (`demo --serve`) then show
the week: ledger rows `succeeded`, messages `delivered`, `driftline_alerts_sent_total` > 0.
Re-running the demo finds every window done and runs nothing again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

from core.results import CheckResult
from monitor.config import Config
from monitor.runner import ModelRunner
from monitor.store import ResultsStore

ALERT_LOG = "alerts.log"


class _SharedRunner(ModelRunner):
    """One runner for every (check, window) of the week: the reference is profiled once and each
    window's merged hourly profile is kept, so the checks of a window share it as `run` does."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._windows: dict[tuple[datetime, datetime], tuple] = {}

    def window_profile(self, start: datetime, end: datetime):
        if (start, end) not in self._windows:
            self._windows[(start, end)] = super().window_profile(start, end)
        return self._windows[(start, end)]


@dataclass
class Week:
    """What the scheduled backfill did: stored results per day, ledger outcomes, delivered alerts."""

    by_day: dict[str, list[CheckResult]] = field(default_factory=dict)
    ran: int = 0  # windows run now (0 when a previous demo run already did them)
    outcomes: dict[str, int] = field(default_factory=dict)
    delivered: dict[str, int] = field(default_factory=dict)  # message kind -> count
    alert_log: Path | None = None


class _Counter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.kinds: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        kind = str(record.args[0]) if isinstance(record.args, tuple) and record.args else "message"
        self.kinds[kind] = self.kinds.get(kind, 0) + 1


def run_week(config: Config, store: ResultsStore, workdir: Path,
             progress: Callable[[str], None]) -> Week:
    from monitor.alerts.rules import routes_for
    from monitor.ledger import Ledger
    from monitor.scheduling import schedules_of
    from monitor.service import JobRunner

    model = config.models[0]
    quiet = lambda message: progress(message) if message.startswith("profiling") else None  # noqa: E731
    runner = _SharedRunner(config, model, store, quiet)

    def execute(model_name: str, check: str, start: datetime, end: datetime) -> list[CheckResult]:
        results = runner.run(start, end, [check])
        for result in results:
            named = ", ".join(result.alerting_features[:4])
            progress(f"{check} {start:%Y-%m-%d}: {result.status}" + (f" ({named})" if named else ""))
        return results

    routes = {model.name: routes_for(model, config.base_dir)}
    for route in routes[model.name]:
        route.sink.validate()
    week = Week()
    jobs = JobRunner(config, store, Ledger(store.engine), routes, execute=execute)
    schedules = [s for s in schedules_of(config) if s.model == model.name]
    for schedule in schedules:
        report = jobs.tick(schedule)
        week.ran += len(report.ran)
        for outcome in report.ran.values():
            week.outcomes[outcome] = week.outcomes.get(outcome, 0) + 1
        for start, end in sorted(_windows(store, schedule)):
            result = store.get_result(model.name, schedule.check, start, end)
            if result is not None:
                week.by_day.setdefault(f"{start:%Y-%m-%d}", []).append(result)
    week.alert_log, week.delivered = _deliver(store, routes[model.name], workdir)
    return week


def _windows(store: ResultsStore, schedule) -> list[tuple[datetime, datetime]]:
    from monitor.ledger import Ledger

    rows = Ledger(store.engine).rows(schedule.model, schedule.check, limit=10_000)
    return [(row["window_start"], row["window_end"]) for row in rows if row["grid"] == schedule.grid]


def _deliver(store: ResultsStore, routes: list, workdir: Path) -> tuple[Path, dict[str, int]]:
    """Deliver what the alert rules queued; the log sink's lines go to workdir/alerts.log."""
    from monitor.alerts.outbox import Outbox

    path = workdir / ALERT_LOG
    logger = logging.getLogger("driftline.alerts")
    to_file = logging.FileHandler(path, encoding="utf-8")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    counter = _Counter()
    saved = (logger.level, logger.propagate)
    logger.addHandler(to_file)
    logger.addHandler(counter)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the lines are in the file; the demo prints their count and where
    try:
        outbox = Outbox(store.engine, {route.id: route.sink for route in routes})
        while outbox.deliver_due(limit=200):
            pass
    finally:
        logger.removeHandler(to_file)
        logger.removeHandler(counter)
        to_file.close()
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
    return path, counter.kinds
