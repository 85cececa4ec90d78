"""Schedules: which windows exist, when each closes, and which are due.

The trigger (APScheduler's CronTrigger / IntervalTrigger) only says *when to look*; the
windows themselves lie on a fixed grid, so a trigger that fires twice (a cron time in
the repeated hour of a DST fall-back) or not at all (a time inside the skipped
spring-forward hour) can neither run a window twice nor lose one:

- interval schedules: window ends at `anchor + k * interval` (anchor: `start`, else the
  Unix epoch), each window `[end - window, end)`;
- cron schedules: a fire time maps to the end of the window it closes: the fire time
  floored, in the schedule's timezone, to the window's unit (whole days → local
  midnight; whole hours → the hour; ...). Day windows are calendar days in that
  timezone, so they tile across DST (a 23 h and a 25 h day); shorter windows are
  absolute durations.

`due_ends` walks back from the newest closed window along this grid; the ledger
(monitor/ledger.py) decides which of those windows still need a run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from monitor.config import Config, ScheduleConfig
from core.errors import ConfigError
from core.settings import cron_trigger

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_WALK = 100_000  # windows walked back per plan; far more than any sane backfill


def utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class Schedule:
    """One (model, check) schedule from the config, with its grid and trigger."""

    model: str
    check: str
    config: ScheduleConfig

    @property
    def job_id(self) -> str:
        """Stable APScheduler job id: changes when any schedule field changes."""
        fields = self.config.model_dump(mode="json")
        digest = hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.model}/{self.check}/{digest}"

    @property
    def grid(self) -> str:
        """What fixes the windows (not the cron expression): ledger rows remember it."""
        c = self.config
        kind = f"every {_seconds(c.interval)}s" if c.interval is not None else "cron"
        return f"{kind}|{_seconds(c.window)}s|{c.timezone}"

    @property
    def tz(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.config.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"models.{self.model}.schedules.{self.check}.timezone: "
                              f"unknown timezone {self.config.timezone!r}") from exc

    @property
    def step(self) -> timedelta:
        return self.config.interval if self.config.interval is not None else self.config.window

    def describe(self) -> str:
        c = self.config
        trigger = f"cron '{c.cron}'" if c.cron else f"every {_short(c.interval)}"
        return f"{trigger} {c.timezone}, window {_short(c.window)}"

    def trigger(self):
        from apscheduler.triggers.interval import IntervalTrigger

        c = self.config
        if c.cron is not None:
            try:
                return cron_trigger(c.cron, timezone=self.tz)
            except ValueError as exc:
                raise ConfigError(f"models.{self.model}.schedules.{self.check}.cron: {exc}") from exc
        return IntervalTrigger(seconds=_seconds(c.interval), start_date=self.anchor, timezone=self.tz)

    @property
    def anchor(self) -> datetime:
        return utc(self.config.start) if self.config.start is not None else EPOCH

    # --- the grid -----------------------------------------------------------------

    def end_for(self, fire_time: datetime) -> datetime:
        """The end of the window a fire time closes (UTC)."""
        fire_time = utc(fire_time)
        if self.config.interval is not None:
            step = self.config.interval
            return self.anchor + ((fire_time - self.anchor) // step) * step
        local = fire_time.astimezone(self.tz)
        window = self.config.window
        if _whole(window, timedelta(days=1)):
            floored = datetime(local.year, local.month, local.day)
        elif _whole(window, timedelta(hours=1)):
            floored = datetime(local.year, local.month, local.day, local.hour)
        elif _whole(window, timedelta(minutes=1)):
            floored = datetime(local.year, local.month, local.day, local.hour, local.minute)
        else:
            floored = local.replace(microsecond=0, tzinfo=None)
        # Wall-clock floor; fold=0 picks the first of a repeated hour, consistently.
        return utc(floored.replace(tzinfo=self.tz))

    def start_for(self, end: datetime) -> datetime:
        return self._back(utc(end), self.config.window)

    def previous_end(self, end: datetime) -> datetime:
        return self._back(utc(end), self.step)

    def _back(self, end: datetime, length: timedelta) -> datetime:
        if self.config.cron is not None and _whole(length, timedelta(days=1)):
            local = end.astimezone(self.tz).replace(tzinfo=None)  # calendar days in the local zone
            return utc((local - length).replace(tzinfo=self.tz))
        return end - length

    def latest_fire(self, now: datetime) -> datetime | None:
        """The last time the trigger fired at or before `now` (None: never)."""
        now = utc(now)
        if self.config.interval is not None:
            if now < self.anchor:
                return None
            return self.anchor + ((now - self.anchor) // self.config.interval) * self.config.interval
        trigger = self.trigger()
        lookback = max(self.config.window, timedelta(days=1)) * 2
        while lookback <= timedelta(days=800):
            cursor, found = now - lookback, None
            fire = trigger.get_next_fire_time(None, cursor)
            while fire is not None and utc(fire) <= now:
                found = utc(fire)
                fire = trigger.get_next_fire_time(fire, found + timedelta(seconds=1))
            if found is not None:
                return found
            lookback *= 2
        return None

    def closed_ends(self, now: datetime, limit: int, after: datetime | None = None) -> list[datetime]:
        """Window ends on the grid, newest first, of windows closed by a fire at or before `now`,
        inside the schedule's [start, end] and later than `after`; at most `limit`."""
        fire = self.latest_fire(now)
        if fire is None:
            return []
        end = self.end_for(fire)
        bound_end = utc(self.config.end) if self.config.end is not None else None
        bound_start = utc(self.config.start) if self.config.start is not None else None
        ends: list[datetime] = []
        for _ in range(MAX_WALK):
            if len(ends) >= limit or (after is not None and end <= after):
                break
            if bound_start is not None and self.start_for(end) < bound_start:
                break
            if bound_end is None or end <= bound_end:
                ends.append(end)
            end = self.previous_end(end)
        return ends


def schedules_of(config: Config) -> list[Schedule]:
    found = []
    for model in config.models:
        for item in model.schedules:
            schedule = Schedule(model.name, item.check, item)
            schedule.tz  # noqa: B018 - validate the timezone now, naming the key
            schedule.trigger()
            found.append(schedule)
    ids = [s.job_id for s in found]
    for job_id in ids:
        if ids.count(job_id) > 1:
            raise ConfigError(f"schedule {job_id.rsplit('/', 1)[0]} is listed twice with the same fields")
    return found


def _short(value: timedelta) -> str:
    seconds = _seconds(value)
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _seconds(value: timedelta) -> int:
    return int(value.total_seconds())


def _whole(value: timedelta, unit: timedelta) -> bool:
    return value >= unit and value % unit == timedelta(0)
