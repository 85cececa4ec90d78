"""Configuration pieces shared by every layer: strict pydantic models, durations, data sources.

The application's YAML (monitor.config) is assembled from these and from each check's own
parameter model (core.checks.CheckParams), so a check that needs a data source (skew's
training examples, say) declares it with the same `SourceConfig` as the model's reference.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

Pair = tuple[float, float]

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value) -> timedelta:
    """'30m', '6h', '1d', '2w' (or a number of seconds) to a timedelta. ValueError (which pydantic
    reports under the key's path) for anything else, infinite or beyond timedelta's ~2.7 million years."""
    if isinstance(value, timedelta):
        return value
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not value >= 0:  # also NaN
                raise ValueError
            return timedelta(seconds=value)
        match = _DURATION.match(str(value))
        if match:
            return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    except (OverflowError, ValueError):
        pass
    raise ValueError(f"expected a duration such as 30m, 6h, 1d (at most {timedelta.max.days}d), got {value!r}")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class StrictModel(BaseModel):
    """Unknown keys are errors that name the key; values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LimitsConfig(StrictModel):
    max_bytes: int | None = Field(default=None, gt=0)
    max_rows: int | None = Field(default=None, gt=0)
    max_categories: int = Field(default=10_000, gt=0)


class SourceConfig(StrictModel):
    path: str = Field(description="file, directory, glob or object-store URI")
    format: Literal["parquet", "csv", "json", "jsonl"] | None = None
    limits: LimitsConfig = LimitsConfig()

    def resolved(self, base: Path) -> str:
        if "://" in self.path or os.path.isabs(self.path):
            return self.path
        return str((base / self.path).resolve())


_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _crontab_days(field: str) -> str:
    """A crontab day-of-week field (Sunday = 0 or 7) as APScheduler day names. APScheduler 3 reads
    day numbers from Monday = 0, so `0 3 * * 1` would fire on Tuesdays if passed through."""
    if any(c.isalpha() for c in field) or field == "*":
        return field
    days: set[int] = set()
    for part in field.split(","):
        span, _, step = part.partition("/")
        if span == "*":
            low, high = 0, 6
        elif "-" in span:
            low, high = (int(x) for x in span.split("-", 1))
        else:
            low = high = int(span)
        if not (0 <= low <= 7 and 0 <= high <= 7 and low <= high) or (step and int(step) < 1):
            raise ValueError(f"day of week {part!r}: expected 0-7 (Sunday is 0 or 7)")
        days.update(d % 7 for d in range(low, high + 1, int(step) if step else 1))
    return ",".join(_CRON_DAYS[d] for d in sorted(days))


def cron_trigger(expression: str, timezone: str = "UTC"):
    """APScheduler's CronTrigger for a standard five-field crontab line, read as cron reads it."""
    from apscheduler.triggers.cron import CronTrigger

    fields = str(expression).split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 crontab fields (minute hour day month day-of-week), got {len(fields)}")
    minute, hour, day, month, day_of_week = fields
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=_crontab_days(day_of_week),
                       timezone=timezone)
