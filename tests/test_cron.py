"""Crontab lines are read as cron reads them: Sunday is 0 or 7, Monday 1. APScheduler 3's own
from_crontab counts from Monday = 0, so `0 3 * * 1` fired on Tuesdays."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from core.settings import cron_trigger

SATURDAY = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)


def _weekdays(expression: str) -> list[str]:
    """The weekday names of the next 14 daily-fire candidates after Saturday noon."""
    trigger, names, at = cron_trigger(expression), [], SATURDAY
    for _ in range(14):
        at = trigger.get_next_fire_time(None, at + timedelta(seconds=1))
        if at > SATURDAY + timedelta(days=14):
            break
        names.append(at.strftime("%a"))
    return names


@pytest.mark.parametrize("expression, days", [
    ("0 3 * * 1", {"Mon"}),
    ("0 3 * * 0", {"Sun"}),
    ("0 3 * * 7", {"Sun"}),
    ("0 3 * * 1-5", {"Mon", "Tue", "Wed", "Thu", "Fri"}),
    ("0 3 * * 0-6", {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}),
    ("0 3 * * */2", {"Sun", "Tue", "Thu", "Sat"}),
    ("0 3 * * 6,0", {"Sat", "Sun"}),
    ("0 3 * * mon", {"Mon"}),
])
def test_day_of_week_as_cron_reads_it(expression, days):
    assert set(_weekdays(expression)) == days


def test_monday_three_am_is_next_fired_on_monday():
    fire = cron_trigger("0 3 * * 1").get_next_fire_time(None, SATURDAY)
    assert fire == datetime(2026, 12, 7, 3, 0, tzinfo=timezone.utc) and fire.strftime("%A") == "Monday"


@pytest.mark.parametrize("expression", ["0 3 * *", "0 3 * * 8", "0 3 * * 5-2", "0 3 * * */0"])
def test_bad_lines_are_value_errors(expression):
    with pytest.raises(ValueError):
        cron_trigger(expression)
